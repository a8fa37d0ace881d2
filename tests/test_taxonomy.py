import re

import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs_labels

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE, available_taxonomies, load_taxonomy, parse_taxonomy


def test_cityscapes_matches_cityscapesscripts():
    tax = load_taxonomy("cityscapes")
    ref = [lab for lab in cs_labels.labels if lab.id >= 0]
    assert len(tax.labels) == 34 == len(ref)
    assert tax.num_classes == 19
    for ours, theirs in zip(tax.labels, ref, strict=True):
        assert (ours.id, ours.name, ours.category, ours.color) == (
            theirs.id,
            theirs.name,
            theirs.category,
            theirs.color,
        )
        assert ours.train_id == (IGNORE if theirs.trainId in (-1, 255) else theirs.trainId)
    lut = tax.id_lut()
    for lab in ref:
        assert lut[lab.id] == (IGNORE if lab.trainId in (-1, 255) else lab.trainId)
    assert tax.classes[13] == "car" and tax.colors[0] == (128, 64, 128)


def test_cityscapes_categories_follow_category_ids():
    tax = load_taxonomy("cityscapes-categories")
    assert tax.classes == ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
    lut = tax.id_lut()
    for lab in cs_labels.labels:
        if lab.id >= 0:
            assert lut[lab.id] == (IGNORE if lab.categoryId == 0 else lab.categoryId - 1), lab.name


def test_camvid_and_rugd():
    camvid = load_taxonomy("camvid")
    assert camvid.num_classes == 11 and camvid.id_lut()[11] == IGNORE and camvid.classes[8] == "Car"
    rugd = load_taxonomy("rugd")
    assert rugd.num_classes == 24
    table = rugd.color_table()
    assert table[(0, 0, 0)] == IGNORE and table[(64, 64, 64)] == rugd.index("asphalt")


@pytest.mark.parametrize("name", available_taxonomies())
def test_every_shipped_taxonomy_loads(name):
    tax = load_taxonomy(name)
    assert tax.num_classes > 0
    assert len(set(tax.classes)) == tax.num_classes
    assert tax.palette().shape == (256, 3)


def test_user_file_by_path(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "# my classes\nid,name,train_id,category,color\n0,void,255,void,0 0 0\n1,road,0,flat,1 2 3\n2,car,1,vehicle,4 5 6\n"
    )
    tax = load_taxonomy(path)
    assert tax.name == "mine" and tax.classes == ("road", "car") and tax.description == "my classes"
    assert list(tax.id_lut()[:3]) == [IGNORE, 0, 1]


def test_user_file_saved_by_a_spreadsheet_with_a_bom(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_text(
        "\ufeffid,name,train_id,category,color\n0,void,255,void,0 0 0\n1,road,0,flat,1 2 3\n", "utf-8"
    )
    assert load_taxonomy(path).classes == ("road",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("0,a,0,x,1 2 3\n1,b,2,x,1 2 4\n", "missing [1]"),
        ("0,a,0,x,1 2 3\n0,b,1,x,1 2 4\n", "id 0 repeats line 2"),
        ("0,a,0,x,1 2\n", "bad color"),
        ("0,a,zero,x,1 2 3\n", "bad train_id"),
        ("0,a,0,x\n", "expected 5 fields"),
        ("0,a,0,x,1 2 3\n1,a,1,x,1 2 4\n", "class names must be unique"),
    ],
)
def test_bad_taxonomy_files(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text("id,name,train_id,category,color\n" + body)
    with pytest.raises(SegunifyError, match=re.escape(message)) as info:
        load_taxonomy(path)
    assert str(path) in str(info.value)


def test_unknown_taxonomy_name():
    with pytest.raises(SegunifyError, match="unknown taxonomy 'nope'"):
        load_taxonomy("nope")


def test_header_is_required():
    with pytest.raises(SegunifyError, match="header lacks"):
        parse_taxonomy("0,a,0,x,1 2 3\n", "t")


def test_index_is_case_insensitive():
    tax = load_taxonomy("cityscapes")
    assert tax.index("Traffic Light") == 6
    with pytest.raises(KeyError):
        tax.index("spaceship")
    assert np.array_equal(tax.known_ids(), np.arange(34))
