import pytest

from fixtures import goose as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "goose")


def test_fixture_passes_check(root):
    assert_clean("goose", root, fx.COUNTS)


def test_layout_ids_and_cameras(root):
    ds = create_dataset("goose", root)
    ids = [s.id for s in ds.samples("train")]
    assert ids == [
        "train/2022-07-22_flight/2022-07-22_flight__0071_1658494234334310308",
        "train/excavator_area/2023-05-17_excavator__0003_1684329283000000000",
    ]
    assert ds.samples("train")[1].image.name.endswith("_camera_left.png")
    assert ds.samples("train")[1].label.name.endswith("_labelids.png")


def test_labels_decode_to_goose_classes(root):
    ds = create_dataset("goose", root)
    first, second = (ds.read_label(s) for s in ds.samples("train"))
    names = ds.taxonomy.classes
    assert first.dtype.name == "uint8"
    assert names[first[0, 0]] == "undefined" and names[first[2, 23]] == "asphalt"
    assert names[first[0, 31]] == "soil"
    assert names[second[0, 0]] == "rider" and names[second[3, 31]] == "military_vehicle"  # shifted by 32
    assert sorted({*first.ravel(), *second.ravel()}) == list(range(64))


def test_goose_to_offroad_groups():
    m = load_mapping("goose__offroad")
    off = m.source.classes
    allowed = {m.extra.classes[k]: {off[c] for c in cs} for k, cs in enumerate(m.allowed_sets)}
    assert allowed["bikeway"] == allowed["rail_track"] == {"asphalt"}
    assert allowed["curb"] == {"sidewalk"} and allowed["moss"] == {"tree"}
    assert allowed["undefined"] == allowed["scenery_vegetation"] == set()
    assert all(len(v) <= 1 for v in allowed.values())
    assert set(off) - set().union(*allowed.values()) == set()  # every off-road class comes from GOOSE


def test_missing_layout_is_one_clear_error(tmp_path):
    ds = create_dataset("goose", tmp_path)
    with pytest.raises(SegunifyError, match=r"missing folder .*images/<split>"):
        ds.samples("train")


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("goose", root, kind, "id", "train", capsys)


def test_labels_in_the_offroad_set(root):
    ds = create_dataset("goose", root, classes="offroad")
    assert ds.taxonomy.name == "offroad"
    first = ds.read_label(ds.samples("train")[0])  # column c holds GOOSE id c
    off = ds.taxonomy.classes
    assert first[0, 0] == 255  # undefined -> void
    assert off[first[0, 23]] == "asphalt" and off[first[0, 7]] == "asphalt"  # asphalt, bikeway
    assert off[first[0, 22]] == "sidewalk" and off[first[0, 16]] == "tree"  # curb, forest
    assert first[0, 4] == 255 and off[first[0, 2]] == "snow"  # obstacle -> void
    assert_clean("goose", root, fx.COUNTS, classes="offroad")
    with pytest.raises(SegunifyError, match="classes must be 'goose' or 'offroad'"):
        create_dataset("goose", root, classes="cityscapes")
