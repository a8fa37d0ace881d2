"""Issue 11 #4, #14, #15 for every adapter: ``datasets check`` on an empty folder or another layout fails naming the
layout it expected; a path in a list or index file never leads outside the dataset root; a missing label names
the file that was expected."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures import (
    apolloscape,
    cityscapes,
    coco_panoptic,
    idd,
    idd_lite,
    kitti,
    mapillary,
    nuimages,
    rellis3d,
    wildscenes2d,
)
from segunify.cli import main
from segunify.datasets import available_datasets, check_dataset, create_dataset, get_dataset_class
from segunify.datasets.base import inside, unsafe_part
from segunify.errors import SegunifyError


@pytest.mark.parametrize("name", available_datasets())
def test_empty_folder_fails_naming_the_expected_layout(name, tmp_path, capsys):
    """Before: ``ok: 0 pairs, no problems`` and exit 0 on an empty folder, for every adapter. Now exit 1, and the
    problem says which paths the adapter looked for."""
    assert get_dataset_class(name).layout, name
    assert main(["datasets", "check", name, "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "no problems" not in out
    layout = create_dataset(name, tmp_path).expected_layout()
    assert f"no samples found: expected {layout}" in out or "missing folder" in out or "not found" in out, out


def _camvid_like(root: Path) -> Path:
    for folder in ("train", "trainannot", "val", "valannot"):
        (root / folder).mkdir(parents=True)
        (root / folder / "0001TP_006690.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.parametrize("name", available_datasets())
def test_folder_of_another_layout_fails(name, tmp_path, capsys):
    """Before: a CamVid folder given to e.g. ``cityscapes`` passed the check with 0 pairs. Now exit 1 (CamVid
    adapters get a Cityscapes folder)."""
    if name.startswith("camvid"):
        root = cityscapes.make(tmp_path / "cityscapes")
    else:
        root = _camvid_like(tmp_path / "camvid")
    assert main(["datasets", "check", name, "--root", str(root)]) == 1
    assert "problem:" in capsys.readouterr().out


def test_no_samples_in_stats_names_the_layout(tmp_path, capsys):
    assert main(["datasets", "stats", "cityscapes", "--root", str(tmp_path)]) == 1
    assert "no samples found: expected leftImg8bit/<split>/<city>/" in capsys.readouterr().err


# --- path containment -------------------------------------------------------------------------------------------

BAD = ["../outside/a.jpg", "/etc/passwd", "road/ColorImage/../../../x.jpg", "C:\\x.jpg", "..\\..\\x.jpg"]


def _replace_line(path: Path, lineno: int, column: int, value: str, sep: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[lineno - 1].split(sep)
    fields[column] = value
    lines[lineno - 1] = sep.join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _apolloscape(tmp_path, column, value):
    root = apolloscape.make(tmp_path / "apollo")
    lst = sorted((root / "public_image_lists").glob("*_train.lst"))[0]
    _replace_line(lst, 1, column, value, "\t")
    return "apolloscape", root, "train", lst, 1


def _rellis3d(tmp_path, column, value):
    root = rellis3d.make(tmp_path)
    _replace_line(root / "train.lst", 2, column, value, " ")
    return "rellis3d", root, "train", root / "train.lst", 2


def _wildscenes(tmp_path, column, value):
    root = wildscenes2d.make(tmp_path)
    csv_path = root / "splits" / "opt2d" / "train.csv"
    _replace_line(csv_path, 2, column + 1, value.replace(",", ";"), ",")
    return "wildscenes2d", root, "train", csv_path, 2


def _coco(tmp_path, column, value):
    root = coco_panoptic.make(tmp_path / "coco")
    path = root / "annotations" / "panoptic_train2017.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if column == 0:
        data["images"][0]["file_name"] = value
    else:
        data["annotations"][0]["file_name"] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return "coco-panoptic", root, "train", path, None


def _nuimages(tmp_path, column, value):
    root = nuimages.make(tmp_path / "nuimages")
    path = root / "v1.0-mini" / "sample_data.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    first = next(sd for sd in data if sd["is_key_frame"])
    first["filename"] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return "nuimages", root, "mini", path, None


LISTS = {"apolloscape": _apolloscape, "rellis3d": _rellis3d, "wildscenes2d": _wildscenes}
INDEXES = {"coco-panoptic": _coco, "nuimages": _nuimages}


@pytest.mark.parametrize("column", [0, 1], ids=["image", "label"])
@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("adapter", sorted(LISTS))
def test_list_line_leading_outside_is_one_error_naming_file_and_line(
    adapter, value, column, tmp_path, capsys
):
    """Before: ApolloScape read ``<root>/../outside/a.jpg`` (and pseudo-label wrote outside ``--out``) or died with
    a ``ValueError`` traceback from ``relative_to``. Now one error naming the list file and line, exit 1."""
    name, root, split, lst, lineno = LISTS[adapter](tmp_path, column, value)
    outside = tmp_path / "outside" / "a.jpg"  # a real file the '..' line points at: it must not be read
    outside.parent.mkdir(exist_ok=True)
    outside.write_bytes(b"")
    # WildScenes' split files hold paths rooted at the release ("/WildScenes2d/..."): others are not under it
    with pytest.raises(
        SegunifyError, match="is not a path inside the dataset root|is not under /WildScenes2d/"
    ) as exc:
        create_dataset(name, root).samples(split)
    assert (exc.value.path, exc.value.line) == (str(lst), lineno)
    assert main(["datasets", "check", name, "--root", str(root), "--split", split]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("problem:"))
    assert f"{lst}:{lineno}:" in line


@pytest.mark.parametrize(
    ("adapter", "column", "value"),
    [
        *[
            ("coco-panoptic", c, v)
            for c in (0, 1)
            for v in ("../../outside.jpg", "/tmp/x.jpg", "a/../../x.jpg")
        ],
        ("nuimages", 0, "samples/../../outside.jpg"),
        ("nuimages", 0, "samples/CAM_FRONT/../../../x.jpg"),
    ],
)
def test_index_file_name_leading_outside_is_one_error_naming_the_file(adapter, column, value, tmp_path):
    """Before: COCO's and nuImages' JSON file names were joined to the root unchecked. Now one error naming the
    JSON file and the record."""
    name, root, split, path, _ = INDEXES[adapter](tmp_path, column, value)
    with pytest.raises(SegunifyError, match="is not a path inside the dataset root") as exc:
        create_dataset(name, root).samples(split)
    assert exc.value.path == str(path)


def test_waymo_context_name_cannot_name_an_output_outside(tmp_path):
    """A Waymo context name becomes part of each sample's output path (``<out>/<split>/<context>/…``): before,
    ``../../x`` in the parquet key made predictions land outside ``--out``."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from fixtures import waymo

    root = waymo.make(tmp_path / "waymo")
    seg = sorted((root / "validation" / "camera_segmentation").glob("*.parquet"))[0]
    table = pq.read_table(seg).to_pydict()
    table[waymo.KEY[0]] = ["../../evil"] * len(table[waymo.KEY[0]])
    waymo.write_table(seg, table)
    with pytest.raises(SegunifyError, match="is not a plain name") as exc:
        create_dataset("waymo", root).samples("val")
    assert exc.value.path == str(seg)


def test_wilddash_json_file_names_are_only_keys(tmp_path):
    """WildDash 2 reads file names from panoptic.json only as keys of the PNGs found under ``panoptic/``: a
    ``..`` name there never becomes a path (that PNG simply has no description)."""
    from fixtures import wilddash2

    root = wilddash2.make(tmp_path / "wd")
    data = json.loads((root / "panoptic.json").read_text())
    data["annotations"][0]["file_name"] = "../../outside.png"
    (root / "panoptic.json").write_text(json.dumps(data))
    samples = create_dataset("wilddash2", root).samples("val")
    assert all(root in Path(os.path.normpath(s.image)).parents for s in samples)
    assert sum(s.label is None for s in samples) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a/b.png", None),
        ("a/..b/c..png", None),
        ("", "empty path"),
        (".", "names no file"),
        ("./", "names no file"),
        ("../a", "'..' in path"),
        ("a\\..\\b", "'..' in path"),
        ("/a", "absolute path"),
        ("\\\\server\\share\\a", "absolute path"),
        ("C:/a", "absolute path"),
        ("a\x00b", "NUL byte in path"),
    ],
)
def test_unsafe_part(text, reason):
    assert unsafe_part(text) == reason


def test_inside_names_file_and_line(tmp_path):
    assert inside(tmp_path, "a/b.jpg", "x.lst", 3) == tmp_path / "a" / "b.jpg"
    with pytest.raises(SegunifyError, match=r"^x.lst:3: label '\.\./b' is not a path inside") as exc:
        inside(tmp_path, "../b", "x.lst", 3, "label")
    assert exc.value.line == 3
    with pytest.raises(SegunifyError, match="not a path but int"):
        inside(tmp_path, 5, "x.json")


LINE_TEXT = st.lists(
    st.sampled_from(
        ["a", "/", ".", "..", "\t", " ", ",", "\\", "\x00", "ColorImage", ".jpg", "é", "#", "\r"]
    ),
    max_size=12,
).map("".join)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    adapter=st.sampled_from([*sorted(LISTS), "coco-panoptic"]),
    column=st.integers(0, 1),
    value=LINE_TEXT,
)
def test_fuzz_list_lines_give_a_segunify_error_or_samples_inside_the_root(
    adapter, column, value, tmp_path_factory
):
    """Random list-file fields (and COCO JSON file names): ``datasets check`` exits 0 or 1 (one line), and
    the adapter lists samples whose files and output paths stay inside the root or raises SegunifyError;
    never another exception type (before: ValueError from ``relative_to``, or from a NUL byte)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    name, root, split, _, _ = {**LISTS, **INDEXES}[adapter](tmp, column, value.replace("\n", ""))
    assert main(["datasets", "check", name, "--root", str(root), "--split", split]) in (0, 1)
    try:
        samples = create_dataset(name, root).samples(split)
    except SegunifyError as exc:
        assert exc.path is not None
        return
    base = Path(os.path.normpath(tmp))
    for s in samples:
        for path in (s.image, s.label):
            assert path is None or base in Path(os.path.normpath(path)).parents, path
        assert unsafe_part(s.rel) is None, s.rel


# --- the label path a missing label was expected at -------------------------------------------------------------

MISSING = {
    "cityscapes": lambda p: cityscapes.make(p),
    "kitti": lambda p: kitti.make(p),
    "mapillary-vistas-v2.0": lambda p: mapillary.make(p),
    "idd": lambda p: idd.make(p, pngs=False),
    "idd-lite": lambda p: idd_lite.make(p),
    "apolloscape": lambda p: apolloscape.make(p),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_label_names_the_path_it_expected(name, tmp_path):
    """Before: ``label file missing`` named only the image. Now the label path the adapter looked for too."""
    root = MISSING[name](tmp_path / name)
    sample = create_dataset(name, root).samples("train")[0]
    sample.label.unlink()
    problems = check_dataset(create_dataset(name, root), ["train"]).problems
    missing = [m for f, m in problems if f == str(sample.image)]
    assert len(missing) == 1 and "label file missing" in missing[0]
    # IDD names the official PNG (its JSON is the fallback); ApolloScape's list names the label and a second
    # name is tried, so it names none
    expected = {"idd": str(sample.label).replace("_polygons.json", "_labellevel3Ids.png")}.get(
        name, sample.label
    )
    if name != "apolloscape":
        assert f"(expected {expected})" in missing[0], missing[0]


LIST_FILES = {
    "apolloscape": (apolloscape.make, "public_image_lists/road02_seg_train.lst", "train"),
    "rellis3d": (rellis3d.make, "train.lst", "train"),
    "wildscenes2d": (wildscenes2d.make, "splits/opt2d/train.csv", "train"),
}


@settings(max_examples=25, deadline=None)
@given(adapter=st.sampled_from(sorted(LIST_FILES)), data=st.binary(max_size=80))
def test_fuzz_list_file_bytes_give_a_segunify_error_or_samples(adapter, data, tmp_path_factory):
    """A list file of random bytes (binary, not UTF-8, no header): a SegunifyError naming it or samples; before,
    ApolloScape raised UnicodeDecodeError."""
    make, rel, split = LIST_FILES[adapter]
    root = make(tmp_path_factory.mktemp("bytes"))
    (root / rel).write_bytes(data)
    try:
        samples = create_dataset(adapter, root).samples(split)
    except SegunifyError as exc:
        assert exc.path is not None
        return
    assert all(unsafe_part(s.rel) is None for s in samples)
