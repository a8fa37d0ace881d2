"""WildScenes 2D: ``WildScenes2d/<seq>/image/<stamp>.png`` images and
``WildScenes2d/<seq>/indexLabel/<stamp>.png`` labels (8-bit class index 0..18), as downloaded from the
CSIRO data portal. Official splits: ``data/splits/opt2d/{train,val,test}.csv`` of the WildScenes GitHub
repository (columns ``id,im_path,label_path``; paths start with ``/WildScenes2d/``); copy that ``splits``
folder into the dataset root, or give ``split_dir=``. ``all`` lists every image without the split files.
The root is the folder holding ``WildScenes2d`` (the folder itself is accepted too).
"""

from __future__ import annotations

from pathlib import Path

from segunify.datasets._offroad import csv_rows, require_dir, single_channel
from segunify.datasets.base import DatasetAdapter, inside, register_dataset
from segunify.errors import SegunifyError

TOP = "WildScenes2d"


@register_dataset
class WildScenes2d(DatasetAdapter):
    name = "wildscenes2d"
    taxonomy_name = "wildscenes2d"
    splits = ("train", "val", "test", "all")
    domain = "offroad"
    description = "WildScenes 2D (18 classes + unlabelled, 8-bit indexLabel PNGs, 2016x1512)"
    homepage = "https://github.com/csiro-robotics/WildScenes"
    layout = (
        "WildScenes2d/<seq>/image/*.png with WildScenes2d/<seq>/indexLabel/<same>.png; splits from "
        "splits/opt2d/<split>.csv"
    )

    def __init__(self, root, split_dir: str | Path | None = None):
        super().__init__(root)
        self.base = (
            self.root.parent if self.root.name == TOP and not (self.root / TOP).is_dir() else self.root
        )
        self.split_dir = Path(split_dir) if split_dir else self.base / "splits" / "opt2d"

    def _list(self, split):
        top = require_dir(self.base / TOP, "WildScenes layout: WildScenes2d/<seq>/image/")
        if split == "all":
            out = []
            for img in top.glob("*/image/*.png"):
                label = img.parent.parent / "indexLabel" / img.name
                out.append(self._pair(split, img, label, [img.parent.parent.name, img.stem]))
            return out
        out = []
        csv_path = self.split_dir / f"{split}.csv"
        for lineno, row in csv_rows(
            csv_path, ("id", "im_path", "label_path"), f"official {split} split (data/splits/opt2d)"
        ):
            img, label = (self._listed(row[key], csv_path, lineno) for key in ("im_path", "label_path"))
            out.append(self._pair(split, img, label, [img.parent.parent.name, img.stem]))
        return out

    def _listed(self, text: str, csv_path: Path, lineno: int) -> Path:
        """A split file's path (``/WildScenes2d/<seq>/...``): contained in the release folder."""
        rel = text.lstrip("/")
        path = inside(self.base, rel, csv_path, lineno)
        if not rel.startswith(f"{TOP}/"):
            raise SegunifyError(f"path {text!r} is not under /{TOP}/", csv_path, lineno)
        return path

    def decode_label(self, raw, path):
        return self.codec.decode(single_channel(raw, path), path)
