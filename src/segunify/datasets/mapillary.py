"""Mapillary Vistas v1.2 and v2.0: ``<split>/images/<key>.jpg`` and ``<split>/<version>/labels/<key>.png``.

The v2.0 release ships both label versions side by side (``training/v1.2/labels``, ``training/v2.0/labels``);
the v1.x releases had ``training/labels`` directly, which the v1.2 adapter also reads. Label PNGs are 8-bit
*palette* PNGs whose pixel index is the label id. OpenCV versions differ in whether they expand a palette to
colours, and v2.0 has classes that share a colour, so these labels are read with Pillow, as indices. A v1.2
label saved as RGB (e.g. re-encoded by another tool) is still decoded, by colour, since every v1.2 colour is
unique; a v2.0 RGB label is an error. ``testing`` has no labels and is therefore not a split here.

The release's label list (``config_<version>.json``; ``config.json`` in the v1.x releases) is checked against
the taxonomy file: the same names, in the same order (index = label id), with the same colours. A mismatch
(e.g. a v2.0 folder given to the v1.2 adapter) is an error naming the config file, not labels decoded with
another version's classes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, Sample, register_dataset
from segunify.errors import SegunifyError
from segunify.labels import ColorCodec, check_pixels

FOLDERS = {"train": "training", "val": "validation"}


def read_label_pil(path: Path) -> tuple[np.ndarray, str]:
    """A label PNG as Pillow decodes it: pixel indices for palette/grey PNGs (never their colours), RGB
    otherwise; with the PNG mode."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise SegunifyError("label file not found", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SegunifyError(f"cannot read label: {exc.strerror or exc}", path) from None
    check_pixels(data, path, "label")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode in ("P", "L"):
                return np.asarray(im, dtype=np.uint8), im.mode
            if im.mode in ("RGB", "RGBA"):
                return np.asarray(im.convert("RGB"), dtype=np.uint8), im.mode
            raise SegunifyError(
                f"expected an 8-bit palette/index label (PNG mode P or L), got mode {im.mode}", path
            )
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise SegunifyError(f"cannot decode label (corrupt or not an image): {exc}", path) from None


class _MapillaryVistas(DatasetAdapter):
    splits = ("train", "val")
    label_encoding = LabelEncoding.PALETTE
    homepage = "https://www.mapillary.com/dataset/vistas"
    layout = "{training,validation}/images/*.jpg with <same folder>/<version>/labels/<key>.png (v1.2 also <same folder>/labels/)"
    version: str
    colours_unique: bool = False

    def _label_dir(self, split_dir: Path) -> Path:
        return split_dir / self.version / "labels"

    def config_path(self) -> Path | None:
        """This version's label list in the release, if there: ``config_<version>.json``, else ``config.json``.
        Only another version's ``config_v*.json`` there means the folder is of that version: an error."""
        for path in (self.root / f"config_{self.version}.json", self.root / "config.json"):
            if path.is_file():
                return path
        others = sorted(p.name for p in self.root.glob("config_v*.json"))
        if others:
            raise SegunifyError(
                f"no config_{self.version}.json here, only {', '.join(others)}: a release of another version "
                f"(use that version's adapter)",
                self.root / others[0],
            )
        return None

    def check_config(self) -> None:
        """The release's labels (name and colour, in id order) must be the taxonomy's rows."""
        path = self.config_path()
        if path is None:
            return
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["labels"]
            found = [(str(e["name"]), tuple(int(c) for c in e["color"])) for e in entries]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise SegunifyError(
                f"not a Vistas config (labels[].name, labels[].color): {exc!r}", path
            ) from None
        rows = [(lab.name, lab.color) for lab in sorted(self.taxonomy.labels, key=lambda lab: lab.id or 0)]
        where = f"taxonomy {self.taxonomy_name!r}"
        if len(found) != len(rows):
            raise SegunifyError(
                f"{len(found)} labels here but {len(rows)} in {where}: a release of another version?", path
            )
        for i, ((name, color), (want_name, want_color)) in enumerate(zip(found, rows, strict=True)):
            if name != want_name:
                raise SegunifyError(f"label {i} is {name!r} here but {want_name!r} in {where}", path)
            if color != want_color:
                raise SegunifyError(
                    f"label {i} ({name}) has colour {color} here but {want_color} in {where}", path
                )

    def _list(self, split):
        self.check_config()
        split_dir = self.root / FOLDERS[split]
        label_dir = self._label_dir(split_dir)
        out = []
        for img in (split_dir / "images").glob("*.jpg"):
            label = label_dir / f"{img.stem}.png"
            out.append(self._pair(split, img, label, [split, img.stem]))
        return out

    def load_label(self, sample: Sample) -> np.ndarray:
        if sample.label is None:
            raise SegunifyError(f"sample {sample.id!r}: {sample.missing_label()}", sample.image)
        arr, mode = read_label_pil(sample.label)
        if arr.ndim == 2:
            return self.decode_label(arr, sample.label)
        if self.colours_unique:
            return ColorCodec(self.taxonomy).decode(arr, sample.label)
        raise SegunifyError(
            f"expected an 8-bit palette/index label (PNG mode P or L), got mode {mode}; "
            f"{self.version} colours are ambiguous (several classes share one), so colours cannot be decoded",
            sample.label,
        )


@register_dataset
class MapillaryVistas12(_MapillaryVistas):
    name = "mapillary-vistas-v1.2"
    taxonomy_name = "mapillary-vistas-v1.2"
    version = "v1.2"
    colours_unique = True
    description = "Mapillary Vistas v1.2 (65 classes + unlabeled, palette PNG labels)"

    def _label_dir(self, split_dir: Path) -> Path:
        nested = split_dir / "v1.2" / "labels"
        return nested if nested.is_dir() else split_dir / "labels"


@register_dataset
class MapillaryVistas20(_MapillaryVistas):
    name = "mapillary-vistas-v2.0"
    taxonomy_name = "mapillary-vistas-v2.0"
    version = "v2.0"
    description = "Mapillary Vistas v2.0 (123 classes + unlabeled, palette PNG labels)"
