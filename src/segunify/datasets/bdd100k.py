"""BDD100K semantic segmentation (the 10K subset), in either layout the publisher has shipped.

* current (``bdd100k_images_10k.zip`` + ``bdd100k_sem_seg_labels_trainval.zip``):
  ``images/10k/<split>/<name>.jpg`` and ``labels/sem_seg/masks/<split>/<name>.png``; when ``masks/`` is not
  there (only the colour archive was unpacked), ``labels/sem_seg/colormaps/<split>/<name>.png``: palette
  PNGs whose pixel index is the train id (the palette only colours it), read as indices;
* 2018 segmentation release (``bdd100k_seg.zip``):
  ``seg/images/<split>/<name>.jpg`` and ``seg/labels/<split>/<name>_train_id.png``.

Masks store the 19 Cityscapes train ids directly (255 = unknown). A colour map re-saved as RGB is decoded
by its (unique) Cityscapes colours. ``--root`` is the ``bdd100k`` folder (its
parent works too). The test split has no public labels and is not listed.
"""

from __future__ import annotations

import numpy as np

from segunify.datasets.base import DatasetAdapter, register_dataset
from segunify.labels import ColorCodec


@register_dataset
class Bdd100k(DatasetAdapter):
    name = "bdd100k"
    taxonomy_name = "bdd100k"
    splits = ("train", "val")
    description = "BDD100K 10K semantic segmentation (19 Cityscapes train ids, 1280x720)"
    homepage = "https://bdd-data.berkeley.edu"
    layout = "images/10k/<split>/*.jpg with labels/sem_seg/masks/<split>/<name>.png (or labels/sem_seg/colormaps/<split>/<name>.png), or seg/images/<split>/*.jpg with seg/labels/<split>/<name>_train_id.png"

    def __init__(self, root):
        super().__init__(root)
        if (
            not (self.root / "images").is_dir()
            and not (self.root / "seg").is_dir()
            and (self.root / "bdd100k").is_dir()
        ):
            self.root = self.root / "bdd100k"

    def _list(self, split):
        if (self.root / "images" / "10k").is_dir():
            sem_seg = self.root / "labels" / "sem_seg"
            labels = (
                "masks"
                if (sem_seg / "masks").is_dir() or not (sem_seg / "colormaps").is_dir()
                else "colormaps"
            )
            image_dir, label_dir, suffix = (
                self.root / "images" / "10k" / split,
                sem_seg / labels / split,
                ".png",
            )
        else:
            image_dir, label_dir, suffix = (
                self.root / "seg" / "images" / split,
                self.root / "seg" / "labels" / split,
                "_train_id.png",
            )
        out = []
        for img in image_dir.glob("*.jpg"):
            label = label_dir / f"{img.stem}{suffix}"
            out.append(self._pair(split, img, label, [split, img.stem]))
        return out

    def decode_label(self, raw: np.ndarray, path) -> np.ndarray:
        if raw.ndim == 3:  # a colour map saved as RGB rather than as a palette PNG
            return ColorCodec(self.taxonomy).decode(raw, path)
        return self.codec.decode(raw, path)
