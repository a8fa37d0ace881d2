"""The Great Outdoors (GO) RGB segmentation package (go_rgb_segmentation.zip): ``images/`` with
``labels/`` beside it holding 8-bit id PNGs of the same stem. Samples are named ``<split>_<stamp>``
(the release's own example is ``train_1737732983136677888``), so the split is the name's prefix; a
``<split>/images`` + ``<split>/labels`` tree is read as well.

The package's exact tree is not documented publicly: this layout is inferred from the release's example
names and may need the ``images_dir`` / ``labels_dir`` options (folder names) for other unpackings.
"""

from __future__ import annotations

from segunify.datasets._offroad import single_channel
from segunify.datasets.base import DatasetAdapter, register_dataset
from segunify.errors import SegunifyError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@register_dataset
class GreatOutdoors(DatasetAdapter):
    name = "great-outdoors"
    taxonomy_name = "great-outdoors"
    splits = ("train", "val", "test")
    domain = "offroad"
    description = "The Great Outdoors RGB segmentation (23 classes + void, 8-bit id labels)"
    homepage = "https://unmannedlab.github.io/the-great-outdoors-dataset"
    layout = "images/<split>_*.png with labels/<same>.png, or <split>/images/ with <split>/labels/"

    def __init__(self, root, images_dir: str = "images", labels_dir: str = "labels"):
        super().__init__(root)
        self.images_dir, self.labels_dir = images_dir, labels_dir

    def _list(self, split):
        flat, nested = self.root / self.images_dir, self.root / split / self.images_dir
        if not flat.is_dir() and not nested.is_dir():
            raise SegunifyError(
                f"missing folder ({self.images_dir}/ with {split}_*.png, or {split}/{self.images_dir}/)", flat
            )
        out = []
        sources = []
        if flat.is_dir():
            sources.append((flat, self.root / self.labels_dir, f"{split}_"))
        if nested.is_dir():
            sources.append((nested, self.root / split / self.labels_dir, ""))
        for image_dir, label_dir, prefix in sources:
            for img in image_dir.iterdir():
                if img.suffix.lower() in IMAGE_EXTS and img.name.startswith(prefix):
                    label = label_dir / f"{img.stem}.png"
                    out.append(self._pair(split, img, label, [split, img.stem]))
        return out

    def decode_label(self, raw, path):
        return self.codec.decode(single_channel(raw, path), path)
