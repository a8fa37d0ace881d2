"""Cityscapes: ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
``gtFine/<split>/<city>/..._gtFine_labelIds.png`` (``train_extra`` uses ``gtCoarse``).

``img_suffix`` (mmsegmentation's name) reads a re-encoded copy, e.g. ``_leftImg8bit.jpg`` for JPEG images
beside the original labelIds PNGs."""

from __future__ import annotations

import glob

from segunify.datasets.base import DatasetAdapter, register_dataset
from segunify.errors import SegunifyError

IMAGE_SUFFIX = "_leftImg8bit.png"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@register_dataset
class Cityscapes(DatasetAdapter):
    name = "cityscapes"
    taxonomy_name = "cityscapes"
    splits = ("train", "val", "test", "train_extra")
    description = "Cityscapes fine (train/val/test) and coarse (train_extra), 2048x1024"
    homepage = "https://www.cityscapes-dataset.com"
    licence = (
        "Cityscapes terms (Cordts et al., CVPR 2016): non-commercial research only; redistribution forbidden"
    )
    redistribution = False
    layout = "leftImg8bit/<split>/<city>/*_leftImg8bit.png with gtFine/<split>/<city>/*_gtFine_labelIds.png (gtCoarse for train_extra)"

    def __init__(self, root, img_suffix: str = IMAGE_SUFFIX):
        super().__init__(root)
        if not isinstance(img_suffix, str) or "/" in img_suffix or "\\" in img_suffix:
            raise SegunifyError(
                f"img_suffix must be a file-name ending like '_leftImg8bit.jpg', got {img_suffix!r}"
            )
        if not img_suffix.lower().endswith(_IMAGE_EXTENSIONS) or len(img_suffix) <= 4:
            raise SegunifyError(
                f"img_suffix {img_suffix!r} does not end in an image extension ({', '.join(_IMAGE_EXTENSIONS)})"
            )
        self.img_suffix = img_suffix
        if img_suffix != IMAGE_SUFFIX:
            self.layout = self.layout.replace(IMAGE_SUFFIX, img_suffix, 1)

    def _list(self, split):
        gt = "gtCoarse" if split == "train_extra" else "gtFine"
        image_root = self.root / "leftImg8bit" / split
        out = []
        for img in image_root.glob(f"*/*{glob.escape(self.img_suffix)}"):
            stem = img.name[: -len(self.img_suffix)]
            label = self.root / gt / split / img.parent.name / f"{stem}_{gt}_labelIds.png"
            out.append(self._pair(split, img, label, [split, img.parent.name, stem]))
        return out
