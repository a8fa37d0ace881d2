import shutil

import numpy as np
import pytest

from fixtures import bdd100k as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("bdd100k", root / "bdd100k", fx.COUNTS)


def test_parent_folder_and_2018_layout(root, tmp_path):
    assert_clean("bdd100k", root, fx.COUNTS)  # the folder holding bdd100k/ works too
    old = fx.make(tmp_path / "old", layout="2018")
    assert_clean("bdd100k", old / "bdd100k", fx.COUNTS)
    s = create_dataset("bdd100k", old / "bdd100k").samples("val")[0]
    assert s.label.name == "7d2f7975-e0c1c5a7_train_id.png" and s.id == "val/7d2f7975-e0c1c5a7"


def test_train_ids_decode_unchanged(root):
    ds = create_dataset("bdd100k", root / "bdd100k")
    s = ds.samples("train")[0]
    label = ds.read_label(s)
    np.testing.assert_array_equal(label, read_label_raw(s.label))
    names = ds.taxonomy.classes
    assert (
        names[label[0, 0]] == "sidewalk" and names[label[0, 12]] == "car" and label[0, 18] == 255
    )  # shift 1


def test_identity_to_cityscapes(root):
    m = load_mapping("bdd100k__cityscapes")
    assert m.is_partition and np.array_equal(m.allowed, np.eye(19, dtype=bool))


def _unknown(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 19
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown, "unknown label id(s) [19]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported("bdd100k", root / "bdd100k", damage, text, capsys, named=named)


def test_colormaps_are_read_when_masks_are_absent_and_equal_the_masks(root):
    """Issue 11 #16: with only ``labels/sem_seg/colormaps/`` (palette PNGs, index = train id) the adapter used to
    list every sample without a label; now it reads them, and they decode to exactly what ``masks/`` holds."""
    base = root / "bdd100k"
    ds = create_dataset("bdd100k", base)
    from_masks = {s.id: ds.read_label(s) for split in ds.splits for s in ds.samples(split)}
    shutil.rmtree(base / "labels" / "sem_seg" / "masks")
    assert_clean("bdd100k", base, fx.COUNTS)
    ds = create_dataset("bdd100k", base)
    samples = [s for split in ds.splits for s in ds.samples(split)]
    assert {s.label.parent.parent.name for s in samples} == {"colormaps"}
    assert sorted(from_masks) == sorted(s.id for s in samples)
    for s in samples:
        np.testing.assert_array_equal(ds.read_label(s), from_masks[s.id])


def test_colormap_saved_as_rgb_decodes_by_colour(root):
    base = root / "bdd100k"
    shutil.rmtree(base / "labels" / "sem_seg" / "masks")
    ds = create_dataset("bdd100k", base)
    s = ds.samples("val")[0]
    expected = ds.read_label(s)
    write_png(s.label, ds.taxonomy.palette()[expected])
    assert read_label_raw(s.label).ndim == 3
    np.testing.assert_array_equal(ds.read_label(s), expected)


def test_missing_label_names_the_expected_path(root):
    """Issue 11 #15: "label file missing" now names the mask path it looked for."""
    base = root / "bdd100k"
    s = create_dataset("bdd100k", base).samples("train")[0]
    s.label.unlink()
    (problem,) = check_dataset(create_dataset("bdd100k", base)).problems
    assert problem[0] == str(s.image)
    assert f"label file missing (expected {s.label})" in problem[1]
    assert "labels/sem_seg/masks/train/0004a4c0-d4dff0ad.png" in problem[1]
