"""The run-time stream of a compound training set: the parts (resolved by :mod:`segunify.train.parts`)
concatenated, drawn with their weights and augmented.

A sample that cannot be read becomes a :class:`LoadError` value in the batch (raised by the trainer), so
the user sees the same one line with or without DataLoader worker processes.

Sampling is a deterministic stream of *draws*: draw ``g`` picks part ``p`` with probability
``weight_p / sum(weights)`` and then the next sample of that part's current shuffled epoch. The stream
is a pure function of (seed, weights, part sizes), so it is sharded across ranks by position (no two
ranks ever take the same draw) and resumed by position alone. Augmentation of a draw is seeded by
``(seed, g)``, so a resumed or re-sharded run sees exactly the same crops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE
from segunify.train.config import AugmentationConfig
from segunify.train.parts import Part


def build_augmentation(cfg: AugmentationConfig) -> A.Compose:
    """Resize (optional) -> random scale -> pad (image 0, label ignore) -> random crop -> flip -> jitter."""
    ch, cw = cfg.crop
    ops: list = []
    if cfg.resize is not None:
        ops.append(A.Resize(cfg.resize[0], cfg.resize[1], interpolation=cv2.INTER_LINEAR))
    lo, hi = cfg.scale
    if (lo, hi) != (1.0, 1.0):
        ops.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0))
    ops.append(
        A.PadIfNeeded(ch, cw, position="center", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE)
    )
    ops.append(A.RandomCrop(ch, cw))
    if cfg.hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    if cfg.color_jitter > 0 or cfg.hue > 0:
        j = cfg.color_jitter
        ops.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=cfg.hue, p=cfg.jitter_p))
    return A.Compose(ops, seed=0)


@dataclass(frozen=True)
class LoadError:
    """A sample that could not be read, carried as a value through the DataLoader: an exception raised in
    a worker process reaches the main process wrapped in a multi-line traceback, a value does not."""

    message: str


def collate(items: list) -> dict | LoadError:
    """``default_collate``, or the first :class:`LoadError` of the batch (raised by the trainer)."""
    failed = next((item for item in items if isinstance(item, LoadError)), None)
    return failed if failed is not None else default_collate(items)


def drawn_shares(sampler: WeightedDrawSampler, draws: int) -> list[int]:
    """How many of the first ``draws`` global draws (all ranks) fell to each part."""
    parts = np.searchsorted(sampler.offsets, sampler.global_indices(0, draws), side="right") - 1
    return np.bincount(parts, minlength=len(sampler.sizes)).astype(int).tolist()


class CompoundDataset(Dataset):
    """Concatenation of parts. Items are addressed by ``(index, draw)``: the draw number seeds the
    augmentation. Returns uint8 tensors (normalisation happens on the device: a quarter of float32's bytes to copy)."""

    def __init__(
        self,
        parts: Sequence[Part],
        augment: A.Compose | None,
        seed: int = 0,
        pixel_arrays: Sequence[str] = (),
    ):
        self.pixel_arrays = tuple(pixel_arrays)  # what every item carries besides the label (see Part.read)
        self.parts = list(parts)
        self.sizes = [len(p.samples) for p in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        p = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return p, int(index - self.offsets[p])

    def __getitem__(self, key) -> dict | LoadError:
        index, draw = key if isinstance(key, tuple) else (key, key)
        p, j = self.locate(index)
        try:
            image, label, arrays = self.parts[p].read(j, self.pixel_arrays)
        except SegunifyError as exc:
            return LoadError(str(exc))
        if self.augment is not None:
            self.augment.set_random_seed(int(np.random.SeedSequence([self.seed, draw]).generate_state(1)[0]))
            out = self.augment(image=image, mask=label, **({"masks": arrays} if arrays else {}))
            image, label, arrays = out["image"], out["mask"], list(out.get("masks", arrays))
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "index": index,
            "draw": draw,
        }
        for name, array in zip(self.pixel_arrays, arrays, strict=True):
            item[name] = torch.from_numpy(np.ascontiguousarray(array))
        return item


class WeightedDrawSampler(Sampler):
    """Deterministic weighted stream of ``(index, draw)`` over the concatenated parts, sharded by rank.

    Global step ``s`` uses draws ``[s*B*R, (s+1)*B*R)``; rank ``r`` takes the ``r``-th block of ``B``.
    Within a part, samples come in shuffled epochs (every sample once before any repeats), so small
    parts are cycled evenly rather than sampled with replacement.
    """

    CHUNK = 4096

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        batch_size: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        start_step: int = 0,
        steps: int | None = None,
    ):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("one weight per part")
        if min(sizes) <= 0 or min(weights) <= 0:
            raise ValueError("parts must be non-empty and weights positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        w = np.asarray(weights, dtype=np.float64)
        self.probs = w / w.sum()
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.seed, self.start_step, self.steps = seed, start_step, steps

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless sampler has no length")
        return max(self.steps - self.start_step, 0) * self.batch_size

    def _chunk_parts(self, c: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0x5E6, c])
        return rng.choice(len(self.sizes), size=self.CHUNK, p=self.probs).astype(np.int64)

    def _perm(self, p: int, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xE90C, p, epoch])
        return rng.permutation(self.sizes[p])

    def stream(self, start: int, stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Chunks of (global draw positions, dataset indices) covering ``[start, stop)``."""
        counts = np.zeros(len(self.sizes), dtype=np.int64)
        perms: dict[tuple[int, int], np.ndarray] = {}
        c = 0
        while stop is None or c * self.CHUNK < stop:
            parts = self._chunk_parts(c)
            base = c * self.CHUNK
            if base + self.CHUNK <= start:
                counts += np.bincount(parts, minlength=len(self.sizes))
                c += 1
                continue
            index = np.empty(self.CHUNK, dtype=np.int64)
            for p in np.unique(parts):
                where = np.flatnonzero(parts == p)
                k = counts[p] + np.arange(len(where))
                epochs, pos = np.divmod(k, self.sizes[p])
                local = np.empty(len(where), dtype=np.int64)
                for e in np.unique(epochs):
                    if (p, e) not in perms:
                        perms = {key: v for key, v in perms.items() if key[0] != p or key[1] >= e - 1}
                        perms[(int(p), int(e))] = self._perm(int(p), int(e))
                    sel = epochs == e
                    local[sel] = perms[(int(p), int(e))][pos[sel]]
                index[where] = self.offsets[p] + local
                counts[p] += len(where)
            g = base + np.arange(self.CHUNK)
            keep = (g >= start) & (g < stop if stop is not None else True)
            yield g[keep], index[keep]
            c += 1

    def global_indices(self, start: int, stop: int) -> np.ndarray:
        """Dataset indices of global draws ``[start, stop)`` (all ranks)."""
        return np.concatenate([idx for _, idx in self.stream(start, stop)] or [np.empty(0, np.int64)])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_step = self.batch_size * self.num_replicas
        start = self.start_step * per_step
        stop = None if self.steps is None else self.steps * per_step
        for g, idx in self.stream(start, stop):
            mine = ((g % per_step) // self.batch_size) == self.rank
            for gi, ii in zip(g[mine].tolist(), idx[mine].tolist(), strict=True):
                yield ii, gi
