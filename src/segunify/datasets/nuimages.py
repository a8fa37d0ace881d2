"""nuImages v1.0: images ``samples/CAM_*/<name>.jpg`` and the release tables ``v1.0-<split>/*.json``; labels are
painted from the annotations exactly as the official devkit's ``NuImages.get_segmentation`` does: surface masks
(``surface_ann.json``) first, then object masks (``object_ann.json``) sorted by token, each mask a COCO RLE with
base64 counts (decoded with pycocotools), each pixel the devkit's semantic index of its category.

The devkit package itself (``nuscenes-devkit``) pins numpy<2 and an old OpenCV, so the few tables needed are read
here directly (``sample_data.json``, ``category.json``, ``object_ann.json``, ``surface_ann.json``). Samples are the
key frames (``is_key_frame``), the only annotated images. ``v1.0-test`` has no annotations and is not a split.
Tables are large (GBs for train); they are read once per split and kept.
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, Sample, inside, register_dataset
from segunify.errors import SegunifyError
from segunify.labels import read_image

VERSIONS = {"train": "v1.0-train", "val": "v1.0-val", "mini": "v1.0-mini"}


def rle_of(mask: dict, where: str) -> dict:
    """A nuImages mask (``size`` [h, w], base64 ``counts`` of a compressed COCO RLE) -> a pycocotools RLE."""
    try:
        return {
            "size": [int(v) for v in mask["size"]],
            "counts": base64.b64decode(mask["counts"], validate=True),
        }
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SegunifyError(f"bad RLE mask: {exc}", where) from None


def decode_rles(rles: list[dict], h: int, w: int) -> np.ndarray:
    """``[h, w, n]`` uint8 masks of n RLEs, in one pycocotools call."""
    if not rles:
        return np.zeros((h, w, 0), dtype=np.uint8)
    try:
        from pycocotools import mask as cocomask
    except ImportError:
        raise SegunifyError(
            "decoding nuImages masks needs pycocotools: pip install pycocotools (or segunify[datasets])"
        ) from None
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy-keyword deprecation, not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return cocomask.decode(rles)


@dataclass
class _Index:
    """What one split's tables say, reduced to what labels need."""

    frames: dict[str, dict] = field(default_factory=dict)  # sample id -> sample_data record
    anns: dict[str, list[tuple[str, dict, str]]] = field(
        default_factory=dict
    )  # sd token -> (table, ann, category)


@register_dataset
class NuImages(DatasetAdapter):
    name = "nuimages"
    taxonomy_name = "nuimages"
    splits = ("train", "val", "mini")
    label_encoding = LabelEncoding.RLE
    description = "nuImages v1.0 key frames, masks painted from object/surface annotations (1600x900)"
    homepage = "https://www.nuscenes.org/nuimages"
    layout = "v1.0-<split>/{sample_data,category,object_ann,surface_ann}.json and samples/CAM_*/*.jpg"

    def __init__(self, root):
        super().__init__(root)
        self._indices: dict[str, _Index] = {}
        self._ids = {label.name: label.id for label in self.taxonomy.labels}

    def _table(self, split: str, name: str) -> list[dict]:
        path = self.root / VERSIONS[split] / f"{name}.json"
        if not path.is_file():
            raise SegunifyError(
                f"nuImages table {name}.json not found (extract the metadata archive here)", path
            )
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SegunifyError(f"cannot read table: {exc}", path) from None
        if not isinstance(table, list):
            raise SegunifyError("expected a JSON list of records", path)
        return table

    def _index(self, split: str) -> _Index:
        if split in self._indices:
            return self._indices[split]
        index = _Index()
        table_dir = self.root / VERSIONS[split]
        try:
            categories = {c["token"]: c["name"] for c in self._table(split, "category")}
            unknown = sorted(set(categories.values()) - set(self._ids))
            if unknown:
                raise SegunifyError(
                    f"categories {unknown} are not in taxonomy 'nuimages'", table_dir / "category.json"
                )
            for sd in self._table(split, "sample_data"):
                if sd.get("is_key_frame") and str(sd.get("filename", "")).startswith("samples/"):
                    what = f"filename of sample_data {sd.get('token')}"
                    inside(self.root, sd["filename"], table_dir / "sample_data.json", what=what)
                    index.frames[self._sample_id(sd["filename"])] = sd
            for table in ("surface_ann", "object_ann"):
                records = self._table(split, table)
                if table == "object_ann":  # the devkit paints objects in token order, surfaces in table order
                    records = sorted(records, key=lambda a: a["token"])
                for ann in records:
                    if ann["category_token"] not in categories:
                        raise SegunifyError(
                            f"annotation {ann['token']} has category_token {ann['category_token']} "
                            f"not in category.json",
                            table_dir / f"{table}.json",
                        )
                    cat = categories[ann["category_token"]]
                    index.anns.setdefault(ann["sample_data_token"], []).append((table, ann, cat))
        except KeyError as exc:
            raise SegunifyError(f"nuImages table record lacks field {exc}", table_dir) from None
        self._indices[split] = index
        return index

    @staticmethod
    def _sample_id(filename: str) -> str:
        path = Path(filename)
        return f"{path.parent.name}/{path.stem}"

    def _list(self, split):
        if not (self.root / VERSIONS[split]).is_dir():
            return []
        label = self.root / VERSIONS[split] / "object_ann.json"
        return [
            Sample(
                id=sid,
                image=self.root / sd["filename"],
                label=label,
                split=split,
                rel=Path(sd["filename"]).with_suffix(".png").as_posix(),
            )
            for sid, sd in self._index(split).frames.items()
        ]

    def load_label(self, sample: Sample) -> np.ndarray:
        index = self._index(sample.split)
        sd = index.frames[sample.id]
        h, w = int(sd["height"]), int(sd["width"])
        raw = np.zeros((h, w), dtype=np.uint8)
        table_dir = self.root / VERSIONS[sample.split]
        painted, rles = [], []
        for table, ann, cat in index.anns.get(sd["token"], []):
            if ann.get("mask") is None:
                continue
            where = str(table_dir / f"{table}.json")
            rle = rle_of(ann["mask"], where)
            if rle["size"] != [h, w]:
                raise SegunifyError(
                    f"annotation {ann['token']}: mask size {rle['size'][1]}x{rle['size'][0]} differs from the "
                    f"image size {w}x{h} of sample_data {sd['token']}",
                    where,
                )
            painted.append(self._ids[cat])
            rles.append(rle)
        masks = decode_rles(rles, h, w).astype(bool)
        for k, raw_id in enumerate(painted):
            raw[masks[:, :, k]] = raw_id
        return self.decode_label(raw, table_dir / "object_ann.json")

    def sample(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image = read_image(sample.image)
        label = self.read_label(sample)
        if image.shape[:2] != label.shape:
            raise SegunifyError(
                f"image is {image.shape[1]}x{image.shape[0]} but sample_data.json says "
                f"{label.shape[1]}x{label.shape[0]}",
                sample.image,
            )
        return image, label
