"""A dataset described by a YAML file, a *dataset spec*, for data no adapter knows (a fleet recording, a
re-encoded copy, a CVAT export). A spec path is accepted wherever a dataset name is
(:func:`segunify.datasets.create_dataset`)::

    name: rugd-mine                 # in messages and outputs (not the name of a shipped adapter)
    taxonomy: rugd                  # a shipped taxonomy name or a taxonomy CSV (relative to this file)
    encoding: color                 # id | color | palette: how label PNGs store classes
    images: "RUGD_frames-with-annotations/*/*.png"     # glob under --root; may contain {split}
    label: ["RUGD_frames-with-annotations/(.*)\\\\.png", "RUGD_annotations/\\\\1.png"]
                                    # regex on the image path -> label path; or a list of such pairs,
                                    # tried in order (the first whose file exists wins)
    splits: {all: "*"}              # per split: a glob on the image path, a list of globs, or
                                    # {include: GLOBS, exclude: GLOBS, list: FILE under --root}
    image_suffix: _leftImg8bit.jpg  # cut from sample ids (default: the extension)
    ignore_ids: [0]                 # raw ids (id, palette) or ignore_colors: [[R, G, B]] (color) read as 255
    licence: "research use only"    # also description, homepage, redistribution: allowed|forbidden|unknown

A sample's id is its image path below the fixed folders of ``images`` (those before the first wildcard)
without ``image_suffix``; a list file names images by that id or by their path under --root. Every path
a spec makes (labels, list files) stays inside --root, as an adapter's do (:func:`~.base.inside`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from segunify.config import StrictConfig, load_yaml_config, resolve_path
from segunify.datasets._offroad import list_lines, single_channel
from segunify.datasets.base import DatasetAdapter, LabelEncoding, inside, unsafe_part
from segunify.errors import SegunifyError
from segunify.labels import ColorCodec, IdCodec
from segunify.taxonomy import Taxonomy, available_taxonomies, load_taxonomy

SPEC_SUFFIXES = (".yaml", ".yml")
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_MAGIC = re.compile(r"[*?\[]")


def is_spec_path(name: str | Path) -> bool:
    """A dataset argument naming a spec file rather than a shipped adapter."""
    return str(name).lower().endswith(SPEC_SUFFIXES)


def _globs(value: str | list[str]) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if any(not g.strip() for g in items):
        raise ValueError("empty glob")
    return items


class _SpecModel(StrictConfig):
    model_config = ConfigDict(populate_by_name=True)  # with StrictConfig's: unknown keys refused, frozen


class SplitSpec(_SpecModel):
    """The images of a split: listed in ``list`` (when given), matching any ``include`` glob and no
    ``exclude`` glob (globs on the image path under --root; ``*`` crosses folders)."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    file: str | None = Field(default=None, alias="list")

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _as_list(cls, v):
        return _globs(v) if isinstance(v, str | list) else v

    @field_validator("file")
    @classmethod
    def _relative(cls, v):
        reason = None if v is None else unsafe_part(v)
        if reason is not None:
            raise ValueError(f"list file {v!r} must be a path under --root ({reason})")
        return v

    def selects(self, path: str) -> bool:
        def hit(globs: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(path, g) for g in globs)

        return hit(self.include) and not hit(self.exclude)


LabelRule = tuple[str, str]


class DatasetSpec(_SpecModel):
    """The validated spec. Field order matters: ``taxonomy`` and the ignore lists are checked against
    ``encoding``, which is validated first."""

    name: Annotated[str, Field(pattern=SAFE_NAME)]
    encoding: Literal["id", "color", "palette"] = "id"
    taxonomy: str
    images: str
    label: list[LabelRule]
    splits: dict[Annotated[str, Field(pattern=SAFE_NAME)], SplitSpec] = Field(
        default_factory=lambda: {"all": SplitSpec()}
    )
    image_suffix: str | None = None
    ignore_ids: list[Annotated[int, Field(ge=0, le=65535)]] = Field(default_factory=list)
    ignore_colors: list[tuple[int, int, int]] = Field(default_factory=list)
    domain: str = "custom"
    description: str = ""
    homepage: str = ""
    licence: str = ""
    redistribution: Literal["allowed", "forbidden", "unknown"] = "unknown"

    @field_validator("name")
    @classmethod
    def _not_shipped(cls, v: str) -> str:
        from segunify.datasets.base import available_datasets

        if v in available_datasets():
            raise ValueError(f"{v!r} is the name of a shipped adapter; give this dataset a name of its own")
        return v

    @field_validator("taxonomy")
    @classmethod
    def _taxonomy(cls, v: str, info: ValidationInfo) -> str:
        """A shipped name stays a name; a CSV path is resolved from the spec's folder. The taxonomy
        must suit the encoding (raw ids for id/palette, distinct colours for color)."""
        context = info.context or {}
        if v not in available_taxonomies():
            v = str(resolve_path(v, context.get("base", "."), "taxonomy", context.get("path")))
        try:
            tax = load_taxonomy(v)
            if info.data.get("encoding") == "color":
                tax.color_table()
            else:
                tax.id_lut()
        except SegunifyError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("images")
    @classmethod
    def _images(cls, v: str) -> str:
        if re.search(r"[{}]", v.replace("{split}", "")):
            raise ValueError("only {split} may stand in braces")
        reason = unsafe_part(v.replace("{split}", "x"))
        if reason is not None:
            raise ValueError(f"must be a glob under --root ({reason})")
        return v

    @field_validator("label", mode="before")
    @classmethod
    def _one_rule(cls, v):
        """``[regex, replacement]`` is one rule; a list of such pairs is several."""
        return (
            [v] if isinstance(v, list | tuple) and len(v) == 2 and all(isinstance(x, str) for x in v) else v
        )

    @field_validator("splits", mode="before")
    @classmethod
    def _split_forms(cls, v):
        """``[train, val]`` (every image in each) and ``{name: GLOB | [GLOBS] | {include, exclude, list}}``."""
        if isinstance(v, list):
            return {name: {} for name in v} if all(isinstance(n, str) for n in v) else v
        if isinstance(v, dict):
            return {k: {"include": x} if isinstance(x, str | list) else x for k, x in v.items()}
        return v

    @field_validator("label")
    @classmethod
    def _rules(cls, rules: list[LabelRule]) -> list[LabelRule]:
        if not rules:
            raise ValueError("give at least one [regex, replacement] pair")
        for i, (pattern, replacement) in enumerate(rules):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"rule {i}: bad regular expression {pattern!r}: {exc}") from None
            for ref in re.findall(r"\\(\d+)|\\g<([^>]*)>", replacement):
                group = ref[0] or ref[1]
                known = int(group) <= compiled.groups if group.isdigit() else group in compiled.groupindex
                if not known:
                    raise ValueError(
                        f"rule {i}: replacement {replacement!r} names group {group}, not in the regex"
                    )
        return rules

    @field_validator("image_suffix")
    @classmethod
    def _suffix(cls, v):
        if v is not None and (not v or "/" in v or "\\" in v):
            raise ValueError(f"must be a file-name ending like '_leftImg8bit.jpg', got {v!r}")
        return v

    @field_validator("ignore_ids")
    @classmethod
    def _ids_need_ids(cls, v, info: ValidationInfo):
        if v and info.data.get("encoding") == "color":
            raise ValueError("colour labels have no ids: give ignore_colors")
        return v

    @field_validator("ignore_colors")
    @classmethod
    def _colors_need_colors(cls, v, info: ValidationInfo):
        if v and info.data.get("encoding") not in (None, "color"):
            raise ValueError(f"{info.data.get('encoding')} labels hold ids: give ignore_ids")
        if any(not 0 <= c <= 255 for rgb in v for c in rgb):
            raise ValueError("colour values must be 0..255")
        return v

    @field_validator("splits")
    @classmethod
    def _some_split(cls, v):
        if not v:
            raise ValueError("name at least one split")
        return v


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a spec file; any problem is one line naming the file, line and key."""
    path = Path(path)
    if not path.is_file():
        raise SegunifyError("dataset spec not found", path)
    context = {"base": path.resolve().parent, "path": path}
    spec = load_yaml_config(path, DatasetSpec, what="dataset spec", context=context)
    if "{split}" in spec.images and "splits" not in spec.model_fields_set:
        raise SegunifyError("images holds {split}: name the splits (splits: [train, val])", path)
    return spec


class SpecDataset(DatasetAdapter):
    """The adapter a spec describes. The class attributes of a Python adapter are instance attributes
    here (a plain class, so that DataLoader workers can pickle it)."""

    def __init__(self, root: str | Path, spec: DatasetSpec, spec_path: str | Path):
        self.spec, self.spec_path = spec, Path(spec_path)
        self.spec_sha256 = hashlib.sha256(self.spec_path.read_bytes()).hexdigest()
        self.name, self.taxonomy_name = spec.name, spec.taxonomy
        self.splits = tuple(spec.splits)
        self.label_encoding = LabelEncoding(spec.encoding)
        self.domain, self.description, self.homepage = spec.domain, spec.description, spec.homepage
        self.licence = spec.licence
        self.redistribution = {"allowed": True, "forbidden": False}.get(spec.redistribution)
        rules = "; ".join(f"{p} -> {r}" for p, r in spec.label)
        self.layout = f"images {spec.images!r} (labels {rules}; spec {self.spec_path})"
        self._found: dict[str, int] = {}
        self._taxonomy: Taxonomy | None = None
        super().__init__(root)

    @classmethod
    def from_file(cls, path: str | Path, root: str | Path) -> SpecDataset:
        return cls(root, load_spec(path), path)

    @property
    def taxonomy(self) -> Taxonomy:
        if self._taxonomy is None:
            self._taxonomy = load_taxonomy(self.taxonomy_name)
        return self._taxonomy

    @property
    def codec(self) -> IdCodec | ColorCodec:
        if self._codec is None:
            self._codec = (
                ColorCodec(self.taxonomy, ignore=self.spec.ignore_colors)
                if self.label_encoding is LabelEncoding.COLOR
                else IdCodec(self.taxonomy, ignore=self.spec.ignore_ids)
            )
        return self._codec

    def decode_label(self, raw, path):
        if self.label_encoding is not LabelEncoding.COLOR:
            raw = single_channel(raw, path)  # id labels saved as grey RGB read as one channel
        return self.codec.decode(raw, path)

    def expected_layout(self) -> str:
        found = {g: n for g, n in self._found.items() if n}
        if found:  # images were found, the splits chose none of them
            counts = ", ".join(f"{n} by {g!r}" for g, n in found.items())
            return f"{self.layout} under {self.root}; images found ({counts}) but no split selects any"
        return super().expected_layout()

    # ------------------------------------------------------------------------------------------ listing
    def _list(self, split):
        pattern = self.spec.images.replace("{split}", split)
        images = sorted(p for p in self.root.glob(pattern) if p.is_file())
        self._found[pattern] = len(images)
        rels = [p.relative_to(self.root).as_posix() for p in images]
        prefix = _fixed_prefix(pattern)
        ids = [self._id(rel, prefix) for rel in rels]
        chosen = self.spec.splits[split]
        listed = self._listed(chosen.file, rels, ids) if chosen.file else None
        out = []
        for image, rel, sid in zip(images, rels, ids, strict=True):
            if chosen.selects(rel) and (listed is None or rel in listed or sid in listed):
                out.append(self._pair(split, image, self._label_path(rel), [sid]))
        return out

    def _id(self, rel: str, prefix: str) -> str:
        below = rel[len(prefix) :]
        suffix = self.spec.image_suffix
        if suffix is None:
            return str(PurePosixPath(below).with_suffix(""))
        if not below.endswith(suffix) or len(below) == len(suffix):
            raise SegunifyError(f"image_suffix: image {rel!r} does not end in {suffix!r}", self.spec_path)
        return below[: -len(suffix)]

    def _listed(self, file: str, rels: list[str], ids: list[str]) -> set[str]:
        """The entries of a split's list file (first field per line, ``#`` lines skipped), each an image
        id or path under --root that ``images`` found."""
        path = inside(self.root, file, self.spec_path, what="split list")
        known = set(rels) | set(ids)
        entries: set[str] = set()
        for lineno, fields in list_lines(path, self.name):
            entry = fields[0]
            inside(self.root, entry, path, lineno, what="listed image")
            if entry not in known:
                raise SegunifyError(
                    f"listed image {entry!r} is not among the images matched by {self.spec.images!r}",
                    path,
                    lineno,
                )
            entries.add(entry)
        return entries

    def _label_path(self, rel: str) -> Path:
        """The label of the image at ``rel``: the first rule's path that exists, else the first rule's
        path (reported as missing)."""
        expected: Path | None = None
        for i, (pattern, replacement) in enumerate(self.spec.label):
            match = re.fullmatch(pattern, rel)
            if match is None:
                continue
            try:
                text = match.expand(replacement)
            except (re.error, IndexError) as exc:
                raise SegunifyError(
                    f"label.{i}: replacement {replacement!r}: {exc}", self.spec_path
                ) from None
            path = inside(self.root, text, self.spec_path, what=f"label path (label rule {i}, image {rel!r})")
            if text == rel:
                raise SegunifyError(f"label rule {i} maps image {rel!r} to itself", self.spec_path)
            if path.is_file():
                return path
            expected = expected or path
        if expected is None:
            raise SegunifyError(f"label: no rule's regex matches image path {rel!r}", self.spec_path)
        return expected


def _fixed_prefix(pattern: str) -> str:
    """The folders of a glob before its first wildcard, with a trailing ``/`` (``''`` for none)."""
    parts = PurePosixPath(pattern).parts[:-1]
    fixed = []
    for part in parts:
        if _MAGIC.search(part):
            break
        fixed.append(part)
    return "".join(f"{p}/" for p in fixed)
