"""A finished pseudo-label folder, as a reader sees it: its typed summary and recorded run, where the label
of a sample is, reading it, and whether the folder was made for a use (dataset, split and taxonomies;
dataset root, mapping and teacher; each sample's inputs as they are now).

Every reader (training, export, ``pseudo check``) goes through :class:`PseudoFolder`; the file names of
the layout (:mod:`segunify.pseudo`) are :mod:`segunify.pseudo.store`'s alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from segunify.datasets import DatasetAdapter, Sample
from segunify.errors import FieldError, SegunifyError
from segunify.io import sha256_file
from segunify.jsonio import read_json_object, validate_object
from segunify.labels import read_label_raw
from segunify.mapping import Mapping
from segunify.pseudo.stats import PseudoSummary
from segunify.pseudo.store import SETTINGS, SUMMARY, PseudoStore, load_summary
from segunify.taxonomy import Taxonomy


class RecordedRun(BaseModel):
    """What ``settings.json`` records of the run (written by :func:`segunify.pseudo.store.fingerprint`),
    as far as a reader needs it: which samples were asked for."""

    model_config = ConfigDict(extra="allow", frozen=True)

    dataset: str
    root: str | None = None
    split: str
    spec_sha256: str | None = None  # the dataset was read through a spec file with this hash


class PseudoFolder:
    """The pseudo-label folder at ``path`` (nothing is read until asked)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._store = PseudoStore(self.path)

    @classmethod
    def open(cls, path: str | Path) -> PseudoFolder:
        """A finished folder (its summary read and checked), or one line saying why not."""
        folder = cls(path)
        if not folder.path.is_dir():
            raise SegunifyError(f"pseudo-label directory not found: {folder.path}")
        _ = folder.summary
        return folder

    # --------------------------------------------------------------------------------------- records
    @property
    def summary_path(self) -> Path:
        """The summary, written last: a folder holding it is a finished run."""
        return self.path / SUMMARY

    @cached_property
    def summary(self) -> PseudoSummary:
        return load_summary(self.path)

    @property
    def finished(self) -> bool:
        return self.summary_path.is_file() and self._store.manifest_path.is_file()

    def summary_sha256(self) -> str:
        """The hash of the summary file (what a copy of the labels was made from)."""
        return sha256_file(self.summary_path)

    def recorded_run(self) -> RecordedRun:
        """The run's recorded dataset, root, split and options (one line for a folder that is none)."""
        path = self.path / SETTINGS
        if not path.is_file():
            raise SegunifyError(f"not a segunify pseudo-label folder ({SETTINGS} missing)", self.path)
        return validate_object(RecordedRun, read_json_object(path, "settings file"), "settings file", path)

    # ---------------------------------------------------------------------------------------- labels
    def label_path(self, sample: Sample) -> Path:
        """Where the label PNG of ``sample`` is."""
        return self._store.label_path(sample)

    def read_label(self, sample: Sample, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The label of ``sample``: ``[H, W]`` uint8 source train ids; ``shape`` (H, W) the image's, which it
        must have."""
        path = self.label_path(sample)
        if not path.is_file():
            raise SegunifyError(f"pseudo-label of sample {sample.id!r} not found", path)
        label = read_label_raw(path)
        if label.ndim != 2 or label.dtype != np.uint8:
            raise SegunifyError("pseudo-label must be a single-channel uint8 PNG", path)
        if shape is not None and label.shape[:2] != tuple(shape[:2]):
            raise SegunifyError(
                f"pseudo-label size {label.shape[1]}x{label.shape[0]} differs from image size "
                f"{shape[1]}x{shape[0]}",
                path,
            )
        return label

    def missing(self, samples: Sequence[Sample]) -> Path | None:
        """The first label file of ``samples`` that is not there (``None``: all are)."""
        return next((p for p in (self.label_path(s) for s in samples) if not p.is_file()), None)

    def stale(self, samples: Sequence[Sample]) -> str | None:
        """Why the folder lacks a label of each of ``samples`` made from its inputs as they are now (the
        input signatures of the manifest), or ``None``."""
        return self._store.stale(samples)

    # -------------------------------------------------------------------------------- what it was for
    def check_holds(self, dataset: str, split: str, target: Taxonomy) -> None:
        """The folder holds ``dataset``/``split`` labelled in ``target`` (its name and class names)."""
        s, path = self.summary, self.summary_path
        for field, have, want, what in (
            ("source_taxonomy", s.source_taxonomy, target.name, "the target taxonomy"),
            ("dataset", s.dataset, dataset, "the dataset read"),
            ("split", s.split, split, "the split read"),
        ):
            if have != want:
                raise SegunifyError(f"{path} holds {field} {have!r}, but {what} is {want!r}")
        if list(s.class_pixels) != list(target.classes):
            raise SegunifyError(
                f"{path} holds {len(s.class_pixels)} classes, not the {target.num_classes} classes of the "
                f"target taxonomy {target.name!r}"
            )

    def check_origin(
        self,
        dataset: DatasetAdapter,
        mapping: Mapping | None = None,
        teacher_sha256: str | None = None,
        names: tuple[str, str] = ("the mapping given", "the teacher given"),
    ) -> None:
        """The labels were made from ``dataset`` (its root and taxonomy) and, where given, with ``mapping``
        and by the teacher whose weights hash ``teacher_sha256`` (``names``: how the reader calls the two).
        A mismatch is a :class:`FieldError` of ``root``, ``extra_taxonomy``, ``spec`` (a spec file edited
        since), ``mapping`` or ``teacher``: the reader names its own key for it."""
        s, name = self.summary, self.path.name
        root = str(Path(dataset.root).resolve())
        if str(Path(s.root).resolve()) != root:
            raise FieldError(
                "root",
                f"pseudo-labels {name} were made from dataset root {s.root!r}, not the root read {root!r}",
            )
        if s.extra_taxonomy != dataset.taxonomy.name:
            raise FieldError(
                "extra_taxonomy",
                f"pseudo-labels {name} were made for taxonomy {s.extra_taxonomy!r}, but dataset "
                f"{dataset.name!r} is in {dataset.taxonomy.name!r}",
            )
        made, now = self.recorded_run().spec_sha256, getattr(dataset, "spec_sha256", None)
        if made is not None and made != now:
            raise FieldError(
                "spec",
                f"pseudo-labels {name} were made through another version of the dataset spec (sha256 "
                f"{made[:12]}...), not the spec read (sha256 {str(now)[:12]}...): label again",
            )
        if mapping is not None and s.mapping.sha256 != mapping.sha256:
            raise FieldError(
                "mapping",
                f"pseudo-labels {name} were made with another mapping ({s.mapping.path!r}), not {names[0]}",
            )
        if teacher_sha256 is not None and s.teacher.sha256 != teacher_sha256:
            raise FieldError(
                "teacher",
                f"pseudo-labels {name} were made by another teacher ({s.teacher.path!r}, weights sha256 "
                f"{s.teacher.sha256[:12]}...) than {names[1]} (weights sha256 {teacher_sha256[:12]}...)",
            )


__all__ = ["PseudoFolder", "RecordedRun"]
