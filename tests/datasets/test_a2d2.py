import json

import numpy as np
import pytest

from fixtures import a2d2 as fx
from fixtures.urban2_util import assert_clean, assert_reported, stripes
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "a2d2")


def label_path(root, i):
    seq, cam, view, frame = fx.FRAMES[i]
    return (
        root
        / "camera_lidar_semantic"
        / seq
        / "label"
        / cam
        / f"{seq.replace('_', '')}_label_{view}_{frame}.png"
    )


def test_fixture_passes_check(root, capsys):
    assert_clean("a2d2", root, fx.COUNTS, capsys)


def test_root_may_be_the_semantic_folder_itself(root):
    ds = create_dataset("a2d2", root / "camera_lidar_semantic")
    assert [s.id for s in ds.samples("all")] == [
        "20180807_145028/cam_front_center/000000091",
        "20180807_145028/cam_front_center/000000092",
        "20181108_084007/cam_side_left/000001617",
    ]
    assert check_dataset(ds).ok


def test_colours_decode_by_hand(root):
    ds = create_dataset("a2d2", root)
    label = ds.read_label(ds.samples("all")[2])
    names = [ds.taxonomy.classes[v] for v in label[0]]
    # columns follow class_list.json: Car 1..4, Bicycle 1..4, Pedestrian 1..3, Truck 1..3, ...
    assert names[:4] == ["Car"] * 4 and names[4:8] == ["Bicycle"] * 4 and names[8] == "Pedestrian"
    assert names[14:17] == ["Small vehicles"] * 3 and names[25] == "Sidebars"
    assert names[-5:] == ["RD normal street", "Sky", "Buildings", "Blurred area", "Rain dirt"]
    assert label.dtype == np.uint8 and 255 not in label  # every A2D2 colour is a class
    assert len(set(names)) == 38


def test_missing_label_is_reported(root, capsys):
    label_path(root, 1).unlink()
    assert_reported(
        "a2d2", root, capsys, "20180807145028_camera_frontcenter_000000092.png", "label file missing"
    )


def test_unknown_colour_is_reported(root, capsys):
    path = label_path(root, 0)
    raw = read_label_raw(path)
    raw[1, 2] = (1, 2, 3)
    write_png(path, raw)
    assert_reported("a2d2", root, capsys, path.name, "unknown colour(s) for taxonomy 'a2d2': (1, 2, 3) x1")


def test_wrong_size_is_reported(root, capsys):
    path = label_path(root, 2)
    write_png(path, stripes([c for c, _ in fx.colours()], fx.H, fx.W + 2))
    assert_reported("a2d2", root, capsys, path.name, "label size 57x2 differs from image size 55x2")


def test_changed_class_list_is_reported(root, capsys):
    path = root / "camera_lidar_semantic" / "class_list.json"
    entries = json.loads(path.read_text())
    entries["#ff0000"] = "Bus 1"
    path.write_text(json.dumps(entries))
    assert_reported("a2d2", root, capsys, "class_list.json", "is 'Bus 1' here but 'Car 1' in taxonomy 'a2d2'")
