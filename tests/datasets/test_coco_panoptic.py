import json

import pytest

from fixtures import coco_panoptic as fx
from fixtures.urban2_util import assert_clean, assert_reported
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "coco")


def label_path(root, split, image_id):
    return root / "annotations" / f"panoptic_{split}2017" / f"{image_id:012d}.png"


def test_fixture_passes_check(root, capsys):
    assert_clean("coco-panoptic", root, fx.COUNTS, capsys)


def test_urban_subset_by_id_list(root, capsys):
    ids = root / "urban_ids.txt"
    assert_clean("coco-panoptic", root, {"train": 1, "val": 1}, capsys, image_ids=ids)
    ds = create_dataset("coco-panoptic", root, image_ids=str(ids))
    assert [s.id for s in ds.samples("train")] == ["train/000000000724"]
    names = root / "names.txt"  # file names and unpadded ids work too; '#' starts a comment
    names.write_text("000000001532.jpg  # a file name\n139\n")
    ds = create_dataset("coco-panoptic", root, image_ids=f"{names},{ids}")
    assert len(ds.samples("train")) == 2 and len(ds.samples("val")) == 1


def test_segment_ids_decode_to_categories_by_hand(root):
    ds = create_dataset("coco-panoptic", root)
    sample = ds.samples("train")[0]
    assert sample.id == "train/000000000724"
    label = ds.read_label(sample)
    names = [None if v == 255 else ds.taxonomy.classes[v] for v in label[1]]
    assert names == fx.EXPECTED_724  # segment 1+256*3+65536*2 is a car; the crowd segment is person
    val = ds.read_label(ds.samples("val")[0])
    assert [ds.taxonomy.classes[v] for v in val[0, [0, 7]]] == ["truck", "pavement-merged"]  # id 200*65536


def test_missing_label_is_reported(root, capsys):
    label_path(root, "val", 139).unlink()
    assert_reported("coco-panoptic", root, capsys, "000000000139.png", "label file not found")


def test_unknown_segment_is_reported(root, capsys):
    path = label_path(root, "train", 1532)
    raw = read_label_raw(path)
    raw[2, 2] = (7, 0, 0)
    write_png(path, raw)
    assert_reported(
        "coco-panoptic",
        root,
        capsys,
        path.name,
        "segment id(s) [7] are not in segments_info of panoptic_train2017.json",
    )


def test_unknown_category_is_reported(root, capsys):
    path = root / "annotations" / "panoptic_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 12  # COCO never used id 12
    path.write_text(json.dumps(data))
    assert_reported(
        "coco-panoptic", root, capsys, "000000000139.png", "category id(s) [12] in panoptic_val2017.json"
    )


def test_wrong_size_is_reported(root, capsys):
    path = label_path(root, "train", 724)
    raw = read_label_raw(path)
    write_png(path, raw[:2])
    assert_reported("coco-panoptic", root, capsys, path.name, "label size 8x2 differs from image size 8x3")


def test_bad_id_lists_name_file_and_line(root):
    with pytest.raises(SegunifyError, match="image id list not found"):
        create_dataset("coco-panoptic", root, image_ids=root / "nope.txt")
    bad = root / "bad.txt"
    bad.write_text("724\nstreet\n")
    with pytest.raises(SegunifyError, match=r"bad\.txt:2: expected an image id or file name, got 'street'"):
        create_dataset("coco-panoptic", root, image_ids=bad)
