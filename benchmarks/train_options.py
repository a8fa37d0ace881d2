"""Step-time cost of each fine-tuning option of the training engine; prints ONE JSON line.

ESPNetv2 s=2.0 (19 classes) at ``--size`` (default 384x384), batch ``--batch`` (4), one in-memory batch
(blocky labels and distillation codes), :func:`segunify.train.engine.train_step` as the trainer calls it.
Options measured against the default (fused cross entropy, BN in training mode, the model in channels_last on
a CPU as the trainer keeps it): ``contiguous`` (the model and batch in the default memory format: what
channels_last saves), ``freeze_bn``, ``distill`` (an ESPNetv2 s=2.0 teacher's forward, KL on the source
pixels; every crop holds source pixels) and ``distill_compound`` (the same on a compound batch whose first crop
alone is from the source part, as in the demo's 1:1:1 draws: the teacher runs on that crop only).
The options' steps are interleaved over ``--rounds`` rounds; ``step_s`` is each option's fastest step
(the least disturbed by other processes on a shared machine) and ``overhead`` = step / baseline - 1.
Because whole steps are noisy there, ``term_ms`` also times the loss terms alone (forward and backward of
cross entropy on fixed logits, the teacher's forward + KL; fastest of ``--repeats``) and ``term_overhead`` =
the extra term's time / the baseline step.

    python benchmarks/train_options.py [--size 384,384] [--batch 4] [--steps 3] [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from segunify.models import create_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.train.config import DistillConfig
from segunify.train.engine import normaliser, train_step, use_channels_last
from segunify.train.finetune import param_groups, set_train_mode
from segunify.train.objective import Distiller, Objective

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
OPTIONS = ("baseline", "contiguous", "freeze_bn", "distill", "distill_compound")


def make_batch(size, batch: int, classes: int) -> dict:
    g = torch.Generator().manual_seed(0)
    h, w = size
    blocks = torch.randint(0, classes, (batch, h // 16 + 1, w // 16 + 1), generator=g, dtype=torch.uint8)
    label = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)[:, :h, :w].contiguous()
    return {
        "image": torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g),
        "label": label,
        "distill": torch.randint(0, 2, (batch, h, w), dtype=torch.uint8, generator=g),
    }


def compound(batch: dict) -> dict:
    """The batch with source pixels in its first crop only (the other crops pseudo-labelled)."""
    codes = torch.zeros_like(batch["distill"])
    codes[0] = batch["distill"][0]
    return {**batch, "distill": codes}


def setup(option: str, classes: int, device: torch.device) -> dict:
    """A fresh seeded model, its optimiser, input normaliser and the objective of one option."""
    torch.manual_seed(0)
    model = create_model("espnetv2", classes, s=2.0).to(device)
    channels_last = option != "contiguous" and use_channels_last(model, device)
    set_train_mode(model, option == "freeze_bn")
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    objective = None
    if option.startswith("distill"):
        teacher = create_model("espnetv2", classes, s=2.0)
        cfg = DistillConfig(teacher="<benchmark>", temperature=2.0)
        objective = Objective(distiller=Distiller(cfg, teacher, MEAN, STD, device))
    norm = normaliser(MEAN, STD, device, channels_last)
    return {"model": model, "opt": opt, "sched": sched, "objective": objective, "norm": norm}


def time_terms(runs: dict, batches: dict, classes: int, device: torch.device, repeats: int) -> dict:
    """Milliseconds of each loss term alone (forward + backward), fastest of ``repeats``."""
    g = torch.Generator().manual_seed(1)
    batch = batches["baseline"]
    shape = (batch["label"].shape[0], classes, *batch["label"].shape[1:])
    logits = torch.randn(shape, generator=g).to(device).requires_grad_(True)
    labels = batch["label"].to(device).long()

    def term(option: str) -> torch.Tensor:
        if option == "ce":
            return F.cross_entropy(logits, labels, ignore_index=255)
        b = batches[option]
        return runs[option]["objective"].distiller(logits, b["image"].to(device), b["distill"].to(device))

    out = {}
    for option in ("ce", "distill", "distill_compound"):
        best = float("inf")
        for _ in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            term(option).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
            logits.grad = None
        out[option] = round(1000 * best, 2)
    return out


def main() -> None:
    from accelerate import Accelerator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="384,384")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per option and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timings of each term alone")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split(","))
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    device = acc.device
    batch = make_batch(size, args.batch, 19)
    batches = {o: compound(batch) if o == "distill_compound" else batch for o in OPTIONS}
    runs = {o: setup(o, 19, device) for o in OPTIONS}
    times: dict[str, list[float]] = {o: [] for o in OPTIONS}
    t_start = time.perf_counter()
    for r in range(args.rounds + 1):  # round 0 warms up
        for option, run in runs.items():
            for _ in range(args.steps if r else 1):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                train_step(
                    acc,
                    run["model"],
                    run["opt"],
                    run["sched"],
                    batches[option],
                    run["norm"],
                    None,
                    run["objective"],
                )
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r:
                    times[option].append(time.perf_counter() - t0)
    base = min(times["baseline"])
    terms = time_terms(runs, batches, 19, device, args.repeats)
    result = {
        "benchmark": "train_options",
        "model": "espnetv2 s=2.0, 19 classes",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "size": list(size),
        "batch": args.batch,
        "steps_per_option": args.steps * args.rounds,
        "step_s": {o: round(min(t), 4) for o, t in times.items()},
        "overhead": {o: round(min(t) / base - 1.0, 4) for o, t in times.items() if o != "baseline"},
        "term_ms": terms,
        "term_overhead": {o: round(terms[o] / 1000 / base, 4) for o in ("distill", "distill_compound")},
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
