"""GOOSE 2D (and GOOSE-Ex): ``images/<split>/<scenario>/<name>_<camera>.png`` and
``labels/<split>/<scenario>/<name>_labelids.png`` (8-bit class ids 0..63), as unpacked from the
release archives (goose-dataset.de, "2D Image Annotations"). ``<camera>`` is ``windshield_vis`` in GOOSE
and ``camera_left``, ``front`` or ``realsense`` in GOOSE-Ex. The labelled official splits are train and
val; the test images have no public labels and are not listed. ``*_color.png`` is not read: two GOOSE
classes share a colour (see taxonomies/goose.csv).

``classes="offroad"`` reads the same labels in the paper's 34-class off-road set (the taxonomy the
off-road teacher is trained in), through ``mappings/goose__offroad.csv``, where every GOOSE class allows
at most one off-road class.
"""

from __future__ import annotations

import numpy as np

from segunify.datasets._offroad import require_dir, single_channel
from segunify.datasets.base import DatasetAdapter, register_dataset
from segunify.errors import SegunifyError
from segunify.labels import IdCodec
from segunify.mapping import load_mapping
from segunify.taxonomy import load_taxonomy

CAMERAS = ("_windshield_vis", "_camera_left", "_front", "_realsense")


def frame_name(image_stem: str) -> str:
    """``<name>_<camera>`` -> ``<name>``: the part that label files repeat."""
    for suffix in CAMERAS:
        if image_stem.endswith(suffix):
            return image_stem[: -len(suffix)]
    return image_stem


@register_dataset
class Goose(DatasetAdapter):
    name = "goose"
    taxonomy_name = "goose"
    splits = ("train", "val")
    domain = "offroad"
    description = "GOOSE / GOOSE-Ex 2D (64 classes, 8-bit *_labelids.png, 2048x1024)"
    homepage = "https://goose-dataset.de"
    layout = (
        "images/<split>/<scenario>/<name>_<camera>.png with labels/<split>/<scenario>/<name>_labelids.png"
    )

    def __init__(self, root, classes: str = "goose"):
        super().__init__(root)
        if classes not in ("goose", "offroad"):
            raise SegunifyError(f"goose: classes must be 'goose' or 'offroad', got {classes!r}")
        self._to_classes: np.ndarray | None = None
        if classes == "offroad":
            self.taxonomy_name = "offroad"
            self._to_classes = load_mapping("goose__offroad").one_to_one_lut()

    def _list(self, split):
        images = require_dir(self.root / "images" / split, "GOOSE 2D layout: images/<split>/<scenario>/")
        labels = self.root / "labels" / split
        out = []
        for img in images.glob("*/*.png"):
            frame = frame_name(img.stem)
            label = labels / img.parent.name / f"{frame}_labelids.png"
            out.append(self._pair(split, img, label, [split, img.parent.name, frame]))
        return out

    @property
    def codec(self) -> IdCodec:
        """Always GOOSE's own ids: the files hold them whatever taxonomy the labels are read in."""
        if self._codec is None:
            self._codec = IdCodec(load_taxonomy("goose"))
        return self._codec

    def decode_label(self, raw, path):
        goose = self.codec.decode(single_channel(raw, path), path)
        return goose if self._to_classes is None else self._to_classes[goose]
