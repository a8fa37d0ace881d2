import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label

from fixtures import cityscapes as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.datasets import create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "cityscapes")


def test_fixture_passes_check(root):
    assert_clean("cityscapes", root, fx.COUNTS)


def test_splits_and_coarse_labels(root):
    ds = create_dataset("cityscapes", root)
    assert [s.id for s in ds.samples("train")] == [
        "train/aachen/aachen_000000_000019",
        "train/bremen/bremen_000001_000019",
    ]
    extra = ds.samples("train_extra")[0]
    assert extra.label.name == "augsburg_000000_000000_gtCoarse_labelIds.png"
    assert extra.rel == "gtCoarse/train_extra/augsburg/augsburg_000000_000000_gtCoarse_labelIds.png"
    label = ds.read_label(extra)
    assert label[10, 10] == ds.taxonomy.index("sky") and label[35, 20] == ds.taxonomy.index("road")
    assert label[0, 0] == 255


def test_decode_matches_cityscapesscripts(root):
    """Label ids -> train ids exactly as cityscapesScripts' labels.py (trainId 255 or -1 = ignore)."""
    ds = create_dataset("cityscapes", root)
    for s in ds.samples("train") + ds.samples("val"):
        raw = read_label_raw(s.label)
        ref_lut = np.full(256, 255, np.uint8)
        for i, lab in id2label.items():
            if 0 <= i < 256 and lab.trainId not in (255, -1):
                ref_lut[i] = lab.trainId
        np.testing.assert_array_equal(ds.read_label(s), ref_lut[raw])


def test_hand_checked_pixels(root):
    ds = create_dataset("cityscapes", root)
    s = ds.samples("train")[0]  # stripes shifted by 1: column c holds id c + 1
    label = ds.read_label(s)
    names = ds.taxonomy.classes
    assert names[label[0, 6]] == "road"  # id 7
    assert names[label[0, 25]] == "car"  # id 26
    assert label[0, 8] == 255  # id 9 parking: ignored
    assert names[label[0, 32]] == "bicycle"  # id 33


def _unknown(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 40
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown, "unknown label id(s) [40]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported("cityscapes", root, damage, text, capsys, named=named)


def test_corrupted_coarse_label_is_reported(root, capsys):
    assert_reported("cityscapes", root, _unknown, "unknown label id(s) [40]", capsys, split="train_extra")


def test_img_suffix_reads_a_reencoded_copy(root):
    """A copy with JPEG images (``img_suffix``, mmsegmentation's name) pairs them with the same labels."""
    import cv2

    for s in create_dataset("cityscapes", root).samples("train"):
        img = cv2.imread(str(s.image))
        cv2.imwrite(str(s.image).replace("_leftImg8bit.png", "_leftImg8bit.jpg"), img)
        s.image.unlink()
    assert create_dataset("cityscapes", root).samples("train") == []
    ds = create_dataset("cityscapes", root, img_suffix="_leftImg8bit.jpg")
    samples = ds.samples("train")
    assert [s.id for s in samples] == [
        "train/aachen/aachen_000000_000019",
        "train/bremen/bremen_000001_000019",
    ]
    assert all(s.image.suffix == ".jpg" and s.label.name.endswith("_gtFine_labelIds.png") for s in samples)
    image, label = ds.sample(samples[0])
    assert image.shape[:2] == label.shape
    assert "_leftImg8bit.jpg" in ds.expected_layout()


@pytest.mark.parametrize("bad", ["../x.png", "a/b.png", "_leftImg8bit.txt", ".png", 3])
def test_img_suffix_must_be_an_image_ending(root, bad):
    from segunify.errors import SegunifyError

    with pytest.raises(SegunifyError, match="img_suffix"):
        create_dataset("cityscapes", root, img_suffix=bad)


def test_aachen_half_reads_100_pairs(cityscapes_half_root):
    """The shipped re-encoded copy (1024x512 JPEG, labelIds PNG): 100 clean pairs through img_suffix."""
    from segunify.datasets import check_dataset

    ds = create_dataset("cityscapes", cityscapes_half_root, img_suffix="_leftImg8bit.jpg")
    report = check_dataset(ds, ["train"])
    assert report.ok, report.problems[:3]
    assert report.counts == {"train": 100}
    image, label = ds.sample(ds.samples("train")[0])
    assert image.shape == (512, 1024, 3) and label.shape == (512, 1024)
