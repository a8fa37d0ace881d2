"""The parts of an export: the trainer's own resolution of a train config's parts
(:func:`segunify.train.parts.resolve_parts`), each given a folder name, its frames read exactly as the
trainer reads them (at the original size), and what identifies its inputs (the resume fingerprint)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from segunify.datasets import Sample
from segunify.datasets.base import unsafe_part
from segunify.errors import SegunifyError
from segunify.pseudo.store import input_signature
from segunify.taxonomy import Taxonomy
from segunify.train.config import PartConfig, TrainConfig
from segunify.train.parts import GTPart, Part, PseudoPart, resolve_parts


@dataclass
class ExportPart:
    """A resolved part with its folder name (``images/<name>/``, ``labels/<name>/``, ``splits/<name>.txt``)."""

    name: str
    part: Part
    cfg: PartConfig
    _unresized: Part | None = None

    @property
    def pseudo(self) -> bool:
        return isinstance(self.part, PseudoPart)

    @property
    def samples(self) -> list[Sample]:
        return self.part.samples

    def image_rel(self, s: Sample) -> str:
        """The image's path under its dataset root: its path under ``images/<part>/``."""
        root = self.part.adapter.root
        try:
            rel = s.image.relative_to(root).as_posix()
        except ValueError:
            rel = None
        reason = "not under the dataset root" if rel is None else unsafe_part(rel)
        if reason is not None:
            raise SegunifyError(f"sample {s.id!r}: image path cannot be exported ({reason})", s.image)
        return rel

    def label_rel(self, s: Sample) -> str:
        return str(Path(self.image_rel(s)).with_suffix(".png").as_posix())

    def label(self, j: int) -> np.ndarray:
        """Sample ``j``'s label in the target taxonomy's train ids (255 ignore), read by the trainer's
        :meth:`Part.read` without the part's ``resize`` (an export keeps the original size)."""
        if self._unresized is None:
            self._unresized = replace(self.part, resize=None)
        _, label, _ = self._unresized.read(j)
        return label

    def _pseudo_signature(self, s: Sample) -> list[int] | None:
        """Size and mtime of the pseudo-label file the part reads for ``s`` (None for ground truth)."""
        part = self.part
        return _stat(part.folder.label_path(s)) if isinstance(part, PseudoPart) else None

    def fingerprint(self, layout: str, mode: str, target: Taxonomy) -> dict:
        """What the part's output bytes depend on: a rerun skips a finished part only when it matches."""
        part, adapter = self.part, self.part.adapter
        pseudo = part.folder if isinstance(part, PseudoPart) else None
        inputs = [[s.id, s.rel, input_signature(s), self._pseudo_signature(s)] for s in self.samples]
        return {
            "layout": layout,
            "images": mode,
            "dataset": adapter.name,
            "spec_sha256": getattr(adapter, "spec_sha256", None),
            "root": str(Path(adapter.root).resolve()),
            "split": self.cfg.split,
            "labels": "gt" if pseudo is None else str(pseudo.path.resolve()),
            "summary_sha256": None if pseudo is None else pseudo.summary_sha256(),
            "mapping_sha256": part.mapping.sha256 if isinstance(part, GTPart) else None,
            "classes": list(target.classes),
            "inputs_sha256": hashlib.sha256(json.dumps(inputs).encode()).hexdigest(),
        }


def _stat(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def folder_name(part: Part, taken: set[str]) -> str:
    """``<dataset>_<split>`` (``_pseudo`` for pseudo-labels), safe as a folder name, unique."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", part.name.replace("(pseudo)", "_pseudo")).strip("_.") or "part"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    taken.add(name)
    return name


def export_parts(cfg: TrainConfig, config_path: str | Path) -> tuple[Taxonomy, list[ExportPart]]:
    """The config's target taxonomy and its parts, resolved and checked as ``segunify train`` does."""
    target, parts = resolve_parts(cfg, str(config_path))
    taken: set[str] = set()
    return target, [ExportPart(folder_name(p, taken), p, c) for p, c in zip(parts, cfg.parts, strict=True)]
