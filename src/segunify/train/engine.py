"""The training loop: one ``Accelerator`` (1 CPU, N GPUs, several nodes; ``accelerate launch`` or
``torchrun``), a weighted compound dataset, AdamW + warm-up/poly, periodic evaluation, checkpoints.

Reproducibility and exact resume rest on three choices:

* the data stream is a pure function of the step (:class:`WeightedDrawSampler`, augmentation seeded
  per draw), so resuming only needs the step;
* the torch RNG (dropout, drop-path) is re-seeded from ``(seed, step, rank)`` before every step, so no
  RNG state has to be carried across a restart;
* model weights go to a segunify checkpoint (safetensors), optimiser/scheduler state to
  ``train_state.pt`` (plain tensors and dicts, loaded with ``weights_only=True``), both inside one
  staging folder that replaces ``last/`` with a rename.

BatchNorm statistics differ per rank under DDP; they are averaged across ranks before every evaluation
and checkpoint, so all ranks hold identical weights there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from segunify.errors import SegunifyError
from segunify.metrics import confusion_matrix, cross_taxonomy_confusion, cross_taxonomy_scores, scores
from segunify.taxonomy import IGNORE, Taxonomy
from segunify.train.config import TrainConfig, resolve_config_path
from segunify.train.data import (
    CompoundDataset,
    EvalDataset,
    EvalPart,
    WeightedDrawSampler,
    build_augmentation,
    resolve_eval_part,
    resolve_parts,
)

STATE = "train_state.pt"
LAST, BEST = "last", "best"


def lr_factor(step: int, steps: int, warmup: int, warmup_factor: float, power: float) -> float:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup`` steps, then ``(1 - t)^power`` to 0."""
    if step < warmup:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return max(0.0, 1.0 - t) ** power


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank, 0x7A1]).generate_state(1, dtype=np.uint64)[0] >> 1)


def normaliser(mean, std, device):
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0
    return lambda img: (img.to(device, non_blocking=True).float() - m) / s


def compute_loss(model, unwrapped, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy with ignore; a model with its own loss (Mask2Former) is called as
    ``model(x, labels=labels)`` and returns the loss (or a dict/obj with ``loss``)."""
    if getattr(unwrapped, "has_own_loss", False):
        out = model(x, labels=labels)
        return out if isinstance(out, torch.Tensor) else (out["loss"] if isinstance(out, dict) else out.loss)
    logits = model(x)
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE)


def train_step(accelerator, model, optimizer, scheduler, batch: dict, normalise, grad_clip: float | None):
    """One optimisation step on a batch of uint8 images and labels (shared with benchmarks/train.py)."""
    x = normalise(batch["image"])
    labels = batch["label"].to(accelerator.device, non_blocking=True).long()
    with accelerator.autocast():
        loss = compute_loss(model, accelerator.unwrap_model(model), x, labels)
    accelerator.backward(loss)
    if grad_clip is not None:
        accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def sync_buffers(model: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks."""
    if world <= 1 or not torch.distributed.is_initialized():
        return
    for b in model.buffers():
        if b.is_floating_point():
            torch.distributed.all_reduce(b, op=torch.distributed.ReduceOp.SUM)
            b.div_(world)


@dataclass
class EvalResult:
    name: str
    miou: float | None
    pixel_acc: float
    per_class: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"miou": self.miou, "pixel_acc": self.pixel_acc, "iou": self.per_class}


def evaluate(
    model: torch.nn.Module,
    parts: list[EvalPart],
    target: Taxonomy,
    cfg: TrainConfig,
    accelerator,
    console: Console | None = None,
) -> list[EvalResult]:
    """Score ``model`` on each evaluation part (samples sharded over ranks, confusion summed)."""
    from segunify.models.inference import Predictor

    rank, world = accelerator.process_index, accelerator.num_processes
    was_training = model.training
    predictor = Predictor(
        model, cfg.model.mean, cfg.model.std, size=cfg.eval.size, device=accelerator.device, amp=cfg.amp
    )
    results = []
    for part in parts:
        gt_classes = part.adapter.taxonomy.num_classes
        cm = torch.zeros(
            (target.num_classes, target.num_classes)
            if part.same_taxonomy
            else (gt_classes, target.num_classes),
            dtype=torch.int64,
            device=accelerator.device,
        )
        loader = torch.utils.data.DataLoader(
            EvalDataset(part, part.samples[rank::world], None),
            batch_size=1,
            num_workers=min(cfg.num_workers, 2),
        )
        for batch in loader:
            pred = predictor.probs(batch["image"]).argmax(1)
            label = batch["label"].to(accelerator.device)
            if part.same_taxonomy:
                cm += confusion_matrix(label, pred, target.num_classes)
            else:
                cm += cross_taxonomy_confusion(label, pred, part.mapping.allowed)
        cm = accelerator.reduce(cm, reduction="sum") if world > 1 else cm
        results.append(_scores(part, cm.cpu().numpy(), target))
    model.train(was_training)
    if console is not None and accelerator.is_main_process:
        for r in results:
            console.print(_table(r))
    return results


def _scores(part: EvalPart, cm: np.ndarray, target: Taxonomy) -> EvalResult:
    if part.same_taxonomy:
        s = scores(cm)
        names = target.classes
    else:
        out = cross_taxonomy_scores(cm, part.mapping.allowed)
        s = out.get("scores")
        names = part.adapter.taxonomy.classes
        if s is None:  # not a partition: only the allowed-set pixel accuracy is defined
            return EvalResult(part.name, None, float(out["pixel_acc_allowed"]))
    per_class = {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, s.iou, strict=True)}
    miou = None if math.isnan(s.miou) else float(s.miou)
    return EvalResult(part.name, miou, float(s.pixel_acc), per_class)


def _table(r: EvalResult) -> Table:
    miou = "n/a" if r.miou is None else f"{100 * r.miou:.2f}"
    table = Table(
        title=f"{r.name}: mIoU {miou}, pixel acc {100 * r.pixel_acc:.2f}", title_justify="left", min_width=50
    )
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    for name, v in r.per_class.items():
        table.add_row(name, "-" if v is None else f"{100 * v:.2f}")
    return table


def _score(results: list[EvalResult]) -> float | None:
    vals = [r.miou if r.miou is not None else r.pixel_acc for r in results]
    return float(np.mean(vals)) if vals else None


def _accelerator(cfg: TrainConfig):
    """Accelerate picks gloo for several CPU processes only when told it is on CPU (``cpu=True``)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    on_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in (
        "1",
        "true",
    )
    mp = "no"
    if cfg.amp and not on_cpu:
        mp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # some models hold parameters that no forward uses (ESPNetv2's DownSampler keeps an unused PReLU)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mp, cpu=on_cpu, kwargs_handlers=[ddp])


def find_last(out: Path) -> Path | None:
    """``last/``, or the previous one left by a crash in the middle of replacing it."""
    for p in (out / LAST, out / f".{LAST}.old"):
        if (p / STATE).is_file():
            return p
    return None


def _save(out: Path, name: str, model, meta: dict, state: dict | None) -> Path:
    """Write a checkpoint (and the training state) into a staging folder, then swap it in."""
    from segunify.models.checkpoint import save_checkpoint

    staging = out / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(staging, model, meta)
    if state is not None:
        torch.save(state, staging / STATE)
    final, old = out / name, out / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def state_sha256(model: torch.nn.Module) -> str:
    """Hash of every tensor of the state dict (names, dtypes, bytes): equal hashes = identical weights."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _write_rank_record(
    out: Path, rank: int, seen: list[list[int]], model: torch.nn.Module, step: int
) -> None:
    """What this rank trained on and the hash of the weights it ended with (audits sharding and sync)."""
    from segunify.io import atomic_write_bytes

    record = {"rank": rank, "step": step, "draws": seen, "weights_sha256": state_sha256(model)}
    atomic_write_bytes(out / "ranks" / f"rank{rank}.json", json.dumps(record).encode())


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: name it, never a traceback
        raise SegunifyError(
            f"cannot read training state ({str(exc).splitlines()[0][:160]})", path / STATE
        ) from None


def train(
    cfg: TrainConfig,
    config_path: str | Path = "<config>",
    resume: bool = False,
    stop_after: int | None = None,
    console: Console | None = None,
) -> dict:
    """Run (or resume) training; returns a summary (final step, last loss, evaluation results, paths).

    ``stop_after`` ends the run after that step (checkpointing it) while the schedule still targets
    ``cfg.steps``: a preemptible job, or the first half of a resume test.
    """
    from accelerate.utils import set_seed

    from segunify.models import create_model
    from segunify.models.checkpoint import read_safetensors

    config_path = str(config_path)
    console = console or Console(stderr=True)
    accelerator = _accelerator(cfg)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    device = accelerator.device
    set_seed(cfg.seed)

    target, parts = resolve_parts(cfg, config_path)
    eval_parts = [
        resolve_eval_part(p, target, f"eval.parts.{i}", config_path) for i, p in enumerate(cfg.eval.parts)
    ]
    out = resolve_config_path(cfg.out, config_path, "out")
    last = find_last(out)
    if resume and last is None:
        raise SegunifyError(f"--resume: no previous run in {out} ({LAST}/{STATE} missing)", config_path)
    if not resume and (out / LAST).exists():
        raise SegunifyError(
            f"out: {out} already holds a run; add --resume or choose another out", config_path
        )

    weights = None if resume else cfg.model.weights  # a resumed run takes every weight from last/
    weights_path = None if weights is None else resolve_config_path(weights, config_path, "model.weights")
    if weights_path is not None and not weights_path.exists():
        raise SegunifyError(f"model.weights: file not found: {weights_path}", config_path)
    try:
        model = create_model(cfg.model.name, target.num_classes, weights=weights_path, **cfg.model.kwargs)
    except SegunifyError as exc:
        raise SegunifyError(f"model: {exc}", config_path) from None

    state = None
    if resume:
        state = _load_state(last)
        model.load_state_dict(read_safetensors(last / "model.safetensors"), strict=True)
        saved = tuple(state["sampler"]["global_batch"])
        if saved != (world, cfg.batch_size):
            raise SegunifyError(
                f"--resume: the run used {saved[0]} process(es) x batch {saved[1]}, now {world} x {cfg.batch_size}; "
                "resume with the same layout",
                config_path,
            )
    if cfg.sync_bn and world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optimizer.weight_decay), lr=cfg.optimizer.lr, betas=cfg.optimizer.betas
    )
    s = cfg.schedule
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, cfg.steps, s.warmup, s.warmup_factor, s.power)
    )
    model, optimizer = accelerator.prepare(model, optimizer)  # the data stream is sharded by our sampler
    unwrapped = accelerator.unwrap_model(model)
    step, best = 0, None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best = int(state["step"]), state.get("best")

    dataset = CompoundDataset(parts, build_augmentation(cfg.augmentation), seed=cfg.seed)
    sampler = WeightedDrawSampler(
        dataset.sizes,
        [p.weight for p in parts],
        cfg.batch_size,
        world,
        rank,
        cfg.seed,
        start_step=step,
        steps=cfg.steps,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    normalise = normaliser(cfg.model.mean, cfg.model.std, device)
    writer = None
    if main and cfg.log.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=step if resume else None)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        console.print(
            f"train {cfg.model.name} on {len(dataset)} samples from {len(parts)} part(s) "
            f"({', '.join(f'{p.name} x{p.weight:g}' for p in parts)}), {world} process(es) x batch "
            f"{cfg.batch_size}, device {device}, steps {step}->{cfg.steps}"
        )

    def meta(metrics: dict) -> dict:
        return {
            "taxonomy": target.name,
            "classes": list(target.classes),
            "mean": list(cfg.model.mean),
            "std": list(cfg.model.std),
            "input_size": list(cfg.eval.size or cfg.augmentation.crop),
            "train_config": cfg.to_json_dict(),
            "metrics": metrics,
            "step": step,
        }

    def checkpoint(results: list[EvalResult] | None) -> None:
        nonlocal best
        sync_buffers(unwrapped, world)
        metrics = {r.name: r.as_dict() for r in results} if results else {}
        score = _score(results) if results else None
        improved = score is not None and (best is None or score > best)
        if improved:
            best = score
        if main:
            train_state = {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "sampler": {"position": step, "global_batch": [world, cfg.batch_size], "seed": cfg.seed},
                "best": best,
            }
            _save(out, LAST, unwrapped, meta(metrics), train_state)
            if improved:
                _save(out, BEST, unwrapped, meta(metrics), None)
        accelerator.wait_for_everyone()

    def run_eval() -> list[EvalResult]:
        sync_buffers(unwrapped, world)
        results = evaluate(unwrapped, eval_parts, target, cfg, accelerator, console)
        if writer is not None:
            for r in results:
                if r.miou is not None:
                    writer.add_scalar(f"eval/{r.name}/miou", r.miou, step)
                writer.add_scalar(f"eval/{r.name}/pixel_acc", r.pixel_acc, step)
                for name, v in r.per_class.items():
                    if v is not None:
                        writer.add_scalar(f"eval_iou/{r.name}/{name}", v, step)
        return results

    ckpt_every = cfg.checkpoint_every or cfg.eval.every
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    losses: list[float] = []
    results: list[EvalResult] = []
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[ips]} img/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not (main and cfg.log.progress),
        transient=False,
    )
    seen: list[list[int]] = []  # [draw, index] pairs this rank trained on (log.rank_record)
    last_log_time, last_log_step = time.perf_counter(), step
    with progress:
        task = progress.add_task("train", total=cfg.steps, completed=step, loss="-", ips="-")
        batches = iter(loader)
        while step < end:
            batch = next(batches)
            if cfg.log.rank_record:
                seen.extend([int(d), int(i)] for d, i in zip(batch["draw"], batch["index"], strict=True))
            torch.manual_seed(_step_seed(cfg.seed, step, rank))
            loss = train_step(accelerator, model, optimizer, scheduler, batch, normalise, cfg.grad_clip)
            step += 1
            if step % cfg.log.every == 0 or step == end:
                mean_loss = accelerator.reduce(loss.detach().float(), reduction="mean").item()
                losses.append(mean_loss)
                now = time.perf_counter()
                ips = (step - last_log_step) * cfg.batch_size * world / max(now - last_log_time, 1e-9)
                last_log_time, last_log_step = now, step
                progress.update(task, loss=f"{mean_loss:.4f}", ips=f"{ips:.1f}")
                if main and cfg.log.progress and not console.is_terminal:  # log files get plain lines
                    eta = (cfg.steps - step) * cfg.batch_size * world / max(ips, 1e-9)
                    console.print(
                        f"step {step}/{cfg.steps}  loss {mean_loss:.4f}  {ips:.2f} img/s  "
                        f"lr {scheduler.get_last_lr()[0]:.3g}  eta {time.strftime('%H:%M:%S', time.gmtime(eta))}"
                    )
                if writer is not None:
                    writer.add_scalar("train/loss", mean_loss, step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                    writer.add_scalar("train/images_per_s", ips, step)
            progress.update(task, completed=step)
            evaluating = (
                bool(eval_parts) and cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.steps
            )
            if evaluating:
                results = run_eval()
            if ckpt_every and step % ckpt_every == 0 and step < end:
                checkpoint(results if evaluating else None)
    if step >= cfg.steps and eval_parts:
        results = run_eval()
    checkpoint(results if step >= cfg.steps else None)
    if writer is not None:
        writer.close()
    if cfg.log.rank_record:
        _write_rank_record(out, rank, seen, unwrapped, step)
    summary = {
        "step": step,
        "losses": losses,
        "eval": {r.name: r.as_dict() for r in results},
        "last": str(out / LAST),
        "best": str(out / BEST) if (out / BEST).exists() else None,
        "world": world,
        "main": main,
    }
    accelerator.end_training()
    return summary
