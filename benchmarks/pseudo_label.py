"""Pseudo-labelling throughput on CamVid with the shipped Cityscapes teacher; prints ONE JSON line.

Figures, all measured in this one run:

* ``forward_img_s``: the teacher alone (``Predictor.probs`` on images already in memory, same batches);
* ``runner_img_s``: the whole runner (decode in workers, priors, statistics, PNG writing, journal);
  ``runner_over_forward`` is their ratio (goal >= 0.85 on CPU, >= 0.95 on a GPU);
* ``prior_share_19`` / ``prior_share_65``: the priors op on random probabilities at 1024x2048 with the
  CamVid -> Cityscapes (19) and CamVid -> Mapillary Vistas v1.2 (65) mappings and a real CamVid GT
  upscaled, as a share of one teacher forward pass at 1024x2048 (goal <= 5 %);
* ``prior_demo_19_ms`` / ``demo_over_gate_19`` / ``demo_share_19``: the demo's priors (the allowed-mass gate
  and ``--ignore-conflicts``), against the gate alone and as a share of one forward pass at 1024x2048, on
  random probabilities and, ``teacher_*``, on the teacher's own probabilities of that frame (in class
  planes, as the runner hands them on);
* ``dual_over_single``: time of one pass writing P and R (``also_without_priors``) over the P run
  alone (two separate runs would be about 2.0);
* ``peak_rss_mb``: peak resident memory of this process (and of the decoding workers).

Usage: ``python benchmarks/pseudo_label.py [--limit 16] [--size 512,1024] [--threads 1] [--device cpu]``

``--processes 1x2,2x1`` instead runs the real CLI as 1 process of 2 threads, then 2 processes of 1 thread
(``accelerate launch --cpu --num_processes 2``), on the same ``--split`` frames: images/s (the slowest
rank's time), wall time, speed-up over the first, and whether the label PNGs are byte-identical.

``--backends torch,onnx`` instead runs the real CLI (``segunify pseudo-label --backend B``) once per
backend on the same ``--split`` frames (default: 16 CamVid val frames, ``--threads 2``) and prints ONE
JSON line: per backend the runner's images/s (``summary.json``: processed / run seconds, the ONNX
export and parity check included), the process wall time, and the onnx/torch ratio, the share of
byte-identical label PNGs and the pixel agreement of the labels with the first backend; for onnx also
the one-time export + parity check (timed again in this process) and the rate without it.
Recorded figures: docs/benchmarks.md (``python scripts/bench.py run pseudo_label.py ARGS``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def _median_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _labels(out: Path) -> dict[str, np.ndarray]:
    """The label PNGs of a pseudo-label folder (not confidence/hidden files), by relative path."""
    return {
        p.relative_to(out).as_posix(): cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        for p in sorted(out.rglob("*.png"))
        if not p.relative_to(out).parts[0].startswith((".", "confidence"))
    }


def _cli_run(ckpt: Path, root: Path, out: Path, backend: str, args, processes: int = 1) -> dict:
    """One ``segunify pseudo-label`` run (``processes`` > 1: ``accelerate launch --cpu --num_processes``,
    ``args.threads`` each); its images/s from the summary (slowest rank) and its wall time."""
    launch = [sys.executable, "-m", "segunify.cli"]
    if processes > 1:
        launcher = str(Path(sys.executable).parent / "accelerate")
        launch = [launcher, "launch", "--cpu", "--num_processes", str(processes), "--num_machines", "1"]
        launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29561"]
        launch += ["-m", "segunify"]
    cmd = [
        *launch, "pseudo-label", "--teacher", str(ckpt), "--dataset", "camvid",
        "--root", str(root), "--mapping", "camvid__cityscapes", "--out", str(out), "--split", args.split,
        "--limit", str(args.limit), "--threads", str(args.threads), "--workers", str(args.workers),
        "--batch-size", str(args.batch_size), "--device", "cpu", "--backend", backend, "--size", args.size,
    ]  # fmt: skip
    env = {**os.environ, "SEGUNIFY_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    from segunify.pseudo import load_summary

    run = load_summary(out).run
    return {
        "img_s": round(run.processed / run.seconds, 3),
        "run_s": round(run.seconds, 1),
        "wall_s": round(wall, 1),
        "forward_s": round(sum(r.forward_seconds for r in run.ranks), 1),
    }


def _export_seconds(ckpt: Path, cache: Path, threads: int, size: tuple[int, int]) -> float:
    """Time of one ONNX export + parity check of the checkpoint at the teacher's input ``size``."""
    from segunify.models.checkpoint import load_checkpoint
    from segunify.models.onnx import cached_export

    torch.set_num_threads(threads)
    model, _ = load_checkpoint(ckpt)
    t0 = time.perf_counter()
    cached_export(model, cache, "bench", size)
    return time.perf_counter() - t0


def _teacher_and_root(args, tmp: str) -> tuple[Path, Path]:
    """``--teacher`` or the shipped s=2.0 teacher imported into ``tmp``; ``--root`` or the shared CamVid."""
    from segunify.paths import data_path

    ckpt = Path(args.teacher) if args.teacher else Path(tmp) / "teacher"
    if not args.teacher:
        cmd = [sys.executable, "-m", "segunify.cli", "import-weights", "espnetv2_s2.0.cityscapes"]
        subprocess.run([*cmd, "--out", str(ckpt)], check=True, stdout=subprocess.DEVNULL)
    return ckpt, Path(args.root) if args.root else data_path("CamVid")


def process_comparison(args, runs: list[tuple[int, int]]) -> dict:
    """The real CLI with N CPU processes of T threads each, per ``(N, T)`` of ``runs``, on the same frames:
    images/s, wall time, speed-up over the first, and whether every label PNG equals the first run's."""
    import copy

    with tempfile.TemporaryDirectory(prefix="segunify-bench-") as tmp:
        ckpt, root = _teacher_and_root(args, tmp)
        result: dict = {"benchmark": "pseudo_label_processes", "split": args.split}
        result["input_size"] = [int(v) for v in args.size.split(",")]
        ref, base = None, None
        for n, threads in runs:
            run_args = copy.copy(args)
            run_args.threads = threads
            out = Path(tmp) / f"out-{n}x{threads}"
            fig = _cli_run(ckpt, root, out, "torch", run_args, processes=n)
            labels = _labels(out)
            ref, base = ref or labels, base or fig["img_s"]
            same = sum(np.array_equal(ref[k], labels[k]) for k in ref)
            fig |= {"identical_pngs": f"{same}/{len(ref)}", "speedup": round(fig["img_s"] / base, 3)}
            result[f"{n}x{threads}"] = fig
        result["images"] = len(ref or {})
    return result


def _runs(text: str, threads: int) -> list[tuple[int, int]]:
    """``"1x2,2x1"`` -> [(1, 2), (2, 1)] (processes x threads); a bare ``N`` takes ``--threads``."""
    return [
        tuple(int(v) for v in item.split("x")) if "x" in item else (int(item), threads)
        for item in text.split(",")
    ]


def backend_comparison(args, backends: list[str]) -> dict:
    """The real CLI once per backend on the same frames (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="segunify-bench-") as tmp:
        ckpt, root = _teacher_and_root(args, tmp)
        result: dict = {"benchmark": "pseudo_label_backends", "threads": args.threads, "split": args.split}
        result["input_size"] = [int(v) for v in args.size.split(",")]
        ref = None
        for backend in backends:
            out = Path(tmp) / f"out-{backend}"
            result[backend] = _cli_run(ckpt, root, out, backend, args)
            labels = _labels(out)
            if ref is None:
                ref = labels
                result["images"] = len(labels)
                continue
            same = sum(np.array_equal(ref[k], labels[k]) for k in ref)
            agree = sum(int((ref[k] == labels[k]).sum()) for k in ref) / sum(v.size for v in ref.values())
            result[backend] |= {"identical_pngs": f"{same}/{len(ref)}", "pixel_agreement": round(agree, 6)}
            if backend == "onnx":  # the one-time export + parity check, timed again here, out of the rate
                size = tuple(int(v) for v in args.size.split(","))
                export_s = _export_seconds(ckpt, Path(tmp) / "export", args.threads, size)
                steady = len(ref) / max(result[backend]["run_s"] - export_s, 1e-9)
                result[backend] |= {"export_s": round(export_s, 1), "img_s_without_export": round(steady, 3)}
                base = result[backends[0]]["img_s"]
                result[f"{backend}_over_{backends[0]}_without_export"] = round(steady / base, 3)
            result[f"{backend}_over_{backends[0]}"] = round(
                result[backend]["img_s"] / result[backends[0]]["img_s"], 3
            )
    return result


def main(argv: list[str] | None = None) -> int:
    from segunify.datasets import create_dataset
    from segunify.mapping import load_mapping
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint
    from segunify.paths import data_path, weights_path
    from segunify.pseudo import PseudoSettings, apply_priors, prior_table, run_pseudo_label
    from segunify.pseudo.runner import teacher_from_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="CamVid root (default: shared data)")
    ap.add_argument("--weights", default="espnetv2_s2.0_cityscapes_1024x512.pth")
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--size", default="512,1024", help="teacher input H,W")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default=None, help="e.g. torch,onnx: compare backends through the CLI")
    ap.add_argument(
        "--processes",
        default=None,
        help="e.g. 1,2: compare CPU process counts through the CLI (--threads each)",
    )
    ap.add_argument("--split", default="val", help="--backends: split to pseudo-label")
    ap.add_argument(
        "--teacher", default=None, help="--backends: checkpoint (default: import the s=2.0 teacher)"
    )
    args = ap.parse_args(argv)
    if args.processes:
        print(json.dumps(process_comparison(args, _runs(args.processes, args.threads))))
        return 0
    if args.backends:
        print(json.dumps(backend_comparison(args, args.backends.split(","))))
        return 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = tuple(int(v) for v in args.size.split(","))
    root = Path(args.root) if args.root else data_path("CamVid")
    weights = Path(args.weights) if Path(args.weights).is_file() else weights_path(args.weights)
    s = 2.0 if "s2.0" in weights.name else 1.0

    with tempfile.TemporaryDirectory(prefix="segunify-bench-") as tmp:
        ckpt = save_checkpoint(
            Path(tmp) / "teacher",
            create_model("espnetv2", 19, weights=weights, s=s),
            {"taxonomy": "cityscapes", "input_size": [512, 1024]},
        )
        settings = PseudoSettings(
            size=size, batch_size=args.batch_size, workers=args.workers, limit=args.limit
        )
        teacher, info = teacher_from_checkpoint(ckpt, device, settings)
        dataset = create_dataset("camvid", root)
        mapping = load_mapping("camvid__cityscapes")
        samples = dataset.samples("train")[: args.limit]

        # forward only: the same batches, images already decoded
        images = [dataset.read_image(x) for x in samples]
        batches = [np.stack(images[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size)]
        teacher.probs(batches[0][:1])  # warm-up (allocator, oneDNN primitives)
        t0 = time.perf_counter()
        for b in batches:
            probs = teacher.probs(b)
            if device.type == "cuda":
                probs.cpu()
        forward_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        summary = run_pseudo_label(
            teacher, info, dataset, "train", mapping, Path(tmp) / "out", settings, device=device
        )
        runner_s = time.perf_counter() - t0

        # one teacher pass writing both P (priors) and R (plain argmax) versus the P run alone
        t0 = time.perf_counter()
        run_pseudo_label(
            teacher,
            info,
            dataset,
            "train",
            mapping,
            Path(tmp) / "p",
            settings,
            device=device,
            also_without_priors=Path(tmp) / "r",
        )
        dual_s = time.perf_counter() - t0

        # the priors op versus one forward pass at 1024x2048
        full = cv2.resize(images[0], (2048, 1024), interpolation=cv2.INTER_LINEAR)
        big, _ = teacher_from_checkpoint(ckpt, device, PseudoSettings(size=(1024, 2048)))
        forward_big = _median_time(lambda: big.probs(full[None]), args.repeat)
        real = big.probs(full[None]).contiguous()  # in class planes, as the runner hands them on
        gt_small = dataset.read_label(samples[0])
        gt = torch.from_numpy(cv2.resize(gt_small, (2048, 1024), interpolation=cv2.INTER_NEAREST))[None].to(
            device
        )
        shares, tables = {}, {}
        prior_ms = {}
        for name, classes in (("19", "cityscapes"), ("65", "mapillary-vistas-v1.2")):
            m = load_mapping(f"camvid__{classes}")
            g = torch.Generator(device=device).manual_seed(0)
            p = torch.rand(1, m.source.num_classes, 1024, 2048, generator=g, device=device)
            p /= p.sum(1, keepdim=True)
            allowed = tables[name] = prior_table(m, device=device)  # made once per run, as the runner does
            t = _median_time(
                lambda p=p, a=allowed: apply_priors(p, gt, a, scores_are_probs=True), args.repeat
            )
            prior_ms[name] = round(t * 1000, 1)
            shares[name] = round(t / forward_big, 4)
            gated = _median_time(
                lambda p=p, a=allowed: apply_priors(p, gt, a, min_allowed_mass=0.1, scores_are_probs=True),
                args.repeat,
            )
            prior_ms[f"{name}_gate"] = round(gated * 1000, 1)
            demo = _median_time(  # the demo's P: the gate and --ignore-conflicts 0.5
                lambda p=p, a=allowed: apply_priors(
                    p, gt, a, min_allowed_mass=0.1, ignore_conflicts=0.5, scores_are_probs=True
                ),
                args.repeat,
            )
            prior_ms[f"{name}_demo"] = round(demo * 1000, 1)
            del p
        allowed = tables["19"]
        for key, extra in (("gate", {}), ("demo", {"ignore_conflicts": 0.5})):
            t = _median_time(
                lambda e=extra: apply_priors(
                    real, gt, allowed, min_allowed_mass=0.1, scores_are_probs=True, **e
                ),
                args.repeat,
            )
            prior_ms[f"teacher_{key}"] = round(t * 1000, 1)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    n = len(samples)
    result = {
        "benchmark": "pseudo_label",
        "device": str(device),
        "threads": args.threads,
        "images": n,
        "input_size": list(size),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "teacher": weights.name,
        "forward_img_s": round(n / forward_s, 3),
        "runner_img_s": round(n / runner_s, 3),
        "runner_over_forward": round(forward_s / runner_s, 3),
        "runner_forward_share": round(summary.run.ranks[0].forward_seconds / runner_s, 3),
        "dual_over_single": round(dual_s / runner_s, 3),
        "forward_1024x2048_ms": round(forward_big * 1000, 1),
        "prior_19_ms": prior_ms["19"],
        "prior_65_ms": prior_ms["65"],
        "prior_share_19": shares["19"],
        "prior_share_65": shares["65"],
        "prior_gate_19_ms": prior_ms["19_gate"],  # with --min-allowed-mass: one more gather per allowed class
        "prior_gate_65_ms": prior_ms["65_gate"],
        "gate_over_prior_19": round(prior_ms["19_gate"] / prior_ms["19"], 3),
        "prior_demo_19_ms": prior_ms["19_demo"],  # the gate and --ignore-conflicts
        "prior_demo_65_ms": prior_ms["65_demo"],
        "demo_over_gate_19": round(prior_ms["19_demo"] / prior_ms["19_gate"], 3),
        "demo_share_19": round(prior_ms["19_demo"] / 1000 / forward_big, 4),
        "teacher_gate_19_ms": prior_ms["teacher_gate"],
        "teacher_demo_19_ms": prior_ms["teacher_demo"],
        "teacher_demo_over_gate_19": round(prior_ms["teacher_demo"] / prior_ms["teacher_gate"], 3),
        "teacher_demo_share_19": round(prior_ms["teacher_demo"] / 1000 / forward_big, 4),
        "changed_share": summary.changed_share,
        "peak_rss_mb": round(peak, 1),
        "peak_rss_workers_mb": round(peak_children, 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
