"""KITTI semantics 2015: ``data_semantics/training/{image_2,semantic}/NNNNNN_10.png`` (Cityscapes label ids).

The benchmark has no official val split; ``train`` is all 200 labelled frames (``testing/`` has no labels, so
it is not a split: checking it could only report 200 missing labels). Some redistributed copies
crop the images but not the labels: ``label_crop=(top, left)`` crops labels to the image's size at that
offset, as an explicit, documented choice (``datasets check`` reports the mismatch when it is not set).
"""

from __future__ import annotations

from segunify.datasets.base import DatasetAdapter, Sample, register_dataset
from segunify.errors import SegunifyError
from segunify.labels import declared_size, read_image, read_label_raw


@register_dataset
class Kitti(DatasetAdapter):
    name = "kitti"
    taxonomy_name = "kitti"
    splits = ("train",)
    description = "KITTI semantics 2015 (Cityscapes label ids, 1242x375)"
    homepage = "https://www.cvlibs.net/datasets/kitti/eval_semseg.php"
    licence = "KITTI: CC BY-NC-SA 3.0 (non-commercial; attribution; share-alike)"
    redistribution = True
    layout = "data_semantics/training/image_2/*.png with data_semantics/training/semantic/<same>.png"

    def __init__(self, root, label_crop: tuple[int, int] | str | None = None):
        super().__init__(root)
        if isinstance(label_crop, str):
            try:
                label_crop = tuple(int(v) for v in label_crop.split(","))  # type: ignore[assignment]
            except ValueError:
                raise SegunifyError(f"label_crop must be 'top,left', got {label_crop!r}") from None
        self.label_crop = label_crop

    def _list(self, split):
        base = self.root / "data_semantics" / "training"
        images = sorted((base / "image_2").glob("*.png"))
        out = []
        for img in images:
            label = base / "semantic" / img.name
            out.append(self._pair(split, img, label, [split, img.stem]))
        return out

    def load_label(self, sample: Sample):
        if self.label_crop is None:
            return super().load_label(sample)
        raw = read_label_raw(sample.label)
        top, left = self.label_crop
        h, w = self._image_size(sample)
        if raw.shape[0] < top + h or raw.shape[1] < left + w:
            raise SegunifyError(
                f"label {raw.shape[1]}x{raw.shape[0]} too small for crop at {top},{left}", sample.label
            )
        return self.decode_label(raw[top : top + h, left : left + w], sample.label)

    @staticmethod
    def _image_size(sample: Sample) -> tuple[int, int]:
        """``(H, W)`` of the sample's image from its file's header (no decoding), else decoded."""
        size = declared_size(sample.image.read_bytes()) if sample.image.is_file() else None
        return (size[1], size[0]) if size is not None else read_image(sample.image).shape[:2]
