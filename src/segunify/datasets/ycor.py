"""Yamaha-CMU Off-Road (YCOR): ``yamaha_v0/{train,valid}/iidNNNNNN/rgb.jpg`` with an RGB colour-coded
``labels.png`` beside it, as unpacked from yamaha_v0.zip (theairlab.org/yamaha-offroad-dataset).
Official splits: train (the ``train`` folder) and val (the ``valid`` folder).
"""

from __future__ import annotations

from segunify.datasets._offroad import require_dir
from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset

FOLDERS = {"train": "train", "val": "valid"}


@register_dataset
class Ycor(DatasetAdapter):
    name = "ycor"
    taxonomy_name = "ycor"
    splits = ("train", "val")
    label_encoding = LabelEncoding.COLOR
    domain = "offroad"
    description = "Yamaha-CMU Off-Road (8 classes + background, colour-coded labels, 1024x544)"
    homepage = "https://theairlab.org/yamaha-offroad-dataset/"
    layout = "{train,valid}/iid*/rgb.jpg with labels.png beside it"

    def _list(self, split):
        base = require_dir(self.root / FOLDERS[split], f"YCOR layout: yamaha_v0/{FOLDERS[split]}/iid*/")
        out = []
        for folder in base.iterdir():
            img = folder / "rgb.jpg"
            if folder.is_dir() and img.exists():
                label = folder / "labels.png"
                out.append(self._pair(split, img, label, [split, folder.name]))
        return out
