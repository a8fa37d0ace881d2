"""The paper authors' mapping layout (github.com/UniBwTAS/data-priors, ``datasets/<name>/lists/``) -> our
mapping CSV.

Their files, as published:

* ``labels.csv``: a header line, then ``n,name,id,trainId,...``, one row per class of the extra dataset
  (trainId 255 or -1: not a training class).
* ``master_labels_<source>.csv``: a header line, then ``source_train_id,source_name,extra_name,...``, one
  row per source class listing the extra classes that may contain it; the row ``255,void`` lists extra
  classes whose pixels the authors make void.

Void policy (kept from the first converter, reported on every row): an extra class's allowed set is the
union of the source rows it appears in. Listed under void *and* under real classes -> the real classes
(the teacher chooses among them; the void entry is dropped). Listed only under void -> void. Listed
nowhere -> void. With an extra taxonomy, classes are matched **by name** (their ids differ from ours,
e.g. CamVid-32 Void 30 / Wall 31), ignoring case and ``_``/``-``/spaces; without one, their trainIds
are the extra ids.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from segunify.errors import SegunifyError
from segunify.jsonio import read_text
from segunify.mapping import HEADER, VOID, parse_mapping, quote_field
from segunify.taxonomy import IGNORE, Taxonomy

MAPPED, VOID_DROPPED, ONLY_VOID, NO_ROW, NOT_IN_LABELS = (
    "mapped",
    "mapped; also listed under void (void entry dropped)",
    "void: listed only under void",
    "void: in no row of the master file",
    "void: not in labels.csv",
)


@dataclass(frozen=True)
class AuthorsClass:
    name: str
    train_id: int | None  # None: not a training class in labels.csv (trainId 255 / -1)
    line: int


@dataclass(frozen=True)
class ConvertedRow:
    extra_id: int
    name: str
    classes: tuple[str, ...]  # source class names; empty = void
    policy: str


@dataclass
class Conversion:
    text: str
    rows: list[ConvertedRow]
    unmatched: list[str] = field(default_factory=list)  # authors' classes without a class of ours
    notes: list[str] = field(default_factory=list)  # everything else worth a line to the user


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _csv_rows(path: Path):
    """(line number, fields) of each data row; the first line is the header, ``#`` lines are comments."""
    for lineno, line in enumerate(read_text(path, "CSV file").splitlines(), start=1):
        if lineno > 1 and line.strip() and not line.strip().startswith("#"):
            yield lineno, [f.strip() for f in next(csv.reader([line]))]


def read_authors_labels(path: Path) -> list[AuthorsClass]:
    """The classes of ``labels.csv``; a name listed twice (their CamVid-32 file has ``Bicyclist`` at ids
    2 and 3) is an error naming both lines, never a silent duplicate."""
    classes: list[AuthorsClass] = []
    by_key: dict[str, AuthorsClass] = {}
    by_train: dict[int, AuthorsClass] = {}
    for lineno, fields in _csv_rows(path):
        if len(fields) < 4 or not fields[1]:
            raise SegunifyError(
                f"malformed row: expected n,name,id,trainId,... (at least 4 fields), got {len(fields)}",
                path,
                lineno,
            )
        name = fields[1]
        try:
            train_id: int | None = int(fields[3])
        except ValueError:
            raise SegunifyError(f"trainId {fields[3]!r} is not an integer", path, lineno) from None
        train_id = None if train_id in (IGNORE, -1) else train_id
        if _key(name) in by_key:
            first = by_key[_key(name)]
            raise SegunifyError(
                f"class {name!r} is listed twice: line {first.line} ({first.name!r}, trainId {first.train_id}) "
                f"and line {lineno} (trainId {train_id})",
                path,
                lineno,
            )
        if train_id is not None and train_id in by_train:
            first = by_train[train_id]
            raise SegunifyError(
                f"trainId {train_id} used for {first.name!r} (line {first.line}) and {name!r}", path, lineno
            )
        entry = AuthorsClass(name, train_id, lineno)
        classes.append(entry)
        by_key[_key(name)] = entry
        if train_id is not None:
            by_train[train_id] = entry
    if not classes:
        raise SegunifyError("no classes (expected a header line, then n,name,id,trainId,... rows)", path)
    return classes


def read_authors_master(
    path: Path, labels: list[AuthorsClass], labels_name: str, source: Taxonomy, notes: list[str]
) -> tuple[dict[str, set[str]], set[str]]:
    """Per authors' class key: the source class names listed for it, and the keys listed under void."""
    known = {_key(c.name) for c in labels}
    source_lookup = {c.lower(): c for c in source.classes}
    allowed: dict[str, set[str]] = {k: set() for k in known}
    void_listed: set[str] = set()
    for lineno, fields in _csv_rows(path):
        if len(fields) < 2:
            raise SegunifyError(
                f"malformed row: expected source_id,source_name,extra... (at least 2 fields), got {len(fields)}",
                path,
                lineno,
            )
        try:
            sid = int(fields[0])
        except ValueError:
            raise SegunifyError(f"source id {fields[0]!r} is not an integer", path, lineno) from None
        sname = fields[1]
        is_void = sid == IGNORE or sname.lower() == VOID
        if not is_void and sname.lower() not in source_lookup:
            raise SegunifyError(f"unknown source class {sname!r} (taxonomy {source.name!r})", path, lineno)
        if not is_void and source.index(source_lookup[sname.lower()]) != sid:
            notes.append(f"{path}:{lineno}: source id {sid} is not the train id of {sname!r}; used the name")
        for name in filter(None, fields[2:]):
            if _key(name) not in known:
                if not is_void:  # a typo here would silently shrink an allowed set
                    raise SegunifyError(f"unknown extra class {name!r} (not in {labels_name})", path, lineno)
                notes.append(f"{path}:{lineno}: {name!r} under void is not in {labels_name}; skipped")
            elif is_void:
                void_listed.add(_key(name))
            else:
                allowed[_key(name)].add(source_lookup[sname.lower()])
    return allowed, void_listed


def _policy(classes: set[str], listed_void: bool) -> str:
    if classes:
        return VOID_DROPPED if listed_void else MAPPED
    return ONLY_VOID if listed_void else NO_ROW


def _rows_by_train_id(labels, allowed, void_listed, source: Taxonomy, conv: Conversion) -> list[ConvertedRow]:
    """Rows for the authors' training classes, numbered by their trainIds."""
    dropped = [f"{c.name!r} (line {c.line}: {', '.join(sorted(allowed[_key(c.name)]))})"
               for c in labels if c.train_id is None and allowed[_key(c.name)]]  # fmt: skip
    if dropped:
        conv.notes.append(
            f"not training classes (trainId 255/-1), so their source classes are dropped: {', '.join(dropped)}"
        )
    rows = []
    for c in sorted((c for c in labels if c.train_id is not None), key=lambda c: c.train_id):
        classes = allowed[_key(c.name)]
        policy = _policy(classes, _key(c.name) in void_listed)
        rows.append(ConvertedRow(c.train_id, c.name, tuple(sorted(classes, key=source.index)), policy))
    return rows


def _rows_by_name(labels, allowed, void_listed, source: Taxonomy, extra: Taxonomy, conv: Conversion):
    """Rows for every class of ``extra``, each from the authors' class of the same name."""
    ours = {_key(name): k for k, name in enumerate(extra.classes)}
    ignored = {_key(lab.name) for lab in extra.labels if lab.ignore}
    matched: dict[int, AuthorsClass] = {}
    dropped = []
    for c in labels:
        k = ours.get(_key(c.name))
        if k is not None:
            matched[k] = c
        elif _key(c.name) in ignored:
            listed = sorted(allowed[_key(c.name)])
            dropped.append(
                f"{c.name!r} (line {c.line}"
                + (f"; the authors allow {', '.join(listed)})" if listed else ")")
            )
        else:
            conv.unmatched.append(f"{c.name!r} (labels.csv line {c.line})")
    if dropped:
        conv.notes.append(
            f"void in taxonomy {extra.name!r}, so dropped from labels.csv: {', '.join(dropped)}"
        )
    rows = []
    for k, name in enumerate(extra.classes):
        if k not in matched:
            rows.append(ConvertedRow(k, name, (), NOT_IN_LABELS))
            continue
        key = _key(matched[k].name)
        classes = allowed[key]
        rows.append(
            ConvertedRow(
                k, name, tuple(sorted(classes, key=source.index)), _policy(classes, key in void_listed)
            )
        )
    return rows


def convert_authors_layout(
    labels_csv: str | Path, master_csv: str | Path, source: Taxonomy, extra: Taxonomy | None = None
) -> Conversion:
    """Read both files and build our mapping CSV; with ``extra``, the result is validated against it
    (an error then names the master file, which exists, never the output that was not written)."""
    labels_csv, master_csv = Path(labels_csv), Path(master_csv)
    conv = Conversion(text="", rows=[])
    labels = read_authors_labels(labels_csv)
    allowed, void_listed = read_authors_master(master_csv, labels, labels_csv.name, source, conv.notes)
    if extra is None:
        conv.rows = _rows_by_train_id(labels, allowed, void_listed, source, conv)
    else:
        conv.rows = _rows_by_name(labels, allowed, void_listed, source, extra, conv)
    out = io.StringIO()
    out.write(f"# converted from {labels_csv.name} + {master_csv.name} (source taxonomy {source.name}")
    out.write(f", extra classes matched by name to taxonomy {extra.name})\n" if extra else ")\n")
    out.write(",".join(HEADER) + "\n")
    for row in conv.rows:
        text = ";".join(row.classes) if row.classes else VOID
        note = "" if row.policy == MAPPED else f"  # {row.policy}"
        out.write(f"{row.extra_id},{quote_field(row.name)},{quote_field(text)}{note}\n")
    conv.text = out.getvalue()
    if extra is not None:
        parse_mapping(conv.text, extra, source, path=str(master_csv))
    return conv
