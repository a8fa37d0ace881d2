import pytest

from fixtures import rugd as fx
from fixtures.offroad_util import assert_clean, assert_corruption_reported
from segunify.datasets import check_dataset, create_dataset
from segunify.mapping import load_mapping


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path)


def test_fixture_passes_check(root):
    assert_clean("rugd", root, fx.COUNTS)


def test_scene_splits(root):
    ds = create_dataset("rugd", root)
    assert [s.id for s in ds.samples("val")] == ["trail-5/trail-5_00001"]
    assert [s.id for s in ds.samples("test")] == ["creek/creek_00001"]


def test_colours_decode_by_hand(root):
    ds = create_dataset("rugd", root)
    label = ds.read_label(ds.samples("train")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # void (0 0 0)
    assert (
        names[label[0, 1]] == "dirt"
        and names[label[0, 13]] == "mulch"
        and names[label[0, 24]] == "picnic-table"
    )


@pytest.mark.parametrize("kind", ["missing", "unknown", "size"])
def test_corrupted_label_is_reported(root, kind, capsys):
    assert_corruption_reported("rugd", root, kind, "color", "train", capsys)


def test_real_sample_passes_check(rugd_root):
    report = check_dataset(create_dataset("rugd", rugd_root), ["all"])
    assert report.problems == [] and report.counts == {"all": 26}


def test_real_sample_through_the_offroad_mapping(rugd_root):
    """Every pixel of the real sample is void or has a non-empty allowed off-road set."""
    ds = create_dataset("rugd", rugd_root)
    allowed = load_mapping("rugd__offroad").gt_lookup
    s = ds.samples("all")[0]
    label = ds.read_label(s)
    rows = allowed[label]
    assert (rows.any(axis=-1) | (label == 255) | (label == ds.taxonomy.index("picnic-table"))).all()


def test_rugd_to_cityscapes_mapping_choices():
    """The rows docs/your-data.md argues for: no Cityscapes class for water, rocks, logs, containers or picnic
    tables (void, as bridges, which Cityscapes ignores); forest floor (mulch) is terrain; fence regions may
    be fence or vegetation; every one-to-many row carries a comment saying why."""
    from importlib import resources

    m = load_mapping("rugd__cityscapes")
    sets = {m.extra.classes[k]: {m.source.classes[c] for c in cs} for k, cs in enumerate(m.allowed_sets)}
    assert {n for n, s in sets.items() if not s} == {
        "water", "container/generic-object", "log", "rock", "bridge", "picnic-table"
    }  # fmt: skip
    assert sets["mulch"] == {"terrain"} and sets["fence"] == {"fence", "vegetation"}
    assert sets["grass"] == {"terrain", "vegetation"} and sets["tree"] == {"vegetation"}
    assert sets["vehicle"] == {"car", "truck", "bus", "motorcycle"} and sets["sky"] == {"sky"}
    lines = (resources.files("segunify") / "mappings" / "rugd__cityscapes.csv").read_text().splitlines()
    for i, line in enumerate(lines):
        body = line.split("#", 1)[0].strip()
        if body and not body.startswith("extra_id") and (";" in body or body.endswith(",void")):
            assert lines[i - 1].startswith("#") or "#" in line, line
