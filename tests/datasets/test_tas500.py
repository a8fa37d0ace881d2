import pytest

from fixtures import tas500 as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported, color_stripes
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("tas500", root, fx.COUNTS)


def test_labels_decode_by_hand_in_both_png_kinds(root):
    ds = create_dataset("tas500", root)
    plain, grey_rgb = ds.samples("train")  # the second label is a 3-channel grey PNG
    names = ds.taxonomy.classes
    a, b = ds.read_label(plain), ds.read_label(grey_rgb)
    assert names[a[0, 0]] == "asphalt" and names[a[0, 16]] == "sky" and names[a[0, 22]] == "ego vehicle"
    assert a[0, 23] == 255  # undefined
    assert names[b[0, 0]] == "gravel" and b[0, 22] == 255  # shifted by one column


def test_colour_png_in_the_id_folder_is_rejected(root):
    ds = create_dataset("tas500", root)
    s = ds.samples("val")[0]
    write_png(s.label, color_stripes([(10, 20, 30), (0, 0, 0)], 4, 24))
    ((file, message),) = check_dataset(ds, ["val"]).problems
    assert file == str(s.label) and "got a colour image" in message


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("tas500", root, kind, "id", "train", capsys)
