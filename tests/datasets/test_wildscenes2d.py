import pytest

from fixtures import wildscenes2d as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("wildscenes2d", root, fx.COUNTS)


def test_root_may_be_the_wildscenes2d_folder(root):
    ds = create_dataset("wildscenes2d", root / "WildScenes2d", split_dir=root / "splits" / "opt2d")
    assert [s.id for s in ds.samples("val")] == ["K-01/1624326169-277052847"]
    assert ds.samples("val")[0].rel == "K-01/indexLabel/1624326169-277052847.png"


def test_labels_decode_by_hand(root):
    ds = create_dataset("wildscenes2d", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # unlabelled
    assert names[label[0, 1]] == "asphalt/concrete" and names[label[0, 17]] == "sky"
    assert names[label[0, 18]] == "grass"


def test_split_file_errors_name_the_file(root):
    (root / "splits/opt2d/test.csv").write_text("id,im_path\nx,/WildScenes2d/a.png\n")
    with pytest.raises(SegunifyError, match=r"test.csv:1: header lacks column\(s\) \['label_path'\]"):
        create_dataset("wildscenes2d", root).samples("test")


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("wildscenes2d", root, kind, "id", "train", capsys)
