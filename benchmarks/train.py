"""Training throughput: the real loader (CamVid images + augmentation) beside the same loop on in-memory
tensors, plus inference; prints ONE JSON line.

For each model (espnetv2 s=2.0 and segformer-b0, random init) at ``--size`` (default 512x1024):

* ``train_ips_loader``: images/s of ``segunify.train.engine.train_step`` fed by the training DataLoader
  (``CompoundDataset`` over CamVid train, resize + random scale + crop + flip + jitter, ``--workers``);
* ``train_ips_memory``: the same step on one pre-made uint8 batch (no decoding, no augmentation);
* ``loader_overhead`` = 1 - loader / memory (goal < 0.10); ``loader_alone_ips``: the loader without training;
* ``infer_ips``: forward passes (inference mode) on normalised batches.

With CUDA, ``--gpu-extra`` adds Mask2Former-Swin-B and SegFormer-B5 at 1024x2048 (train and inference
images/s, peak memory, AMP on and off). On a CPU the loader workers share the cores with the model, so
the overhead there is an upper bound of what a GPU machine sees.

    python benchmarks/train.py [--steps 3] [--size 512,1024] [--batch 1] [--workers 2] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch

from segunify.models import count_parameters, create_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.paths import data_path
from segunify.taxonomy import load_taxonomy
from segunify.train.config import AugmentationConfig, PartConfig
from segunify.train.data import CompoundDataset, WeightedDrawSampler, build_augmentation, collate
from segunify.train.engine import mixed_precision, normaliser, param_groups, train_step
from segunify.train.parts import resolve_part

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_accelerator(amp: bool | str):
    """The trainer's choice of mixed precision for ``amp`` (a config's ``amp``: true, false, bf16, fp16)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # accelerate keeps one mixed precision per process and refuses another: each measurement its own
    AcceleratorState._reset_state()
    cpu = not torch.cuda.is_available()
    mp = mixed_precision(amp, cpu, not cpu and torch.cuda.is_bf16_supported())
    return Accelerator(cpu=cpu, mixed_precision=mp)


def loader_for(size, batch: int, steps: int, workers: int, pin: bool, root=None):
    root = str(root or data_path("CamVid"))
    h, w = size
    aug = AugmentationConfig(
        resize=(round(w * 0.75), w), scale=(0.75, 1.25), crop=(h, w), hflip=True, color_jitter=0.2
    )
    part = resolve_part(
        PartConfig(dataset="camvid", root=root), load_taxonomy("camvid"), "parts.0", "<benchmark>"
    )
    ds = CompoundDataset([part], build_augmentation(aug), seed=0)
    sampler = WeightedDrawSampler(ds.sizes, [1.0], batch, steps=steps)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=pin, collate_fn=collate
    )


def timed_train(
    model_name, kwargs, num_classes, batches, warmup: int, steps: int, amp: bool | str, lr: float = 1e-4
) -> dict:
    """images/s of ``train_step`` over ``batches`` (an iterator), after ``warmup`` untimed steps; also
    every step's loss (``losses``) and the mixed precision used."""
    acc = make_accelerator(amp)
    model = create_model(model_name, num_classes, **kwargs).train()
    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    model, opt = acc.prepare(model, opt)
    norm = normaliser(MEAN, STD, acc.device)
    if acc.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(acc.device)
    n, losses = 0, []
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        if i == warmup:
            sync(acc.device)
            t0 = time.perf_counter()
        losses.append(train_step(acc, model, opt, sched, batch, norm, 1.0).detach())
        if i >= warmup:
            n += batch["image"].shape[0]
        if i + 1 == warmup + steps:
            break
    sync(acc.device)
    seconds = time.perf_counter() - t0
    out = {"ips": n / seconds, "steps_s": steps / seconds, "precision": acc.mixed_precision}
    out["losses"] = [float(v) for v in torch.stack(losses).float().cpu()]
    if acc.device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
    del model, opt
    return out


@torch.inference_mode()
def timed_infer(
    model_name, kwargs, num_classes, size, batch: int, warmup: int, steps: int, amp: bool | str
) -> dict:
    """Forward images/s on a random batch; ``amp``: autocast on CUDA in bf16 (``True``/``"bf16"``) or fp16."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = create_model(model_name, num_classes, **kwargs).eval().to(device)
    x = torch.randn(batch, 3, *size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    ctx = torch.autocast("cuda", dtype=dtype) if (amp and device.type == "cuda") else contextlib.nullcontext()
    with ctx:
        for _ in range(warmup):
            model(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        sync(device)
    out = {"ips": steps * batch / (time.perf_counter() - t0), "params": count_parameters(model)}
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def memory_batches(size, batch: int, num_classes: int):
    g = torch.Generator().manual_seed(0)
    b = {
        "image": torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, generator=g),
        "label": torch.randint(0, num_classes, (batch, *size), dtype=torch.uint8, generator=g),
    }
    while True:
        yield b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--size", default="512,1024", help="H,W of the training crops and inference inputs")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the real loader")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--models", default="espnetv2,segformer-b0")
    ap.add_argument(
        "--no-gpu-extra", action="store_true", help="skip Mask2Former-Swin-B / SegFormer-B5 on CUDA"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split(","))
    cuda = torch.cuda.is_available()
    num_classes = load_taxonomy("camvid").num_classes  # the loader serves CamVid GT (11 classes)
    kwargs = {"espnetv2": {"s": 2.0}}
    total = args.warmup + args.steps
    result: dict = {
        "benchmark": "train",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "threads": torch.get_num_threads(),
        "size": list(size),
        "batch": args.batch,
        "steps": args.steps,
        "workers": args.workers,
        "goal_loader_overhead": 0.10,
        "models": {},
    }
    t_start = time.perf_counter()
    loader = loader_for(size, args.batch, total, args.workers, cuda)
    t0 = time.perf_counter()
    n = sum(b["image"].shape[0] for b in loader)
    result["loader_alone_ips"] = n / (time.perf_counter() - t0)
    for name in args.models.split(","):
        kw = kwargs.get(name, {})
        mem = timed_train(
            name,
            kw,
            num_classes,
            memory_batches(size, args.batch, num_classes),
            args.warmup,
            args.steps,
            True,
        )
        real = timed_train(
            name,
            kw,
            num_classes,
            iter(loader_for(size, args.batch, total, args.workers, cuda)),
            args.warmup,
            args.steps,
            True,
        )
        inf = timed_infer(name, kw, num_classes, size, args.batch, args.warmup, args.steps, True)
        result["models"][name] = {
            "train_ips_loader": round(real["ips"], 4),
            "train_ips_memory": round(mem["ips"], 4),
            "loader_overhead": round(1.0 - real["ips"] / mem["ips"], 4),
            "infer_ips": round(inf["ips"], 4),
            **({"train_peak_mem_gib": round(mem["peak_mem_gib"], 3)} if "peak_mem_gib" in mem else {}),
        }
    if cuda and not args.no_gpu_extra:
        big = (1024, 2048)
        extra = {}
        for name, kw in (("mask2former", {"backbone": "swin-b"}), ("segformer-b5", {})):
            entry = {}
            for amp in (True, False):
                tag = "amp" if amp else "fp32"
                tr = timed_train(name, kw, 19, memory_batches(big, 1, 19), args.warmup, args.steps, amp)
                inf = timed_infer(name, kw, 19, big, 1, args.warmup, args.steps, amp)
                entry[tag] = {
                    "train_ips": round(tr["ips"], 4),
                    "train_peak_mem_gib": round(tr["peak_mem_gib"], 3),
                    "infer_ips": round(inf["ips"], 4),
                    "infer_peak_mem_gib": round(inf["peak_mem_gib"], 3),
                }
            extra[name] = entry
        result["gpu_1024x2048"] = extra
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
