"""Cityscapes: ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
``gtFine/<split>/<city>/..._gtFine_labelIds.png`` (``train_extra`` uses ``gtCoarse``)."""

from __future__ import annotations

from segunify.datasets.base import DatasetAdapter, register_dataset


@register_dataset
class Cityscapes(DatasetAdapter):
    name = "cityscapes"
    taxonomy_name = "cityscapes"
    splits = ("train", "val", "test", "train_extra")
    description = "Cityscapes fine (train/val/test) and coarse (train_extra), 2048x1024"
    homepage = "https://www.cityscapes-dataset.com"
    layout = "leftImg8bit/<split>/<city>/*_leftImg8bit.png with gtFine/<split>/<city>/*_gtFine_labelIds.png (gtCoarse for train_extra)"

    def _list(self, split):
        gt = "gtCoarse" if split == "train_extra" else "gtFine"
        image_root = self.root / "leftImg8bit" / split
        out = []
        for img in image_root.glob("*/*_leftImg8bit.png"):
            stem = img.name[: -len("_leftImg8bit.png")]
            label = self.root / gt / split / img.parent.name / f"{stem}_{gt}_labelIds.png"
            out.append(self._pair(split, img, label, [split, img.parent.name, stem]))
        return out
