"""What a dataset adapter is, the registry of adapters, and the generic ``datasets check``.

An adapter knows one publisher's folder layout: it lists samples (stable id, image path, label path,
split) in a deterministic order and decodes labels to train ids of its taxonomy. Everything after the
adapter works on arrays and never looks at a publisher's layout again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import ClassVar

import numpy as np

from segunify.errors import SegunifyError
from segunify.labels import ColorCodec, IdCodec, check_train_ids, read_image, read_label_raw
from segunify.taxonomy import Taxonomy, load_taxonomy


@dataclass(frozen=True, order=True)
class Sample:
    """One image and its label. ``rel`` is the label's path relative to the dataset root (``.png``):
    predictions and pseudo-labels are written under the same relative path in their own folder."""

    id: str
    image: Path = field(compare=False)
    label: Path | None = field(compare=False)
    split: str = field(compare=False)
    rel: str = field(compare=False)
    expected_label: Path | None = field(default=None, compare=False)  # where a missing label was looked for

    def missing_label(self) -> str:
        """The message for a sample without a label: which file was expected, when the adapter knows."""
        return (
            f"label file missing (expected {self.expected_label})"
            if self.expected_label
            else "label file missing"
        )


def evenly(items: Sequence, n: int | None) -> list:
    """``n`` items spread evenly over ``items`` (item ``i * len // n`` for ``i < n``; none for ``n = 0``); all
    of them when ``n`` is ``None`` or not smaller. Neighbouring frames of a video are near duplicates, so the
    first ``n`` would show one scene: the one sampling rule of the demo's subsets and overlay frames,
    ``mapping suggest|audit --limit``, ``datasets stats --limit`` and ``evaluate --vis-count``."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def unsafe_part(text: str) -> str | None:
    """Why a path read from a file could lead outside the folder it is relative to (None when it cannot):
    absolute (POSIX or Windows), a ``..`` part (``/`` or ``\\`` separated), or a NUL byte (an OS error)."""
    if not text:
        return "empty path"
    if "\x00" in text:
        return "NUL byte in path"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive or text.startswith("\\"):
        return "absolute path"
    if ".." in text.replace("\\", "/").split("/"):
        return "'..' in path"
    if not PurePosixPath(text).parts or PurePosixPath(text).name in ("", "."):
        return "names no file"
    return None


def inside(
    base: Path, text: object, listed_in: str | Path, line: int | None = None, what: str = "path"
) -> Path:
    """``base / text`` for a path read from a list or index file (``listed_in``, at ``line``).

    The one containment check of every adapter that reads paths from a file: a path that could lead outside
    ``base`` is an error naming the file and line, so that a list never makes a command read (or, through
    the sample's output path, write) outside the dataset root."""
    reason = unsafe_part(text) if isinstance(text, str) else f"not a path but {type(text).__name__}"
    if reason is not None:
        raise SegunifyError(
            f"{what} {text!r} is not a path inside the dataset root ({reason}); paths must be relative to {base}",
            listed_in,
            line,
        )
    return base / text


class LabelEncoding(StrEnum):
    """How an adapter's label files store classes; only ``COLOR`` needs the colour codec, every other
    encoding is read as raw ids through the taxonomy's id LUT."""

    ID = "id"  # uint8/uint16 raw ids
    COLOR = "color"  # RGB colours of the taxonomy's palette
    PALETTE = "palette"  # P-mode PNG whose palette index is the raw id
    PANOPTIC = "panoptic"  # panoptic RGB/PNG + JSON or parquet, decoded to category ids by the adapter
    POLYGONS = "polygons"  # polygon JSON, rasterised to ids by the adapter
    RLE = "rle"  # run-length encoded masks, rasterised to ids by the adapter


class DatasetAdapter:
    """Base class: subclasses set the class attributes and implement :meth:`_list`."""

    name: ClassVar[str]
    taxonomy_name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    label_encoding: ClassVar[LabelEncoding] = LabelEncoding.ID
    domain: ClassVar[str] = "urban"
    description: ClassVar[str] = ""
    homepage: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # the paths the adapter looks for, relative to --root (<split> = a split name)
    # the terms of the data, one line (shown in an export's dataset card); redistribution: True when they
    # allow sharing copies (under their conditions), False when they forbid it, None when not recorded
    licence: ClassVar[str] = ""
    redistribution: ClassVar[bool | None] = None

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise SegunifyError(f"dataset root of {self.name!r} is not a folder", self.root)
        if not self.root.is_dir():
            raise SegunifyError(f"dataset root of {self.name!r} not found (give --root)", self.root)
        self._codec: IdCodec | ColorCodec | None = None

    @property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.taxonomy_name)

    @property
    def codec(self) -> IdCodec | ColorCodec:
        if self._codec is None:
            self._codec = (
                ColorCodec(self.taxonomy)
                if self.label_encoding is LabelEncoding.COLOR
                else IdCodec(self.taxonomy)
            )
        return self._codec

    def samples(self, split: str) -> list[Sample]:
        """All samples of a split, sorted by id (deterministic across machines and runs)."""
        if split not in self.splits:
            raise SegunifyError(
                f"dataset {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}"
            )
        found = sorted(self._list(split))
        ids = [s.id for s in found]
        if len(set(ids)) != len(ids):
            raise SegunifyError(f"dataset {self.name!r}: duplicate sample ids in split {split!r}", self.root)
        for s in found:  # predictions and pseudo-labels are written at <out>/<rel>: never outside <out>
            reason = unsafe_part(s.rel) or (None if s.rel.endswith(".png") else "not a .png path")
            if reason is not None:
                raise SegunifyError(f"sample {s.id!r}: output path {s.rel!r} is unsafe ({reason})", self.root)
        return found

    def expected_layout(self) -> str:
        """What ``datasets check`` says when it finds no sample: the layout this adapter looked for."""
        return (
            f"{self.layout} under {self.root}" if self.layout else f"the {self.name} layout under {self.root}"
        )

    def _list(self, split: str) -> Iterable[Sample]:
        raise NotImplementedError

    def read_image(self, sample: Sample) -> np.ndarray:
        return read_image(sample.image)

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw label array -> uint8 train ids (255 = ignore). Adapters with special encodings override."""
        return self.codec.decode(raw, path)

    def load_label(self, sample: Sample) -> np.ndarray:
        """Decode the sample's label file; adapters that store labels otherwise override this (not
        :meth:`read_label`)."""
        if sample.label is None:
            raise SegunifyError(f"sample {sample.id!r}: {sample.missing_label()}", sample.image)
        return self.decode_label(read_label_raw(sample.label), sample.label)

    def read_label(self, sample: Sample) -> np.ndarray:
        """The sample's label in train ids of the taxonomy. Every label is decoded through here, so its
        ids are checked here, once (:func:`~segunify.labels.check_train_ids`): the priors, statistics,
        training and scoring downstream rely on it."""
        label = self.load_label(sample)
        return check_train_ids(label, self.taxonomy, sample.label or sample.image)

    def sample(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Image and label of a sample; a clear error when their sizes differ (never a silent resize)."""
        image = self.read_image(sample)
        label = self.read_label(sample)
        if image.shape[:2] != label.shape:
            raise SegunifyError(
                f"label size {label.shape[1]}x{label.shape[0]} differs from image size "
                f"{image.shape[1]}x{image.shape[0]} ({sample.image})",
                sample.label,
            )
        return image, label

    def _sample(self, split: str, image: Path, label: Path | None, stem_parts: Iterable[str]) -> Sample:
        rel_base = label if label is not None else image
        rel = rel_base.relative_to(self.root).with_suffix(".png").as_posix()
        return Sample(id="/".join(stem_parts), image=image, label=label, split=split, rel=rel)

    def _pair(self, split: str, image: Path, label: Path, stem_parts: Iterable[str]) -> Sample:
        """A sample whose label should be at ``label``: a missing file gives ``label=None`` and keeps the
        path in ``expected_label``, so that "label file missing" can name it."""
        if label.is_file():
            return self._sample(split, image, label, stem_parts)
        return replace(self._sample(split, image, None, stem_parts), expected_label=label)


_REGISTRY: dict[str, type[DatasetAdapter]] = {}


def register_dataset(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset_class(name: str) -> type[DatasetAdapter]:
    if name not in _REGISTRY:
        raise SegunifyError(
            f"unknown dataset {name!r}; known: {', '.join(available_datasets())} (or a dataset spec .yaml)"
        )
    return _REGISTRY[name]


def create_dataset(name: str | Path, root: str | Path, **options) -> DatasetAdapter:
    """The adapter of a shipped dataset name, or of a dataset spec file (``*.yaml``, see
    :mod:`segunify.datasets.spec`): the one place every command resolves its dataset argument."""
    from segunify.datasets.spec import SpecDataset, is_spec_path

    if is_spec_path(name):
        if options:
            raise TypeError(
                f"a dataset spec takes no options (got {sorted(options)}); write them in the spec"
            )
        return SpecDataset.from_file(name, root)
    return get_dataset_class(str(name))(root, **options)


def dataset_taxonomy_name(name: str | Path) -> str:
    """The taxonomy (name or CSV path) of a dataset name or spec file, without reading any data."""
    from segunify.datasets.spec import is_spec_path, load_spec

    return load_spec(name).taxonomy if is_spec_path(name) else get_dataset_class(str(name)).taxonomy_name


@dataclass
class CheckReport:
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, message)
    pairs: int = 0  # distinct pairs checked (splits such as "all" overlap the others)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(
    dataset: DatasetAdapter,
    splits: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Every image readable, every label present, readable, of the image's size and holding only known
    ids/colours. Problems are collected (one per file), never raised, so one run lists them all. No sample
    in any split checked is a problem too (an empty folder or another layout), naming the expected layout."""
    report = CheckReport()
    checked: set[tuple[str, Path, Path | None]] = set()  # an "all" split overlaps the others: check once
    for split in splits or dataset.splits:
        try:
            samples = dataset.samples(split)
        except SegunifyError as exc:
            if (str(dataset.root), str(exc)) not in report.problems:  # several splits, one missing folder
                report.problems.append((str(dataset.root), str(exc)))
            continue
        report.counts[split] = len(samples)
        for s in samples:
            if (s.id, s.image, s.label) not in checked:
                checked.add((s.id, s.image, s.label))
                _check_sample(dataset, s, report)
            if progress:
                progress(1)
    report.pairs = len(checked)
    if not checked and not report.problems:  # a split's own error already says what is wrong
        report.problems.append((str(dataset.root), no_samples_message(dataset)))
    return report


def no_samples_message(dataset: DatasetAdapter) -> str:
    return f"no samples found: expected {dataset.expected_layout()}"


def _check_sample(dataset: DatasetAdapter, s: Sample, report: CheckReport) -> None:
    try:
        if s.label is None:
            raise SegunifyError(s.missing_label(), s.image)
        dataset.sample(s)
    except SegunifyError as exc:
        report.problems.append((exc.path or str(s.image), str(exc)))
