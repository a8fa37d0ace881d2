"""Training on compound datasets: config (pydantic), data (parts, weighted sampler, augmentation),
engine (building blocks), trainer (:class:`Trainer`, :func:`train`), callbacks (progress, TensorBoard).

``from segunify.train import train, load_config``: ``train(load_config(path), path)`` runs a config file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segunify.train.config import TrainConfig, load_config

if TYPE_CHECKING:
    from segunify.train.callbacks import Callback
    from segunify.train.trainer import Trainer, train

__all__ = ["Callback", "TrainConfig", "Trainer", "load_config", "train"]


def __getattr__(name: str):
    """The trainer (torch, accelerate) is imported on first use, so reading a config stays light."""
    if name == "Callback":
        from segunify.train.callbacks import Callback

        return Callback
    if name in ("Trainer", "train"):
        from segunify.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'segunify.train' has no attribute {name!r}")
