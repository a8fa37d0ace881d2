"""The backends a teacher or a predictor runs on, as plain names (no torch here: the command line's help
text reads them). :mod:`segunify.models.onnx` runs the ONNX one."""

from __future__ import annotations

BACKENDS = ("torch", "onnx")
DEFAULT_CPU_BACKEND = (
    "torch"  # CPU default of pseudo-label, evaluate --model, predict (models/onnx.py says why)
)
DEFAULT_HELP = f"default {DEFAULT_CPU_BACKEND} on the CPU, torch on a GPU"
CACHE_DIR = ".segunify-onnx"  # exported models, under a pseudo-label run's --out

__all__ = ["BACKENDS", "CACHE_DIR", "DEFAULT_CPU_BACKEND", "DEFAULT_HELP"]
