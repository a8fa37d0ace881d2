"""Statistics of pseudo-labels: per image (:class:`ImageStats`, computed batch-wise on the device) and
for a whole folder (:class:`PseudoSummary`, the typed ``summary.json``).

Each figure is stored once: totals and shares in the summary, per-class pixels and changes under
``class_pixels`` / ``extra_classes``; the run's totals are derived from its per-rank timings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from segunify.mapping import Mapping
from segunify.pseudo.settings import PseudoSettings, TeacherInfo

FORMAT = "segunify-pseudo-labels"
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ImageStats:
    """One image's pseudo-label figures. ``extra_pixels`` has K+1 entries (the last counts void/ignore
    GT) and, like ``extra_changed`` [K], is ``None`` for an image without ground truth."""

    height: int
    width: int
    ignored: int
    changed: int
    mean_confidence: float
    class_pixels: list[int]
    extra_pixels: list[int] | None
    extra_changed: list[int] | None

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def to_record(self) -> dict:
        """The manifest fields (key order fixed: manifest bytes are compared across runs)."""
        return {
            "height": self.height,
            "width": self.width,
            "pixels": self.pixels,
            "ignored": self.ignored,
            "changed": self.changed,
            "mean_confidence": self.mean_confidence,
            "class_pixels": self.class_pixels,
            "extra_pixels": self.extra_pixels,
            "extra_changed": self.extra_changed,
        }

    @classmethod
    def from_record(cls, record: dict) -> ImageStats:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__})


def image_stats(
    labels: torch.Tensor,
    conf: torch.Tensor,
    changed: torch.Tensor,
    gt: torch.Tensor | None,
    num_source: int,
    num_extra: int,
) -> list[ImageStats]:
    """Figures of a batch ``[B, H, W]`` of labels (255 = ignore) with one bincount per quantity."""
    b, h, w = labels.shape
    valid = labels != 255
    offs = (torch.arange(b, device=labels.device) * 256).view(b, 1, 1)
    class_pixels = torch.bincount((labels.long() + offs).view(-1), minlength=b * 256).view(b, 256)
    kept = valid.view(b, -1).sum(1)
    conf_sum = conf.double().view(b, -1).sum(1).cpu().tolist()
    counts = torch.stack([kept, changed.view(b, -1).sum(1)], 1).cpu().tolist()
    class_pixels = class_pixels[:, :num_source].cpu().tolist()
    extra_pixels = extra_changed = None
    if gt is not None:
        g = gt.long() + offs
        ep = torch.bincount(g.view(-1), minlength=b * 256).view(b, 256)
        extra_pixels = (
            torch.cat([ep[:, :num_extra], ep[:, num_extra:].sum(1, keepdim=True)], 1).cpu().tolist()
        )
        extra_changed = (
            torch.bincount(g[changed], minlength=b * 256).view(b, 256)[:, :num_extra].cpu().tolist()
        )
    return [
        ImageStats(
            height=h,
            width=w,
            ignored=h * w - counts[i][0],
            changed=counts[i][1],
            mean_confidence=round(conf_sum[i] / counts[i][0], 6) if counts[i][0] else 0.0,
            class_pixels=class_pixels[i],
            extra_pixels=None if extra_pixels is None else extra_pixels[i],
            extra_changed=None if extra_changed is None else extra_changed[i],
        )
        for i in range(b)
    ]


# ---------------------------------------------------------------------------------------------- summary


class ExtraClassStats(BaseModel):
    kind: Literal["void", "one-to-one", "one-to-many"]
    pixels: int
    changed: int
    changed_share: float


class RankTiming(BaseModel):
    rank: int
    images: int
    skipped: int
    seconds: float
    forward_seconds: float


class RunInfo(BaseModel):
    """The last run (timings of every rank); totals are derived, not stored twice."""

    world_size: int
    ranks: list[RankTiming]

    @property
    def processed(self) -> int:
        return sum(r.images for r in self.ranks)

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self.ranks)

    @property
    def seconds(self) -> float:
        return max((r.seconds for r in self.ranks), default=0.0)


class FileRef(BaseModel):
    path: str | None = None
    sha256: str
    taxonomy: str | None = None


class PseudoSummary(BaseModel):
    """``summary.json`` of a finished pseudo-label folder (layout: :mod:`segunify.pseudo`)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["segunify-pseudo-labels"] = FORMAT
    format_version: int = FORMAT_VERSION
    dataset: str
    split: str
    root: str
    source_taxonomy: str
    extra_taxonomy: str
    mapping: FileRef
    teacher: FileRef
    settings: PseudoSettings
    images: int
    pixels: int
    ignored: int
    ignored_share: float
    changed: int
    changed_share: float
    mean_confidence: float
    class_pixels: dict[str, int]
    class_share: dict[str, float]
    extra_classes: dict[str, ExtraClassStats]
    void_gt_pixels: int
    run: RunInfo


def _share(n: int, total: int) -> float:
    return round(n / total, 6) if total else 0.0


def _extra_totals(stats: Sequence[ImageStats], num_extra: int) -> tuple[np.ndarray, np.ndarray]:
    with_gt = [s for s in stats if s.extra_pixels is not None]
    if not with_gt:
        return np.zeros(num_extra + 1, dtype=np.int64), np.zeros(num_extra, dtype=np.int64)
    pixels = np.sum([s.extra_pixels for s in with_gt], axis=0, dtype=np.int64)
    changed = np.sum([s.extra_changed for s in with_gt], axis=0, dtype=np.int64)
    return pixels, changed


def summarize(
    stats: Sequence[ImageStats],
    *,
    dataset: str,
    split: str,
    root: str,
    mapping: Mapping,
    teacher: TeacherInfo,
    settings: PseudoSettings,
    run: RunInfo,
) -> PseudoSummary:
    """The folder's summary from its images' figures (in sample order)."""
    src, extra = mapping.source, mapping.extra
    class_pixels = np.sum([s.class_pixels for s in stats], axis=0, dtype=np.int64)
    extra_pixels, extra_changed = _extra_totals(stats, extra.num_classes)
    pixels = sum(s.pixels for s in stats)
    ignored = sum(s.ignored for s in stats)
    kept = pixels - ignored
    conf_total = sum(s.mean_confidence * (s.pixels - s.ignored) for s in stats)
    changed = int(extra_changed.sum())
    return PseudoSummary(
        dataset=dataset,
        split=split,
        root=root,
        source_taxonomy=src.name,
        extra_taxonomy=extra.name,
        mapping=FileRef(path=mapping.path or None, sha256=mapping.sha256),
        teacher=FileRef(path=teacher.path, sha256=teacher.sha256, taxonomy=teacher.taxonomy),
        settings=settings,
        images=len(stats),
        pixels=pixels,
        ignored=ignored,
        ignored_share=_share(ignored, pixels),
        changed=changed,
        changed_share=_share(changed, kept),
        mean_confidence=round(conf_total / kept, 6) if kept else 0.0,
        class_pixels={c: int(n) for c, n in zip(src.classes, class_pixels, strict=True)},
        class_share={c: _share(int(n), kept) for c, n in zip(src.classes, class_pixels, strict=True)},
        extra_classes={
            name: ExtraClassStats(
                kind=mapping.kind(k),
                pixels=int(extra_pixels[k]),
                changed=int(extra_changed[k]),
                changed_share=_share(int(extra_changed[k]), int(extra_pixels[k])),
            )
            for k, name in enumerate(extra.classes)
        },
        void_gt_pixels=int(extra_pixels[extra.num_classes]),
        run=run,
    )
