"""COCO panoptic 2017: ``<split>2017/<id>.jpg`` images, ``annotations/panoptic_<split>2017/<id>.png`` RGB
segment-id PNGs (id = R + 256*G + 256^2*B, 0 = unlabeled) and ``annotations/panoptic_<split>2017.json`` whose
``segments_info`` gives each segment's ``category_id``. A label decodes to the category of each pixel's segment.

``image_ids=FILE[,FILE...]`` keeps only the listed images (one image id per line, zero-padded or not, or an
image file name): this is how the urban subset used with the Cityscapes and Mapillary mappings is selected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, Sample, inside, register_dataset
from segunify.errors import SegunifyError
from segunify.jsonio import read_text
from segunify.labels import read_label_raw


def read_id_list(paths: str | Path | list | tuple) -> set[int]:
    """Image ids from one or more text files (``,``-separated when given as one string)."""
    if isinstance(paths, (str, Path)):
        paths = [p for p in str(paths).split(",") if p.strip()]
    ids: set[int] = set()
    for p in paths:
        path = Path(str(p).strip())
        for lineno, line in enumerate(read_text(path, "image id list").splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                ids.add(int(Path(text).stem))
            except ValueError:
                raise SegunifyError(
                    f"expected an image id or file name, got {text!r}", path, lineno
                ) from None
    return ids


@register_dataset
class CocoPanoptic(DatasetAdapter):
    name = "coco-panoptic"
    taxonomy_name = "coco-panoptic"
    splits = ("train", "val")
    label_encoding = LabelEncoding.PANOPTIC
    description = "COCO panoptic 2017 (133 categories; urban subset via image_ids=FILE)"
    homepage = "https://cocodataset.org/#panoptic-2018"
    layout = (
        "annotations/panoptic_<split>2017.json, <split>2017/*.jpg and annotations/panoptic_<split>2017/*.png"
    )

    def __init__(self, root, image_ids: str | Path | list | None = None):
        super().__init__(root)
        self.image_ids = read_id_list(image_ids) if image_ids else None
        self._segments: dict[str, dict[int, int]] = {}  # sample id -> {segment id: category id}
        self._listed: dict[str, list[Sample]] = {}
        self._known = np.zeros(256, dtype=bool)
        self._known[[i for i in self.taxonomy.known_ids() if i < 256]] = True

    def annotation_file(self, split: str) -> Path:
        return self.root / "annotations" / f"panoptic_{split}2017.json"

    def _list(self, split):
        if split in self._listed:
            return self._listed[split]
        path = self.annotation_file(split)
        if not path.is_file():
            if (self.root / f"{split}2017").is_dir():
                raise SegunifyError("panoptic annotation file not found", path)
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            anns = {a["image_id"]: a for a in data["annotations"]}
            images = data["images"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SegunifyError(f"cannot read panoptic annotations: {exc}", path) from None
        try:
            out = self._samples_of(split, images, anns, path)
        except (KeyError, TypeError, ValueError) as exc:
            raise SegunifyError(f"malformed panoptic annotations: {exc!r}", path) from None
        self._listed[split] = out
        return out

    def _samples_of(self, split: str, images: list, anns: dict, path: Path) -> list[Sample]:
        """Samples of the JSON's image records; every file name is checked to stay in its folder."""
        out = []
        for i, img in enumerate(images):
            if self.image_ids is not None and int(img["id"]) not in self.image_ids:
                continue
            image = inside(self.root / f"{split}2017", img["file_name"], path, what=f"images[{i}].file_name")
            sid = f"{split}/{image.stem}"
            ann = anns.get(img["id"])
            label = None
            if ann is not None:
                label_dir = self.root / "annotations" / f"panoptic_{split}2017"
                label = inside(label_dir, ann["file_name"], path, what=f"file_name of image {img['id']}")
                self._segments[sid] = {int(s["id"]): int(s["category_id"]) for s in ann["segments_info"]}
            out.append(self._sample(split, image, label, [sid]))
        return out

    def load_label(self, sample: Sample) -> np.ndarray:
        if sample.label is None:
            raise SegunifyError(f"sample {sample.id!r}: {sample.missing_label()}", sample.image)
        rgb = read_label_raw(sample.label)
        if rgb.ndim != 3:
            raise SegunifyError(f"expected an RGB segment-id PNG, got shape {rgb.shape}", sample.label)
        if sample.id not in self._segments:
            self._list(sample.split)
        segments = self._segments.get(sample.id, {})
        rgb = rgb.astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        uniq, inverse = np.unique(ids.ravel(), return_inverse=True)
        unknown = [int(u) for u in uniq if u != 0 and int(u) not in segments]
        if unknown:
            raise SegunifyError(
                f"segment id(s) {unknown[:10]} are not in segments_info of {self.annotation_file(sample.split).name}",
                sample.label,
            )
        cats = np.array([segments.get(int(u), 0) for u in uniq], dtype=np.int64)
        bad = sorted({int(c) for c in cats if c >= 256 or not self._known[c]})
        if bad:
            raise SegunifyError(
                f"category id(s) {bad[:10]} in {self.annotation_file(sample.split).name} are unknown to taxonomy "
                f"'coco-panoptic'",
                sample.label,
            )
        return self.decode_label(cats.astype(np.uint8)[inverse].reshape(ids.shape), sample.label)
