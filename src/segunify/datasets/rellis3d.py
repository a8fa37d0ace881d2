"""RELLIS-3D, 2D part: ``<seq>/pylon_camera_node/frameNNNNNN-<stamp>.jpg`` images with
``<seq>/pylon_camera_node_label_id/<same>.png`` (8-bit ontology ids) or
``<seq>/pylon_camera_node_label_color/<same>.png`` (RGB) labels, all under the ``Rellis-3D`` folder the
release zips unpack to. Official splits: ``train.lst``, ``val.lst``, ``test.lst`` of the image split file
(Rellis_3D_image_split.zip), placed in that folder; each line is ``<image> <label>`` relative to it.
``all`` lists every image found, without the lists. ``labels="color"`` reads the colour labels instead
of the id labels (same classes, exact-colour decoding).
"""

from __future__ import annotations

from segunify.datasets._offroad import list_lines, require_dir, single_channel
from segunify.datasets.base import DatasetAdapter, LabelEncoding, inside, register_dataset
from segunify.errors import SegunifyError

ID_DIR, COLOR_DIR, IMAGE_DIR = (
    "pylon_camera_node_label_id",
    "pylon_camera_node_label_color",
    "pylon_camera_node",
)


@register_dataset
class Rellis3D(DatasetAdapter):
    name = "rellis3d"
    taxonomy_name = "rellis3d"
    splits = ("train", "val", "test", "all")
    domain = "offroad"
    description = "RELLIS-3D camera images (19 classes + void; id or colour labels, 1920x1200)"
    homepage = "https://github.com/unmannedlab/RELLIS-3D"
    layout = (
        "<split>.lst ('<image> <label>' per line) or <seq>/pylon_camera_node/*.jpg with "
        "<seq>/pylon_camera_node_label_id/<same>.png"
    )

    def __init__(self, root, labels: str = "id"):
        super().__init__(root)
        if labels not in ("id", "color"):
            raise SegunifyError(f"rellis3d: labels must be 'id' or 'color', got {labels!r}")
        self.labels = labels
        self.label_encoding = LabelEncoding.COLOR if labels == "color" else LabelEncoding.ID

    def _label_for(self, label_rel: str):
        if self.labels == "color":
            label_rel = label_rel.replace(ID_DIR, COLOR_DIR)
        return self.root / label_rel

    def _list(self, split):
        if split == "all":
            out = []
            for img in self.root.glob(f"*/{IMAGE_DIR}/*.jpg"):
                seq = img.parent.parent.name
                label = self._label_for(f"{seq}/{ID_DIR}/{img.stem}.png")
                out.append(self._pair(split, img, label, [seq, img.stem]))
            if not out:
                require_dir(
                    self.root / "00000" / IMAGE_DIR, "RELLIS-3D layout: Rellis-3D/<seq>/pylon_camera_node/"
                )
            return out
        lst = self.root / f"{split}.lst"
        out = []
        for lineno, fields in list_lines(lst, f"official {split} list of Rellis_3D_image_split.zip"):
            if len(fields) not in (1, 2):
                raise SegunifyError(f"expected '<image> <label>', got {len(fields)} fields", lst, lineno)
            img = inside(self.root, fields[0], lst, lineno, "image")
            seq = img.parent.parent.name
            if len(fields) == 1:
                out.append(self._sample(split, img, None, [seq, img.stem]))
                continue
            inside(self.root, fields[1], lst, lineno, "label")
            out.append(self._pair(split, img, self._label_for(fields[1]), [seq, img.stem]))
        return out

    def decode_label(self, raw, path):
        if self.labels == "color":
            return self.codec.decode(raw, path)
        return self.codec.decode(single_channel(raw, path), path)
