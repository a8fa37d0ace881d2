"""Freiburg Forest (DeepScene): ``freiburg_forest_annotated/{train,test}/rgb/<name>_Clipped.jpg`` images
and RGB colour-coded ``GT_color`` labels, as unpacked from freiburg_forest_annotated.tar.gz. The release
names the labels two ways: ``GT_color/<name>_mask.png`` (train) and ``GT_color/<name>_Clipped.png``
(test); both are found. Official splits: train (230) and test (136).
"""

from __future__ import annotations

from segunify.datasets._offroad import require_dir
from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset

SUFFIX = "_Clipped"


@register_dataset
class FreiburgForest(DatasetAdapter):
    name = "freiburg-forest"
    taxonomy_name = "freiburg-forest"
    splits = ("train", "test")
    label_encoding = LabelEncoding.COLOR
    domain = "offroad"
    description = "Freiburg Forest (5 classes + void, colour-coded GT_color labels, ~1000x500)"
    homepage = "http://deepscene.cs.uni-freiburg.de"
    layout = "<split>/rgb/<name>_Clipped.jpg with <split>/GT_color/<name>_mask.png or <name>_Clipped.png"

    def _list(self, split):
        rgb = require_dir(
            self.root / split / "rgb", "Freiburg Forest layout: freiburg_forest_annotated/<split>/rgb/"
        )
        gt = self.root / split / "GT_color"
        out = []
        for img in [*rgb.glob("*.jpg"), *rgb.glob("*.png")]:
            name = img.stem[: -len(SUFFIX)] if img.stem.endswith(SUFFIX) else img.stem
            candidates = (gt / f"{name}_mask.png", gt / f"{name}{SUFFIX}.png", gt / f"{img.stem}.png")
            label = next((c for c in candidates if c.is_file()), candidates[0])
            out.append(self._pair(split, img, label, [split, name]))
        return out
