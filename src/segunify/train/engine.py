"""Building blocks of the training loop (:class:`segunify.train.trainer.Trainer` puts them together):
the schedule, the loss, one optimisation step, per-step seeding, BatchNorm sync, checkpoint state.

Reproducibility and exact resume rest on three choices:

* the data stream is a pure function of the step (:class:`WeightedDrawSampler`, augmentation seeded
  per draw), so resuming only needs the step;
* the torch RNG (dropout, drop-path) is re-seeded from ``(seed, step, rank)`` before every step, so no
  RNG state has to be carried across a restart;
* model weights go to a segunify checkpoint (safetensors), optimiser/scheduler state to
  ``train_state.pt`` (plain tensors and dicts, loaded with ``weights_only=True``), both written into
  one staging folder that replaces ``last/`` with one rename.

BatchNorm statistics differ per rank under DDP; they are averaged across ranks before every evaluation
and checkpoint, so all ranks hold identical weights there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE
from segunify.train.config import TrainConfig
from segunify.train.finetune import param_groups  # noqa: F401  (re-exported: benchmarks, trainer)

STATE = "train_state.pt"
LAST, BEST = "last", "best"


def lr_factor(step: int, steps: int, warmup: int, warmup_factor: float, power: float) -> float:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup`` steps, then ``(1 - t)^power`` to 0."""
    if step < warmup:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return max(0.0, 1.0 - t) ** power


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one step on one rank (dropout etc.): no RNG state to carry across a restart."""
    return int(np.random.SeedSequence([seed, step, rank, 0x7A1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def normaliser(mean, std, device, channels_last: bool = False):
    """uint8 ``[B, 3, H, W]`` -> normalised float32 on ``device``; in channels_last for a model kept in it."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return lambda img: ((img.to(device, non_blocking=True).float() - m) / s).contiguous(memory_format=fmt)


def normalisation(model_cfg, weights: Path | None, model: torch.nn.Module) -> tuple[tuple, tuple]:
    """``(mean, std)`` of a run's inputs, each the config's (``model.mean``/``model.std``) where it sets
    it, else the checkpoint ``weights``' (the start weights when they are a segunify checkpoint: a student
    sees its teacher's inputs; ``last/`` on resume), else the model family's (``input_mean``/``input_std``)."""
    from segunify.models.checkpoint import META, load_meta

    meta = load_meta(weights) if weights is not None and (weights / META).is_file() else None
    recorded = (meta.mean, meta.std) if meta is not None else (model.input_mean, model.input_std)
    given = (model_cfg.mean, model_cfg.std)
    return tuple(tuple(g if g is not None else r) for g, r in zip(given, recorded, strict=True))  # type: ignore[return-value]


def use_channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether ``model`` runs faster in channels_last on ``device`` (a family flag measured on the CPU:
    ESPNetv2's depthwise convolutions); the model is converted when it does."""
    faster = torch.device(device).type == "cpu" and bool(getattr(model, "cpu_channels_last", False))
    if faster:
        model.to(memory_format=torch.channels_last)
    return faster


def compute_loss(model, unwrapped, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy with ignore; a model with its own loss (Mask2Former) is called as
    ``model(x, labels=labels)`` and returns the loss (or a dict/obj with ``loss``)."""
    if getattr(unwrapped, "has_own_loss", False):
        out = model(x, labels=labels)
        return out if isinstance(out, torch.Tensor) else (out["loss"] if isinstance(out, dict) else out.loss)
    logits = model(x)
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def train_step(
    accelerator, model, optimizer, scheduler, batch: dict, normalise, grad_clip: float | None, objective=None
):
    """One optimisation step on a batch of uint8 images and labels (shared with benchmarks/train.py);
    ``objective`` (:class:`segunify.train.objective.Objective`) replaces plain cross entropy."""
    x = normalise(batch["image"])
    with accelerator.autocast():
        if objective is None:
            labels = batch["label"].to(accelerator.device, non_blocking=True).long()
            loss = compute_loss(model, accelerator.unwrap_model(model), x, labels)
        else:
            loss = objective(model, accelerator.unwrap_model(model), x, batch)
    accelerator.backward(loss)
    if grad_clip is not None:
        accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def sync_buffers(model: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks."""
    if world <= 1 or not torch.distributed.is_initialized():
        return
    for b in model.buffers():
        if b.is_floating_point():
            torch.distributed.all_reduce(b, op=torch.distributed.ReduceOp.SUM)
            b.div_(world)


def mixed_precision(amp: bool | str, cpu: bool, bf16_supported: bool) -> str:
    """accelerate's ``mixed_precision`` for the config's ``amp``: ``no`` on the CPU or when off; ``True``
    takes bf16 where the GPU has it (no loss scaling needed), fp16 otherwise; ``bf16``/``fp16`` force one."""
    if cpu or amp is False:
        return "no"
    if amp is True:
        return "bf16" if bf16_supported else "fp16"
    if amp == "bf16" and not bf16_supported:
        raise SegunifyError("amp: bf16 but this GPU has no bfloat16 support; use amp: fp16 (or true)")
    return str(amp)


def on_cpu() -> bool:
    """No CUDA, or the launcher asked for the CPU (``accelerate launch --cpu``)."""
    forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    return forced or not torch.cuda.is_available()


def process_state():
    """The launcher's process state (rank, world), known before the model is built: the main process
    claims and locks the output folder before anything else happens."""
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())


def make_accelerator(cfg: TrainConfig, model: torch.nn.Module):
    """Accelerate picks gloo for several CPU processes only when told it is on CPU (``cpu=True``).
    DDP searches for parameters without a gradient only for a family that declares it needs it."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    cpu = on_cpu()
    mp = mixed_precision(cfg.amp, cpu, not cpu and torch.cuda.is_bf16_supported())
    ddp = DistributedDataParallelKwargs(
        find_unused_parameters=bool(getattr(model, "find_unused_parameters", False))
    )
    return Accelerator(mixed_precision=mp, cpu=cpu, kwargs_handlers=[ddp])


def find_last(out: Path) -> Path | None:
    """``last/``, or the previous one left by a crash in the middle of replacing it (``save_checkpoint``
    moves it to ``.last.old-<pid>`` for the instant of the swap)."""
    for p in (out / LAST, *sorted(out.glob(f".{LAST}.old-*"))):
        if (p / STATE).is_file():
            return p
    return None


def state_sha256(model: torch.nn.Module) -> str:
    """Hash of every tensor of the state dict (names, dtypes, bytes): equal hashes = identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_state(path: Path) -> dict:
    """The optimizer/scheduler/RNG state of ``last/``: plain tensors only (a foreign pickle is refused)."""
    from segunify.models.checkpoint import load_tensor_pickle

    return load_tensor_pickle(path / STATE, "training state")


def claim_out(out: Path) -> None:
    """Make ``out`` a training-run folder (:func:`segunify.outputs.claim_folder`, marker
    ``.segunify-train``). A folder of an older segunify holding a run (``last/`` with its training state
    in a segunify checkpoint) but no marker is adopted; anything else non-empty is refused."""
    from segunify.io import atomic_write_json
    from segunify.models.checkpoint import is_checkpoint
    from segunify.outputs import claim_folder, folder_kind, marker_name

    last = find_last(out) if out.is_dir() and folder_kind(out) is None else None
    if last is not None and is_checkpoint(last):
        atomic_write_json(out / marker_name("train"), {"kind": "train"})
    claim_folder(out, "train")


def check_writable(out: Path, config_path: str) -> None:
    """An unwritable output is one line before the first step, not a traceback after the last."""
    from segunify.io import write_problem

    problem = write_problem(out)
    if problem:
        raise SegunifyError(f"out: cannot write to {out} ({problem})", config_path)


def head_mismatch(weights: Path, model: torch.nn.Module) -> str | None:
    """Why the classifier in ``weights`` does not fit ``model`` (another class count), else ``None``.

    The family's loader left its classifier (the family's ``classifier_keys``) as initialised
    (``weights_loaded``); the class count of the weights, for the message, is in a segunify checkpoint's
    ``meta.json`` or a transformers folder's ``config.json``."""
    import json

    from segunify.models.checkpoint import META, load_meta

    if getattr(model, "weights_loaded", "full") != "encoder-decoder":
        return None
    own = int(model.segunify_spec["num_classes"])
    n = None
    if (weights / META).is_file():
        n = load_meta(weights).num_classes
    elif (weights / "config.json").is_file():
        hf = json.loads((weights / "config.json").read_text(encoding="utf-8"))
        n = len(hf.get("id2label") or {}) or hf.get("num_labels")
    if n is None:
        return f"its classifier has another class count than the taxonomy's {own}"
    return f"it holds {n} classes, the taxonomy {own}"
