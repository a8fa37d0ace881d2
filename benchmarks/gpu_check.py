"""The GPU path, proven in one run: prints ONE JSON line; exit 1 when any section fails.

Sections (each reports ``ok``, and ``error`` with the first line of what failed; one failing section
does not stop the others):

* ``environment``: device name and memory, torch / CUDA / cuDNN / transformers / accelerate versions;
* ``teacher_pass``: ``segunify pseudo-label --device cuda`` with the shipped ESPNetv2 s=2.0 on 64 CamVid
  train frames at 1024x2048: the runner's images/s (summary.json), the teacher's alone (the predictor on
  the same frames in memory, same batches, CUDA-synchronised), their ratio (goal >= 0.95: reported, not
  failed), peak GPU memory, and the label agreement with a ``--device cpu`` run of the first
  ``--cpu-frames`` frames (check: >= 99.9 % of pixels);
* ``forward``: SegFormer-B0, SegFormer-B2 and Mask2Former-Swin-T (random weights, real sizes, 19 classes)
  at 1024x2048, batch 1, autocast bf16 and fp16: images/s and peak memory;
* ``train``: 50 steps of ESPNetv2 s=2.0 and SegFormer-B0 with the trainer's step (``amp: true``), batch 8,
  512x1024 crops from the real CamVid loader: steps/s, peak memory; check: finite losses, the mean of the
  last 10 below the mean of the first 10;
* ``multiprocess``: ``accelerate launch --multi_gpu --num_processes 2`` on one GPU running the same
  pseudo-label command: check: both ranks worked on disjoint images and the label PNGs equal the one-process
  run's byte for byte; then a second launch whose rank 1 is killed with SIGKILL once it has journalled a
  batch, rerun: check: byte-identical again.

``--dry`` runs every section through the same code on the CPU at toy sizes (a synthetic CamVid and a
random-weights teacher, ``accelerate launch --cpu``) in about a minute on 2 cores (most of it starting the
launched processes); tests/test_benchmarks.py runs it.

    python benchmarks/gpu_check.py            # on a GPU machine (SEGUNIFY_DATA with data/CamVid and weights/)
    python benchmarks/gpu_check.py --dry      # anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as train_bench  # noqa: E402  (benchmarks/train.py: timed_train, timed_infer, loaders)

GPU = {
    "frames": 64, "cpu_frames": 16, "size": (1024, 2048), "batch": 4, "workers": 4,
    "models": {"segformer-b0": {}, "segformer-b2": {}, "mask2former": {"backbone": "swin-t"}},
    "forward_size": (1024, 2048), "forward_steps": 10, "train_steps": 50, "train_batch": 8, "teacher_s": 2.0,
    "train_size": (512, 1024), "timeout": 300,
}  # fmt: skip
SMALL_SWIN = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 4}
DRY = {
    "frames": 8, "cpu_frames": 4, "size": (64, 128), "batch": 2, "workers": 0, "teacher_s": 1.0,
    "models": {  # the same families at a fraction of their width: the code path, not the figures
        "segformer-b0": {"config": {
            "hidden_sizes": [8, 16, 24, 32], "num_attention_heads": [1, 1, 1, 1], "decoder_hidden_size": 16,
        }},
        "mask2former": {"config": {
            "backbone_config": {**SMALL_SWIN, "out_features": ["stage1", "stage2", "stage3", "stage4"]},
            "feature_size": 32, "mask_feature_size": 32, "hidden_dim": 32, "encoder_layers": 1,
            "decoder_layers": 2, "num_attention_heads": 2, "dim_feedforward": 32, "num_queries": 8,
        }},
    },
    "forward_size": (64, 128), "forward_steps": 1, "train_steps": 6, "train_batch": 2,
    "train_size": (64, 128), "timeout": 120,
}  # fmt: skip
AGREEMENT = 0.999
TRAIN_LR = 1e-3  # AdamW from random weights: the loss must visibly fall within the steps run
RATIO_GOAL = 0.95


def section(fn, *args) -> dict:
    """Run one section; any exception becomes ``ok: false`` and its first line (the rest on stderr)."""
    t0 = time.perf_counter()
    try:
        out = fn(*args)
        out.setdefault("ok", True)
    except Exception as exc:  # report and go on: every section's outcome lands in the one JSON line
        traceback.print_exc(file=sys.stderr)
        lines = str(exc).strip().splitlines()
        out = {"ok": False, "error": f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def environment(device: torch.device) -> dict:
    import accelerate
    import transformers

    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"memory_gib": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported()}
        # TF32 convolutions (cuDNN's default) are what the teacher pass runs: they bear on the CPU agreement
        env |= {
            "tf32_conv": torch.backends.cudnn.allow_tf32,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
    return env


# ------------------------------------------------------------------------------------------ inputs


def synthetic_inputs(tmp: Path, n: int, s: float) -> tuple[Path, Path]:
    """--dry: a tiny CamVid in the SegNet layout (blocky labels, each class its own colour + noise, so a
    few training steps can learn them) and a random-weights teacher."""
    from segunify.io import write_png
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint

    rng = np.random.default_rng(0)
    palette = rng.integers(0, 216, (12, 3))
    root = tmp / "camvid"
    for i in range(n):
        lab = np.kron(rng.integers(0, 12, (12, 16), dtype=np.uint8), np.ones((4, 4), np.uint8))
        noise = rng.integers(0, 40, (48, 64, 3))
        img = (palette[lab] + noise).clip(0, 255).astype(np.uint8)
        write_png(root / "train" / f"0001TP_{i:06d}.png", img)
        write_png(root / "trainannot" / f"0001TP_{i:06d}.png", lab)
    torch.manual_seed(0)
    model = create_model("espnetv2", 19, s=s).eval()
    for m in model.modules():  # untrained BatchNorm predicts one class everywhere: vary it
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = save_checkpoint(tmp / "teacher", model, {"taxonomy": "cityscapes", "input_size": (512, 1024)})
    return root, ckpt


def real_inputs(tmp: Path) -> tuple[Path, Path]:
    """The shared CamVid and the shipped ESPNetv2 s=2.0 Cityscapes teacher, imported by name."""
    from segunify.cli import main
    from segunify.paths import data_path

    ckpt = tmp / "teacher"
    with contextlib.redirect_stdout(io.StringIO()):
        if main(["import-weights", "espnetv2_s2.0.cityscapes", "--out", str(ckpt)]) != 0:
            raise RuntimeError("segunify import-weights espnetv2_s2.0.cityscapes failed")
    return data_path("CamVid"), ckpt


def prepare_inputs(tmp: Path, cfg: dict, dry: bool) -> dict:
    root, ckpt = synthetic_inputs(tmp, cfg["frames"], cfg["teacher_s"]) if dry else real_inputs(tmp)
    return {"root": root, "ckpt": ckpt}


# ------------------------------------------------------------------------------------- teacher pass


def pseudo_args(ckpt: Path, root: Path, out: Path, cfg: dict, device: str, frames: int) -> list[str]:
    h, w = cfg["size"]
    return [
        "pseudo-label", "--teacher", str(ckpt), "--dataset", "camvid", "--root", str(root),
        "--split", "train", "--mapping", "camvid__cityscapes", "--out", str(out), "--limit", str(frames),
        "--size", f"{h},{w}",
        "--batch-size", str(cfg["batch"]), "--workers", str(cfg["workers"]), "--device", device,
    ]  # fmt: skip


def run_cli(args: list[str]) -> None:
    """``segunify ARGS`` in this process, its terminal output kept off this script's one JSON line."""
    from segunify.cli import main

    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(args)
    if code != 0:
        raise RuntimeError(
            f"segunify {args[0]} exited {code}: {(err.getvalue() or out.getvalue()).strip()[-300:]}"
        )


def label_pngs(out: Path) -> dict[str, bytes]:
    """The label PNGs of a pseudo-label folder by relative path (not confidence/hidden files)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*.png"))
        if not p.relative_to(out).parts[0].startswith((".", "confidence"))
    }


def agreement(a: dict[str, bytes], b: dict[str, bytes]) -> tuple[float, int]:
    """Pixel agreement of the label PNGs ``b`` with the same files of ``a``, and identical files."""
    import cv2

    same = total = identical = 0
    for k, v in b.items():
        x, y = (cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_UNCHANGED) for d in (a[k], v))
        same, total, identical = same + int((x == y).sum()), total + x.size, identical + (a[k] == v)
    return same / max(total, 1), identical


def forward_rate(ckpt: Path, root: Path, cfg: dict, device: torch.device) -> float:
    """The teacher alone: the predictor on the runner's batches, decoded beforehand, synchronised."""
    from segunify.datasets import create_dataset
    from segunify.models.inference import Predictor

    ds = create_dataset("camvid", root)
    images = [ds.read_image(s) for s in ds.samples("train")[: cfg["frames"]]]
    batches = [np.stack(images[i : i + cfg["batch"]]) for i in range(0, len(images), cfg["batch"])]
    pred = Predictor.from_checkpoint(ckpt, device=device, backend="torch", size=cfg["size"])
    pred.probs(batches[0])  # warm-up: allocator, cuDNN
    train_bench.sync(device)
    t0 = time.perf_counter()
    for b in batches:
        pred.probs(b)
    train_bench.sync(device)
    return len(images) / (time.perf_counter() - t0)


def teacher_pass(ckpt: Path, root: Path, tmp: Path, cfg: dict, device: torch.device) -> dict:
    from segunify.pseudo import load_summary

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run_cli(pseudo_args(ckpt, root, tmp / "one", cfg, device.type, cfg["frames"]))
    run = load_summary(tmp / "one").run
    runner = run.processed / run.seconds
    out = {"frames": run.processed, "size": list(cfg["size"]), "batch_size": cfg["batch"]}
    out["runner_img_s"] = round(runner, 2)
    if device.type == "cuda":
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    forward = forward_rate(ckpt, root, cfg, device)
    out |= {"forward_img_s": round(forward, 2), "runner_over_forward": round(runner / forward, 3)}
    out["runner_over_forward_goal_met"] = runner / forward >= RATIO_GOAL
    run_cli(pseudo_args(ckpt, root, tmp / "cpu", cfg, "cpu", cfg["cpu_frames"]))
    agree, identical = agreement(label_pngs(tmp / "one"), label_pngs(tmp / "cpu"))
    out |= {"cpu_frames": cfg["cpu_frames"], "pixel_agreement_cpu": round(agree, 6)}
    out["identical_pngs_cpu"] = f"{identical}/{cfg['cpu_frames']}"
    if agree < AGREEMENT:
        out |= {
            "ok": False,
            "error": f"labels agree with the CPU's on {agree:.4%} of pixels (< {AGREEMENT:.1%})",
        }
    return out


# ----------------------------------------------------------------------------------- forward, train


def per_model(out: dict, name: str, fn) -> None:
    """``out["models"][name] = fn()``; a failure (raised, or an ``error`` in the entry) is recorded there
    and fails the section, not the other models."""
    try:
        out["models"][name] = fn()
    except Exception as exc:  # the next model still runs
        traceback.print_exc(file=sys.stderr)
        out["models"][name] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    if "error" in out["models"][name]:
        out.update(ok=False, error=f"{name}: {out['models'][name]['error']}")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def forward_one(name: str, kwargs: dict, cfg: dict) -> dict:
    entry: dict = {}
    for amp in ("bf16", "fp16"):
        r = train_bench.timed_infer(name, kwargs, 19, cfg["forward_size"], 1, 1, cfg["forward_steps"], amp)
        entry["params_m"] = round(r["params"] / 1e6, 2)
        entry[amp] = {"img_s": round(r["ips"], 2)}
        if "peak_mem_gib" in r:
            entry[amp]["peak_mem_gib"] = round(r["peak_mem_gib"], 2)
    return entry


def forward(cfg: dict) -> dict:
    out: dict = {"size": list(cfg["forward_size"]), "models": {}}
    for name, kwargs in cfg["models"].items():
        per_model(out, name, lambda name=name, kwargs=kwargs: forward_one(name, kwargs, cfg))
    return out


def train_one(name: str, kwargs: dict, root: Path, cfg: dict, device: torch.device) -> dict:
    """``train_steps`` steps from random weights on the real loader; check: finite, falling loss."""
    steps, batch, size = cfg["train_steps"], cfg["train_batch"], cfg["train_size"]
    loader = train_bench.loader_for(size, batch, steps, cfg["workers"], device.type == "cuda", root=root)
    r = train_bench.timed_train(name, kwargs, 11, iter(loader), 0, steps, True, lr=TRAIN_LR)
    losses = np.asarray(r["losses"])
    k = max(2, min(10, steps // 3))
    first, last = float(losses[:k].mean()), float(losses[-k:].mean())
    entry = {"steps_s": round(r["steps_s"], 3), "img_s": round(r["ips"], 2), "precision": r["precision"]}
    entry |= {"loss_first": round(first, 4), "loss_last": round(last, 4)}
    entry |= {"finite": bool(np.isfinite(losses).all()), "falls": last < first}
    if "peak_mem_gib" in r:
        entry["peak_mem_gib"] = round(r["peak_mem_gib"], 2)
    if not (entry["finite"] and entry["falls"]):
        raise RuntimeError(
            f"loss not finite or not falling: mean of the first {k} {first:.4f}, last {k} {last:.4f}"
        )
    return entry


def train(root: Path, cfg: dict, device: torch.device) -> dict:
    out: dict = {"size": list(cfg["train_size"]), "batch": cfg["train_batch"], "steps": cfg["train_steps"]}
    out["models"] = {}
    for name, kwargs in (("espnetv2", {"s": 2.0}), ("segformer-b0", {})):
        per_model(out, name, lambda name=name, kwargs=kwargs: train_one(name, kwargs, root, cfg, device))
    return out


# -------------------------------------------------------------------------------------- multiprocess


def launch_cmd(args: list[str], device: torch.device, port: int) -> list[str]:
    """``accelerate launch`` of 2 ranks on one machine: on one GPU (--multi_gpu: accelerate starts one
    process otherwise), or on the CPU (--cpu: segunify starts the ranks itself)."""
    launcher = Path(sys.executable).parent / "accelerate"
    kind = ["--multi_gpu"] if device.type == "cuda" else ["--cpu"]
    return [
        str(launcher), "launch", *kind, "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "segunify", *args,
    ]  # fmt: skip


def free_port() -> int:
    """A port no process listens on now (another launch on this machine may hold a fixed one)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "SEGUNIFY_NO_PROGRESS": "1", "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def rank_pid(proc: subprocess.Popen, rank: int) -> int | None:
    """The pid of the launched process whose LOCAL_RANK is ``rank`` (a descendant of ``proc``)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.environ().get("LOCAL_RANK") == str(rank) and "pseudo-label" in child.cmdline():
                    return child.pid
    return None


def kill_rank_midway(cmd: list[str], journal: Path, timeout: float) -> int:
    """Start the launch, SIGKILL rank 1 once its journal holds a line; returns the lines journalled."""
    proc = subprocess.Popen(cmd, env=launch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.is_file() and journal.read_text().count("\n") >= 1:
                pid = rank_pid(proc, 1)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    break
            time.sleep(0.002)
        else:
            raise RuntimeError("the launch ended (or timed out) before rank 1 could be killed midway")
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return journal.read_text().count("\n")


def journal_ids(out: Path) -> list[set[str]]:
    """The sample ids each rank journalled (``.parts/manifest-<rank>.jsonl``; a torn last line skipped)."""
    ids = []
    for path in sorted((out / ".parts").glob("manifest-*.jsonl")):
        lines = [ln for ln in path.read_text().splitlines() if ln.endswith("}")]
        ids.append({json.loads(ln)["id"] for ln in lines})
    return ids


def multiprocess(ckpt: Path, root: Path, tmp: Path, cfg: dict, device: torch.device) -> dict:
    """Two ranks on one device: disjoint shards equal to one process; a rank killed midway, rerun, equal."""
    from segunify.pseudo import load_summary

    ref = label_pngs(tmp / "one")
    out: dict = {"launcher": " ".join(launch_cmd([], device, 0)[1:9])}
    problems = []
    for run, kill in (("two", False), ("killed", True)):
        args = pseudo_args(ckpt, root, tmp / run, cfg, device.type, cfg["frames"])
        cmd = launch_cmd(args, device, free_port())
        if kill:
            out["journalled_by_rank1_at_kill"] = kill_rank_midway(
                cmd, tmp / run / ".parts" / "manifest-00001.jsonl", cfg["timeout"]
            )
            out["summary_after_kill"] = (tmp / run / "summary.json").exists()
        res = subprocess.run(cmd, env=launch_env(), capture_output=True, text=True, timeout=cfg["timeout"])
        if res.returncode != 0:
            raise RuntimeError(f"accelerate launch exited {res.returncode}: {res.stderr.strip()[-300:]}")
        summary = load_summary(tmp / run)
        ranks = [r.images for r in summary.run.ranks]
        same = label_pngs(tmp / run) == ref
        shards = journal_ids(tmp / run)
        disjoint = len(shards) == 2 and not (shards[0] & shards[1]) and all(shards)
        out[run] = {"world_size": summary.run.world_size, "images_per_rank": ranks, "identical_to_one": same}
        out[run] |= {"disjoint_shards": disjoint, "journalled_per_rank": [len(x) for x in shards]}
        if kill:
            out[run]["skipped_on_rerun"] = summary.run.skipped
        if summary.run.world_size != 2 or not disjoint or len(set().union(*shards)) != cfg["frames"]:
            problems.append(f"{run}: ranks did not share the frames disjointly ({ranks})")
        if not same:
            problems.append(f"{run}: labels differ from the one-process run")
    if problems:
        out |= {"ok": False, "error": "; ".join(problems)}
    return out


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="every section on the CPU at toy sizes")
    ap.add_argument("--skip", default="", help="comma-separated sections to leave out")
    args = ap.parse_args(argv)
    cfg = DRY if args.dry else GPU
    if not args.dry and not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_check", "ok": False, "error": "no CUDA device (use --dry)"}))
        return 1
    device = torch.device("cpu") if args.dry else torch.device("cuda", 0)
    if args.dry:  # toy sizes gain nothing from threads, and on a busy machine they wait on each other
        torch.set_num_threads(1)
    skip = set(filter(None, args.skip.split(",")))
    t0 = time.perf_counter()
    result: dict = {"benchmark": "gpu_check", "mode": "dry" if args.dry else "gpu"}
    result["environment"] = section(environment, device)
    with tempfile.TemporaryDirectory(prefix="segunify-gpu-check-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = section(prepare_inputs, tmp, cfg, args.dry)
        if not inputs["ok"]:
            result["inputs"] = inputs
        else:
            root, ckpt = inputs["root"], inputs["ckpt"]
            plan = {
                "teacher_pass": (teacher_pass, ckpt, root, tmp, cfg, device),
                "forward": (forward, cfg),
                "train": (train, root, cfg, device),
                "multiprocess": (multiprocess, ckpt, root, tmp, cfg, device),
            }
            for name, (fn, *fn_args) in plan.items():
                if name in skip:
                    continue
                if name == "multiprocess" and not result.get("teacher_pass", {}).get("ok"):
                    result[name] = {"ok": False, "error": "needs the teacher_pass run to compare with"}
                    continue
                result[name] = section(fn, *fn_args)
    result["ok"] = all(v.get("ok", True) for v in result.values() if isinstance(v, dict))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
