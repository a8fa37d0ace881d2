"""The training configuration: one YAML file, validated by pydantic, overridable with ``--set a.b=c``.

Read with the project's one loader (:func:`segunify.config.load_yaml_config`): every problem becomes one
:class:`SegunifyError` line naming the YAML file, line and dotted key (``parts.0.weight``). Relative paths
are taken from the config file's folder; ``data:NAME`` and ``weights:NAME`` name entries of the shared
data folder (:func:`segunify.config.resolve_path`), so shipped configs work on any machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from segunify.config import StrictConfig, apply_override, load_yaml_config, parse_override, resolve_path

__all__ = ["TrainConfig", "apply_override", "load_config", "parse_override", "resolve_config_path"]

Pair = tuple[int, int]
SELECTABLE = ("miou", "pixel_acc", "mean_acc")


class ModelConfig(StrictConfig):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    reinit_head: bool = False  # weights for another class count: a new classifier only when this is true
    # input normalisation (0-1 units, RGB); None: the start checkpoint's (model.weights), else the family's
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    freeze_bn: bool = False  # BatchNorm in eval mode while training: running statistics kept, affine trained


class PartConfig(StrictConfig):
    """One part of the compound dataset. ``labels`` is ``gt`` (the dataset's ground truth, through
    ``mapping`` when its taxonomy is not the target) or a pseudo-label directory. For a pseudo-label
    directory, ``mapping`` and ``teacher`` (checkpoint folder or weights sha256) are what the labels must
    have been made with: checked against the directory's summary before training starts."""

    dataset: str
    root: str
    split: str = "train"
    labels: str = "gt"
    mapping: str | None = None
    teacher: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    options: dict[str, Any] = Field(default_factory=dict)
    resize: Pair | None = None  # (H, W) this part's images and labels get before augmentation (per dataset)


class AugmentationConfig(StrictConfig):
    resize: Pair | None = None  # (H, W) applied before the random scale, e.g. to bring datasets to one size
    scale: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.5, 2.0)
    crop: Pair = (512, 1024)  # (H, W); padded with ignore where the scaled image is smaller
    hflip: bool = True
    color_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2  # brightness/contrast/saturation strength
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    jitter_p: Annotated[float, Field(ge=0, le=1)] = 0.8

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v):
        if v[0] > v[1]:
            raise ValueError(f"scale range must be (low, high) with low <= high, got {list(v)}")
        return v

    @field_validator("crop", "resize")
    @classmethod
    def _positive(cls, v):
        if v is not None and min(v) <= 0:
            raise ValueError(f"sizes must be positive (H, W), got {list(v)}")
        return v


class OptimizerConfig(StrictConfig):
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(StrictConfig):
    """Linear warm-up from ``warmup_factor * lr`` over ``warmup`` steps, then poly decay to 0."""

    warmup: Annotated[int, Field(ge=0)] = 0
    warmup_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    power: Annotated[float, Field(ge=0)] = 0.9


class DistillConfig(StrictConfig):
    """Distillation toward a frozen teacher on the source parts' pixels (ground truth already in the target
    taxonomy): ``weight * T^2 * KL(teacher_T || student_T)`` (``T`` the temperature) averaged over them, so
    the student keeps the teacher's view of the source while it learns the extra data. The teacher runs once
    per step on the batch (``benchmarks/train_options.py`` times it)."""

    teacher: str
    weight: Annotated[float, Field(gt=0)] = 1.0
    temperature: Annotated[float, Field(gt=0)] = 1.0


class LossConfig(StrictConfig):
    """Cross entropy over the labelled pixels, plus ``distill``."""

    distill: DistillConfig | None = None


class EvalPartConfig(StrictConfig):
    dataset: str
    root: str
    split: str = "val"
    mapping: str | None = None  # GT taxonomy -> target taxonomy; identity when they are equal
    options: dict[str, Any] = Field(default_factory=dict)
    max_samples: Annotated[int, Field(gt=0)] | None = None


class EvalConfig(StrictConfig):
    """Evaluation during training, with :class:`segunify.evaluation.Evaluator` (the numbers of
    ``segunify evaluate --model`` on the saved checkpoint). ``select`` names the ONE metric that picks
    ``best/``: ``mean_miou`` (mean over the parts of each part's mIoU, each in its own taxonomy) or
    ``<part name>/<metric>`` with a part name ``dataset/split`` and metric ``miou``, ``pixel_acc`` or
    ``mean_acc`` (e.g. ``camvid/val/miou``)."""

    every: Annotated[int, Field(ge=0)] = 0  # 0: only at the end
    parts: list[EvalPartConfig] = Field(default_factory=list)
    size: Pair | None = (
        None  # (H, W) the image is resized to (None: its own size); the checkpoint's input size
    )
    select: str = "mean_miou"

    @field_validator("select")
    @classmethod
    def _metric_named(cls, v):
        if v != "mean_miou" and v.rsplit("/", 1)[-1] not in SELECTABLE:
            raise ValueError(f"expected mean_miou or <dataset>/<split>/<{'|'.join(SELECTABLE)}>, got {v!r}")
        return v


class LogConfig(StrictConfig):
    tensorboard: bool = True
    every: Annotated[int, Field(gt=0)] = 10
    progress: bool = True
    rank_record: bool = False  # each rank writes <out>/ranks/rank<r>.json: its draws and final weights hash


class TrainConfig(StrictConfig):
    model: ModelConfig
    taxonomy: str
    parts: Annotated[list[PartConfig], Field(min_length=1)]
    augmentation: AugmentationConfig = AugmentationConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loss: LossConfig = LossConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    steps: Annotated[int, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 8  # per process
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    # autocast on a GPU (accelerate's mixed_precision): true = bf16 where the GPU has it, else fp16;
    # bf16 / fp16 force one; ignored on the CPU
    amp: Literal[True, False, "bf16", "fp16"] = True
    sync_bn: bool = False  # SyncBatchNorm on multi-GPU runs
    eval: EvalConfig = EvalConfig()
    out: str = "runs/train"
    checkpoint_every: Annotated[int, Field(ge=0)] = 0  # 0: at every evaluation and at the end
    seed: int = 0
    num_workers: Annotated[int, Field(ge=0)] = 2
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.augmentation.resize is not None and any(p.resize for p in self.parts):
            raise ValueError("give augmentation.resize or a resize per part, not both")
        if self.schedule.warmup >= self.steps:
            raise ValueError(
                f"schedule.warmup ({self.schedule.warmup}) must be smaller than steps ({self.steps})"
            )
        return self

    def to_json_dict(self) -> dict:
        return json.loads(self.model_dump_json())


def resolve_config_path(text: str, config_path: str | Path, key: str) -> Path:
    """A path value of the config file ``config_path``: relative to that file's folder (see
    :func:`segunify.config.resolve_path`); errors name the file."""
    return resolve_path(text, Path(config_path).parent, key, config_path)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, override and validate a training config; one clear :class:`SegunifyError` for any problem."""
    return load_yaml_config(path, TrainConfig, overrides)
