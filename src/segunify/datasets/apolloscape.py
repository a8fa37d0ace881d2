"""ApolloScape scene parsing: ``<road>/ColorImage/Record<NNN>/Camera <k>/<frame>.jpg`` images and
``<road>/Label/Record<NNN>/Camera <k>/<frame>_bin.png`` 8-bit id labels (``<frame>.png`` in ``road01_ins``),
with ``<road>`` one of the release folders (``road01_ins``, ``road02_seg``, ...).

Splits come from the release's ``public_image_lists/*_{train,val}.lst`` (tab-separated image and label path,
relative to the root): several list files of one split are merged. ``all`` is every labelled image found in
the road folders, for downloads without the lists.
"""

from __future__ import annotations

from pathlib import Path

from segunify.datasets.base import DatasetAdapter, Sample, inside, register_dataset
from segunify.errors import SegunifyError
from segunify.jsonio import read_text

LISTS = "public_image_lists"


@register_dataset
class ApolloScape(DatasetAdapter):
    name = "apolloscape"
    taxonomy_name = "apolloscape"
    splits = ("train", "val", "all")
    description = "ApolloScape scene parsing (8-bit id labels, 3384x2710)"
    homepage = "https://apolloscape.auto/scene.html"
    layout = (
        f"{LISTS}/*_<split>.lst (train, val) or <road>/ColorImage/Record*/Camera */<frame>.jpg with "
        "<road>/Label/Record*/Camera */<frame>_bin.png (all)"
    )

    def _label_for(self, image: Path) -> Path | None:
        """``ColorImage/../<frame>.jpg`` -> ``Label/../<frame>_bin.png``, else ``<frame>.png`` (road01_ins)."""
        rel = image.relative_to(self.root).parts
        if len(rel) < 3 or rel[1] != "ColorImage":
            return None
        label_dir = self.root.joinpath(rel[0], "Label", *rel[2:-1])
        for name in (f"{image.stem}_bin.png", f"{image.stem}.png"):
            if (label_dir / name).is_file():
                return label_dir / name
        return None

    def _make(self, split: str, image: Path, label: Path | None) -> Sample:
        rel = image.relative_to(self.root).parts  # road, ColorImage, Record, Camera, file
        return self._sample(split, image, label, [rel[0], *rel[2:-1], image.stem])

    def _list(self, split):
        if split == "all":
            return [
                self._make(split, img, self._label_for(img))
                for road in sorted(p for p in self.root.iterdir() if (p / "ColorImage").is_dir())
                for img in (road / "ColorImage").rglob("*.jpg")
            ]
        lists = sorted((self.root / LISTS).glob(f"*_{split}.lst"))
        found: dict[str, Sample] = {}
        for lst in lists:
            for lineno, line in enumerate(read_text(lst, "image list").splitlines(), start=1):
                if not line.strip():
                    continue
                fields = [f.strip() for f in line.split("\t")]
                image = inside(self.root, fields[0], lst, lineno, "image")
                if not fields[0].endswith(".jpg") or "ColorImage" not in Path(fields[0]).parts:
                    raise SegunifyError(
                        f"expected '<road>/ColorImage/.../<frame>.jpg<TAB><label>', got {line!r}", lst, lineno
                    )
                listed = (
                    inside(self.root, fields[1], lst, lineno, "label")
                    if len(fields) > 1 and fields[1]
                    else None
                )
                label = listed if listed is not None and listed.is_file() else self._label_for(image)
                sample = self._make(split, image, label)
                found.setdefault(sample.id, sample)
        return list(found.values())
