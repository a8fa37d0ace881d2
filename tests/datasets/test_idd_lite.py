"""IDD Lite adapter, taxonomy and mappings (issue 12): the release layout, level-1 ids, and mappings derived
from IDD's level-3 -> level-1 hierarchy."""

import numpy as np
import pytest

from fixtures import idd_lite as fx
from fixtures.urban_util import assert_clean, assert_reported, widen
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping
from segunify.paths import shared_root

# level1Id of each IDD level-3 class (anue_labels.py: level3Id -> level1Id), written out independently of the
# mapping files so that a test can rebuild the level-1 sets from the level-3 mappings.
LEVEL1_OF_LEVEL3 = [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 6]
# What the partition rule removes from each level-1 union (documented in the mapping files' headers).
REMOVED = {
    "cityscapes": {0: {"terrain"}, 4: {"sidewalk"}, 6: {"building", "vegetation"}},
    "mapillary-vistas-v1.2": {
        0: {"nature--terrain", "nature--sand"},
        1: {"object--manhole", "object--catch-basin"},
        6: {"construction--structure--building", "nature--vegetation"},
    },
}


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "IDD_Lite")


def test_fixture_passes_check(root):
    assert_clean("idd-lite", root, fx.COUNTS)


def test_release_folder_or_its_parent_give_the_same_samples(root):
    outer = create_dataset("idd-lite", root).samples("train")
    inner = create_dataset("idd-lite", root / "idd20k_lite").samples("train")
    assert [s.id for s in outer] == ["train/0/frame0992", "train/472/frame24567"]
    assert [(s.id, s.rel, s.label) for s in outer] == [(s.id, s.rel, s.label) for s in inner]
    assert outer[0].rel == "gtFine/train/0/frame0992_label.png"
    assert outer[0].image.name == "frame0992_image.jpg"


def test_hand_checked_pixels(root):
    ds = create_dataset("idd-lite", root)
    image, label = ds.sample(ds.samples("train")[1])  # seed 1: column c holds IDS[(c + 1) % 8]
    assert image.shape == (fx.H, fx.W, 3) and label.shape == (fx.H, fx.W)
    names = ds.taxonomy.classes
    assert names[label[0, 0]] == "non-drivable" and names[label[5, 5]] == "sky" and label[5, 6] == 255
    assert names[label[0, 7]] == "drivable"


def _unknown(path):
    raw = read_label_raw(path).copy()
    raw[0, 0] = 7
    write_png(path, raw)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown, "unknown label id(s) [7]", "label"),
        (widen, "differs from image size", "label"),
    ],
    ids=["missing", "unknown", "size"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported("idd-lite", root, damage, text, capsys, named=named)


@pytest.mark.parametrize("source", ["cityscapes", "mapillary-vistas-v1.2"])
def test_mapping_is_the_level3_union_by_the_hierarchy_made_a_partition(source):
    """Each level-1 set = the union of the level-3 mapping's sets of its members (IDD's hierarchy), less what
    the documented partition rule removes; the result is a partition."""
    level3 = load_mapping(f"idd__{source}")
    level1 = load_mapping(f"idd-lite__{source}")
    assert level1.is_partition
    names = level1.source.classes
    for k in range(7):
        union = {names[c] for j, cs in enumerate(level3.allowed_sets) if LEVEL1_OF_LEVEL3[j] == k for c in cs}
        assert {names[c] for c in level1.allowed_sets[k]} == union - REMOVED[source].get(k, set()), k


def test_cityscapes_mapping_covers_every_cityscapes_class_once():
    allowed = load_mapping("idd-lite__cityscapes").allowed
    assert (allowed.sum(axis=0) == 1).all()
    lut = load_mapping("idd-lite__cityscapes").source_to_extra_lut()
    assert lut[[0, 1, 9, 10, 13, 7, 2]].tolist() == [
        0,
        1,
        1,
        6,
        3,
        4,
        5,
    ]  # road sidewalk terrain sky car sign bld


@pytest.fixture(scope="module")
def shared_data():
    root = shared_root(required=False)
    if root is None or not (root / "data").is_dir():
        pytest.skip("real data not available (set SEGUNIFY_DATA)")
    return root / "data"


def _real(shared_data, folder):
    if not (shared_data / folder).is_dir():
        pytest.skip(f"real data not available: {folder}")
    return shared_data / folder


def test_real_idd_lite_counts_and_one_label(shared_data, capsys):
    root = _real(shared_data, "IDD_Lite")
    ds = create_dataset("idd-lite", root)
    train, val = ds.samples("train"), ds.samples("val")
    assert (len(train), len(val)) == (1403, 204)
    assert all(s.label is not None for s in train + val)
    image, label = ds.sample(val[0])
    assert image.shape == (227, 320, 3)
    assert set(np.unique(label).tolist()) <= {0, 1, 2, 3, 4, 5, 6, 255}
    assert main(["datasets", "check", "idd-lite", "--root", str(root), "--split", "val"]) == 0
    assert "val   │ 204" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "folder", "counts"),
    [
        ("cityscapes", "Cityscapes_subset", {"train": 5, "val": 10}),
        ("kitti", "KITTI_semantics_11", {"train": 11}),
    ],
)
def test_real_cityscapes_subset_and_kitti_11_read_as_they_are(shared_data, name, folder, counts):
    report = check_dataset(create_dataset(name, _real(shared_data, folder)), splits=list(counts))
    assert report.problems == [] and report.counts == counts
