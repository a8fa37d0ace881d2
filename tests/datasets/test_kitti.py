import numpy as np
import pytest

from fixtures import kitti as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "kitti")


def test_fixture_passes_check(root):
    assert_clean("kitti", root, fx.COUNTS)


def test_unlabelled_testing_folder_is_not_a_split(root):
    ds = create_dataset("kitti", root)
    assert ds.splits == ("train",)
    assert [s.id for s in ds.samples("train")] == ["train/000000_10", "train/000001_10", "train/000002_10"]


def test_hand_checked_pixels(root):
    ds = create_dataset("kitti", root)
    label = ds.read_label(ds.samples("train")[1])  # column c holds id c + 1
    names = ds.taxonomy.classes
    assert names[label[3, 6]] == "road" and names[label[3, 25]] == "car" and label[3, 0] == 255


def test_cropped_copy_reports_sizes_and_label_crop_fixes_it(tmp_path, capsys):
    root = fx.make(tmp_path / "cropped", crop=(2, 3))
    report = check_dataset(create_dataset("kitti", root))
    assert len(report.problems) == 3
    assert all("label size 64x48 differs from image size 58x44" in m for _, m in report.problems)
    assert main(["datasets", "check", "kitti", "--root", str(root)]) == 1
    assert capsys.readouterr().out.count("differs from image size") == 3
    ds = create_dataset("kitti", root, label_crop="2,3")
    image, label = ds.sample(ds.samples("train")[0])
    raw = read_label_raw(ds.samples("train")[0].label)
    assert label.shape == image.shape[:2] == (44, 58)
    np.testing.assert_array_equal(label, ds.taxonomy.id_lut()[raw[2:46, 3:61]])
    assert main(["datasets", "check", "kitti", "--root", str(root), "--opt", "label_crop=2,3"]) == 0


def test_mapping_to_vistas_covers_every_class(root):
    ds = create_dataset("kitti", root)
    label = ds.read_label(ds.samples("train")[0])
    allowed = load_mapping("kitti__mapillary-vistas-v1.2").gt_lookup
    assert allowed[label[label != 255]].any(axis=1).all()


def _unknown(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 77
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown, "unknown label id(s) [77]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported("kitti", root, damage, text, capsys, named=named)
