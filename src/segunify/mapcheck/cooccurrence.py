"""What a teacher predicts, unconstrained, on the pixels of each ground-truth class of another dataset.

The co-occurrence matrix ``counts[k, c]`` is the number of pixels of extra (ground-truth) class ``k``
where the teacher's argmax is source class ``c``. It does not depend on any mapping, so one teacher pass
serves a suggestion and any number of audits. Two companions are accumulated in the same pass:
``weighted[k, c]`` sums the teacher's confidence (its top softmax probability) on those pixels, and
``confident[k, c]`` counts those with confidence >= ``threshold``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segunify.datasets.base import evenly
from segunify.errors import SegunifyError
from segunify.taxonomy import Taxonomy, load_taxonomy


@dataclass
class CoOccurrence:
    extra: Taxonomy
    source: Taxonomy
    threshold: float = 0.5
    counts: np.ndarray | None = None  # int64 [K, C]
    weighted: np.ndarray | None = None  # float64 [K, C]: sum of the teacher's confidence
    confident: np.ndarray | None = None  # int64 [K, C]: pixels with confidence >= threshold
    images: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise SegunifyError(f"confidence threshold must be in [0, 1], got {self.threshold}")
        shape = (self.extra.num_classes, self.source.num_classes)
        if self.counts is None:
            self.counts = np.zeros(shape, dtype=np.int64)
        if self.weighted is None:
            self.weighted = np.zeros(shape, dtype=np.float64)
        if self.confident is None:
            self.confident = np.zeros(shape, dtype=np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray, conf: np.ndarray) -> None:
        """One image: ground truth (extra train ids, 255 = ignore), teacher argmax and its confidence."""
        k_n, c_n = self.counts.shape
        gt, pred, conf = gt.ravel(), pred.ravel(), conf.ravel()
        valid = gt < k_n
        cell = gt[valid].astype(np.int64) * c_n + pred[valid]
        conf = conf[valid].astype(np.float64)
        size = k_n * c_n
        self.counts += np.bincount(cell, minlength=size).reshape(k_n, c_n)
        self.weighted += np.bincount(cell, weights=conf, minlength=size).reshape(k_n, c_n)
        self.confident += np.bincount(cell[conf >= self.threshold], minlength=size).reshape(k_n, c_n)
        self.images += 1

    @property
    def pixels(self) -> np.ndarray:
        """Pixels of each extra class, ``[K]``."""
        return self.counts.sum(1)

    def shares(self) -> np.ndarray:
        """Row-normalised ``counts`` (a class without pixels has a zero row)."""
        return _row_normalise(self.counts)

    def weighted_shares(self) -> np.ndarray:
        """Row-normalised ``weighted``: the shares with each pixel counted by the teacher's confidence."""
        return _row_normalise(self.weighted)

    @classmethod
    def from_json(cls, data: dict, path: str | Path) -> CoOccurrence:
        """Statistics written by ``mapping suggest --json``, so audits can skip the teacher pass."""
        try:
            extra, source = load_taxonomy(data["extra_taxonomy"]), load_taxonomy(data["source_taxonomy"])
            if [list(extra.classes), list(source.classes)] != [data["extra_classes"], data["source_classes"]]:
                raise SegunifyError("class names differ from the shipped taxonomies", path)
            return cls(
                extra,
                source,
                float(data["confidence_threshold"]),
                np.asarray(data["counts"], dtype=np.int64).reshape(extra.num_classes, source.num_classes),
                np.asarray(data["confidence_weighted"], dtype=np.float64).reshape(extra.num_classes, -1),
                np.asarray(data["confident_counts"], dtype=np.int64).reshape(extra.num_classes, -1),
                int(data["images"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SegunifyError(
                f"not co-occurrence statistics of `mapping suggest --json`: {exc!r}", path
            ) from None

    def to_json(self) -> dict:
        return {
            "extra_taxonomy": self.extra.name,
            "source_taxonomy": self.source.name,
            "extra_classes": list(self.extra.classes),
            "source_classes": list(self.source.classes),
            "images": self.images,
            "confidence_threshold": self.threshold,
            "pixels": self.pixels.tolist(),
            "counts": self.counts.tolist(),
            "confidence_weighted": np.round(self.weighted, 3).tolist(),
            "confident_counts": self.confident.tolist(),
        }


def _row_normalise(mat: np.ndarray) -> np.ndarray:
    total = mat.sum(1, keepdims=True).astype(np.float64)
    return np.divide(mat, total, out=np.zeros(mat.shape, dtype=np.float64), where=total > 0)


def labelled_samples(dataset, split: str, limit: int | None = None) -> list:
    """The labelled samples of a split, evenly subsampled to ``limit``."""
    labelled = [s for s in dataset.samples(split) if s.label is not None]
    if not labelled:
        raise SegunifyError(
            f"split {split!r} of dataset {dataset.name!r} has no labelled samples", dataset.root
        )
    return evenly(labelled, limit)


def labelled_pairs(dataset, samples: Iterable) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Image and ground truth of each sample (ids outside the taxonomy are refused where the adapter
    decodes them)."""
    for s in samples:
        yield dataset.sample(s)


def teacher_pass(
    teacher,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    cooccurrence: CoOccurrence,
    progress: Callable[[int], None] | None = None,
) -> CoOccurrence:
    """Run ``teacher`` (anything with ``probs(uint8 [B, H, W, 3]) -> [B, C, H, W]``, e.g. a
    :class:`~segunify.models.inference.Predictor`) without priors and accumulate its predictions."""
    import torch  # here: the statistics themselves (suggest --stats, audit, diff) need no torch

    c_n = cooccurrence.source.num_classes
    for image, gt in pairs:
        probs = teacher.probs(torch.from_numpy(np.ascontiguousarray(image))[None])
        if probs.shape[1] != c_n or tuple(probs.shape[-2:]) != gt.shape:
            raise SegunifyError(
                f"teacher returned shape {tuple(probs.shape)}, expected [1, {c_n}, {gt.shape[0]}, {gt.shape[1]}]"
            )
        conf, pred = probs[0].max(0)
        cooccurrence.add(gt, pred.cpu().numpy(), conf.float().cpu().numpy())
        if progress is not None:
            progress(1)
    return cooccurrence
