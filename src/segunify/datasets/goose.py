"""GOOSE 2D (and GOOSE-Ex): ``images/<split>/<scenario>/<name>_<camera>.png`` and
``labels/<split>/<scenario>/<name>_labelids.png`` (8-bit class ids 0..63), as unpacked from the
release archives (goose-dataset.de, "2D Image Annotations"). ``<camera>`` is ``windshield_vis`` in GOOSE
and ``camera_left``, ``front`` or ``realsense`` in GOOSE-Ex. The labelled official splits are train and
val; the test images have no public labels and are not listed. ``*_color.png`` is not read: two GOOSE
classes share a colour (see taxonomies/goose.csv).
"""

from __future__ import annotations

from segunify.datasets._offroad import require_dir, single_channel
from segunify.datasets.base import DatasetAdapter, register_dataset

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

    def _list(self, split):
        images = require_dir(self.root / "images" / split, "GOOSE 2D layout: images/<split>/<scenario>/")
        labels = self.root / "labels" / split
        out = []
        for img in images.glob("*/*.png"):
            frame = frame_name(img.stem)
            label = labels / img.parent.name / f"{frame}_labelids.png"
            out.append(
                self._sample(split, img, label if label.exists() else None, [split, img.parent.name, frame])
            )
        return out

    def decode_label(self, raw, path):
        return self.codec.decode(single_channel(raw, path), path)
