import numpy as np
import pytest

from fixtures import apolloscape as fx
from fixtures.urban2_util import assert_clean, assert_reported, stripes
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.taxonomy import load_taxonomy


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "apolloscape")


def test_fixture_passes_check(root, capsys):
    assert_clean("apolloscape", root, fx.COUNTS, capsys)


def test_splits_come_from_the_lists_merged_and_deduplicated(root):
    ds = create_dataset("apolloscape", root)
    assert [s.id for s in ds.samples("train")] == [
        "road01_ins/Record001/Camera 5/170908_061502408_Camera_5",
        "road02_seg/Record001/Camera 5/170927_063811892_Camera_5",
    ]
    (val,) = ds.samples("val")  # listed in road02_seg_val.lst and all_val.lst
    assert val.label.name == "170927_064016919_Camera_6_bin.png"
    assert val.rel == "road02_seg/Label/Record007/Camera 6/170927_064016919_Camera_6_bin.png"


def test_without_lists_only_all_has_samples(root):
    for lst in (root / "public_image_lists").iterdir():
        lst.unlink()
    ds = create_dataset("apolloscape", root)
    assert ds.samples("train") == [] and len(ds.samples("all")) == 3


@pytest.mark.parametrize("road", ["road01_ins", "road02_seg"])  # <frame>.png and <frame>_bin.png labels
def test_labels_decode_by_hand(root, road):
    ds = create_dataset("apolloscape", root)
    s = next(s for s in ds.samples("all") if s.id.startswith(road))
    label = ds.read_label(s)
    by_id = dict(zip(fx.IDS, label[0], strict=True))
    names = ds.taxonomy.classes
    assert names[by_id[17]] == "sky" and names[by_id[33]] == "car" and names[by_id[50]] == "sidewalk"
    assert (
        names[by_id[113]] == "vegetation" and names[by_id[98]] == "bridge" and names[by_id[100]] == "overpass"
    )
    assert names[by_id[161]] == "car_groups" and names[by_id[165]] == "rider_group"
    assert by_id[0] == by_id[1] == by_id[255] == 255  # others, rover, unlabeled
    assert by_id[97] == 20 and by_id[84] == 17  # the devkit's trainIds are kept for the single classes
    assert (label == label[0]).all()


def test_missing_label_is_reported(root, capsys):
    (root / fx.label_rel(*fx.FRAMES[1][:5])).unlink()
    assert_reported("apolloscape", root, capsys, "170927_063811892_Camera_5.jpg", "label file missing")


def test_unknown_id_is_reported(root, capsys):
    path = root / fx.label_rel(*fx.FRAMES[2][:5])
    raw = read_label_raw(path)
    raw[1, 3] = 7
    write_png(path, raw)
    assert_reported("apolloscape", root, capsys, path.name, "unknown label id(s) [7]")


def test_wrong_size_is_reported(root, capsys):
    path = root / fx.label_rel(*fx.FRAMES[0][:5])
    write_png(path, stripes(fx.IDS, fx.H + 1, fx.W))
    assert_reported("apolloscape", root, capsys, path.name, "differs from image size")


def test_bad_list_line_names_file_and_line(root):
    lst = root / "public_image_lists" / "road01_ins_train.lst"
    lst.write_text(lst.read_text() + "not a path\n")
    with pytest.raises(SegunifyError, match=r"road01_ins_train\.lst:2: expected"):
        create_dataset("apolloscape", root).samples("train")


def test_taxonomy_keeps_devkit_train_ids_and_colours():
    t = load_taxonomy("apolloscape")
    lut = t.id_lut()
    assert lut[17] == 0 and lut[113] == 21 and lut[168] == 32
    assert t.colors[t.index("road")] == (192, 128, 192)  # 0xc080c0 in labels_apollo.py
    assert np.array_equal(t.known_ids(), np.array(sorted(fx.IDS)))
