"""TAS500 v1.1: ``tas500v1.1/<split>/<name>.png`` images and ``tas500v1.1/<split>_labels_ids/<name>.png``
labels (8-bit class ids 0..22, 255 = undefined), as in the release archive (mucar3.de/icpr2020-tas500).
Labelled official splits: train (440) and val (100); the test images have no public labels.
"""

from __future__ import annotations

from segunify.datasets._offroad import require_dir, single_channel
from segunify.datasets.base import DatasetAdapter, register_dataset


@register_dataset
class Tas500(DatasetAdapter):
    name = "tas500"
    taxonomy_name = "tas500"
    splits = ("train", "val")
    domain = "offroad"
    description = "TAS500 v1.1 (23 classes + undefined, 8-bit id labels, 2026x620)"
    homepage = "https://mucar3.de/icpr2020-tas500"
    layout = "<split>/*.png with <split>_labels_ids/<same>.png"

    def _list(self, split):
        images = require_dir(self.root / split, "TAS500 layout: tas500v1.1/<split>/")
        labels = self.root / f"{split}_labels_ids"
        out = []
        for img in [*images.glob("*.png"), *images.glob("*.jpg")]:
            label = labels / f"{img.stem}.png"
            out.append(self._pair(split, img, label, [split, img.stem]))
        return out

    def decode_label(self, raw, path):
        return self.codec.decode(single_channel(raw, path), path)
