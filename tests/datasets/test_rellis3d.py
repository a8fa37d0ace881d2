import numpy as np
import pytest

from fixtures import rellis3d as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import check_dataset, create_dataset
from segunify.errors import SegunifyError


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


@pytest.mark.parametrize("labels", ["id", "color"])
def test_fixture_passes_check(root, labels):
    assert_clean("rellis3d", root, fx.COUNTS, labels=labels)


def test_official_lists_define_the_splits(root):
    ds = create_dataset("rellis3d", root)
    assert [s.id for s in ds.samples("val")] == ["00001/frame000010-1581797150_650"]
    assert (
        ds.samples("train")[0].label
        == root / "00000/pylon_camera_node_label_id/frame000000-1581624652_750.png"
    )
    assert {s.id for s in ds.samples("all")} == {
        s.id for sp in ("train", "val", "test") for s in ds.samples(sp)
    }


def test_id_labels_decode_by_hand(root):
    ds = create_dataset("rellis3d", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    # columns hold the raw ids 0,1,3,4,...,34,29,30,32 in the taxonomy file's order, then wrap
    assert label[0, 0] == 255 and label[0, 23] == 255  # void
    assert names[label[1, 1]] == "dirt" and names[label[1, 2]] == "grass" and names[label[1, 19]] == "rubble"
    assert names[label[2, 20]] == "grass" and names[label[2, 21]] == "grass"  # ids 29, 30 fold into grass
    assert names[label[3, 22]] == "water"  # id 32 folds into water


def test_color_labels_decode_like_id_labels(root):
    by_id, by_color = create_dataset("rellis3d", root), create_dataset("rellis3d", root, labels="color")
    for a, b in zip(by_id.samples("all"), by_color.samples("all"), strict=True):
        assert b.label.parent.name == "pylon_camera_node_label_color"
        np.testing.assert_array_equal(by_id.read_label(a), by_color.read_label(b))


def test_bad_options_and_lists(root):
    with pytest.raises(SegunifyError, match="labels must be 'id' or 'color'"):
        create_dataset("rellis3d", root, labels="rgb")
    (root / "val.lst").write_text("a b c\n")
    with pytest.raises(SegunifyError, match=r"val.lst:1: expected '<image> <label>'"):
        create_dataset("rellis3d", root).samples("val")
    (root / "test.lst").unlink()
    with pytest.raises(SegunifyError, match=r"split list \(official test list of .*\) not found"):
        create_dataset("rellis3d", root).samples("test")


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_id_label_is_reported(root, kind, capsys):
    assert_corruption_reported("rellis3d", root, kind, "id", "val", capsys)


def test_unknown_colour_is_reported(root, capsys):
    assert_corruption_reported("rellis3d", root, "unknown", "color", "test", capsys, labels="color")


def test_listed_image_that_is_absent_is_reported(root):
    (root / "00001/pylon_camera_node/frame000010-1581797150_650.jpg").unlink()
    ((file, message),) = check_dataset(create_dataset("rellis3d", root), ["val"]).problems
    assert file.endswith("frame000010-1581797150_650.jpg") and "image file not found" in message
