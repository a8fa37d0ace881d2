"""IDD Lite (``idd20k_lite``, the NCVPRIPG 2019 challenge release of IDD): 7 level-1 classes, 320x227.

Layout: ``idd20k_lite/leftImg8bit/<split>/<seq>/<id>_image.jpg`` and
``idd20k_lite/gtFine/<split>/<seq>/<id>_label.png`` (8-bit ids 0..6, 255 = ignore; ``<id>_inst_label.png``
beside it holds instances and is not read). ``--root`` may be the folder holding ``idd20k_lite/`` or that
folder itself. The released test split has no labels, so it is not a split here.
"""

from __future__ import annotations

from segunify.datasets.base import DatasetAdapter, Sample, register_dataset

RELEASE = "idd20k_lite"
IMAGE_SUFFIX = "_image.jpg"
LABEL_SUFFIX = "_label.png"


@register_dataset
class IddLite(DatasetAdapter):
    name = "idd-lite"
    taxonomy_name = "idd-lite"
    splits = ("train", "val")
    description = "IDD Lite (idd20k_lite): IDD's 7 level-1 classes, 320x227 JPEG"
    homepage = "https://idd.insaan.iiit.ac.in"
    licence = "IDD (Varma et al., WACV 2019): research use under IDD's terms of use (registration)"
    layout = "[idd20k_lite/]leftImg8bit/<split>/<seq>/*_image.jpg with [idd20k_lite/]gtFine/<split>/<seq>/*_label.png"

    def __init__(self, root):
        super().__init__(root)
        # Relative paths (and so sample ids and output names) do not depend on which of the two roots is given.
        self.base = self.root / RELEASE if (self.root / RELEASE).is_dir() else self.root

    def _list(self, split):
        out = []
        for img in (self.base / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}"):
            stem = img.name[: -len(IMAGE_SUFFIX)]
            rel = f"gtFine/{split}/{img.parent.name}/{stem}{LABEL_SUFFIX}"
            label = self.base / rel
            out.append(
                Sample(
                    id=f"{split}/{img.parent.name}/{stem}",
                    image=img,
                    label=label if label.is_file() else None,
                    split=split,
                    rel=rel,
                    expected_label=None if label.is_file() else label,
                )
            )
        return out
