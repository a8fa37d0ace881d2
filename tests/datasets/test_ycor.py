import pytest

from fixtures import ycor as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import create_dataset


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("ycor", root, fx.COUNTS)


def test_valid_folder_is_the_val_split(root):
    ds = create_dataset("ycor", root)
    (s,) = ds.samples("val")
    assert s.id == "val/iid000839" and s.image == root / "valid/iid000839/rgb.jpg"
    assert s.rel == "valid/iid000839/labels.png"


def test_colours_decode_by_hand(root):
    ds = create_dataset("ycor", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # white background
    assert names[label[0, 1]] == "high_vegetation" and names[label[0, 5]] == "sky"
    assert names[label[0, 8]] == "non_traversable_low_vegetation" and label[0, 9] == 255


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("ycor", root, kind, "color", "train", capsys)
