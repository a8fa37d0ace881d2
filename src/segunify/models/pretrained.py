"""Pretrained weights as data: one ``<family>.pretrained.json`` beside each model family (timm-style).

Each entry names a published weights file and everything needed to turn it into a segunify checkpoint
without flags: the registry model and its options, the file's name (looked up under
``SEGUNIFY_DATA/weights``), size and sha256, the taxonomy its classifier predicts, the input size and
normalisation it was trained with (the classifier's keys are the family's: ``classifier_keys``).
Entry names follow ``<model>_<variant>.<taxonomy>``, e.g. ``espnetv2_s2.0.cityscapes``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segunify.errors import SegunifyError
from segunify.io import sha256_file

SUFFIX = ".pretrained.json"


class PretrainedWeights(BaseModel):
    """One published weights file (a row of a family's table)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True)

    name: str
    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    file: str
    size_bytes: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    taxonomy: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    origin: str
    license: str
    notes: str = ""

    def locate(self) -> Path:
        """The file under ``SEGUNIFY_DATA/weights`` (one clear line when it is missing)."""
        from segunify.paths import weights_path

        return weights_path(self.file)

    def verify(self, path: str | Path) -> None:
        """Refuse a file whose bytes are not the published ones (a different or damaged download)."""
        path = Path(path)
        size = path.stat().st_size
        if size != self.size_bytes or sha256_file(path) != self.sha256:
            raise SegunifyError(
                f"not the published file of {self.name!r} ({size} bytes, sha256 differs from the table's "
                f"{self.sha256[:16]}...); give --model and the model options to import another file",
                path,
            )


@cache
def pretrained_table() -> dict[str, PretrainedWeights]:
    """Every entry of every family's table, by name."""
    table: dict[str, PretrainedWeights] = {}
    for res in sorted(resources.files("segunify.models").iterdir(), key=lambda r: r.name):
        if not res.name.endswith(SUFFIX):
            continue
        for name, entry in json.loads(res.read_text(encoding="utf-8")).items():
            if name in table:
                raise SegunifyError(f"pretrained weights {name!r} listed twice", res.name)
            try:
                table[name] = PretrainedWeights(name=name, **entry)
            except ValidationError as exc:
                raise SegunifyError(f"bad entry {name!r}: {exc.errors()[0]['msg']}", res.name) from None
    return table


def get_pretrained(name: str) -> PretrainedWeights:
    table = pretrained_table()
    if name not in table:
        raise SegunifyError(f"unknown pretrained weights {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def identify(path: str | Path) -> PretrainedWeights | None:
    """The table entry whose size and sha256 match the file at ``path``, if any."""
    size = Path(path).stat().st_size
    candidates = [e for e in pretrained_table().values() if e.size_bytes == size]
    if not candidates:
        return None
    digest = sha256_file(path)
    return next((e for e in candidates if e.sha256 == digest), None)


def check_agrees(
    entry: PretrainedWeights,
    model: str | None,
    model_kwargs: dict[str, Any] | None,
    taxonomy: str | None,
    where: str | Path | None = None,
) -> None:
    """Options given for a listed file must be the entry's (a different one would build a wrong model)."""
    given = {"model": (model, entry.model), "taxonomy": (taxonomy, entry.taxonomy)}
    given.update({f"option {k}": (v, entry.model_kwargs.get(k)) for k, v in (model_kwargs or {}).items()})
    clash = [
        f"{flag} {have} (the file needs {want})"
        for flag, (have, want) in given.items()
        if have not in (None, want)
    ]
    if clash:
        raise SegunifyError(f"these are the weights {entry.name!r}: {'; '.join(clash)}", where)


def import_weights(
    src: str | Path,
    out: str | Path,
    entry: PretrainedWeights | None = None,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    taxonomy: str | None = None,
    input_size: tuple[int, int] | None = None,
    overwrite: bool = False,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
):
    """Turn a weights file into a segunify checkpoint at ``out``; returns ``(folder, model, meta)``.

    ``entry`` (a table row) supplies model, options, taxonomy, input size and normalisation; without it
    (a file the table does not list) ``model`` and ``taxonomy`` are needed (normalisation: the family's
    unless ``mean``/``std`` are given). ``mean``/``std``/``input_size`` override the entry's. The classifier must survive:
    weights whose head does not fit the taxonomy are refused rather than given a random head.
    """
    from segunify.models import create_model
    from segunify.models.checkpoint import WeightsSource, build_meta, check_target, save_checkpoint
    from segunify.outputs import check_apart
    from segunify.taxonomy import load_taxonomy

    src = Path(src)
    if entry is not None:
        check_agrees(entry, model, model_kwargs, taxonomy, src)
    check_apart([out], [(src, "the weights file")])
    check_target(out, overwrite)  # before the slow part: a refused folder costs nothing
    name = entry.model if entry else model
    kwargs = dict(entry.model_kwargs) if entry else dict(model_kwargs or {})
    tax = load_taxonomy(entry.taxonomy if entry else taxonomy)  # type: ignore[arg-type]
    net = create_model(name, tax.num_classes, weights=src, **kwargs).eval()  # type: ignore[arg-type]
    head = getattr(net, "weights_loaded", "full")
    if head == "encoder-decoder":
        raise SegunifyError(
            f"the weights' classifier does not fit taxonomy {tax.name!r} ({tax.num_classes} classes); "
            "an imported checkpoint must keep its trained head",
            src,
        )
    source = WeightsSource(
        file=src.name, sha256=sha256_file(src), head=head, pretrained=entry.name if entry else None
    )
    meta = build_meta(
        net,
        {
            "taxonomy": tax,
            "mean": mean or (entry.mean if entry else net.input_mean),
            "std": std or (entry.std if entry else net.input_std),
            "input_size": input_size or (entry.input_size if entry else None),
            "source": source,
        },
    )
    return save_checkpoint(out, net, meta, overwrite=overwrite), net, meta


__all__ = [
    "PretrainedWeights",
    "check_agrees",
    "get_pretrained",
    "identify",
    "import_weights",
    "pretrained_table",
]
