import pytest

from fixtures import freiburg_forest as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import create_dataset


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("freiburg-forest", root, fx.COUNTS)


def test_both_label_namings_are_found(root):
    ds = create_dataset("freiburg-forest", root)
    assert ds.samples("train")[0].label.name == "b1-09517_mask.png"
    assert ds.samples("test")[0].label.name == "b275-311_Clipped.png"
    assert [s.id for s in ds.samples("train")] == ["train/b1-09517", "train/b84-693"]


def test_colours_decode_by_hand(root):
    ds = create_dataset("freiburg-forest", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # white void
    assert names[label[0, 1]] == "road" and names[label[0, 2]] == "grass"
    assert names[label[0, 3]] == "vegetation" and names[label[0, 4]] == "vegetation"  # Tree colour folds in
    assert names[label[0, 5]] == "sky" and names[label[0, 6]] == "obstacle"  # black is Obstacle


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("freiburg-forest", root, kind, "color", "test", capsys)
