"""IDD (India Driving Dataset), ``IDD_Segmentation`` release, level-3 ids (26 classes).

Layout: ``leftImg8bit/<split>/<seq>/<frame>_leftImg8bit.png`` and ``gtFine/<split>/<seq>/<frame>_gtFine_polygons.json``.
The release ships polygons only; the official ``preparation/createLabels.py --id-type level3Id`` (AutoNUE
public-code) writes ``<frame>_gtFine_labellevel3Ids.png`` beside each JSON. This adapter reads that PNG when it
is there and otherwise rasterises the JSON itself (``label_source=auto``, the default; ``png`` or ``json`` force
one). Rasterising follows the official script: background 255, objects drawn in file order (later ones on top),
deleted objects skipped, ``<label>group`` drawn as ``<label>``. Edge pixels may differ slightly from Pillow's
polygon drawing used by the official script (cv2 vs. PIL scan conversion). The test split has no labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, Sample, register_dataset
from segunify.errors import SegunifyError
from segunify.labels import read_label_raw

# Raw IDD label name -> level3Id, from AutoNUE public-code helpers/anue_labels.py (255 = void).
LEVEL3 = {
    "road": 0, "parking": 1, "drivable fallback": 1, "sidewalk": 2, "rail track": 3, "non-drivable fallback": 3,
    "person": 4, "animal": 4, "rider": 5, "motorcycle": 6, "bicycle": 7, "autorickshaw": 8, "car": 9, "truck": 10,
    "bus": 11, "caravan": 12, "trailer": 12, "train": 12, "vehicle fallback": 12, "curb": 13, "wall": 14,
    "fence": 15, "guard rail": 16, "billboard": 17, "traffic sign": 18, "traffic light": 19, "pole": 20,
    "polegroup": 20, "obs-str-bar-fallback": 21, "building": 22, "bridge": 23, "tunnel": 23, "vegetation": 24,
    "sky": 25, "fallback background": 25, "unlabeled": 255, "ego vehicle": 255, "rectification border": 255,
    "out of roi": 255, "license plate": 255,
}  # fmt: skip
LABEL_SOURCES = ("auto", "png", "json")


def rasterize_polygons(path: Path) -> np.ndarray:
    """An IDD ``*_gtFine_polygons.json`` -> uint8 level-3 id image (255 where nothing is drawn)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        height, width = int(data["imgHeight"]), int(data["imgWidth"])
        objects = data["objects"]
    except FileNotFoundError:
        raise SegunifyError("label file not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SegunifyError(
            f"not an IDD polygon file (needs imgHeight, imgWidth, objects): {exc}", path
        ) from None
    out = np.full((height, width), 255, dtype=np.uint8)
    for i, obj in enumerate(objects):
        if obj.get("deleted"):
            continue
        name = obj.get("label", "")
        if name not in LEVEL3 and name.endswith("group"):
            name = name[: -len("group")]
        if name not in LEVEL3:
            raise SegunifyError(f"unknown IDD label {obj.get('label')!r} (object {i})", path)
        try:
            pts = np.asarray(obj["polygon"], dtype=np.float64).reshape(-1, 2)
        except (KeyError, ValueError, TypeError):
            raise SegunifyError(f"object {i} ({name!r}) has no valid polygon", path) from None
        if len(pts):
            cv2.fillPoly(out, [np.round(pts).astype(np.int32)], int(LEVEL3[name]))
    return out


@register_dataset
class Idd(DatasetAdapter):
    name = "idd"
    taxonomy_name = "idd"
    splits = ("train", "val")
    label_encoding = LabelEncoding.POLYGONS  # level3Ids PNGs are read as ids too
    description = "IDD_Segmentation level-3 ids (26 classes); official level3Ids PNGs or the polygon JSON"
    homepage = "https://idd.insaan.iiit.ac.in"
    licence = "IDD (Varma et al., WACV 2019): research use under IDD's terms of use (registration)"
    layout = "leftImg8bit/<split>/<seq>/*_leftImg8bit.png with gtFine/<split>/<seq>/*_gtFine_labellevel3Ids.png or *_gtFine_polygons.json"

    def __init__(self, root, label_source: str = "auto"):
        super().__init__(root)
        if label_source not in LABEL_SOURCES:
            raise SegunifyError(
                f"label_source must be one of {', '.join(LABEL_SOURCES)}, got {label_source!r}"
            )
        self.label_source = label_source

    def _list(self, split):
        out = []
        for img in (self.root / "leftImg8bit" / split).glob("*/*_leftImg8bit.*"):
            stem = img.name[: img.name.index("_leftImg8bit")]
            base = self.root / "gtFine" / split / img.parent.name / stem
            png, poly = Path(f"{base}_gtFine_labellevel3Ids.png"), Path(f"{base}_gtFine_polygons.json")
            candidates = {"png": [png], "json": [poly], "auto": [png, poly]}[self.label_source]
            label = next((c for c in candidates if c.is_file()), None)
            out.append(
                Sample(
                    id=f"{split}/{img.parent.name}/{stem}",
                    image=img,
                    label=label,
                    split=split,
                    rel=png.relative_to(self.root).as_posix(),
                    expected_label=candidates[0] if label is None else None,
                )
            )
        return out

    def load_label(self, sample: Sample) -> np.ndarray:
        if sample.label is None:
            raise SegunifyError(f"sample {sample.id!r}: {sample.missing_label()}", sample.image)
        raw = (
            rasterize_polygons(sample.label)
            if sample.label.suffix == ".json"
            else read_label_raw(sample.label)
        )
        return self.decode_label(raw, sample.label)
