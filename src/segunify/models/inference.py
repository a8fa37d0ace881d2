"""Inference: uint8 RGB images in, class probabilities / train ids at the original resolution out.

Policy (the same for evaluation, pseudo-labelling and ``segunify predict``):

* ``mode="resize"``: the image is resized (bilinear) to ``size`` (H, W) or, with ``size=None``, kept at
  its own size; scales multiply that size. The logits are resized back to the original size (bilinear)
  and turned into softmax probabilities there.
* ``mode="slide"``: windows of ``size`` with ``stride`` (default 2/3 of the window) cover the image at
  each scale; overlapping logits are averaged, then resized back to the original size.
* Test-time augmentation averages the softmax probabilities of every (scale, flip) pass, as the paper's
  authors do.

Backends: the model is a torch module, or with ``backend="onnx"`` an
:class:`~segunify.models.onnx.OnnxModel` (onnxruntime on the CPU; same logits within 1e-3), chosen in
:meth:`Predictor.from_checkpoint`; everything around the forward pass stays in torch.

Memory: besides the model's activations, one full-resolution ``[B, C, H, W]`` float32 buffer holds the
result; extra passes are added one image at a time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segunify.errors import SegunifyError

if TYPE_CHECKING:
    from segunify.models.checkpoint import CheckpointMeta


def _to_tensor(images) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` / ``[B, H, W, 3]`` (numpy or torch) or ``[B, 3, H, W]`` tensor -> uint8 ``[B, 3, H, W]``."""
    if isinstance(images, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        t = images
    elif (
        isinstance(images, list | tuple)
        and images
        and all(isinstance(i, np.ndarray | torch.Tensor) for i in images)
    ):
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) != 1:
            raise SegunifyError(f"images in one batch must have one size, got {sorted(shapes)}")
        t = torch.stack([torch.as_tensor(np.ascontiguousarray(i)) for i in images])
    else:
        raise SegunifyError(f"expected uint8 RGB image array(s), got {type(images).__name__}")
    if t.dtype != torch.uint8:
        raise SegunifyError(f"expected uint8 RGB images, got dtype {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise SegunifyError(f"expected [H, W, 3] or [B, H, W, 3] images, got shape {tuple(t.shape)}")
    if t.shape[-1] == 3:
        return t.permute(0, 3, 1, 2)
    if t.shape[1] == 3:
        return t
    raise SegunifyError(f"expected RGB images with 3 channels, got shape {tuple(t.shape)}")


def _softmax_(t: torch.Tensor) -> torch.Tensor:
    """Softmax over classes in place: the full-resolution logits become the probabilities, no copy."""
    t.sub_(t.amax(1, keepdim=True)).exp_()
    return t.div_(t.sum(1, keepdim=True))


def _pair(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise SegunifyError(f"bad size {size!r}: expected positive (H, W)")
    return (h, w)


class Predictor:
    """Runs a segmentation model on uint8 RGB images; see the module docstring for the policy."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        size: tuple[int, int] | None = None,
        mode: str = "resize",
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        device: str | torch.device = "cpu",
        amp: bool = False,
        stride: tuple[int, int] | None = None,
    ):
        if mode not in ("resize", "slide"):
            raise SegunifyError(f"unknown inference mode {mode!r}; use 'resize' or 'slide'")
        self.size = _pair(size)
        if mode == "slide" and self.size is None:
            raise SegunifyError("sliding-window inference needs a window size (size=(H, W))")
        self.stride = _pair(stride) or (
            tuple(max(1, math.ceil(s * 2 / 3)) for s in self.size) if self.size else None
        )
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or any(s <= 0 for s in self.scales):
            raise SegunifyError(f"bad scales {scales!r}: expected positive numbers")
        self.mode, self.flip = mode, bool(flip)
        self.device = torch.device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.model = model.to(self.device).eval()
        # channels_last where the family measured it faster on the CPU (benchmarks/teacher_backends.py)
        self.channels_last = self.device.type == "cpu" and getattr(model, "cpu_channels_last", False)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.meta: CheckpointMeta | None = None  # set by from_checkpoint
        self.backend = "torch"  # from_checkpoint sets "onnx" when the model runs in onnxruntime

    @classmethod
    def from_checkpoint(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        taxonomy=None,
        backend: str | None = None,
        onnx_cache: str | Path | None = None,
        **opts,
    ):
        """A predictor for a segunify checkpoint; ``size`` defaults to the checkpoint's input size.

        ``backend="onnx"`` runs the model with onnxruntime (:class:`~segunify.models.onnx.OnnxModel`),
        exported per input size into ``onnx_cache`` (default: a temporary folder); ``None`` is the
        device's default (:func:`~segunify.models.onnx.resolve_backend`)."""
        from segunify.models.checkpoint import load_checkpoint, weights_digest
        from segunify.models.onnx import OnnxModel, check_exportable, resolve_backend

        backend = resolve_backend(backend, device)
        model, meta = load_checkpoint(directory, taxonomy=taxonomy, map_location="cpu")
        if backend == "onnx":
            check_exportable(model, directory)
            model = OnnxModel(model, weights_digest(directory, meta), cache_dir=onnx_cache)
        opts.setdefault("size", meta.input_size)
        pred = cls(model, meta.mean, meta.std, device=device, **opts)
        pred.meta, pred.backend = meta, backend
        return pred

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """On the CPU one image at a time: batches ran slower there (``benchmarks/teacher_backends.py``,
        ``eager_batch4``), and the labels do not depend on the batch."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            if self.device.type == "cpu" and x.shape[0] > 1:
                out = torch.cat([self.model(x[i : i + 1]) for i in range(x.shape[0])])
            else:
                out = self.model(x)
        if out.ndim != 4 or out.shape[0] != x.shape[0]:
            raise SegunifyError(f"model returned shape {tuple(out.shape)}, expected [B, C, H, W]")
        return out.float()

    def _passes(self, x: torch.Tensor):
        """Logits of each test-time pass over normalised ``x`` (plain, then flipped back if asked)."""
        run = self._slide if self.mode == "slide" else self._logits
        yield run(x)
        if self.flip:
            yield run(x.flip(-1)).flip(-1)

    def _slide(self, x: torch.Tensor) -> torch.Tensor:
        wh, ww = self.size  # type: ignore[misc]
        sh, sw = self.stride  # type: ignore[misc]
        h, w = x.shape[-2:]
        ph, pw = max(wh - h, 0), max(ww - w, 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        hp, wp = x.shape[-2:]
        ys = list(range(0, max(hp - wh, 0) + 1, sh))
        xs = list(range(0, max(wp - ww, 0) + 1, sw))
        if ys[-1] + wh < hp:
            ys.append(hp - wh)
        if xs[-1] + ww < wp:
            xs.append(wp - ww)
        acc = None
        count = torch.zeros(1, 1, hp, wp, device=x.device)
        for y0 in ys:
            for x0 in xs:
                out = self._logits(x[:, :, y0 : y0 + wh, x0 : x0 + ww])
                if out.shape[-2:] != (wh, ww):
                    out = F.interpolate(out, size=(wh, ww), mode="bilinear", align_corners=False)
                if acc is None:
                    acc = torch.zeros(x.shape[0], out.shape[1], hp, wp, device=x.device)
                acc[:, :, y0 : y0 + wh, x0 : x0 + ww] += out
                count[:, :, y0 : y0 + wh, x0 : x0 + ww] += 1
        return acc.div_(count)[:, :, :h, :w]

    @torch.inference_mode()
    def probs(self, images) -> torch.Tensor:
        """Softmax probabilities ``[B, C, H, W]`` float32 at the images' own resolution."""
        img = _to_tensor(images).to(self.device)
        h, w = img.shape[-2:]
        x = (img.float() - self.mean) / self.std
        base = self.size if (self.mode == "resize" and self.size is not None) else (h, w)
        acc: torch.Tensor | None = None
        n_pass = 0
        for scale in self.scales:
            th, tw = max(1, round(base[0] * scale)), max(1, round(base[1] * scale))
            xs = (
                x
                if (th, tw) == (h, w)
                else F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
            )
            for logits in self._passes(xs):
                acc = self._accumulate(acc, logits, (h, w))
                n_pass += 1
        assert acc is not None
        if n_pass > 1:
            acc /= n_pass
        return acc

    @staticmethod
    def _accumulate(acc: torch.Tensor | None, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Add softmax(resize(logits)) into ``acc``; one image at a time so only one full-size buffer lives."""
        if acc is None:
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            return _softmax_(logits)
        for i in range(logits.shape[0]):
            one = logits[i : i + 1]
            if one.shape[-2:] != size:
                one = F.interpolate(one, size=size, mode="bilinear", align_corners=False)
            acc[i : i + 1] += _softmax_(one)  # one is a view of this pass's own logits
        return acc

    def predict(self, images) -> np.ndarray:
        """Train ids ``[B, H, W]`` uint8 (argmax of :meth:`probs`)."""
        probs = self.probs(images)
        if probs.shape[1] > 255:
            raise SegunifyError(f"{probs.shape[1]} classes do not fit uint8 train ids")
        return probs.argmax(1).to(torch.uint8).cpu().numpy()


__all__ = ["Predictor"]
