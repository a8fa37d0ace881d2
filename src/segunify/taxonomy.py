"""Taxonomies as plain data, in the spirit of cityscapesScripts' ``labels.py``.

A taxonomy file is a CSV shipped in ``segunify/taxonomies/`` (or any path a user gives). Lines starting
with ``#`` are comments (the header says where the facts come from). Columns::

    id,name,train_id,category,color[,class]

* ``id`` - the raw value stored in the dataset's label files (``-`` when the dataset has no raw ids,
  e.g. colour-coded labels);
* ``name`` - the raw label's name;
* ``train_id`` - the class index used for training and evaluation, ``255`` = ignore (void);
* ``category`` - a coarse group (free text, may be empty);
* ``color`` - ``R G B`` (space separated), used for colour-coded labels and for pictures;
* ``class`` - optional: the name of the train class this row belongs to, when several raw labels
  share a train id under another name (e.g. the Cityscapes categories).

The classes of a taxonomy are its train ids ``0..C-1`` in order; each class takes its name and colour
from the first row with that train id (or from the ``class`` column). Everything else (lookup tables,
palettes, colour codecs) is derived from these rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from segunify.errors import SegunifyError
from segunify.jsonio import read_text

IGNORE = 255
REQUIRED_COLUMNS = ("id", "name", "train_id", "category", "color")


@dataclass(frozen=True)
class Label:
    """One raw label of a dataset (a row of the taxonomy file)."""

    id: int | None
    name: str
    train_id: int
    category: str
    color: tuple[int, int, int]
    class_name: str

    @property
    def ignore(self) -> bool:
        return self.train_id == IGNORE


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of classes (train ids) plus the raw labels that map onto them."""

    name: str
    labels: tuple[Label, ...]
    source: str = ""
    description: str = ""
    classes: tuple[str, ...] = field(init=False)
    colors: tuple[tuple[int, int, int], ...] = field(init=False)
    categories: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        by_train: dict[int, Label] = {}
        for label in self.labels:
            if not label.ignore:
                by_train.setdefault(label.train_id, label)
        n = len(by_train)
        if sorted(by_train) != list(range(n)):
            missing = sorted(set(range(max(by_train, default=-1) + 1)) - set(by_train))
            raise SegunifyError(f"train ids must be 0..C-1 without gaps; missing {missing}", self.source)
        ordered = [by_train[i] for i in range(n)]
        names = [lab.class_name for lab in ordered]
        dupes = sorted({x for x in names if names.count(x) > 1})
        if dupes:
            raise SegunifyError(f"class names must be unique; repeated: {dupes}", self.source)
        object.__setattr__(self, "classes", tuple(names))
        object.__setattr__(self, "colors", tuple(lab.color for lab in ordered))
        object.__setattr__(self, "categories", tuple(lab.category for lab in ordered))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        """Train id of a class name (case-insensitive); raises KeyError if unknown."""
        lookup = self._class_lookup()
        key = class_name.strip().lower()
        if key not in lookup:
            raise KeyError(class_name)
        return lookup[key]

    def _class_lookup(self) -> dict[str, int]:
        return {c.lower(): i for i, c in enumerate(self.classes)}

    def id_lut(self, size: int | None = None) -> np.ndarray:
        """Lookup table raw id -> train id (``IGNORE`` for unknown ids), uint8, for ``lut[label]``."""
        ids = [lab.id for lab in self.labels if lab.id is not None]
        if not ids:
            raise SegunifyError(f"taxonomy {self.name!r} has no raw ids (colour-coded only)", self.source)
        size = size or max(256, max(ids) + 1)
        lut = np.full(size, IGNORE, dtype=np.uint8)
        for lab in self.labels:
            if lab.id is not None:
                lut[lab.id] = lab.train_id
        return lut

    def known_ids(self) -> np.ndarray:
        return np.array(sorted({lab.id for lab in self.labels if lab.id is not None}), dtype=np.int64)

    def palette(self) -> np.ndarray:
        """``[256, 3]`` uint8 colours by train id; ignore (and unused ids) are black."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8).reshape(-1, 3)
        return pal

    def color_table(self) -> dict[tuple[int, int, int], int]:
        """Colour -> train id, for colour-coded labels. Every row's colour must be unique."""
        table: dict[tuple[int, int, int], int] = {}
        for lab in self.labels:
            if lab.color in table and table[lab.color] != lab.train_id:
                raise SegunifyError(
                    f"colour {lab.color} is used by two labels with different train ids; "
                    f"this taxonomy cannot decode colour labels",
                    self.source,
                )
            table[lab.color] = lab.train_id
        return table


def _parse_color(text: str, path: str, line: int) -> tuple[int, int, int]:
    parts = text.replace(",", " ").split()
    try:
        rgb = tuple(int(p) for p in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise SegunifyError(f"bad color {text!r}: expected 'R G B' with values 0..255", path, line)
    return rgb  # type: ignore[return-value]


def _parse_int(text: str, what: str, path: str, line: int, allow_none: bool = False) -> int | None:
    text = text.strip()
    if allow_none and text in ("", "-"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise SegunifyError(f"bad {what} {text!r}: expected an integer", path, line) from None
    if value < 0:
        raise SegunifyError(f"bad {what} {value}: must be >= 0", path, line)
    return value


def parse_taxonomy(text: str, name: str, source: str = "<string>") -> Taxonomy:
    """Parse the CSV text of a taxonomy file (see the module docstring for the format)."""
    comments: list[str] = []
    rows: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        rows.append((lineno, raw))
    if not rows:
        raise SegunifyError("empty taxonomy file (no header row)", source)
    header_line, header = rows[0]
    columns = [c.strip() for c in next(csv.reader([header]))]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SegunifyError(
            f"header lacks column(s) {missing}; expected {','.join(REQUIRED_COLUMNS)}[,class]",
            source,
            header_line,
        )
    labels: list[Label] = []
    seen_ids: dict[int, int] = {}
    for lineno, raw in rows[1:]:
        values = next(csv.reader(io.StringIO(raw)))
        if len(values) != len(columns):
            raise SegunifyError(f"expected {len(columns)} fields, got {len(values)}", source, lineno)
        rec = {c: v.strip() for c, v in zip(columns, values, strict=True)}
        raw_id = _parse_int(rec["id"], "id", source, lineno, allow_none=True)
        train_id = _parse_int(rec["train_id"], "train_id", source, lineno)
        if train_id is not None and train_id > IGNORE:
            raise SegunifyError(f"bad train_id {train_id}: must be < 255 or 255 (ignore)", source, lineno)
        if raw_id is not None:
            if raw_id in seen_ids:
                raise SegunifyError(f"id {raw_id} repeats line {seen_ids[raw_id]}", source, lineno)
            seen_ids[raw_id] = lineno
        if not rec["name"]:
            raise SegunifyError("empty name", source, lineno)
        labels.append(
            Label(
                id=raw_id,
                name=rec["name"],
                train_id=int(train_id),  # type: ignore[arg-type]
                category=rec["category"],
                color=_parse_color(rec["color"], source, lineno),
                class_name=rec.get("class") or rec["name"],
            )
        )
    description = comments[0] if comments else ""
    return Taxonomy(name=name, labels=tuple(labels), source=source, description=description)


def taxonomy_dir():
    return resources.files("segunify") / "taxonomies"


def available_taxonomies() -> list[str]:
    """Names of the taxonomy files shipped with the package."""
    return sorted(p.name[: -len(".csv")] for p in taxonomy_dir().iterdir() if p.name.endswith(".csv"))


@cache
def _load_builtin(name: str) -> Taxonomy:
    res = taxonomy_dir() / f"{name}.csv"
    return parse_taxonomy(res.read_text(encoding="utf-8"), name=name, source=f"taxonomies/{name}.csv")


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """Load a shipped taxonomy by name (``cityscapes``) or any taxonomy CSV by path."""
    text = str(name_or_path)
    if text in available_taxonomies():
        return _load_builtin(text)
    path = Path(text)
    if path.suffix == ".csv" or path.exists():
        content = read_text(path, "taxonomy file")
        return parse_taxonomy(content, name=path.stem, source=str(path))
    raise SegunifyError(
        f"unknown taxonomy {text!r}; shipped: {', '.join(available_taxonomies())} (or give a path to a .csv)"
    )
