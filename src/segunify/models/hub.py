"""Hugging Face hub checkpoints as teachers: a local ``from_pretrained`` folder (``config.json`` +
``model.safetensors`` [+ ``preprocessor_config.json``], as ``huggingface-cli download`` leaves it) of a
SegFormer or Mask2Former becomes a segunify checkpoint in one step, and nothing else is guessed:

* **family and sizes** from ``config.json`` (``model_type``; the whole config is recorded, so the
  checkpoint rebuilds the same architecture);
* **taxonomy** from ``id2label``: the class names, in order, must be those of a shipped taxonomy (or of
  ``--taxonomy``), compared without case, ``_``/``-`` or spaces; a head whose classes are in another
  order or number is refused naming the first index that disagrees, never re-ordered;
* **normalisation and input size** from ``preprocessor_config.json`` (HF's rescale + normalise, rewritten
  in segunify's units: ``(pixel / 255 - mean) / std``); without that file, or where it resizes keeping
  the aspect ratio, they must be given;
* **safetensors only**: a folder holding only ``pytorch_model.bin`` (a pickle) is refused.

The table of known hub ids (size, licence, the download command) is data: ``hub.json`` beside this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segunify.errors import SegunifyError
from segunify.jsonio import read_json_object
from segunify.taxonomy import Taxonomy, available_taxonomies, load_taxonomy

TABLE = "hub.json"
CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
FAMILIES = ("segformer", "mask2former")


class HubWeights(BaseModel):
    """One known hub checkpoint (a row of ``hub.json``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True)

    id: str
    model: str
    taxonomy: str
    size_mb: float | None = None
    revision: str | None = None
    license: str
    notes: str = ""

    def command(self, folder: str = "DIR") -> str:
        """The download command (run by the user; segunify never downloads)."""
        rev = f" --revision {self.revision}" if self.revision else ""
        return f"huggingface-cli download {self.id}{rev} --local-dir {folder}"


class HubTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    about: str = ""
    weights: dict[str, dict[str, Any]]
    label_names: dict[str, list[str]] = Field(default_factory=dict)


@cache
def _table() -> HubTable:
    text = (resources.files("segunify.models") / TABLE).read_text(encoding="utf-8")
    try:
        return HubTable.model_validate(json.loads(text))
    except (ValidationError, ValueError) as exc:
        raise SegunifyError(f"bad hub table: {str(exc).splitlines()[0]}", TABLE) from None


@cache
def hub_table() -> dict[str, HubWeights]:
    """Every known hub checkpoint, by hub id."""
    try:
        return {k: HubWeights(id=k, **v) for k, v in _table().weights.items()}
    except ValidationError as exc:
        raise SegunifyError(f"bad hub table entry: {exc.errors()[0]['msg']}", TABLE) from None


def label_names(taxonomy: Taxonomy) -> list[list[str]]:
    """The class-name lists a hub config may use for ``taxonomy``: its own, and the table's for it."""
    return [
        list(taxonomy.classes),
        *([_table().label_names[taxonomy.name]] if taxonomy.name in _table().label_names else []),
    ]


# ------------------------------------------------------------------------------------------- taxonomy


def normalise_name(name: str) -> str:
    """``"Traffic_Light"`` -> ``"traffic light"``: case, underscores, dashes and spaces do not count."""
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower()).strip()


def id2label_names(config: dict, where: Path) -> list[str]:
    """Class names by index from ``config.json``'s ``id2label`` (indices must be 0..N-1)."""
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise SegunifyError("config.json has no id2label: the head's classes are unknown", where)
    try:
        by_index = {int(k): str(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise SegunifyError("config.json id2label keys must be class indices 0..N-1", where) from None
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise SegunifyError(f"config.json id2label lacks index {missing[0]} (indices must be 0..N-1)", where)
    return [by_index[i] for i in range(len(by_index))]


def _difference(labels: list[str], names: list[str], tax: str) -> str | None:
    """The first disagreement of ``labels`` (id2label) with a taxonomy's ``names``, or None."""
    for i, (have, want) in enumerate(zip(labels, names, strict=False)):
        if normalise_name(have) != normalise_name(want):
            return f"id2label[{i}] is {have!r}, taxonomy {tax} has {want!r} at {i}"
    n, m = len(labels), len(names)
    if n < m:
        return f"id2label has {n} classes, taxonomy {tax} has {m} (it lacks {names[n]!r} at {n})"
    if n > m:
        return f"id2label has {n} classes, taxonomy {tax} has {m} (id2label[{m}] is {labels[m]!r})"
    return None


def _agreement(labels: list[str], names: list[str]) -> tuple[int, int]:
    same = sum(normalise_name(a) == normalise_name(b) for a, b in zip(labels, names, strict=False))
    return same, -abs(len(labels) - len(names))


def match_taxonomy(labels: list[str], taxonomy: str | None, where: Path) -> Taxonomy:
    """The taxonomy whose classes are ``labels`` in this order: ``taxonomy`` checked, or found among the
    shipped ones (the hub table's first); otherwise one line naming the first disagreeing index of the
    closest candidate."""
    fix = (
        " (a head is never re-ordered or cut: give --taxonomy a taxonomy CSV of these classes in this order)"
    )
    # the hub's source taxonomies first: BDD100K and KITTI share Cityscapes' 19 classes
    order = dict.fromkeys([e.taxonomy for e in hub_table().values()] + available_taxonomies())
    candidates = [load_taxonomy(taxonomy)] if taxonomy else [load_taxonomy(n) for n in order]
    scored = []
    for tax in candidates:
        for names in label_names(tax):
            if _difference(labels, names, tax.name) is None:
                return tax
            scored.append((_agreement(labels, names), tax, names))
    _, tax, names = max(scored, key=lambda s: s[0])
    what = f"do not match taxonomy {tax.name!r}" if taxonomy else "match no shipped taxonomy"
    raise SegunifyError(
        f"config.json's {len(labels)} classes {what}: {_difference(labels, names, tax.name)}{fix}", where
    )


# ------------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """Normalisation in segunify's units and the input size (None: each image at its own size)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int] | None
    origin: str  # preprocessor_config.json, the flags, or both


def _triple(value: Any, key: str, where: Path) -> tuple[float, float, float]:
    vals = [value] * 3 if isinstance(value, int | float) else value
    if (
        not isinstance(vals, list | tuple)
        or len(vals) != 3
        or not all(isinstance(v, int | float) for v in vals)
    ):
        raise SegunifyError(f"{PREPROCESSOR}: {key} must be 3 numbers, got {value!r}", where)
    return (float(vals[0]), float(vals[1]), float(vals[2]))


def _normalisation(
    pre: dict, where: Path
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """HF's ``(pixel * rescale_factor - image_mean) / image_std`` as segunify's ``(pixel / 255 - mean) / std``."""
    factor = pre.get("rescale_factor", 1 / 255) if pre.get("do_rescale", True) else 1.0
    if not isinstance(factor, int | float) or factor <= 0:
        raise SegunifyError(
            f"{PREPROCESSOR}: rescale_factor must be a positive number, got {factor!r}", where
        )
    if not pre.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    elif "image_mean" not in pre or "image_std" not in pre:
        return None
    else:
        mean, std = (
            _triple(pre["image_mean"], "image_mean", where),
            _triple(pre["image_std"], "image_std", where),
        )
    scale = 255.0 * factor  # 1.0 for the usual rescale by 1/255
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)  # type: ignore[return-value]


def _size(pre: dict, family: str) -> tuple[int, int] | None | str:
    """The fixed (H, W) the processor resizes to, None (no resize), or why there is none."""
    if not pre.get("do_resize", True):
        return None
    size = pre.get("size")
    if isinstance(size, dict) and {"height", "width"} <= set(size):
        return int(size["height"]), int(size["width"])
    if isinstance(size, int) and family == "segformer":  # SegFormer's processor: an int is a square
        return size, size
    if isinstance(size, int) or (isinstance(size, dict) and "shortest_edge" in size):
        return "it resizes the shortest edge keeping the aspect ratio"
    return f"its size is {size!r}"


def preprocessing(
    folder: Path,
    family: str,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    size: tuple[int, int] | None,
) -> Preprocessing:
    """Normalisation and input size: the flags where given, else ``preprocessor_config.json``; refused
    when neither says (never a silent default)."""
    if (mean is None) != (std is None):
        raise SegunifyError("give mean and std together")
    path = folder / PREPROCESSOR
    pre = read_json_object(path, "preprocessor config") if path.is_file() else None
    norm = (mean, std) if mean is not None else (_normalisation(pre, path) if pre is not None else None)
    fixed = size if size is not None else (_size(pre, family) if pre is not None else "no file")
    if norm is None:
        from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD

        imagenet = " and ".join(",".join(map(str, v)) for v in (IMAGENET_MEAN, IMAGENET_STD))
        hint = f"mean and std (R,G,B in 0-1 units; ImageNet's: {imagenet})"
        lacks = f"no {PREPROCESSOR}" if pre is None else "it has no image_mean/image_std"
        more = "" if size else " and size (H,W)"
        raise SegunifyError(
            f"{lacks}: the normalisation is unknown; give {hint}{more}", path if pre else folder
        )
    if fixed == "no file":
        raise SegunifyError(f"no {PREPROCESSOR}: the input size is unknown; give size (H,W)", folder)
    if isinstance(fixed, str):
        raise SegunifyError(f"no fixed input size ({fixed}); give size (H,W)", path)
    # the record keeps the words of the files written so far (a checkpoint's meta.json stays as it was)
    given = [f for f, v in (("--mean/--std", mean), ("--size", size)) if v is not None]
    origin = " + ".join(([PREPROCESSOR] if pre is not None and len(given) < 2 else []) + given)
    return Preprocessing(norm[0], norm[1], fixed, origin)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- the import


def read_config(folder: Path) -> dict:
    path = folder / CONFIG
    if not path.is_file():
        raise SegunifyError(f"not a from_pretrained folder: {CONFIG} missing", folder)
    config = read_json_object(path, "model config")
    family = config.get("model_type")
    if family not in FAMILIES:
        raise SegunifyError(
            f"config.json model_type {family!r} is not supported (known: {', '.join(FAMILIES)})", path
        )
    return config


def registry_model(config: dict) -> tuple[str, dict]:
    """The registry name and options that build the folder's architecture (its sizes passed as ``config``
    where they are not one of the family's presets)."""
    from segunify.models.mask2former import SWIN_PRESETS
    from segunify.models.segformer import VARIANTS

    if config["model_type"] == "segformer":
        for variant, preset in VARIANTS.items():
            if all(config.get(k) == v for k, v in preset.items()):
                return f"segformer-{variant}", {}
        return "segformer-b0", {"config": {k: config.get(k) for k in VARIANTS["b0"]}}
    backbone = config.get("backbone_config") or {}
    if backbone.get("model_type", "swin") != "swin":
        raise SegunifyError(
            f"Mask2Former with a {backbone.get('model_type')!r} backbone: only Swin is supported"
        )
    name = next(
        (k for k, p in SWIN_PRESETS.items() if all(backbone.get(a) == b for a, b in p.items())), "swin-b"
    )
    return "mask2former", {"backbone": name}


def identify_hub(config: dict) -> str | None:
    """The table's hub id named by ``config.json``'s ``_name_or_path``, if any."""
    name = str(config.get("_name_or_path") or "")
    return name if name in hub_table() else None


def import_hub_folder(
    folder: str | Path,
    out: str | Path,
    *,
    taxonomy: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
):
    """Turn a ``from_pretrained`` folder into a segunify checkpoint at ``out``; returns
    ``(folder, model, meta, preprocessing)``. Everything is checked before the weights are read."""
    from segunify.io import sha256_file
    from segunify.models import create_model
    from segunify.models.checkpoint import WeightsSource, build_meta, check_target, save_checkpoint
    from segunify.models.hf_common import safetensors_weights

    folder = Path(folder)
    config = read_config(folder)
    tax = match_taxonomy(id2label_names(config, folder / CONFIG), taxonomy, folder / CONFIG)
    weights = safetensors_weights(folder)
    prep = preprocessing(folder, config["model_type"], mean, std, size)
    check_target(out, overwrite)
    name, kwargs = registry_model(config)
    net = create_model(name, tax.num_classes, weights=folder, **kwargs).eval()
    if getattr(net, "weights_loaded", "full") != "full":
        raise SegunifyError("the weights' classifier does not fit id2label's class count", folder)
    source = WeightsSource(
        file=weights.name,
        sha256=sha256_file(weights),
        head="full",
        pretrained=identify_hub(config),
        folder=str(folder.resolve()),
        preprocessing=prep.origin,
    )
    meta = build_meta(
        net,
        {
            "taxonomy": tax,
            "mean": prep.mean,
            "std": prep.std,
            "input_size": prep.input_size,
            "source": source,
        },
    )
    return save_checkpoint(out, net, meta, overwrite=overwrite), net, meta, prep


__all__ = [
    "HubWeights",
    "Preprocessing",
    "hub_table",
    "id2label_names",
    "import_hub_folder",
    "match_taxonomy",
    "normalise_name",
    "preprocessing",
]
