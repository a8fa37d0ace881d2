import json
import sys

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from fixtures import nuimages as fx  # noqa: E402
from fixtures.urban2_util import assert_clean, assert_reported, write_image  # noqa: E402
from segunify.datasets import create_dataset  # noqa: E402
from segunify.errors import SegunifyError  # noqa: E402
from segunify.taxonomy import load_taxonomy  # noqa: E402


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "nuimages")


def edit(path, change):
    records = json.loads(path.read_text())
    change(records)
    path.write_text(json.dumps(records))


def test_fixture_passes_check(root, capsys):
    assert_clean("nuimages", root, fx.COUNTS, capsys)


def test_taxonomy_ids_are_the_devkit_semantic_indices():
    """name_to_index_mapping: 0 background, the 23 object categories alphabetically from 1, driveable 24, ego 31."""
    labels = [lab for lab in load_taxonomy("nuimages").labels if lab.name != "background"]
    objects = sorted(lab.name for lab in labels if lab.name not in ("flat.driveable_surface", "vehicle.ego"))
    ids = {lab.name: lab.id for lab in labels}
    assert [ids[n] for n in objects] == list(range(1, 24))
    assert ids["flat.driveable_surface"] == 24 and ids["vehicle.ego"] == 31 and len(ids) == 25


def test_key_frames_only_and_ids(root):
    ds = create_dataset("nuimages", root)
    samples = ds.samples("mini")  # the sweep frame of v1.0-mini is not a sample
    assert [s.id for s in samples] == [
        "CAM_BACK_LEFT/n015-2018-07-18-11-07-57+0800__CAM_BACK_LEFT__1531883530447423",
        "CAM_FRONT/n008-2018-08-01-15-16-36-0400__CAM_FRONT__1533151603512404",
    ]
    assert (
        samples[1].rel == "samples/CAM_FRONT/n008-2018-08-01-15-16-36-0400__CAM_FRONT__1533151603512404.png"
    )


def test_masks_painted_like_the_devkit(root):
    ds = create_dataset("nuimages", root)
    t = ds.taxonomy
    for split in ("mini", "val"):
        for s in ds.samples(split):
            label = ds.read_label(s)
            assert np.array_equal(label, t.id_lut()[fx.expected_raw()])
    c = t.classes
    assert (
        c[label[0, 0]] == "animal" and c[label[2, 16]] == "vehicle.car" and c[label[0, 22]] == "vehicle.truck"
    )
    assert c[label[0, 30]] == "vehicle.truck"  # token f1.. is painted after f0.. (car)
    assert c[label[5, 31]] == "vehicle.car"  # objects over surfaces
    assert (
        c[label[5, 3]] == "flat.driveable_surface" and c[label[7, 3]] == "vehicle.ego"
    )  # surfaces in table order
    assert c[label[1, 27]] == "background"


def test_missing_table_is_reported(root, capsys):
    (root / "v1.0-val" / "object_ann.json").unlink()
    assert_reported("nuimages", root, capsys, "object_ann.json", "nuImages table object_ann.json not found")


def test_unknown_category_is_reported(root, capsys):
    def rename(cats):
        next(c for c in cats if c["name"] == "vehicle.trailer")["name"] = "vehicle.hovercraft"

    edit(root / "v1.0-mini" / "category.json", rename)
    assert_reported(
        "nuimages", root, capsys, "category.json", "categories ['vehicle.hovercraft'] are not in taxonomy"
    )


def test_mask_of_wrong_size_is_reported(root, capsys):
    def widen(anns):
        ann = next(a for a in anns if a["mask"] is not None)
        mask = np.zeros((fx.H, fx.W + 1), dtype=np.uint8)
        mask[0, 0] = 1
        ann["mask"] = fx.rle(mask)

    edit(root / "v1.0-val" / "object_ann.json", widen)
    assert_reported(
        "nuimages", root, capsys, "object_ann.json", "mask size 33x8 differs from the image size 32x8"
    )


def test_image_of_wrong_size_is_reported(root, capsys):
    image = root / fx.FRAMES["v1.0-val"][0]
    write_image(image, fx.H, fx.W + 4)
    assert_reported("nuimages", root, capsys, image.name, "image is 36x8 but sample_data.json says 32x8")


def test_without_pycocotools_the_error_says_what_to_install(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    ds = create_dataset("nuimages", root)
    with pytest.raises(SegunifyError, match="pip install pycocotools"):
        ds.read_label(ds.samples("val")[0])
