"""The compound training set: parts from several datasets, all labelled in one target taxonomy.

A part's labels are its ground truth, mapped class by class to the target taxonomy (the mapping must
be one-to-one: a GT class that allows several target classes cannot give a training label; that is
what pseudo-labels are for), or a pseudo-label directory written for the target taxonomy. A pseudo-label
directory is checked against its ``summary.json`` before training: dataset, split, the dataset's own
taxonomy, the target taxonomy and its class names, and (when the part names them) the ``mapping`` and
``teacher`` it must have been made with.

A sample that cannot be read becomes a :class:`LoadError` value in the batch (raised by the trainer), so
the user sees the same one line with or without DataLoader worker processes.

Sampling is a deterministic stream of *draws*: draw ``g`` picks part ``p`` with probability
``weight_p / sum(weights)`` and then the next sample of that part's current shuffled epoch. The stream
is a pure function of (seed, weights, part sizes), so it is sharded across ranks by position (no two
ranks ever take the same draw) and resumed by position alone. Augmentation of a draw is seeded by
``(seed, g)``, so a resumed or re-sharded run sees exactly the same crops.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from segunify.datasets import DatasetAdapter, Sample, create_dataset
from segunify.datasets.spec import is_spec_path
from segunify.errors import SegunifyError
from segunify.labels import read_label_raw
from segunify.mapping import Mapping, available_mappings, is_mapping_path, resolve_mapping
from segunify.taxonomy import IGNORE, Taxonomy, load_taxonomy
from segunify.train.config import (
    AugmentationConfig,
    EvalPartConfig,
    PartConfig,
    TrainConfig,
    resolve_config_path,
)

PSEUDO_SUMMARY = "summary.json"


# Per-pixel arrays a batch can carry besides the label (uint8, augmented with it, 255 where padded):
# "class2"/"p1" (soft labels: second class and round(255 * p(class1)); a hard label is class2 255, p1 255)
# and "distill" (DISTILL_SOURCE on a source part's pixels, where the student is distilled toward the teacher).
SOFT_ARRAYS = ("class2", "p1")
DISTILL_OTHER, DISTILL_SOURCE = 0, 1


@dataclass
class Part:
    """A resolved part: its samples and how to get a target-taxonomy label for each."""

    name: str
    adapter: DatasetAdapter
    samples: list[Sample]
    weight: float
    lut: np.ndarray | None = None  # [256] uint8: dataset train id -> target train id (GT parts)
    pseudo_dir: Path | None = None
    soft: bool = False  # read soft/<rel> (class1, class2, p1) instead of the hard label
    source: bool = False  # ground truth already in the target taxonomy (the source dataset)
    resize: tuple[int, int] | None = None  # (H, W) of image, label and pixel arrays before augmentation
    repeats: np.ndarray | None = None  # [N] int: times each sample is in an epoch (repeat-factor sampling)
    mapping: Mapping | None = None  # GT parts: the one-to-one mapping ``lut`` comes from

    def read(
        self, j: int, pixel_arrays: Sequence[str] = ()
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Image, target label and the requested ``pixel_arrays`` (names above), in that order."""
        s = self.samples[j]
        if self.pseudo_dir is None:
            image, label = self.adapter.sample(s)
            label = self.lut[label]
            soft = None
        else:
            image = self.adapter.read_image(s)
            soft = self._read_pseudo(s, image.shape[:2])
            label = soft[..., 0] if soft.ndim == 3 else soft
        out = []
        for name in pixel_arrays:
            if name in SOFT_ARRAYS:
                channel = 1 if name == "class2" else 2
                out.append(
                    soft[..., channel] if soft is not None and soft.ndim == 3 else np.full_like(label, 255)
                )
            elif name == "distill":
                out.append(np.full_like(label, DISTILL_SOURCE if self.source else DISTILL_OTHER))
            else:
                raise ValueError(f"unknown pixel array {name!r}")
        if self.resize is not None:
            size = (self.resize[1], self.resize[0])
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            label, *out = (cv2.resize(a, size, interpolation=cv2.INTER_NEAREST) for a in (label, *out))
        return image, label, out

    def label(self, j: int) -> np.ndarray:
        """The target label of sample ``j`` alone (hard labels; no image read, no resize)."""
        s = self.samples[j]
        if self.pseudo_dir is None:
            return self.lut[self.adapter.read_label(s)]
        label = read_label_raw(self.pseudo_dir / s.rel)
        if label.ndim != 2 or label.dtype != np.uint8:
            raise SegunifyError("pseudo-label must be a single-channel uint8 PNG", self.pseudo_dir / s.rel)
        return label

    def _read_pseudo(self, s: Sample, shape: tuple[int, ...]) -> np.ndarray:
        assert self.pseudo_dir is not None
        path = self.pseudo_dir / ("soft/" + s.rel if self.soft else s.rel)
        if not path.is_file():
            raise SegunifyError(
                f"{'soft ' if self.soft else ''}pseudo-label of sample {s.id!r} not found", path
            )
        label = read_label_raw(path)
        want = 3 if self.soft else 2
        if label.ndim != want or label.dtype != np.uint8 or (self.soft and label.shape[2] != 3):
            kind = "a 3-channel" if self.soft else "a single-channel"
            raise SegunifyError(f"pseudo-label must be {kind} uint8 PNG", path)
        if label.shape[:2] != shape:
            raise SegunifyError(
                f"pseudo-label size {label.shape[1]}x{label.shape[0]} differs from image size "
                f"{shape[1]}x{shape[0]}",
                path,
            )
        return label


def class_counts(part: Part, num_classes: int) -> np.ndarray:
    """``[N, C]`` pixels of each target class in each sample's label (ignore not counted)."""
    counts = np.zeros((len(part.samples), num_classes), dtype=np.int64)
    for j in range(len(part.samples)):
        counts[j] = np.bincount(part.label(j).ravel(), minlength=256)[:num_classes]
    return counts


def rare_classes(cfg: AugmentationConfig, parts: Sequence[Part], target: Taxonomy) -> list[int]:
    """Target ids of ``cfg.rare_classes``, or by default the classes under ``cfg.rare_share`` of the
    labelled pixels of the source parts (ground truth already in the target taxonomy); [] when off."""
    if cfg.rare_crop == 0:
        return []
    if cfg.rare_classes is not None:
        unknown = [c for c in cfg.rare_classes if c not in target.classes]
        if unknown:
            raise SegunifyError(f"augmentation.rare_classes: {unknown} not in taxonomy {target.name!r}")
        return [target.index(c) for c in cfg.rare_classes]
    sources = [p for p in parts if p.source]
    if not sources:
        raise SegunifyError(
            "augmentation.rare_crop: no source part to find rare classes in; give rare_classes"
        )
    pixels = sum(class_counts(p, target.num_classes).sum(0) for p in sources)
    share = pixels / max(int(pixels.sum()), 1)
    return np.flatnonzero(share < cfg.rare_share).tolist()


def repeat_factors(counts: np.ndarray, threshold: float) -> np.ndarray:
    """Repeat-factor sampling (LVIS, Gupta et al. 2019): sample ``i`` is repeated
    ``r_i = max(1, max over its classes c of sqrt(threshold / f_c))`` times per epoch, ``f_c`` the fraction
    of the part's samples holding class ``c``; so a thin class that only a few frames show is seen more often
    without changing the part's share of the draws. Fractional ``r_i`` are rounded once, stochastically
    (fixed seed), to keep an epoch a fixed list."""
    present = counts > 0
    freq = present.mean(0)
    per_class = np.sqrt(threshold / np.where(freq > 0, freq, np.inf))
    r = np.maximum(1.0, (present * per_class).max(1))
    whole = np.floor(r)
    return (whole + (np.random.default_rng(0).random(len(r)) < r - whole)).astype(np.int64)


def _keyed(exc: SegunifyError, key: str, config_path: str) -> SegunifyError:
    return SegunifyError(f"{key}: {exc}", config_path)


def part_mapping(
    text: str | None, adapter: DatasetAdapter, target: Taxonomy, key: str, config_path: str
) -> Mapping:
    """The mapping of a part's ground truth to the target taxonomy by the one rule
    (:func:`segunify.mapping.resolve_mapping`; a file is taken relative to the config), checked against
    the dataset's taxonomy and the target; errors name ``key``."""
    if text is not None and (is_mapping_path(text) or text.startswith(("data:", "weights:"))):
        text = str(resolve_config_path(text, config_path, key))
    try:
        mapping = resolve_mapping(text, adapter.taxonomy, target)
        mapping.check_compatible(
            adapter.taxonomy,
            target.classes,
            f"dataset {adapter.name!r}",
            f"the target taxonomy {target.name!r}",
        )
    except SegunifyError as exc:
        raise _keyed(exc, key, config_path) from None
    return mapping


def _adapter(dataset: str, root: str, options: dict, key: str, config_path: str) -> DatasetAdapter:
    """A part's adapter: a shipped dataset name, or a dataset spec file relative to the config file."""
    path = resolve_config_path(root, config_path, f"{key}.root")
    if not path.is_dir():
        problem = "dataset root is not a folder" if path.exists() else "dataset folder not found"
        raise SegunifyError(f"{key}.root: {problem}: {path}", config_path)
    if is_spec_path(dataset):
        dataset = str(resolve_config_path(dataset, config_path, f"{key}.dataset"))
    try:
        return create_dataset(dataset, path, **options)
    except SegunifyError as exc:
        raise _keyed(exc, f"{key}.dataset", config_path) from None
    except TypeError as exc:
        raise SegunifyError(f"{key}.options: {exc}", config_path) from None


def _samples(adapter: DatasetAdapter, split: str, key: str, config_path: str) -> list[Sample]:
    try:
        samples = adapter.samples(split)
    except SegunifyError as exc:
        raise _keyed(exc, f"{key}.split", config_path) from None
    if not samples:
        raise SegunifyError(f"{key}: no samples in split {split!r} of {adapter.root}", config_path)
    return samples


def resolve_part(
    cfg: PartConfig, target: Taxonomy, key: str, config_path: str, teacher: tuple[str, str] | None = None
) -> Part:
    """One part, checked; ``teacher`` = (value, its config key): the teacher a pseudo-label part's labels
    must come from when the part names none (the config's distillation teacher or start weights)."""
    part = _resolve_labels(cfg, target, key, config_path, teacher)
    if cfg.repeat_threshold is not None:
        part.repeats = repeat_factors(class_counts(part, target.num_classes), cfg.repeat_threshold)
    return part


def _resolve_labels(
    cfg: PartConfig, target: Taxonomy, key: str, config_path: str, teacher: tuple[str, str] | None
) -> Part:
    adapter = _adapter(cfg.dataset, cfg.root, cfg.options, key, config_path)
    samples = _samples(adapter, cfg.split, key, config_path)
    name = f"{adapter.name}/{cfg.split}"
    if cfg.labels == "gt":
        if any(s.label is None for s in samples):
            missing = next(s for s in samples if s.label is None)
            raise SegunifyError(
                f"{key}: sample {missing.id!r} has no ground-truth label ({missing.image})", config_path
            )
        mapping = part_mapping(cfg.mapping, adapter, target, f"{key}.mapping", config_path)
        try:
            lut = mapping.one_to_one_lut()
        except SegunifyError as exc:
            raise _keyed(exc, f"{key}.mapping", config_path) from None
        source = adapter.taxonomy.name == target.name and cfg.mapping is None
        return Part(
            name, adapter, samples, cfg.weight, lut=lut, source=source, resize=cfg.resize, mapping=mapping
        )
    pseudo = resolve_config_path(cfg.labels, config_path, f"{key}.labels")
    summary = check_pseudo_dir(pseudo, adapter.name, cfg.split, target, f"{key}.labels", config_path)
    check_pseudo_origin(summary, cfg, adapter, target, key, config_path, teacher)
    check_pseudo_inputs(pseudo, samples, f"{key}.labels", config_path)
    if cfg.soft and not (summary.get("settings") or {}).get("soft"):
        raise SegunifyError(
            f"{key}.soft: pseudo-labels {pseudo.name} were made without --soft (no soft/ labels)", config_path
        )
    folder = pseudo / "soft" if cfg.soft else pseudo
    missing = next((folder / s.rel for s in samples if not (folder / s.rel).is_file()), None)
    if missing is not None:
        raise SegunifyError(f"{key}.labels: pseudo-label file missing: {missing}", config_path)
    return Part(
        name + "(pseudo)",
        adapter,
        samples,
        cfg.weight,
        pseudo_dir=pseudo,
        soft=cfg.soft,
        resize=cfg.resize,
    )


def check_pseudo_dir(
    pseudo: Path, dataset: str, split: str, target: Taxonomy, key: str, config_path: str
) -> dict:
    """The pseudo-label directory's ``summary.json`` must say it holds this dataset/split in the target
    taxonomy (the student's), with the target's class names."""
    from segunify.pseudo import load_summary

    if not pseudo.is_dir():
        raise SegunifyError(f"{key}: pseudo-label directory not found: {pseudo}", config_path)
    try:
        summary = load_summary(pseudo).model_dump(mode="json")
    except SegunifyError as exc:
        raise _keyed(exc, key, config_path) from None
    summary_path = pseudo / PSEUDO_SUMMARY
    for field, want in (("source_taxonomy", target.name), ("dataset", dataset), ("split", split)):
        if field not in summary:
            raise SegunifyError(f"{key}: {summary_path} has no {field!r}", config_path)
        if summary[field] != want:
            what = "the target taxonomy" if field == "source_taxonomy" else f"this part's {field}"
            raise SegunifyError(
                f"{key}: {summary_path} holds {field} {summary[field]!r}, but {what} is {want!r}", config_path
            )
    classes = list(summary.get("class_pixels") or target.classes)
    if classes != list(target.classes):
        raise SegunifyError(
            f"{key}: {summary_path} holds {len(classes)} classes, not the {target.num_classes} classes of the "
            f"target taxonomy {target.name!r}",
            config_path,
        )
    return summary


def check_pseudo_origin(
    summary: dict,
    cfg: PartConfig,
    adapter: DatasetAdapter,
    target: Taxonomy,
    key: str,
    config_path: str,
    teacher: tuple[str, str] | None = None,
) -> None:
    """The fingerprint of a pseudo-label directory against the part, always: the dataset root it was
    made from, the dataset's own taxonomy, the mapping (the part's, else the shipped ``<gt>__<target>``)
    and the teacher (the part's, else ``teacher``: the config's distillation teacher or start weights,
    when that is a segunify checkpoint). Labels made from other images or by other rules never train."""
    where, gt = Path(cfg.labels).name, adapter.taxonomy
    made_from, root = summary.get("root"), str(Path(adapter.root).resolve())
    if made_from is not None and str(Path(made_from).resolve()) != root:
        raise SegunifyError(
            f"{key}.labels: pseudo-labels {where} were made from dataset root {made_from!r}, not this part's "
            f"root {root!r}",
            config_path,
        )
    extra = summary.get("extra_taxonomy")
    if extra is not None and extra != gt.name:
        raise SegunifyError(
            f"{key}.labels: pseudo-labels {where} were made for taxonomy {extra!r}, but dataset "
            f"{cfg.dataset!r} is in {gt.name!r}",
            config_path,
        )
    _check_pseudo_mapping(summary, cfg, adapter, target, key, config_path)
    _check_pseudo_teacher(summary, cfg, key, config_path, teacher)


def _check_pseudo_mapping(
    summary: dict, cfg: PartConfig, adapter: DatasetAdapter, target: Taxonomy, key: str, config_path: str
) -> None:
    named, gt = cfg.mapping, adapter.taxonomy
    if named is None and (gt.name, target.name) not in available_mappings():
        return  # no mapping is known to compare with
    text = named if named is not None else f"{gt.name}__{target.name}"
    mapping = part_mapping(text, adapter, target, f"{key}.mapping", config_path)
    made_with = summary.get("mapping") or {}
    if made_with.get("sha256") != mapping.sha256:
        field, advice = f"{key}.mapping", ""
        if named is None:
            field, advice = f"{key}.labels", f" (the shipped default); name theirs in {key}.mapping"
        raise SegunifyError(
            f"{field}: pseudo-labels {Path(cfg.labels).name} were made with another mapping "
            f"({made_with.get('path')!r}), not {text!r}{advice}",
            config_path,
        )


def _check_pseudo_teacher(
    summary: dict, cfg: PartConfig, key: str, config_path: str, teacher: tuple[str, str] | None
) -> None:
    if cfg.teacher is not None:
        text, from_key = cfg.teacher, f"{key}.teacher"
    elif teacher is not None and _is_checkpoint(teacher[0], teacher[1], config_path):
        text, from_key = teacher
    else:
        return  # no teacher is known to compare with
    want = teacher_sha256(text, from_key, config_path)
    made_by = summary.get("teacher") or {}
    if made_by.get("sha256") != want:
        field, advice = from_key, ""
        if cfg.teacher is None:
            field, advice = f"{key}.labels", f"; name the teacher they were made by in {key}.teacher"
        raise SegunifyError(
            f"{field}: pseudo-labels {Path(cfg.labels).name} were made by another teacher "
            f"({made_by.get('path')!r}, weights sha256 {str(made_by.get('sha256'))[:12]}...) than {from_key} "
            f"(weights sha256 {want[:12]}...){advice}",
            config_path,
        )


def _is_checkpoint(text: str, key: str, config_path: str) -> bool:
    """Whether a config's weights value is a segunify checkpoint (its weights hash is comparable with
    the teacher hash a pseudo-label folder records); a ``.pth`` or a transformers folder is not."""
    from segunify.models.checkpoint import META

    return (resolve_config_path(text, config_path, key) / META).is_file()


def check_pseudo_inputs(pseudo: Path, samples: Sequence[Sample], key: str, config_path: str) -> None:
    """Every sample of the part must have a pseudo-label made from its image and label as they are now
    (the input signatures the folder's manifest records)."""
    from segunify.pseudo.store import PseudoStore

    problem = PseudoStore(pseudo).stale(samples)
    if problem:
        raise SegunifyError(f"{key}: pseudo-labels {pseudo.name}: {problem}", config_path)


def is_sha256(text: str) -> bool:
    """A config's teacher given as a weights hash (64 hex digits), not as a checkpoint path."""
    return re.fullmatch(r"[0-9a-fA-F]{64}", text) is not None


def teacher_sha256(text: str, key: str, config_path: str) -> str:
    """A teacher named in a config: a 64-digit sha256, or a checkpoint folder (its weights' hash, as
    ``segunify pseudo-label`` records it)."""
    if is_sha256(text):
        return text.lower()
    from segunify.models.checkpoint import weights_digest

    path = resolve_config_path(text, config_path, key)
    try:
        return weights_digest(path)
    except SegunifyError as exc:
        raise _keyed(exc, key, config_path) from None


def resolve_eval_parts(cfg: TrainConfig, target: Taxonomy, config_path: str) -> list[EvalPart]:
    """Every evaluation part, each with a distinct name (results and ``eval.select`` use the names)."""
    parts: list[EvalPart] = []
    for i, p in enumerate(cfg.eval.parts):
        part = resolve_eval_part(p, target, f"eval.parts.{i}", config_path)
        if any(q.name == part.name for q in parts):
            raise SegunifyError(
                f"eval.parts.{i}: a second part named {part.name!r} (dataset/split); results are keyed by name",
                config_path,
            )
        parts.append(part)
    return parts


def resolve_parts(cfg: TrainConfig, config_path: str) -> tuple[Taxonomy, list[Part]]:
    try:
        target = load_taxonomy(cfg.taxonomy)
    except SegunifyError as exc:
        raise _keyed(exc, "taxonomy", config_path) from None
    teacher = None  # what pseudo-labels must come from when a part names no teacher
    if cfg.loss.distill is not None:
        teacher = (cfg.loss.distill.teacher, "loss.distill.teacher")
    elif cfg.model.weights is not None:
        teacher = (cfg.model.weights, "model.weights")
    return target, [
        resolve_part(p, target, f"parts.{i}", config_path, teacher) for i, p in enumerate(cfg.parts)
    ]


@dataclass
class EvalPart:
    name: str
    adapter: DatasetAdapter
    samples: list[Sample]
    mapping: Mapping  # GT taxonomy -> target taxonomy
    same_taxonomy: bool


def resolve_eval_part(cfg: EvalPartConfig, target: Taxonomy, key: str, config_path: str) -> EvalPart:
    adapter = _adapter(cfg.dataset, cfg.root, cfg.options, key, config_path)
    samples = _samples(adapter, cfg.split, key, config_path)
    samples = [s for s in samples if s.label is not None][: cfg.max_samples]
    if not samples:
        raise SegunifyError(f"{key}: no labelled samples in split {cfg.split!r}", config_path)
    mapping = part_mapping(cfg.mapping, adapter, target, f"{key}.mapping", config_path)
    same = adapter.taxonomy.name == target.name and cfg.mapping is None
    return EvalPart(f"{adapter.name}/{cfg.split}", adapter, samples, mapping, same)


class RareClassCrop(A.RandomCrop):
    """A random crop that, with probability ``p_rare``, holds a pixel of a rare class: one of ``classes``
    present in the label is picked uniformly, then one of its pixels, and the crop is placed at random
    around it (rare-class crops as in DAFormer's rare class sampling, Hoyer et al. 2022). Thin classes
    fill few crops by chance; this shows them more often without repeating whole frames."""

    def __init__(self, height: int, width: int, classes: Sequence[int], p_rare: float):
        super().__init__(height, width)
        self.classes = np.asarray(sorted(classes), dtype=np.int64)
        self.p_rare = p_rare

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        out = super().get_params_dependent_on_data(params, data)
        mask = data.get("mask")
        if mask is None or self.py_random.random() >= self.p_rare:
            return out
        present = self.classes[np.bincount(mask.ravel(), minlength=256)[self.classes] > 0]
        if not len(present):
            return out
        ys, xs = np.nonzero(mask == self.py_random.choice(present.tolist()))
        k = self.py_random.randrange(len(ys))
        h, w = mask.shape[:2]
        x0 = int(np.clip(xs[k] - self.py_random.randint(0, self.width - 1), 0, w - self.width))
        y0 = int(np.clip(ys[k] - self.py_random.randint(0, self.height - 1), 0, h - self.height))
        return out | {"crop_coords": (x0, y0, x0 + self.width, y0 + self.height)}


def build_augmentation(cfg: AugmentationConfig, rare: Sequence[int] = ()) -> A.Compose:
    """Resize (optional) -> random scale -> pad (image 0, label ignore) -> random crop (around a pixel of a
    ``rare`` class with probability ``cfg.rare_crop``) -> flip -> jitter."""
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
    rare_crop = cfg.rare_crop > 0 and len(rare) > 0
    ops.append(RareClassCrop(ch, cw, rare, cfg.rare_crop) if rare_crop else A.RandomCrop(ch, cw))
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
    parts are cycled evenly rather than sampled with replacement. ``repeats`` (per part ``None`` or an
    int array, one count >= 1 per sample: :func:`repeat_factors`) puts a sample that many times into each of
    its part's epochs.
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
        repeats: Sequence[np.ndarray | None] | None = None,
    ):
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("one weight per part")
        if min(sizes) <= 0 or min(weights) <= 0:
            raise ValueError("parts must be non-empty and weights positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.epochs = [np.arange(n) for n in self.sizes]  # one epoch of each part: local sample indices
        for p, rep in enumerate(repeats or ()):
            if rep is not None:
                if len(rep) != self.sizes[p] or min(rep) < 1:
                    raise ValueError("repeats: one count >= 1 per sample of the part")
                self.epochs[p] = np.repeat(self.epochs[p], rep)
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
        return self.epochs[p][rng.permutation(len(self.epochs[p]))]

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
                epochs, pos = np.divmod(k, len(self.epochs[p]))
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
