import numpy as np
import pytest

from fixtures import camvid as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.datasets import create_dataset
from segunify.datasets.camvid32 import segnet_split
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping


@pytest.fixture
def segnet(tmp_path):
    return fx.make(tmp_path / "CamVid")


@pytest.fixture
def original(tmp_path):
    return fx.make_original(tmp_path / "CamVid_full")


def test_segnet_fixture_passes_check(segnet):
    assert_clean("camvid", segnet, fx.SEGNET_COUNTS)


def test_segnet_index_labels_decode(segnet):
    ds = create_dataset("camvid", segnet)
    label = ds.read_label(ds.samples("val")[0])  # shift 3: column c holds (c + 3) % 12
    assert ds.taxonomy.classes[label[0, 0]] == "Road" and label[0, 8] == 255  # 11 = Void


def test_original_fixture_passes_check(original):
    assert_clean("camvid32", original, fx.ORIGINAL_COUNTS)


def test_original_segnet_splits(original):
    ds = create_dataset("camvid32", original)
    for split in ("train", "val", "test"):
        expected = sorted(f"{split}/{f}" for f, s in fx.ORIGINAL_FRAMES.items() if s == split)
        assert [s.id for s in ds.samples(split)] == expected
    assert ds.samples("val")[0].label.name == "0016E5_07959_L.png"


def test_segnet_split_rule_matches_the_real_segnet_lists(camvid_root):
    """The rule reproduces the SegNet train/val lists of the bundled copy: 367 / 101 frames."""
    for split in ("train", "val"):
        names = [p.stem for p in (camvid_root / split).glob("*.png")]
        assert {segnet_split(n) for n in names} == {split}
    assert segnet_split("Seq05VD_f05100") == "test" and segnet_split("0001TP_010380") == "test"
    assert segnet_split("not_a_frame") is None


def test_original_colours_decode_by_hand(original):
    ds = create_dataset("camvid32", original)
    s = next(s for s in ds.samples("train") if s.id == "train/0001TP_008520")
    label = ds.read_label(s)  # frame 0 (seed 0): column c holds colour row c % 32
    names = ds.taxonomy.classes
    assert names[label[0, 0]] == "Animal" and names[label[0, 17]] == "Road" and names[label[0, 31]] == "Wall"
    assert label[0, 30] == 255  # Void (0 0 0)
    np.testing.assert_array_equal(label[:, 32:], label[:, :32])


def test_original_mappings_cover_every_class(original):
    ds = create_dataset("camvid32", original)
    label = ds.read_label(ds.samples("train")[0])
    cs = load_mapping("camvid32__cityscapes").gt_lookup[label]
    mv = load_mapping("camvid32__mapillary-vistas-v1.2").gt_lookup[label]
    names = np.asarray(ds.taxonomy.classes + ("",))[np.minimum(label, 31)]
    assert set(names[(label != 255) & ~cs.any(-1)].tolist()) == {
        "Animal", "Bridge", "CartLuggagePram", "Misc_Text", "ParkingBlock", "TrafficCone", "Tunnel"
    }  # fmt: skip
    assert set(names[(label != 255) & ~mv.any(-1)].tolist()) == {"TrafficCone"}


def _unknown_colour(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = (1, 2, 3)
    write_png(path, raw)


def _unknown_id(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 12
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown_colour, "unknown colour(s) for taxonomy 'camvid32': (1, 2, 3) x1", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_original_corrupted_label_is_reported(original, damage, text, named, capsys):
    assert_reported("camvid32", original, damage, text, capsys, named=named)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown_id, "unknown label id(s) [12]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_segnet_corrupted_label_is_reported(segnet, damage, text, named, capsys):
    assert_reported("camvid", segnet, damage, text, capsys, named=named)
