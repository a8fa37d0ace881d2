import hashlib

import numpy as np
import pytest

from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.mapping import (
    available_mappings,
    identity_mapping,
    load_mapping,
    mapping_dir,
    parse_mapping,
    quote_field,
    resolve_mapping,
)
from segunify.taxonomy import load_taxonomy

CAMVID = load_taxonomy("camvid")
CITY = load_taxonomy("cityscapes")


@pytest.mark.parametrize(("extra", "source"), available_mappings())
def test_every_shipped_mapping_validates(extra, source):
    m = load_mapping(f"{extra}__{source}")
    assert m.allowed.shape == (m.extra.num_classes, m.source.num_classes)
    assert main(["mapping", "check", f"{extra}__{source}"]) == 0


def test_camvid_mapping_choices():
    m = load_mapping("camvid__cityscapes")
    sets = {CAMVID.classes[k]: {CITY.classes[c] for c in cs} for k, cs in enumerate(m.allowed_sets)}
    assert sets["Car"] == {"car", "truck", "bus", "train"}
    assert sets["Bicyclist"] == {"rider", "bicycle", "motorcycle"}
    assert sets["Tree"] == {"vegetation", "terrain"}
    assert m.is_partition
    lut = m.source_to_extra_lut()
    assert lut[CITY.index("truck")] == CAMVID.index("Car") and lut[255] == 255
    assert m.gt_lookup[255].sum() == 0


def _write(tmp_path, body, header=True):
    path = tmp_path / "m.csv"
    path.write_text(("extra_id,extra_name,source_classes\n" if header else "") + body)
    return path


def _rows(override=None):
    base = {}
    names = {
        0: "sky",
        1: "building",
        2: "pole",
        3: "road",
        4: "sidewalk",
        5: "vegetation;terrain",
        6: "traffic sign",
        7: "fence",
        8: "car;truck",
        9: "person",
        10: "rider",
    }
    base.update(names)
    base.update(override or {})
    return "".join(f"{k},{CAMVID.classes[k]},{v}\n" for k, v in sorted(base.items()))


def test_parse_with_comments_and_void(tmp_path):
    body = "# leading comment\n" + _rows({7: "void"}).replace("0,Sky,sky", "0,Sky,sky  # trailing comment")
    m = load_mapping(_write(tmp_path, body), "camvid", "cityscapes")
    assert m.kind(7) == "void" and m.kind(5) == "one-to-many" and m.kind(0) == "one-to-one"
    assert not m.allowed[7].any()
    assert "leading comment" in m.comments


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        (_rows({3: "roads"}), "unknown source class 'roads'", 5),
        (_rows().replace("3,Road,", "3,Street,"), "unknown extra class 'Street'", 5),
        (_rows().replace("3,Road,", "3,Sky,"), "does not match extra_id 3", 5),
        (_rows() + "3,Road,road\n", "duplicate extra class 'Road' (first on line 5)", 13),
        (_rows().replace("3,Road,road\n", ""), "missing row(s) for extra class(es) ['Road']", None),
        (_rows({3: "road;;sidewalk"}), "empty source class name", 5),
        (_rows({3: "road;void"}), "'void' cannot be combined", 5),
        (_rows().replace("3,Road,road", "3,Road"), "malformed row: expected 3 fields", 5),
        (_rows().replace("3,Road,", "x,Road,"), "extra_id 'x' is not an integer", 5),
        (_rows().replace("3,Road,", "42,Road,"), "extra_id 42 out of range", 5),
        (_rows({3: "road;road"}), "source class repeated", 5),
    ],
)
def test_mapping_errors_name_file_and_line(tmp_path, body, message, line):
    path = _write(tmp_path, body)
    with pytest.raises(SegunifyError) as info:
        load_mapping(path, "camvid", "cityscapes")
    text = str(info.value)
    assert message in text
    assert text.startswith(f"{path}:{line}:" if line else f"{path}:")
    assert main(["mapping", "check", str(path), "--extra", "camvid", "--source", "cityscapes"]) == 1


def test_identity_and_partition():
    m = identity_mapping(CITY)
    assert np.array_equal(m.allowed, np.eye(19, dtype=bool))
    assert np.array_equal(m.source_to_extra_lut()[:19], np.arange(19))
    overlap = parse_mapping(_rows({4: "sidewalk;terrain"}), CAMVID, CITY)
    assert not overlap.is_partition
    with pytest.raises(SegunifyError, match="not a partition"):
        overlap.source_to_extra_lut()


def test_derived_forms_are_computed_once_and_shared_read_only():
    m = load_mapping("camvid__cityscapes")
    forms = (m.allowed, m.gt_lookup, m.source_to_extra_lut())
    assert all(a is b for a, b in zip(forms, (m.allowed, m.gt_lookup, m.source_to_extra_lut()), strict=True))
    for array in forms:
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    # the lookup of the priors op: the matrix, then 256 - K empty rows (ignore included)
    assert np.array_equal(m.gt_lookup[: m.extra.num_classes], m.allowed) and not m.gt_lookup[11:].any()
    # the fold of the cross-taxonomy scores: the extra class whose set holds each source class
    assert np.array_equal(m.source_to_extra_lut()[:19], m.allowed.argmax(0))
    # the caches are no fields: equality and the hash are those of the parsed content
    fresh = load_mapping("camvid__cityscapes")
    assert fresh == m and hash(fresh) == hash(m) and "allowed" not in vars(fresh)


def test_sha256_is_that_of_the_csv_pseudo_label_folders_recorded():
    """Folders written before the hash moved into Mapping hold sha256(to_csv()); a resume or a train
    config compares against it, so the value must not change."""
    m = load_mapping("camvid__cityscapes")
    assert m.sha256 == hashlib.sha256(m.to_csv().encode("utf-8")).hexdigest()
    assert identity_mapping(CITY).sha256 != m.sha256


def test_one_to_one_lut_relabels_each_class_as_its_one_source_class():
    m = load_mapping("goose__offroad")  # what the GOOSE adapter reads its labels through (classes=offroad)
    lut = m.one_to_one_lut()
    assert lut is m.one_to_one_lut() and not lut.flags.writeable
    assert [int(v) for v in lut[: m.extra.num_classes]] == [cs[0] if cs else 255 for cs in m.allowed_sets]
    assert (lut[m.extra.num_classes :] == 255).all()
    with pytest.raises(SegunifyError, match="not one-to-one for 'Building'"):
        load_mapping("camvid__cityscapes").one_to_one_lut()


def test_resolve_mapping_one_rule(tmp_path):
    kitti = load_taxonomy("kitti")
    # a name of shipped taxonomies is read in them, whatever the caller's (its own check then says so)
    m = resolve_mapping("camvid__cityscapes", kitti, CITY)
    assert (m.extra.name, m.source.name) == ("camvid", "cityscapes")
    with pytest.raises(SegunifyError, match="is not the taxonomy of the data"):
        m.check_compatible(kitti, CITY.classes, "the data")
    # a file not named <extra>__<source> is read in the caller's taxonomies, else refused
    own = tmp_path / "mine.csv"
    own.write_text(load_mapping("camvid__cityscapes").to_csv())
    assert resolve_mapping(own, CAMVID, "cityscapes").allowed_sets == m.allowed_sets
    with pytest.raises(SegunifyError, match="name the extra and source taxonomies"):
        resolve_mapping(own, CAMVID)
    renamed = tmp_path / "camvid__myteacher.csv"  # 'myteacher' is no shipped taxonomy: the caller's
    renamed.write_text(own.read_text())
    assert resolve_mapping(renamed, None, CITY).extra.name == "camvid"
    # no value: the identity, the shipped default where asked for, else an error naming one
    assert resolve_mapping(None, CITY, "cityscapes") == identity_mapping(CITY)
    assert resolve_mapping(None, CAMVID, CITY, shipped_default=True) == m
    with pytest.raises(SegunifyError, match="give a mapping \\(e.g. camvid__cityscapes\\)"):
        resolve_mapping(None, CAMVID, CITY)
    with pytest.raises(SegunifyError, match="no shipped mapping goose__cityscapes"):
        resolve_mapping(None, "goose", CITY, shipped_default=True)


def test_to_csv_round_trip():
    m = load_mapping("camvid__cityscapes")
    again = parse_mapping(m.to_csv(), CAMVID, CITY)
    assert again.allowed_sets == m.allowed_sets


def test_bom_comments_and_quotes(tmp_path):
    """Issue 11 item 11: a spreadsheet's UTF-8 BOM before the header is accepted (it was 'malformed row')."""
    path = tmp_path / "camvid__cityscapes.csv"
    path.write_bytes("\ufeffextra_id,extra_name,source_classes\n".encode() + _rows().encode())
    assert load_mapping(path).allowed_sets == parse_mapping(_rows(), CAMVID, CITY).allowed_sets
    assert main(["mapping", "check", str(path)]) == 0
    assert quote_field('a "b", c') == '"a ""b"", c"'


def test_review_rows_of_a_draft_are_refused(tmp_path):
    path = _write(tmp_path, _rows({9: "REVIEW"}))
    with pytest.raises(SegunifyError, match=r"m.csv:11: row marked REVIEW by `mapping suggest`"):
        load_mapping(path, "camvid", "cityscapes")


# ------------------------------------------------------------------------------------------ issue 25 case 7


def test_a_name_is_never_a_file_and_a_path_never_a_name(tmp_path, monkeypatch):
    """Issue 25 case 7. Before: a file named ``camvid__cityscapes`` in the current folder shadowed the
    shipped mapping, and a missing ``./camvid__cityscapes.csv`` silently loaded the shipped one. Now a
    value with a path separator or ``.csv`` is a file (missing: an error), a bare name a shipped mapping."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camvid__cityscapes").write_text("0,Sky,building\n")  # would map Sky -> building
    shipped = load_mapping(str(mapping_dir() / "camvid__cityscapes.csv"))
    assert load_mapping("camvid__cityscapes").allowed_sets == shipped.allowed_sets
    for missing in ("./camvid__cityscapes.csv", "camvid__cityscapes.csv", "maps/camvid__cityscapes"):
        with pytest.raises(SegunifyError, match="mapping file not found"):
            load_mapping(missing)
    with pytest.raises(
        SegunifyError, match="unknown mapping 'camvid__cityscape'.*did you mean camvid__cityscapes"
    ):
        load_mapping("camvid__cityscape")
    assert main(["mapping", "check", "./camvid__cityscapes.csv"]) == 1


def test_a_file_that_is_not_a_mapping_is_never_echoed(tmp_path, capsys):
    """Issue 25, small. Before: ``--mapping /etc/passwd`` printed the file's first line in the error.
    Now: "not a mapping CSV (expected header ...)", nothing of the file."""
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\nsomeone:x:1000:1000::/home/someone:/bin/sh\n")
    assert main(["mapping", "check", str(secret), "--extra", "camvid", "--source", "cityscapes"]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"error: {secret}:1: not a mapping CSV (expected header extra_id,extra_name,source_classes)\n"
    )
