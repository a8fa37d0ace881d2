import json

import numpy as np
import pytest

from fixtures import wilddash2 as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "wd_public_v2p0")


def test_fixture_passes_check(root):
    assert_clean("wilddash2", root, fx.COUNTS)


def reference_semantic(panoptic_png, segments_info):
    """What the official pano2sem.py writes: category id per segment, 0 elsewhere (one mask per segment)."""
    bgr = read_label_raw(panoptic_png)[:, :, ::-1].astype(np.uint32)
    ids = bgr[:, :, 0] * 65536 + bgr[:, :, 1] * 256 + bgr[:, :, 2]
    semantic = np.zeros(ids.shape, np.uint8)
    for s in segments_info:
        semantic[ids == s["id"]] = s["category_id"]
    return semantic


def test_decode_matches_the_official_pano2sem(root):
    ds = create_dataset("wilddash2", root)
    annotations = {a["file_name"]: a for a in json.loads((root / "panoptic.json").read_text())["annotations"]}
    lut = ds.taxonomy.id_lut()
    for s in ds.samples("val"):
        expected = lut[reference_semantic(s.label, annotations[s.label.name]["segments_info"])]
        np.testing.assert_array_equal(ds.read_label(s), expected)


def test_hand_checked_pixels(root):
    ds = create_dataset("wilddash2", root)
    label = ds.read_label(ds.samples("val")[0])  # frame 1: column c holds segment index (c + 1) % 82
    names = ds.taxonomy.classes  # index 0 = unlabeled pixels (segment 0), index i >= 1 = category i - 1
    assert label[0, 81] == 255  # segment 0
    assert label[0, 0] == 255  # category 0 (unlabeled), segment id 1
    assert names[label[0, 1]] == "egovehicle"  # category 1, segment id 1001 (R=233, G=3)
    assert names[label[0, 7]] == "road"  # category 7
    assert names[label[0, 80]] == "curbcut"  # category 80, segment id 80001 (B channel = 1)
    assert label[0, 4] == 255  # category 4: static (void)


def test_mappings_cover_every_class(root):
    ds = create_dataset("wilddash2", root)
    label = ds.read_label(ds.samples("val")[0])
    present = np.unique(label[label != 255])
    assert present.size == ds.taxonomy.num_classes == 75
    assert load_mapping("wilddash2__mapillary-vistas-v1.2").allowed[present].any(axis=1).all()


def test_missing_panoptic_json_is_one_clear_problem(root, capsys):
    (root / "panoptic.json").unlink()
    report = check_dataset(create_dataset("wilddash2", root))
    assert len(report.problems) == 1 and "panoptic.json not found" in report.problems[0][1]
    capsys.readouterr()
    assert main(["datasets", "check", "wilddash2", "--root", str(root)]) == 1
    captured = capsys.readouterr()
    assert "panoptic.json not found" in captured.out + captured.err


def _unknown_segment(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = (1, 2, 3)  # segment 1 + 2 * 256 + 3 * 65536 = 197121
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown_segment, "segment id(s) [197121] not in panoptic.json", "label"),
        (widen, "differs from image size", "label"),
        (lambda p: write_png(p, np.zeros((fx.H, fx.W), np.uint8)), "expected an RGB panoptic PNG", "label"),
    ],
    ids=["missing", "unknown", "size", "grey"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported("wilddash2", root, damage, text, capsys, split="val", named=named)


def test_unknown_category_is_reported(root):
    data = json.loads((root / "panoptic.json").read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 99
    (root / "panoptic.json").write_text(json.dumps(data))
    problems = check_dataset(create_dataset("wilddash2", root)).problems
    assert len(problems) == 1 and "unknown category id(s) [99]" in problems[0][1]
    assert problems[0][0].endswith("at0000_100000.png")
