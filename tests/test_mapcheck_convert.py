"""mapping convert on files in the paper authors' published layout (UniBwTAS/data-priors,
``datasets/<name>/lists/labels.csv`` + ``master_labels_<source>.csv``), written here in that format:
classes matched by name, the void policy per row, duplicates and errors naming a file that exists."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.mapcheck.convert import (
    MAPPED,
    NO_ROW,
    NOT_IN_LABELS,
    ONLY_VOID,
    VOID_DROPPED,
    convert_authors_layout,
)
from segunify.mapping import load_mapping, parse_mapping
from segunify.taxonomy import load_taxonomy

CITY, OFFROAD, RELLIS = load_taxonomy("cityscapes"), load_taxonomy("offroad"), load_taxonomy("rellis3d")
HEADER = "0,name,id,trainId,category,categoryId,hasInstances,ignoreInEval,color\n"

# RELLIS-3D as the authors number it: void is their class 0 (ours: ignore), ids shifted against ours.
RELLIS_NAMES = ["void", "dirt", "grass", "tree", "pole", "water", "sky", "vehicle", "object", "asphalt",
                "building", "log", "person", "fence", "bush", "concrete", "barrier", "puddle", "mud", "rubble"]  # fmt: skip
RELLIS_LABELS = HEADER + "".join(f"{i},{n},{i},{i},,,,,\n" for i, n in enumerate(RELLIS_NAMES))
RELLIS_MASTER = """trainId,name,,,,,,
0,asphalt,asphalt,concrete,,,,
1,rough_drivable,mud,,,,,
4,building,object,building,,,,
7,pole,pole,fence,,,,
10,tree,tree,,,,,
11,non_drivable_veg,bush,log,,,,
13,water,water,puddle,,,,
14,high_grass,bush,,,,,
15,low_grass,grass,,,,,
17,sky,sky,,,,,
18,person,person,,,,,
21,truck,vehicle,,,,,
255,void,void,dirt,vehicle,barrier,rubble,log
"""


def write(tmp_path, labels: str, master: str, bom: bool = False):
    lab, mas = tmp_path / "labels.csv", tmp_path / "master_labels_offroad.csv"
    lab.write_bytes(("\ufeff" if bom else "").encode() + labels.encode())
    mas.write_text(master)
    return lab, mas


def rows_of(conv):
    return {r.name: (r.classes, r.policy) for r in conv.rows}


def test_rellis_by_name_with_void_policy_per_row(tmp_path):
    lab, mas = write(tmp_path, RELLIS_LABELS, RELLIS_MASTER, bom=True)
    conv = convert_authors_layout(lab, mas, OFFROAD, RELLIS)
    rows = rows_of(conv)
    assert [r.extra_id for r in conv.rows] == list(range(RELLIS.num_classes))  # our ids, not theirs
    assert rows["dirt"] == ((), ONLY_VOID)
    assert rows["vehicle"] == (("truck",), VOID_DROPPED)
    assert rows["log"] == (("non_drivable_veg",), VOID_DROPPED)
    assert rows["fence"] == (("pole",), MAPPED)  # theirs; ours says fence (the example)
    assert rows["bush"] == (("non_drivable_veg", "high_grass"), MAPPED)
    assert not conv.unmatched
    assert conv.notes == ["void in taxonomy 'rellis3d', so dropped from labels.csv: 'void' (line 2)"]
    out = tmp_path / "rellis3d__offroad.csv"
    args = ["mapping", "convert", "--labels", str(lab), "--master", str(mas), "--source", "offroad"]
    assert main([*args, "--extra", "rellis3d", "--out", str(out)]) == 0
    assert out.read_text() == conv.text
    assert "0,dirt,void  # void: listed only under void" in conv.text
    assert main(["mapping", "check", str(out)]) == 0
    assert load_mapping(out).allowed_sets[RELLIS.index("asphalt")] == (OFFROAD.index("asphalt"),)


def test_unmatched_and_missing_names_are_reported(tmp_path):
    labels = RELLIS_LABELS.replace(",rubble,", ",hovercraft,")
    lab, mas = write(tmp_path, labels, RELLIS_MASTER.replace("rubble,log", "log"))
    conv = convert_authors_layout(lab, mas, OFFROAD, RELLIS)
    assert conv.unmatched == ["'hovercraft' (labels.csv line 21)"]
    assert rows_of(conv)["rubble"] == ((), NOT_IN_LABELS)
    by_id = convert_authors_layout(lab, mas, OFFROAD)  # no taxonomy: the authors' trainIds
    assert [r.name for r in by_id.rows][:2] == ["void", "dirt"] and by_id.rows[19].name == "hovercraft"
    assert by_id.rows[19].policy == NO_ROW
    ignored = convert_authors_layout(
        *write(tmp_path, labels.replace(",mud,18,18,", ",mud,18,255,"), RELLIS_MASTER), OFFROAD
    )
    assert "mud" not in [r.name for r in ignored.rows]
    assert ignored.notes[1:] == [
        "not training classes (trainId 255/-1), so their source classes are dropped: 'mud' (line 20: rough_drivable)"
    ]


def test_same_name_twice_in_labels_is_an_error_naming_both_lines(tmp_path):
    """Their CamVid-32 labels.csv lists Bicyclist at ids 2 and 3 (and no Bridge)."""
    labels = HEADER + "0,Animal,0,0,,,,,\n1,Archway,1,1,,,,,\n2,Bicyclist,2,2,,,,,\n3,Bicyclist,3,3,,,,,\n"
    master = ",name,,,\n12,rider,Bicyclist,,\n255,void,Animal,Bridge,\n"
    lab, mas = write(tmp_path, labels, master)
    with pytest.raises(SegunifyError) as info:
        convert_authors_layout(lab, mas, CITY, load_taxonomy("camvid32"))
    assert str(info.value) == (
        f"{lab}:5: class 'Bicyclist' is listed twice: line 4 ('Bicyclist', trainId 2) and line 5 (trainId 3)"
    )


@pytest.mark.parametrize(
    ("master", "message"),
    [
        (
            ",name\n0,road,Raod\n",
            "master_labels_offroad.csv:2: unknown extra class 'Raod' (not in labels.csv)",
        ),
        (",name\n0,street,dirt\n", "master_labels_offroad.csv:2: unknown source class 'street'"),
        (",name\nx,road,dirt\n", "master_labels_offroad.csv:2: source id 'x' is not an integer"),
    ],
)
def test_errors_name_the_input_never_the_unwritten_out(tmp_path, capsys, master, message):
    lab, mas = write(tmp_path, RELLIS_LABELS, master.replace("road", "asphalt").replace("Raod", "Asphlt"))
    message = message.replace("Raod", "Asphlt")
    out = tmp_path / "out.csv"
    args = ["mapping", "convert", "--labels", str(lab), "--master", str(mas), "--source", "offroad"]
    assert main([*args, "--extra", "rellis3d", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(out) not in err and not out.exists()


def test_unknown_name_under_void_is_a_note_and_out_is_not_replaced(tmp_path, capsys):
    lab, mas = write(tmp_path, RELLIS_LABELS, RELLIS_MASTER.replace("rubble,log", "rubble,log,Bridge"))
    conv = convert_authors_layout(lab, mas, OFFROAD, RELLIS)
    assert any("'Bridge' under void is not in labels.csv; skipped" in n for n in conv.notes)
    out = tmp_path / "mine.csv"
    out.write_text("hand-edited\n")
    args = ["mapping", "convert", "--labels", str(lab), "--master", str(mas), "--source", "offroad"]
    assert main([*args, "--out", str(out)]) == 1
    assert out.read_text() == "hand-edited\n" and "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--overwrite"]) == 0
    assert parse_mapping(out.read_text(), _authors_taxonomy(), OFFROAD).allowed_sets[0] == ()


def _authors_taxonomy():
    """The authors' own RELLIS numbering as a taxonomy (their void is a class), for the id-based output."""
    from segunify.taxonomy import parse_taxonomy

    rows = "".join(f"{i},{n},{i},,0 0 0\n" for i, n in enumerate(RELLIS_NAMES))
    return parse_taxonomy("id,name,train_id,category,color\n" + rows, "authors")


# ------------------------------------------------------------------------------------------ issue 25 case 9

JUNK = st.text(alphabet="=+-@#,\"'; |!()", max_size=4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(JUNK, JUNK), min_size=1, max_size=6))
def test_hostile_class_names_round_trip_and_never_start_a_formula(parts):
    """Issue 25 case 9. Before: ``mapping convert`` wrote names like ``=cmd|'/C calc'!A0``, ``+HYPERLINK(..)``
    or ``@SUM(..)`` verbatim (a spreadsheet runs them), and a name holding ``#`` unquoted, so it read back
    cut at the ``#`` (the error then blamed the master file for a class it does not hold). Now no cell
    starts with ``= + - @`` / tab / CR (OWASP: a leading ``'``) and every name reads back identically."""
    import csv
    import io
    import tempfile
    from pathlib import Path

    from segunify.mapping import FORMULA_START, read_fields
    from segunify.taxonomy import Label, Taxonomy

    names = [f"{a}cls{i}{b}".strip() for i, (a, b) in enumerate(parts)]
    labels = [Label(i, n, i, "x", (i, i, i), n) for i, n in enumerate(names)]
    extra = Taxonomy("hostile", tuple(labels), source="<test>")
    lab_rows, master_rows = io.StringIO(), io.StringIO()
    csv.writer(lab_rows).writerows(
        [["n", "name", "id", "trainId"], *([i, n, i, i] for i, n in enumerate(names))]
    )
    by_source = [[c, CITY.classes[c], *names[c :: CITY.num_classes]] for c in range(CITY.num_classes)]
    csv.writer(master_rows).writerows([["trainId", "name"], *by_source])
    with tempfile.TemporaryDirectory() as tmp:
        lab, mas = Path(tmp, "labels.csv"), Path(tmp, "master_labels_cityscapes.csv")
        lab.write_text(lab_rows.getvalue())
        mas.write_text(master_rows.getvalue())
        conv = convert_authors_layout(lab, mas, CITY, extra)
    data = [line for line in conv.text.splitlines()[2:]]
    assert [read_fields(line)[1] for line in data] == names
    for line in data:
        body = line.split("  # ")[0]
        assert not any(cell.startswith(FORMULA_START) for cell in next(csv.reader([body])))
    mapping = parse_mapping(conv.text, extra, CITY)
    assert mapping.allowed_sets == tuple((i % CITY.num_classes,) for i in range(len(names)))
    assert parse_mapping(mapping.to_csv(), extra, CITY) == mapping


def test_authors_files_that_are_not_csv_are_never_echoed(tmp_path, capsys):
    """Issue 25, small. Before: ``--labels`` of another kind of file (here a passwd-like line) printed
    that line in the error. Now the error says what was expected and how many fields it got."""
    secret = "root:x:0:0:root:/root:/bin/bash"
    lab, mas = write(tmp_path, f"header\n{secret}\n", RELLIS_MASTER)
    args = ["mapping", "convert", "--labels", str(lab), "--master", str(mas), "--source", "offroad"]
    assert main([*args, "--out", str(tmp_path / "o.csv")]) == 1
    err = capsys.readouterr().err
    assert "malformed row: expected n,name,id,trainId,... (at least 4 fields), got 1" in err
    assert "root" not in err.replace(str(tmp_path), "")
