"""Part resolution: each part of a train config checked and turned into a :class:`GTPart` (ground truth
mapped class by class to the target taxonomy) or a :class:`PseudoPart` (a pseudo-label folder written for
the target taxonomy), both read by one :meth:`Part.read`; and the evaluation parts.

A ground-truth part's mapping must be one-to-one: a GT class that allows several target classes cannot
give a training label; that is what pseudo-labels are for. A pseudo-label folder
(:class:`~segunify.pseudo.folder.PseudoFolder`) is checked before training: it holds this dataset and
split in the target taxonomy with its class names, was made from this dataset root and taxonomy, with the
mapping (the part's, else the shipped ``<gt>__<target>``) and by the teacher (the part's, else the
config's distillation teacher or start weights) it names, from each sample's inputs as they are now.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from segunify.datasets import DatasetAdapter, Sample, create_dataset
from segunify.datasets.spec import is_spec_path
from segunify.errors import FieldError, SegunifyError
from segunify.mapping import Mapping, available_mappings, is_mapping_path, resolve_mapping
from segunify.pseudo.folder import PseudoFolder
from segunify.taxonomy import Taxonomy, load_taxonomy
from segunify.train.config import EvalPartConfig, PartConfig, TrainConfig, resolve_config_path

# Per-pixel arrays a batch can carry besides the label (uint8, augmented with it, 255 where padded):
# "distill" (DISTILL_SOURCE on a source part's pixels, where the student is distilled toward the teacher).
DISTILL_OTHER, DISTILL_SOURCE = 0, 1


@dataclass
class Part:
    """A resolved part: its samples and how to get a target-taxonomy label for each (the two kinds:
    :class:`GTPart`, :class:`PseudoPart`)."""

    name: str
    adapter: DatasetAdapter
    samples: list[Sample]
    weight: float
    resize: tuple[int, int] | None = None  # (H, W) of image, label and pixel arrays before augmentation
    source: bool = False  # ground truth already in the target taxonomy (the source dataset)

    def read(
        self, j: int, pixel_arrays: Sequence[str] = ()
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Image, target label and the requested ``pixel_arrays`` (names above), in that order."""
        image, label = self._load(self.samples[j])
        out = []
        for name in pixel_arrays:
            if name == "distill":
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
        raise NotImplementedError

    def _load(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Image and target label of ``s``."""
        raise NotImplementedError


@dataclass(kw_only=True)
class GTPart(Part):
    """Ground truth mapped to the target taxonomy through a one-to-one ``mapping`` (its ``lut``)."""

    lut: np.ndarray  # [256] uint8: dataset train id -> target train id
    mapping: Mapping

    def label(self, j: int) -> np.ndarray:
        return self.lut[self.adapter.read_label(self.samples[j])]

    def _load(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.adapter.sample(s)
        return image, self.lut[label]


@dataclass(kw_only=True)
class PseudoPart(Part):
    """Labels from a pseudo-label folder."""

    folder: PseudoFolder

    def label(self, j: int) -> np.ndarray:
        return self.folder.read_label(self.samples[j])

    def _load(self, s: Sample) -> tuple[np.ndarray, np.ndarray]:
        image = self.adapter.read_image(s)
        return image, self.folder.read_label(s, image.shape[:2])


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
    adapter = _adapter(cfg.dataset, cfg.root, cfg.options, key, config_path)
    samples = _samples(adapter, cfg.split, key, config_path)
    common = {"adapter": adapter, "samples": samples, "weight": cfg.weight, "resize": cfg.resize}
    if cfg.labels == "gt":
        part: Part = _gt_part(cfg, target, key, config_path, f"{adapter.name}/{cfg.split}", **common)
    else:
        part = _pseudo_part(
            cfg, target, key, config_path, teacher, f"{adapter.name}/{cfg.split}(pseudo)", **common
        )
    return part


def _gt_part(cfg: PartConfig, target: Taxonomy, key: str, config_path: str, name: str, **common) -> GTPart:
    adapter, samples = common["adapter"], common["samples"]
    missing = next((s for s in samples if s.label is None), None)
    if missing is not None:
        raise SegunifyError(
            f"{key}: sample {missing.id!r} has no ground-truth label ({missing.image})", config_path
        )
    mapping = part_mapping(cfg.mapping, adapter, target, f"{key}.mapping", config_path)
    try:
        lut = mapping.one_to_one_lut()
    except SegunifyError as exc:
        raise _keyed(exc, f"{key}.mapping", config_path) from None
    source = adapter.taxonomy.name == target.name and cfg.mapping is None
    return GTPart(name, **common, source=source, lut=lut, mapping=mapping)


def _pseudo_part(
    cfg: PartConfig,
    target: Taxonomy,
    key: str,
    config_path: str,
    teacher: tuple[str, str] | None,
    name: str,
    **common,
) -> PseudoPart:
    """The part's pseudo-label folder, checked against the part (see the module docstring)."""
    adapter, samples = common["adapter"], common["samples"]
    try:
        folder = PseudoFolder.open(resolve_config_path(cfg.labels, config_path, f"{key}.labels"))
        folder.check_holds(adapter.name, cfg.split, target)
    except SegunifyError as exc:
        raise _keyed(exc, f"{key}.labels", config_path) from None
    _check_origin(folder, cfg, adapter, target, key, config_path, teacher)
    problem = folder.stale(samples)
    if problem:
        raise SegunifyError(f"{key}.labels: pseudo-labels {folder.path.name}: {problem}", config_path)
    missing = folder.missing(samples)
    if missing is not None:
        raise SegunifyError(f"{key}.labels: pseudo-label file missing: {missing}", config_path)
    return PseudoPart(name, **common, folder=folder)


def _check_origin(
    folder: PseudoFolder,
    cfg: PartConfig,
    adapter: DatasetAdapter,
    target: Taxonomy,
    key: str,
    config_path: str,
    teacher: tuple[str, str] | None,
) -> None:
    """The folder's origin against the part, always: the dataset root and taxonomy; the mapping (the
    part's, else the shipped ``<gt>__<target>``) and the teacher (the part's, else ``teacher``: the config's
    distillation teacher or start weights, when that is a segunify checkpoint) where one is known.
    Labels made from other images or by other rules never train."""
    gt, named = adapter.taxonomy, cfg.mapping
    mapping, text = None, named if named is not None else f"{gt.name}__{target.name}"
    if named is not None or (gt.name, target.name) in available_mappings():
        mapping = part_mapping(text, adapter, target, f"{key}.mapping", config_path)
    given, from_key = (cfg.teacher, f"{key}.teacher") if cfg.teacher is not None else (teacher or (None, ""))
    if cfg.teacher is None and given is not None and not _is_checkpoint(given, from_key, config_path):
        given = None  # a .pth or transformers folder: no hash comparable with the recorded teacher's
    want = teacher_sha256(given, from_key, config_path) if given is not None else None
    try:
        folder.check_origin(adapter, mapping, want, names=(repr(text), from_key))
    except FieldError as exc:
        keys = {"mapping": f"{key}.mapping", "teacher": from_key, "spec": f"{key}.dataset"}
        field, advice = keys.get(exc.field, f"{key}.labels"), ""
        if exc.field == "mapping" and named is None:
            field, advice = f"{key}.labels", f" (the shipped default); name theirs in {key}.mapping"
        if exc.field == "teacher" and cfg.teacher is None:
            field, advice = f"{key}.labels", f"; name the teacher they were made by in {key}.teacher"
        raise SegunifyError(f"{field}: {exc.problem}{advice}", config_path) from None


def _is_checkpoint(text: str, key: str, config_path: str) -> bool:
    """Whether a config's weights value is a segunify checkpoint (its weights hash is comparable with
    the teacher hash a pseudo-label folder records); a ``.pth`` or a transformers folder is not."""
    from segunify.models.checkpoint import META

    return (resolve_config_path(text, config_path, key) / META).is_file()


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
