"""CamVid with its 11 classes collapsed to 7 coarse groups (taxonomy ``camvid-coarse``).

Same files as :mod:`segunify.datasets.camvid`; only the taxonomy differs, so pseudo-labels made with
coarse priors land under the same relative paths and can be scored against the fine CamVid labels.
"""

from __future__ import annotations

from segunify.datasets.base import register_dataset
from segunify.datasets.camvid import CamVid


@register_dataset
class CamVidCoarse(CamVid):
    name = "camvid-coarse"
    taxonomy_name = "camvid-coarse"
    description = (
        "CamVid collapsed to 7 coarse groups (flat, construction, object, nature, sky, human, vehicle)"
    )
