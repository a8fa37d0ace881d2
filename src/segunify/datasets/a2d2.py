"""A2D2 semantic segmentation: ``camera_lidar_semantic/<YYYYMMDD_hhmmss>/camera/cam_<view>/
<YYYYMMDDhhmmss>_camera_<view>_<frame>.png`` images and the same path with ``label`` for ``camera`` (folder and
file name) for the RGB colour-coded labels, decoded through the colours of ``class_list.json``.

A2D2 publishes no train/val split, so there is one split, ``all``. The root may be the folder holding
``camera_lidar_semantic`` or that folder itself. When the release's ``class_list.json`` is present, it is
compared with the shipped taxonomy so that a changed class list is reported instead of mis-decoded.
"""

from __future__ import annotations

import json
from pathlib import Path

from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset
from segunify.errors import SegunifyError

FOLDER = "camera_lidar_semantic"


@register_dataset
class A2D2(DatasetAdapter):
    name = "a2d2"
    taxonomy_name = "a2d2"
    splits = ("all",)
    label_encoding = LabelEncoding.COLOR
    description = "A2D2 camera semantic segmentation (55 colours -> 38 classes, 1920x1208)"
    homepage = "https://www.a2d2.audi"
    layout = "[camera_lidar_semantic/]<seq>/camera/cam_<view>/*_camera_<view>_<frame>.png with <seq>/label/cam_<view>/*_label_<view>_<frame>.png"

    @property
    def base(self) -> Path:
        return self.root / FOLDER if (self.root / FOLDER).is_dir() else self.root

    def check_class_list(self) -> None:
        """Every colour of ``class_list.json`` must be a colour of the taxonomy with the same class."""
        path = self.base / "class_list.json"
        if not path.is_file():
            return
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
            colors = {
                tuple(int(h.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4)): name
                for h, name in entries.items()
            }
        except (ValueError, AttributeError, OSError) as exc:
            raise SegunifyError(f"cannot read class list: {exc}", path) from None
        rows = {label.color: label.name for label in self.taxonomy.labels}
        for color, name in colors.items():
            if color not in rows:
                raise SegunifyError(f"colour {color} ({name!r}) is not in taxonomy 'a2d2'", path)
            if rows[color].lower() != name.lower():
                raise SegunifyError(
                    f"colour {color} is {name!r} here but {rows[color]!r} in taxonomy 'a2d2'", path
                )

    def _list(self, split):
        self.check_class_list()
        out = []
        for img in self.base.glob("*/camera/cam_*/*_camera_*.png"):
            seq, cam = img.parent.parent.parent.name, img.parent.name
            label_name = img.name.replace("_camera_", "_label_", 1)
            label = self.base / seq / "label" / cam / label_name
            frame = img.stem.rsplit("_", 1)[-1]
            out.append(self._pair(split, img, label, [seq, cam, frame]))
        return out
