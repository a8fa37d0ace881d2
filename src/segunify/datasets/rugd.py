"""RUGD: ``RUGD_frames-with-annotations/<scene>/<scene>_NNNNN.png`` images and
``RUGD_annotations/<scene>/<scene>_NNNNN.png`` RGB colour-coded labels.

Splits follow the RUGD paper (Wigness et al., IROS 2019), which splits by video sequence.
"""

from __future__ import annotations

from segunify.datasets._offroad import require_dir
from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset

SCENES = {
    "train": (
        "park-2",
        "trail",
        "trail-3",
        "trail-4",
        "trail-6",
        "trail-9",
        "trail-10",
        "trail-11",
        "trail-12",
        "trail-14",
        "trail-15",
        "village",
    ),
    "val": ("park-8", "trail-5"),
    "test": ("creek", "park-1", "trail-7", "trail-13"),
}


@register_dataset
class Rugd(DatasetAdapter):
    name = "rugd"
    taxonomy_name = "rugd"
    splits = ("train", "val", "test", "all")
    label_encoding = LabelEncoding.COLOR
    domain = "offroad"
    description = "RUGD off-road (24 classes + void, colour-coded labels, 688x550)"
    homepage = "http://rugd.vision"
    licence = "RUGD (Wigness et al., IROS 2019): research use; no licence stated, terms at rugd.vision"
    layout = "RUGD_frames-with-annotations/<scene>/*.png with RUGD_annotations/<scene>/<same>.png"

    def _list(self, split):
        frames = require_dir(
            self.root / "RUGD_frames-with-annotations", "RUGD layout: RUGD_frames-with-annotations/<scene>/"
        )
        scenes = [d.name for d in frames.iterdir() if d.is_dir()]
        if split != "all":
            scenes = [s for s in scenes if s in SCENES[split]]
        out = []
        for scene in scenes:
            for img in (frames / scene).glob("*.png"):
                label = self.root / "RUGD_annotations" / scene / img.name
                out.append(self._pair(split, img, label, [scene, img.stem]))
        return out
