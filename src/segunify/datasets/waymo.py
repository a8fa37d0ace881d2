"""Waymo Open Dataset v2 camera segmentation, read from the release's parquet files (needs pyarrow):
``<training|validation|testing>/camera_segmentation/<context>.parquet`` (one row per labelled frame and camera;
the label is a uint16 PNG, panoptic = semantic * panoptic_label_divisor + instance) and
``<...>/camera_image/<context>.parquet`` (the JPEG of every frame and camera, joined on the key columns).

Only labelled frames are samples (camera segmentation is labelled on a subset of frames). A sample's ``image``
and ``label`` are the two parquet files; its id is ``<context>/<timestamp>/<CAMERA>``. A context file is read
whole (for images: only its labelled frames) and the last few are kept, so go through samples in order (as
``samples`` returns them) for speed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segunify.datasets.base import DatasetAdapter, LabelEncoding, Sample, register_dataset, unsafe_part
from segunify.errors import SegunifyError
from segunify.labels import check_pixels

FOLDERS = {"train": "training", "val": "validation", "test": "testing"}
CAMERAS = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
CAMERA_IDS = {v: k for k, v in CAMERAS.items()}
CONTEXT, TIMESTAMP, CAMERA = "key.segment_context_name", "key.frame_timestamp_micros", "key.camera_name"
IMAGE = "[CameraImageComponent].image"
PANOPTIC = "[CameraSegmentationLabelComponent].panoptic_label"
DIVISOR = "[CameraSegmentationLabelComponent].panoptic_label_divisor"
CACHED_CONTEXTS = 4  # contexts per component kept in memory (labelled frames only: ~100-300 MB of JPEGs each)


def read_parquet(path: Path, columns: list[str], filters=None):
    """Columns of a parquet file as a pyarrow table; one-line errors for a missing package, file or column."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SegunifyError(
            "reading Waymo v2 parquet files needs pyarrow: pip install pyarrow (or segunify[datasets])"
        ) from None
    if not path.is_file():
        raise SegunifyError("parquet file not found", path)
    try:
        names = pq.read_schema(path).names
        missing = [c for c in columns if c not in names]
        if missing:
            raise SegunifyError(f"missing column(s) {missing}", path)
        return pq.read_table(path, columns=columns, filters=filters)
    except (pa.ArrowException, OSError) as exc:
        raise SegunifyError(f"cannot read parquet file: {exc}", path) from None


@register_dataset
class Waymo(DatasetAdapter):
    name = "waymo"
    taxonomy_name = "waymo"
    splits = ("train", "val", "test")
    label_encoding = LabelEncoding.PANOPTIC
    description = "Waymo Open Dataset v2 camera panoptic segmentation (parquet; 1920x1280 / 1920x886)"
    homepage = "https://waymo.com/open/data/perception/"
    layout = (
        "{training,validation,testing}/camera_segmentation/<context>.parquet with "
        "camera_image/<context>.parquet beside it"
    )

    def __init__(self, root):
        super().__init__(root)
        self._labelled: dict[Path, set[int]] = {}  # image parquet -> labelled timestamps
        self._cache: dict[tuple[str, Path], dict] = {}  # ("image"|"label", file) -> {(ts, cam): row values}

    def _list(self, split):
        base = self.root / FOLDERS[split]
        out = []
        for seg in (base / "camera_segmentation").glob("*.parquet"):
            table = read_parquet(seg, [CONTEXT, TIMESTAMP, CAMERA]).to_pydict()
            image = base / "camera_image" / seg.name
            for ctx, ts, cam in zip(table[CONTEXT], table[TIMESTAMP], table[CAMERA], strict=True):
                if not isinstance(ctx, str) or "/" in ctx or "\\" in ctx or unsafe_part(ctx):
                    raise SegunifyError(f"{CONTEXT} {ctx!r} is not a plain name (it names output files)", seg)
                name = CAMERAS.get(cam, str(cam))
                self._labelled.setdefault(image, set()).add(int(ts))
                out.append(
                    Sample(
                        id=f"{ctx}/{ts}/{name}",
                        image=image,
                        label=seg,
                        split=split,
                        rel=f"{FOLDERS[split]}/{ctx}/{ts}_{name}.png",
                    )
                )
        return out

    @staticmethod
    def _key(sample: Sample) -> tuple[int, int]:
        _, ts, name = sample.id.rsplit("/", 2)
        return int(ts), CAMERA_IDS.get(name, int(name) if name.isdigit() else -1)

    def _where(self, path: Path, sample: Sample) -> str:
        _, ts, name = sample.id.rsplit("/", 2)
        return f"{path}[frame {ts}, camera {name}]"

    def _row(self, kind: str, path: Path, sample: Sample, columns: list[str]) -> tuple:
        """The row of ``sample``'s key in a parquet file; the last few files read are kept (LRU)."""
        rows = self._cache.pop((kind, path), None)
        if rows is None:
            filters = None
            if kind == "image" and path in self._labelled:
                filters = [(TIMESTAMP, "in", sorted(self._labelled[path]))]
            table = read_parquet(path, [TIMESTAMP, CAMERA, *columns], filters=filters).to_pydict()
            values = zip(table[TIMESTAMP], table[CAMERA], *(table[c] for c in columns), strict=True)
            rows = {(int(ts), int(cam)): rest for ts, cam, *rest in values}
        self._cache[(kind, path)] = rows
        while len(self._cache) > 2 * CACHED_CONTEXTS:
            self._cache.pop(next(iter(self._cache)))
        key = self._key(sample)
        if key not in rows:
            raise SegunifyError(f"no {kind} row for this frame and camera", self._where(path, sample))
        return rows[key]

    def read_image(self, sample: Sample) -> np.ndarray:
        (data,) = self._row("image", sample.image, sample, [IMAGE])
        check_pixels(data or b"", self._where(sample.image, sample), "camera image")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise SegunifyError(
                "cannot decode the camera image (empty or not a JPEG)", self._where(sample.image, sample)
            )
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def load_label(self, sample: Sample) -> np.ndarray:
        where = self._where(sample.label, sample)
        data, divisor = self._row("label", sample.label, sample, [PANOPTIC, DIVISOR])
        if not data:
            raise SegunifyError("panoptic_label is missing (empty)", where)
        if not divisor or divisor <= 0:
            raise SegunifyError(f"bad panoptic_label_divisor {divisor!r}", where)
        check_pixels(data, where, "panoptic_label")
        panoptic = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if panoptic is None or panoptic.ndim != 2:
            raise SegunifyError("panoptic_label is not a single-channel PNG", where)
        semantic = (panoptic.astype(np.int64) // int(divisor)).astype(np.uint16)
        return self.decode_label(semantic, where)

    def sample(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.read_image(sample), self.read_label(sample)
        if image.shape[:2] != label.shape:
            raise SegunifyError(
                f"label size {label.shape[1]}x{label.shape[0]} differs from image size "
                f"{image.shape[1]}x{image.shape[0]}",
                self._where(sample.label, sample),
            )
        return image, label
