import json

import numpy as np
import pytest

from fixtures import idd as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.datasets import create_dataset
from segunify.datasets.idd import rasterize_polygons
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "IDD_Segmentation")


@pytest.fixture
def json_only(tmp_path):
    return fx.make(tmp_path / "IDD_json", pngs=False)


def test_fixture_passes_check(root):
    assert_clean("idd", root, fx.COUNTS)


def test_polygon_only_release_passes_check(json_only, root):
    assert_clean("idd", json_only, fx.COUNTS)
    assert_clean("idd", root, fx.COUNTS, label_source="json")  # --opt label_source=json through the CLI
    s = create_dataset("idd", json_only).samples("train")[0]
    assert s.label.name == "005626_gtFine_polygons.json"
    assert s.rel == "gtFine/train/0/005626_gtFine_labellevel3Ids.png"  # outputs are named like the PNG


def test_label_source_option(root):
    png = create_dataset("idd", root).samples("val")[0]
    assert png.label.name == "012449_gtFine_labellevel3Ids.png"
    forced = create_dataset("idd", root, label_source="json").samples("val")[0]
    assert forced.label.suffix == ".json" and forced.rel == png.rel
    with pytest.raises(SegunifyError, match="label_source must be one of auto, png, json"):
        create_dataset("idd", root, label_source="xml")


@pytest.mark.parametrize("source", ["png", "json"])
def test_hand_checked_pixels(root, source):
    ds = create_dataset("idd", root, label_source=source)
    label = ds.read_label(ds.samples("train")[0])
    for (r, c), level3 in fx.EXPECTED.items():
        assert label[r, c] == level3, (r, c)
    assert (
        ds.taxonomy.classes[label[36, 15]] == "car" and ds.taxonomy.classes[label[7, 52]] == "person/animal"
    )


def test_rasterisation_matches_the_official_drawing(root):
    """cv2 polygons vs. the official Pillow drawing: identical on the axis-aligned rectangles; on the
    float-vertex triangle only pixels on its slanted edges differ (rounding of the vertices)."""
    ds = create_dataset("idd", root, label_source="json")
    s = ds.samples("train")[0]
    ours = rasterize_polygons(s.label)
    official = read_label_raw(s.label.with_name("005626_gtFine_labellevel3Ids.png"))
    differ = ours != official
    rows, cols = np.nonzero(differ)
    assert ((rows >= 22) & (rows <= 29) & (cols >= 30) & (cols <= 46)).all()  # only around the triangle
    assert np.bincount(rows).max() <= 3  # a pixel or two per slanted edge and row
    assert abs(int((ours == 8).sum()) - int((official == 8).sum())) <= 8


def test_every_class_has_a_mapping_row():
    for source in ("cityscapes", "mapillary-vistas-v1.2"):
        m = load_mapping(f"idd__{source}")
        assert m.allowed.shape[0] == 26
    assert set(fx.LEVEL3.values()) == set(range(26)) | {255}


def _unknown_png(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 26
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (
            lambda p: (
                p.unlink(),
                p.with_name(p.name.replace("labellevel3Ids.png", "polygons.json")).unlink(),
            ),
            "label file missing",
            "image",
        ),
        (_unknown_png, "unknown label id(s) [26]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_corrupted_png_is_reported(root, damage, text, named, capsys):
    assert_reported("idd", root, damage, text, capsys, named=named)


def _edit_json(change):
    def damage(path):
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


@pytest.mark.parametrize(
    ("damage", "text"),
    [
        (
            _edit_json(lambda d: d["objects"][2].update(label="hovercraft")),
            "unknown IDD label 'hovercraft' (object 2)",
        ),
        (_edit_json(lambda d: d.update(imgWidth=65)), "differs from image size"),
        (_edit_json(lambda d: d["objects"][0].pop("polygon")), "object 0 ('sky') has no valid polygon"),
        (_edit_json(lambda d: d.pop("imgHeight")), "not an IDD polygon file"),
        (lambda p: p.write_text("{not json"), "not an IDD polygon file"),
    ],
    ids=["unknown-label", "size", "no-polygon", "no-height", "bad-json"],
)
def test_corrupted_polygons_are_reported(json_only, damage, text, capsys):
    assert_reported("idd", json_only, damage, text, capsys)
