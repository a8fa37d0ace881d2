import pytest

from fixtures import great_outdoors as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported, ids_label, image
from segunify.datasets import create_dataset


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("great-outdoors", root, fx.COUNTS)


def test_split_from_name_prefix_and_nested_tree(root):
    ds = create_dataset("great-outdoors", root)
    assert [s.id for s in ds.samples("train")] == [
        "train/train_1737732983136677888",
        "train/train_1737732990000000000",
    ]
    image(root / "val" / "images" / "1737800000000000000.png", 4, 24)
    ids_label(root / "val" / "labels" / "1737800000000000000.png", [1, 3], 4, 24)
    assert len(create_dataset("great-outdoors", root).samples("val")) == 2


def test_labels_decode_by_hand(root):
    ds = create_dataset("great-outdoors", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # void
    assert names[label[0, 1]] == "dirt" and names[label[0, 10]] == "gravel" and names[label[0, 12]] == "mulch"
    assert names[label[0, 22]] == "dry_grass" and names[label[0, 23]] == "rough_trail"


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("great-outdoors", root, kind, "id", "val", capsys)
