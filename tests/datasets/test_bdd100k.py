import numpy as np
import pytest

from fixtures import bdd100k as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.datasets import create_dataset
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
