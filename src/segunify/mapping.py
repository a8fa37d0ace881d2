"""Mappings: each class of an *extra* taxonomy -> the set of *source* classes it may contain.

File format (one CSV per extra/source pair, shipped as ``mappings/<extra>__<source>.csv``)::

    # comments start with '#', also at the end of a row
    extra_id,extra_name,source_classes
    8,Car,car;truck;bus;train        # CamVid 'Car' covers every four-wheeled road vehicle
    11,Void,void

``source_classes`` is a ``;``-separated list of source class names, or ``void`` (the pixel becomes
ignore). Every class of the extra taxonomy must have exactly one row. ``REVIEW`` (written by
``segunify mapping suggest`` where the data cannot decide) is refused until a person replaces it. The compiled form is a boolean
matrix ``allowed[K, C]`` (K extra classes, C source classes); a void class has an all-False row.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from segunify.errors import SegunifyError
from segunify.jsonio import read_text
from segunify.taxonomy import IGNORE, Taxonomy, available_taxonomies, load_taxonomy

HEADER = ("extra_id", "extra_name", "source_classes")
VOID = "void"
REVIEW = "REVIEW"  # what `mapping suggest` writes where the data cannot decide; `check` refuses it


def _frozen(array: np.ndarray) -> np.ndarray:
    """A cached form is shared by every caller: read-only, so that no caller can change it for the rest."""
    array.flags.writeable = False
    return array


def is_partition(allowed: np.ndarray) -> bool:
    """True when no source class is allowed by two extra classes (``allowed`` ``[K, C]``): every
    prediction then folds back to at most one extra class. A source class in no set is allowed here."""
    return bool((np.asarray(allowed, dtype=bool).sum(axis=0) <= 1).all())


def source_to_extra(allowed: np.ndarray) -> np.ndarray:
    """The fold of a partition ``allowed`` ``[K, C]``: ``[C]`` int64, the extra class whose set holds each
    source class, ``-1`` for a source class in no set (the one rule of :meth:`Mapping.source_to_extra_lut`
    and of :func:`segunify.metrics.cross_taxonomy_scores`)."""
    allowed = np.asarray(allowed, dtype=bool)
    return np.where(allowed.any(axis=0), allowed.argmax(axis=0), -1).astype(np.int64)


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping. Its derived forms (matrix, lookups, partition test, hash) are computed once, on
    first use, and shared read-only: a ``cached_property`` stores them in the instance's ``__dict__``,
    which neither equality nor the hash (both of the fields) looks at."""

    extra: Taxonomy
    source: Taxonomy
    allowed_sets: tuple[tuple[int, ...], ...]  # per extra class: sorted source train ids (empty = void)
    path: str = ""
    comments: tuple[str, ...] = ()

    @cached_property
    def allowed(self) -> np.ndarray:
        """Boolean ``[K, C]`` matrix: ``allowed[k, c]`` is True when extra class k may contain source class c."""
        mat = np.zeros((self.extra.num_classes, self.source.num_classes), dtype=bool)
        for k, cs in enumerate(self.allowed_sets):
            mat[k, list(cs)] = True
        return _frozen(mat)

    @cached_property
    def gt_lookup(self) -> np.ndarray:
        """``[256, C]`` bool, indexed directly by a GT train id: the allowed set of that id's pixels (rows
        ``>= K``, i.e. ignore, are empty). The table of the priors op (:mod:`segunify.pseudo.priors`)."""
        mat = np.zeros((256, self.source.num_classes), dtype=bool)
        mat[: self.extra.num_classes] = self.allowed
        return _frozen(mat)

    @cached_property
    def is_partition(self) -> bool:
        """True when no source class is allowed by two extra classes (predictions map back uniquely);
        a source class in no set is allowed here (see :meth:`unclaimed_sources`)."""
        return is_partition(self.allowed)

    @cached_property
    def sha256(self) -> str:
        """sha256 of the mapping as :meth:`to_csv` writes it (comments included): what a pseudo-label
        folder records of the mapping it was made with."""
        return hashlib.sha256(self.to_csv().encode("utf-8")).hexdigest()

    def unclaimed_sources(self) -> list[str]:
        """Source classes no extra class allows (mapped back, their pixels become void)."""
        return [self.source.classes[c] for c in np.flatnonzero(~self.allowed.any(axis=0))]

    def source_to_extra_lut(self) -> np.ndarray:
        """``[256]`` uint8 LUT source train id -> extra train id; needs a partition. Unclaimed -> 255."""
        if not self.is_partition:
            shared = [self.source.classes[c] for c in np.flatnonzero(self.allowed.sum(axis=0) > 1)]
            raise SegunifyError(
                f"mapping is not a partition; source classes in several sets: {shared}", self.path
            )
        return self._source_to_extra_lut

    @cached_property
    def _source_to_extra_lut(self) -> np.ndarray:
        fold = source_to_extra(self.allowed)
        lut = np.full(256, IGNORE, dtype=np.uint8)
        lut[: len(fold)] = np.where(fold < 0, IGNORE, fold)
        return _frozen(lut)

    def one_to_one_lut(self) -> np.ndarray:
        """``[256]`` uint8 LUT extra class -> its one source class (void and ignore -> 255): ground truth
        relabelled in the source taxonomy. An error when a class allows several source classes (its pixels
        have no single label: that is what pseudo-labels are for)."""
        bad = [
            f"{self.extra.classes[k]!r} ({';'.join(self.source.classes[c] for c in cs)})"
            for k, cs in enumerate(self.allowed_sets)
            if len(cs) > 1
        ]
        if bad:
            raise SegunifyError(
                f"mapping {self.path} is not one-to-one for {', '.join(bad)}; ground truth of "
                f"{self.extra.name!r} cannot train {self.source.name!r} classes directly (use pseudo-labels)"
            )
        return self._one_to_one_lut

    @cached_property
    def _one_to_one_lut(self) -> np.ndarray:
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for k, cs in enumerate(self.allowed_sets):
            if cs:
                lut[k] = cs[0]
        return _frozen(lut)

    def check_compatible(self, extra: Taxonomy, source_classes, what: str, source_what: str = "") -> None:
        """One check for every user of a mapping: it must lead from ``extra`` (the ground truth's
        taxonomy, described by ``what``, e.g. ``dataset 'camvid'``) to exactly ``source_classes`` (the
        class names the model predicts; ``source_what`` names that model)."""
        source_classes = tuple(source_classes)
        if tuple(self.source.classes) != source_classes:
            raise SegunifyError(
                f"mapping's source taxonomy {self.source.name!r} ({self.source.num_classes} classes) does not "
                f"match the classes of {source_what or 'the model'} ({len(source_classes)} classes)",
                self.path or None,
            )
        if tuple(self.extra.classes) != tuple(extra.classes):
            raise SegunifyError(
                f"mapping's extra taxonomy {self.extra.name!r} ({self.extra.num_classes} classes) is not the "
                f"taxonomy of {what} ({extra.name!r}, {extra.num_classes} classes)",
                self.path or None,
            )

    def kind(self, k: int) -> str:
        n = len(self.allowed_sets[k])
        return "void" if n == 0 else ("one-to-one" if n == 1 else "one-to-many")

    def to_csv(self) -> str:
        out = io.StringIO()
        for c in self.comments:
            out.write(f"# {c}\n" if c else "#\n")
        out.write(",".join(HEADER) + "\n")
        for k, cs in enumerate(self.allowed_sets):
            names = ";".join(self.source.classes[c] for c in cs) if cs else VOID
            out.write(f"{k},{quote_field(self.extra.classes[k])},{quote_field(names)}\n")
        return out.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so (OWASP)


def quote_field(text: str) -> str:
    """A CSV field that reads back as ``text`` (:func:`read_fields`) and that no spreadsheet runs as a
    formula: a name starting with ``= + - @``, tab or CR (after any apostrophes) gets a leading ``'``,
    as OWASP advises against CSV injection; a field holding a comma, a quote or ``#`` (which would
    otherwise start a comment) is quoted. Spaces around a field are not part of it (as in a taxonomy)."""
    if text.lstrip("'").startswith(FORMULA_START):
        text = "'" + text
    needs_quotes = any(c in text for c in ',"#')
    return '"' + text.replace('"', '""') + '"' if needs_quotes else text


def _unescape(field: str) -> str:
    """The name :func:`quote_field` wrote: one leading ``'`` before a formula character removed."""
    return field[1:] if field.startswith("'") and field.lstrip("'").startswith(FORMULA_START) else field


def _strip_comment(line: str) -> str:
    """``line`` up to a ``#`` outside double quotes (a quoted name may hold one)."""
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            return line[:i].strip()
    return line.strip()


def read_fields(line: str) -> list[str]:
    """The fields of one mapping CSV line as :func:`quote_field` wrote them (comment removed); blank
    lines and comment lines give ``[]``."""
    body = _strip_comment(line)
    if not body:
        return []
    return [_unescape(f.strip()) for f in next(csv.reader(io.StringIO(body)))]


def parse_mapping(text: str, extra: Taxonomy, source: Taxonomy, path: str = "<string>") -> Mapping:
    """Parse and validate a mapping CSV; every error names the file and line."""
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM (spreadsheets save one) is not part of the header
    comments: list[str] = []
    sets: dict[int, tuple[int, ...]] = {}
    line_of: dict[int, int] = {}
    source_lookup = {c.lower(): i for i, c in enumerate(source.classes)}
    saw_header = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if raw.strip().startswith("#"):
            comments.append(raw.strip()[1:].strip())
            continue
        fields = read_fields(raw)
        if not fields:
            continue
        if not saw_header and tuple(f.lower() for f in fields) == HEADER:
            saw_header = True
            continue
        if not saw_header and not sets and (len(fields) != 3 or not fields[0].lstrip("-").isdigit()):
            # never echo a line of a file that may not be a mapping at all (--mapping /etc/passwd)
            raise SegunifyError(f"not a mapping CSV (expected header {','.join(HEADER)})", path, lineno)
        if len(fields) != 3:
            raise SegunifyError(
                f"malformed row: expected 3 fields {','.join(HEADER)}, got {len(fields)}", path, lineno
            )
        id_text, extra_name, classes_text = fields
        try:
            k = int(id_text)
        except ValueError:
            raise SegunifyError(f"extra_id {id_text!r} is not an integer", path, lineno) from None
        if not 0 <= k < extra.num_classes:
            raise SegunifyError(
                f"extra_id {k} out of range: taxonomy {extra.name!r} has classes 0..{extra.num_classes - 1}",
                path,
                lineno,
            )
        if extra_name.lower() != extra.classes[k].lower():
            if extra_name.lower() in (c.lower() for c in extra.classes):
                raise SegunifyError(
                    f"extra_name {extra_name!r} does not match extra_id {k} ({extra.classes[k]!r} in taxonomy {extra.name!r})",
                    path,
                    lineno,
                )
            raise SegunifyError(f"unknown extra class {extra_name!r} (taxonomy {extra.name!r})", path, lineno)
        if k in sets:
            raise SegunifyError(
                f"duplicate extra class {extra_name!r} (first on line {line_of[k]})", path, lineno
            )
        sets[k] = _parse_sources(classes_text, source, source_lookup, path, lineno)
        line_of[k] = lineno
    missing = [extra.classes[k] for k in range(extra.num_classes) if k not in sets]
    if missing:
        raise SegunifyError(f"missing row(s) for extra class(es) {missing}", path)
    return Mapping(
        extra=extra,
        source=source,
        allowed_sets=tuple(sets[k] for k in range(extra.num_classes)),
        path=path,
        comments=tuple(comments),
    )


def _parse_sources(
    classes_text: str, source: Taxonomy, source_lookup: dict[str, int], path: str, lineno: int
) -> tuple[int, ...]:
    """The ``source_classes`` field -> sorted source train ids (``()`` for void)."""
    names = [n.strip() for n in classes_text.split(";")]
    if any(not n for n in names):
        raise SegunifyError(f"empty source class name in {classes_text!r}", path, lineno)
    lowered = [n.lower() for n in names]
    if lowered == [REVIEW.lower()]:
        raise SegunifyError(
            "row marked REVIEW by `mapping suggest` (too few pixels to decide): write its allowed "
            "source classes or void",
            path,
            lineno,
        )
    if lowered == [VOID]:
        return ()
    if VOID in lowered:
        raise SegunifyError("'void' cannot be combined with source classes", path, lineno)
    ids = []
    for n in names:
        if n.lower() not in source_lookup:
            raise SegunifyError(f"unknown source class {n!r} (taxonomy {source.name!r})", path, lineno)
        ids.append(source_lookup[n.lower()])
    if len(set(ids)) != len(ids):
        raise SegunifyError(f"source class repeated in {classes_text!r}", path, lineno)
    return tuple(sorted(ids))


def mapping_dir():
    return resources.files("segunify") / "mappings"


def available_mappings() -> list[tuple[str, str]]:
    """(extra, source) pairs of the mapping files shipped with the package."""
    pairs = []
    for p in mapping_dir().iterdir():
        if p.name.endswith(".csv") and "__" in p.name:
            extra, source = p.name[: -len(".csv")].split("__", 1)
            pairs.append((extra, source))
    return sorted(pairs)


def is_mapping_path(text: str | Path) -> bool:
    """The one rule for a mapping value: a path separator or a ``.csv`` ending makes it a file (which
    must exist); anything else is the name of a shipped mapping (which must exist). A file in the current
    folder never shadows a shipped name, and a missing file never falls back to a shipped one."""
    text = str(text)
    seps = [s for s in ("/", os.sep, os.altsep) if s]
    return text.lower().endswith(".csv") or any(s in text for s in seps)


def read_mapping_source(text: str | Path) -> tuple[str, str, str]:
    """``(content, where, stem)`` of a mapping value by :func:`is_mapping_path`: the file's text, its path
    and its name without ``.csv``; or a shipped mapping's text, ``mappings/<name>.csv`` and its name."""
    text = str(text)
    if is_mapping_path(text):
        path = Path(text).expanduser()
        stem = path.name[: -len(".csv")] if path.name.lower().endswith(".csv") else path.name
        return read_text(path, "mapping file"), str(path), stem
    names = [f"{e}__{s}" for e, s in available_mappings()]
    if text not in names:
        close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see 'segunify mapping list'"
        raise SegunifyError(
            f"unknown mapping {text!r}: not a shipped mapping, and not a file (a path holds a / or ends in "
            f".csv){hint}"
        )
    return (mapping_dir() / f"{text}.csv").read_text(encoding="utf-8-sig"), f"mappings/{text}.csv", text


def load_mapping(
    path_or_pair: str | Path, extra: str | Taxonomy | None = None, source: str | Taxonomy | None = None
) -> Mapping:
    """Load a mapping CSV by path or a shipped one by ``extra__source`` name (:func:`is_mapping_path`)
    in the taxonomies given, or those its name ``<extra>__<source>`` names (``mapping check --extra``).
    What a command or config means by a mapping for its data and model is :func:`resolve_mapping`."""
    content, where, stem = read_mapping_source(path_or_pair)
    if extra is None or source is None:
        if "__" not in stem:
            raise SegunifyError(
                "name the extra and source taxonomies (file name is not <extra>__<source>.csv)", where
            )
        guess_extra, guess_source = stem.split("__", 1)
        extra = extra if extra is not None else guess_extra
        source = source if source is not None else guess_source
    return parse_mapping(content, _taxonomy(extra), _taxonomy(source), path=where)


def resolve_mapping(
    value: str | Path | None,
    extra: str | Taxonomy | None = None,
    source: str | Taxonomy | None = None,
    *,
    shipped_default: bool = False,
) -> Mapping:
    """The mapping a command or a config means for ground truth in ``extra`` and a model predicting
    ``source`` (each a taxonomy, its name, or ``None`` where the caller does not know it). The one rule
    of every caller (pseudo-label, evaluate, predict, mapping audit, train, demo):

    * a value (a shipped name or a CSV file, :func:`is_mapping_path`) is read in the taxonomies its name
      ``<extra>__<source>`` names where they are shipped ones, else in the caller's (an error when the
      caller does not know them either);
    * no value: the identity when ``extra`` and ``source`` are the same taxonomy; else, with
      ``shipped_default``, the shipped ``<extra>__<source>``; else an error asking for a mapping.

    Whether the mapping fits the caller's data and model is the caller's check, in its own words
    (:meth:`Mapping.check_compatible`)."""
    if value is None:
        return _default_mapping(extra, source, shipped_default)
    content, where, stem = read_mapping_source(value)
    shipped = set(available_taxonomies())
    named = stem.split("__", 1) if "__" in stem else ["", ""]
    extra = named[0] if named[0] in shipped else extra
    source = named[1] if named[1] in shipped else source
    if extra is None or source is None:
        raise SegunifyError(
            "name the extra and source taxonomies (file name is not <extra>__<source>.csv)", where
        )
    return parse_mapping(content, _taxonomy(extra), _taxonomy(source), path=where)


def _default_mapping(extra: str | Taxonomy | None, source: str | Taxonomy | None, shipped_default: bool):
    """:func:`resolve_mapping` without a value."""
    names = [t.name if isinstance(t, Taxonomy) else t for t in (extra, source)]
    if names[0] is None or names[1] is None:
        raise SegunifyError(
            "give a mapping: the taxonomy of the ground truth or of the predictions is unknown"
        )
    if names[0] == names[1]:
        extra_t, source_t = _taxonomy(extra), _taxonomy(source)  # type: ignore[arg-type]
        if extra_t.classes == source_t.classes:
            return identity_mapping(source_t)
    name = f"{names[0]}__{names[1]}"
    shipped = (names[0], names[1]) in available_mappings()
    if shipped_default and shipped:
        return load_mapping(name)
    if shipped_default:
        raise SegunifyError(f"no shipped mapping {name}; give a mapping CSV")
    raise SegunifyError(
        f"ground truth is in taxonomy {names[0]!r}, the model predicts {names[1]!r}; give a mapping "
        f"(e.g. {name})"
    )


def _taxonomy(taxonomy: str | Taxonomy) -> Taxonomy:
    return taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)


def identity_mapping(taxonomy: Taxonomy) -> Mapping:
    """A taxonomy mapped onto itself (every class allows only itself)."""
    return Mapping(taxonomy, taxonomy, tuple((i,) for i in range(taxonomy.num_classes)), path="<identity>")
