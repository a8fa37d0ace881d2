"""Teacher inference backends on the same CamVid frames: eager, channels_last, torch.compile, ONNX Runtime
and ONNX Runtime with int8 dynamic quantisation.

The EdgeNets ESPNetv2 s=2.0 Cityscapes teacher (from the pretrained table) runs on the first ``--frames``
CamVid val frames, each resized to the teacher's input size (512x1024) and normalised once, batch 1, on
``--threads`` threads. Per backend: images/s (median of ``--repeats`` timed passes after one warm-up
pass), the share of pixels whose argmax equals eager PyTorch's, and GFLOP/s from the FLOPs of one forward
(``torch.utils.flop_counter``, 2 FLOPs per multiply-add). ``torch.compile`` is skipped when compiling
takes longer than ``--compile-budget`` seconds. Prints one JSON line.

Recorded figures: docs/benchmarks.md (``python scripts/bench.py run teacher_backends.py``).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segunify.labels import read_image
from segunify.models import create_model
from segunify.models.pretrained import get_pretrained
from segunify.paths import data_path

WEIGHTS = "espnetv2_s2.0.cityscapes"


def load_frames(n: int, size: tuple[int, int], mean, std) -> list[torch.Tensor]:
    """The first ``n`` CamVid val frames as normalised ``[1, 3, H, W]`` tensors at the teacher's size."""
    paths = sorted((data_path("CamVid") / "val").glob("*.png"))[:n]
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for p in paths:
        x = torch.from_numpy(read_image(p)).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        out.append(((x - m) / s).contiguous())
    return out


def interleaved(runners: dict[str, Callable], frames: list[torch.Tensor], repeats: int):
    """A warm-up pass per runner (keeps its argmax maps), then ``repeats`` rounds in which every runner
    makes one timed pass in turn, so that a slow or fast spell of the machine hits all of them alike.
    Returns (maps, images/s list) per runner."""
    maps = {name: run(frames) for name, run in runners.items()}
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run(frames)
            rates[name].append(len(frames) / (time.perf_counter() - t0))
    return maps, rates


def batched(run: Callable[[torch.Tensor], list[np.ndarray]], batch: int = 1) -> Callable:
    """A pass over all frames, ``batch`` frames per call of ``run`` (which returns one map per frame)."""

    def one_pass(frames: list[torch.Tensor]) -> list[np.ndarray]:
        return [m for i in range(0, len(frames), batch) for m in run(torch.cat(frames[i : i + batch]))]

    return one_pass


def torch_runner(model, channels_last: bool = False):
    def run(x: torch.Tensor) -> list[np.ndarray]:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return list(model(x).argmax(1).numpy().astype(np.uint8))

    return run


def onnx_runner(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> list[np.ndarray]:
        return list(session.run(None, {name: x.numpy()})[0].argmax(1).astype(np.uint8))

    return run


class _Budget(Exception):
    pass


def compiled_runner(model, frame: torch.Tensor, budget: float):
    """``torch.compile`` of the model, or None with the reason when it fails or exceeds the budget."""

    def stop(*_):
        raise _Budget

    compiled = torch.compile(model)
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(budget))
    t0 = time.perf_counter()
    try:
        with torch.inference_mode():
            compiled(frame)
    except _Budget:
        return None, f"compiling took over {budget:.0f} s"
    except Exception as exc:  # a missing compiler, an unsupported op: report, do not fail the benchmark
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return torch_runner(compiled), round(time.perf_counter() - t0, 1)


def forward_flops(model, frame: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(frame)
    return int(counter.get_total_flops())


def export_onnx_files(model, size: tuple[int, int], folder: Path) -> tuple[Path, Path]:
    """The fp32 ONNX export (segunify's exporter) and its int8 dynamic quantisation."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from segunify.models.onnx import export_onnx

    fp32, int8 = folder / "teacher.onnx", folder / "teacher.int8.onnx"
    export_onnx(model, fp32, size)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def measure(
    frames_n: int, threads: int, repeats: int, compile_budget: float, skip: set[str], size=None
) -> dict:
    torch.set_num_threads(threads)
    entry = get_pretrained(WEIGHTS)
    size = tuple(size or entry.input_size)
    model = create_model(entry.model, 19, weights=entry.locate(), **entry.model_kwargs).eval()
    frames = load_frames(frames_n, size, entry.mean, entry.std)
    flops = forward_flops(model, frames[0])
    result: dict = {"benchmark": "teacher_backends", "weights": WEIGHTS, "frames": len(frames)}
    result.update({"input_hw": list(size), "threads": threads, "gflops_per_forward": round(flops / 1e9, 3)})
    backends: dict[str, dict] = {}
    runners: dict[str, Callable] = {"eager": batched(torch_runner(model))}
    if "eager_batch4" not in skip:  # segunify's CPU default before it ran batches image by image
        runners["eager_batch4"] = batched(torch_runner(model), 4)
    if "channels_last" not in skip:
        cl = create_model(entry.model, 19, weights=entry.locate(), **entry.model_kwargs).eval()
        runners["channels_last"] = batched(torch_runner(cl.to(memory_format=torch.channels_last), True))
    if "compile" not in skip:
        run, info = compiled_runner(model, frames[0], compile_budget)
        backends["compile"] = {"compile_s": info} if run else {"skipped": info}
        if run is not None:
            runners["compile"] = batched(run)
    with tempfile.TemporaryDirectory() as tmp:
        if not {"onnxruntime", "onnxruntime_int8"} <= skip:
            fp32, int8 = export_onnx_files(model, size, Path(tmp))
            result["onnx_mb"] = {
                "fp32": round(fp32.stat().st_size / 1e6, 2),
                "int8": round(int8.stat().st_size / 1e6, 2),
            }
            for name, path in (("onnxruntime", fp32), ("onnxruntime_int8", int8)):
                if name not in skip:
                    runners[name] = batched(onnx_runner(path, threads))
        maps, rates = interleaved(runners, frames, repeats)
    for name in runners:
        agree = np.mean([np.mean(a == b) for a, b in zip(maps[name], maps["eager"], strict=True)])
        backends.setdefault(name, {}).update({"images_per_s": statistics.median(rates[name])})
        if name != "eager":
            backends[name]["agreement"] = agree
    for b in backends.values():
        if "images_per_s" in b:
            b["gflop_per_s"] = round(b["images_per_s"] * flops / 1e9, 2)
            b["images_per_s"] = round(b["images_per_s"], 3)
        if "agreement" in b:
            b["agreement"] = round(float(b["agreement"]), 5)
    result["backends"] = backends
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--compile-budget", type=float, default=300.0, help="seconds allowed for torch.compile"
    )
    parser.add_argument("--skip", default="", help="comma-separated backends to leave out")
    parser.add_argument("--size", default=None, help="H,W instead of the teacher's 512,1024 (smoke runs)")
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    size = tuple(int(v) for v in args.size.split(",")) if args.size else None
    print(json.dumps(measure(args.frames, args.threads, args.repeats, args.compile_budget, skip, size)))


if __name__ == "__main__":
    main()
