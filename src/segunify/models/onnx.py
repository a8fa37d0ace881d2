"""ONNX export and the ONNX Runtime backend of the teacher pass (``--backend onnx``).

Why, and why not the default: ONNX Runtime runs the ESPNetv2 teacher with identical labels on the
benchmarks' frames, but every weights file and input size first costs an export + parity check, which pays
on long pseudo-label runs, not on a 10-frame evaluation (how fast each is on a machine:
``benchmarks/teacher_backends.py``, ``benchmarks/pseudo_label.py --backends``; figures in
docs/benchmarks.md). The model is
exported with a static input shape ``[1, 3, H, W]`` once per (weights sha256, shape, opset); each
export is checked against torch (max abs logit difference <= :data:`ONNX_TOLERANCE`) before it is
written into the cache with its sha256 beside it, and a cached file runs only when it still has that
hash (else it is exported again): a truncated or replaced file never produces a label. The hash guards
against damage and mix-ups, not against someone who can rewrite both files (as they could the labels).
Batches run image by image.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segunify.errors import FieldError, SegunifyError
from segunify.models.backends import BACKENDS, DEFAULT_CPU_BACKEND

ONNX_TOLERANCE = 1e-3
OPSET = 17


def resolve_backend(backend: str | None, device: str | torch.device = "cpu") -> str:
    """``backend`` when it is known and can run on ``device`` (onnxruntime's CPU provider only);
    ``None``: :data:`DEFAULT_CPU_BACKEND` on the CPU, torch on any other device."""
    if backend is None:
        return DEFAULT_CPU_BACKEND if torch.device(device).type == "cpu" else "torch"
    if backend not in BACKENDS:
        raise FieldError("backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx" and torch.device(device).type != "cpu":
        raise FieldError("backend", f"'onnx' runs on the CPU only (got device {str(device)!r}); use 'torch'")
    return backend


def _session(model: str | Path | bytes):
    """An onnxruntime session (of a file, or of the bytes of one) using torch's thread count, operators
    run one after the other."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # e.g. an operator onnxruntime's CPU provider lacks
        where = None if isinstance(model, bytes) else model
        raise SegunifyError(f"onnxruntime cannot run the exported model: {_first_line(exc)}", where) from None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def onnx_parity(
    model: nn.Module, onnx_path: str | Path | bytes, size: tuple[int, int], seed: int = 0
) -> float:
    """Max abs difference between torch and onnxruntime logits on a seeded random input (``onnx_path``:
    a file or its bytes)."""
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 3, *size), dtype=np.float32))
    with torch.inference_mode():
        ref = model(x).float().numpy()
    session = _session(onnx_path)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        where = None if isinstance(onnx_path, bytes) else onnx_path
        raise SegunifyError(f"onnxruntime output shape {got.shape} differs from torch {ref.shape}", where)
    return float(np.abs(got - ref).max())


def check_exportable(model: nn.Module, where: str | Path | None = None) -> None:
    """A family that declares it cannot run in ONNX Runtime (``onnx_unsupported``) is refused up front."""
    reason = getattr(model, "onnx_unsupported", None)
    if reason:
        raise SegunifyError(reason, where)


def export_bytes(model: nn.Module, size: tuple[int, int], opset: int = OPSET, where=None) -> bytes:
    """The model exported with the TorchScript exporter (fixed input size), in memory."""
    check_exportable(model, where)
    buffer = io.BytesIO()
    try:
        # the teacher may be asked for its first batch inside inference_mode: tracing needs it off
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(
                    model,
                    (torch.zeros(1, 3, *size),),
                    buffer,
                    input_names=["image"],
                    output_names=["logits"],
                    opset_version=opset,
                    dynamo=False,
                )
    except Exception as exc:
        raise SegunifyError(f"ONNX export failed: {_first_line(exc)}", where) from None
    return buffer.getvalue()


def export_onnx(model: nn.Module, out: str | Path, size: tuple[int, int], opset: int = OPSET) -> None:
    """Export and write with :func:`segunify.io.atomic_write_bytes` (temp file + rename, the user's umask)."""
    from segunify.io import atomic_write_bytes

    atomic_write_bytes(out, export_bytes(model, size, opset, where=out))


def _check_parity(diff: float, where) -> None:
    if not diff <= ONNX_TOLERANCE:
        raise SegunifyError(f"ONNX parity check failed: max abs diff {diff:.3g} > {ONNX_TOLERANCE:g}", where)


def export_checked(model: nn.Module, out: str | Path, size: tuple[int, int], opset: int = OPSET) -> float:
    """Export to ``out`` and return the parity difference; on a failed check ``out`` is removed and a
    one-line error raised."""
    export_onnx(model, out, size, opset)
    try:
        diff = onnx_parity(model, out, size)
        _check_parity(diff, out)
    except Exception:
        Path(out).unlink(missing_ok=True)
        raise
    return diff


def cached_export(
    model: nn.Module, cache_dir: str | Path, weights_sha256: str, size: tuple[int, int], opset: int = OPSET
) -> bytes:
    """The checked ONNX model of ``model`` at ``size`` (its bytes), from ``cache_dir`` or exported.

    A cached file is trusted only when its sha256 equals the one recorded beside it (``<file>.sha256``)
    when it was exported and checked; the bytes that were hashed are the bytes run. A missing, truncated
    or replaced file (or record) is exported and checked again, never run. A new export is written file
    first, record second, each atomically: a reader between the two sees a mismatch and exports too."""
    from segunify.io import atomic_write_bytes, atomic_write_text

    final = Path(cache_dir) / f"{weights_sha256}-{size[0]}x{size[1]}-opset{opset}.onnx"
    record = final.with_name(final.name + ".sha256")
    try:
        data, want = final.read_bytes(), record.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        data, want = b"", None
    if want is not None and hashlib.sha256(data).hexdigest() == want:
        return data
    data = export_bytes(model, size, opset, where=final)
    _check_parity(onnx_parity(model, data, size), final)
    atomic_write_bytes(final, data)
    atomic_write_text(record, hashlib.sha256(data).hexdigest() + "\n")
    return data


class OnnxModel(nn.Module):
    """A torch model run by onnxruntime: normalised float32 ``[B, 3, H, W]`` -> logits ``[B, C, H, W]``.

    Holds the torch model for exporting and checking each new input shape; ``cache_dir=None`` exports
    into a private temporary folder removed with this object."""

    def __init__(
        self, model: nn.Module, weights_sha256: str, cache_dir: str | Path | None = None, opset: int = OPSET
    ):
        super().__init__()
        check_exportable(model)
        self.torch_model = model.eval()
        self.weights_sha256 = str(weights_sha256)
        self.opset = opset
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._sessions: dict[tuple[int, int], object] = {}

    def _cache(self) -> Path:
        if self._cache_dir is None:
            self._cache_dir = Path(tempfile.mkdtemp(prefix="segunify-onnx-"))
            weakref.finalize(self, shutil.rmtree, self._cache_dir, ignore_errors=True)
        return self._cache_dir

    def session(self, size: tuple[int, int]):
        """The onnxruntime session for input size (H, W), exported and checked on first use."""
        if size not in self._sessions:
            data = cached_export(self.torch_model, self._cache(), self.weights_sha256, size, self.opset)
            self._sessions[size] = _session(data)
        return self._sessions[size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise SegunifyError(f"expected a [B, 3, H, W] input, got shape {tuple(x.shape)}")
        session = self.session((int(x.shape[2]), int(x.shape[3])))
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        outs = [session.run(None, {"image": arr[i : i + 1]})[0] for i in range(arr.shape[0])]
        return torch.from_numpy(np.concatenate(outs) if len(outs) > 1 else outs[0])


__all__ = [
    "ONNX_TOLERANCE",
    "OnnxModel",
    "cached_export",
    "check_exportable",
    "export_bytes",
    "export_checked",
    "export_onnx",
    "onnx_parity",
    "resolve_backend",
]
