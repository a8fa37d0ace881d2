"""Dataset specs (a YAML file instead of an adapter): the issue's keys as written, parity with the shipped
adapters on the bundled data, every added key (ignore ids/colours, image suffix, list files, label variants,
{split}), containment inside --root, and bad specs as one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fixtures import rugd as rugd_fx
from fixtures.offroad_util import ids_label, image
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset, dataset_taxonomy_name
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "datasets"

ISSUE_SPEC = """\
name: rugd-mine                 # used in messages and outputs
taxonomy: rugd                  # a shipped taxonomy name or a taxonomy CSV path (relative to this file)
encoding: color                 # id | color | palette: how label PNGs store classes
images: "RUGD_frames-with-annotations/*/*.png"          # glob under --root; may contain {split}
label: ["RUGD_frames-with-annotations/(.*)\\\\.png", "RUGD_annotations/\\\\1.png"]   # regex, replacement on the image path
splits: {all: "*"}              # optional: per split a glob on the image path or a list file
"""


def _spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _same_samples(a, b, split_a: str, split_b: str | None = None) -> list:
    sa, sb = a.samples(split_a), b.samples(split_b or split_a)
    assert [(s.id, s.rel, s.image, s.label) for s in sa] == [(s.id, s.rel, s.image, s.label) for s in sb]
    return sa


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------------------------ the issue's spec
def test_issue_example_as_written_reads_the_rugd_layout(tmp_path):
    root = rugd_fx.make(tmp_path / "rugd")
    spec = create_dataset(_spec(tmp_path, ISSUE_SPEC), root)
    assert spec.name == "rugd-mine" and spec.splits == ("all",) and spec.taxonomy.name == "rugd"
    samples = _same_samples(spec, create_dataset("rugd", root), "all")
    assert len(samples) == 4
    for s in samples:  # decoded through the colour codec exactly as the adapter does
        assert np.array_equal(spec.read_label(s), create_dataset("rugd", root).read_label(s))
    assert check_dataset(spec).ok


def test_rugd_sample_spec_equals_the_rugd_adapter_byte_for_byte(rugd_root):
    """The shipped spec: the same ids, paths and splits as ``rugd``, and identical decoded arrays."""
    spec = create_dataset(SHIPPED / "rugd-sample.yaml", rugd_root)
    adapter = create_dataset("rugd", rugd_root)
    for split in adapter.splits:
        _same_samples(spec, adapter, split)
    samples = spec.samples("all")
    assert len(samples) == 26
    for s in samples:
        image_a, label_a = spec.sample(s)
        image_b, label_b = adapter.sample(s)
        assert image_a.tobytes() == image_b.tobytes() and label_a.tobytes() == label_b.tobytes()
        assert label_a.dtype == np.uint8 and image_a.shape == (550, 688, 3)


def test_cityscapes_half_spec_gives_the_img_suffix_adapters_100_pairs(cityscapes_half_root):
    spec = create_dataset(SHIPPED / "cityscapes-aachen-half.yaml", cityscapes_half_root)
    report = check_dataset(spec, ["all"])
    assert report.ok, report.problems[:3]
    assert report.counts == {"all": 100}
    adapter = create_dataset("cityscapes", cityscapes_half_root, img_suffix="_leftImg8bit.jpg")
    mine, theirs = spec.samples("all"), adapter.samples("train")
    assert [("train/" + s.id, s.image, s.label, s.rel) for s in mine] == [
        (s.id, s.image, s.label, s.rel) for s in theirs
    ]
    for a, b in list(zip(mine, theirs, strict=True))[::25]:
        assert np.array_equal(spec.read_label(a), adapter.read_label(b))
    train, held = spec.samples("train"), spec.samples("heldout")
    assert len(train) == 80 and len(held) == 20 and not {s.id for s in train} & {s.id for s in held}
    assert [s.id for s in held][:3] == ["aachen/aachen_000000_000019", "aachen/aachen_000005_000019",
                                        "aachen/aachen_000010_000019"]  # fmt: skip


def test_cli_check_reports_26_and_100_pairs(rugd_root, cityscapes_half_root, capsys):
    assert main(["datasets", "check", str(SHIPPED / "rugd-sample.yaml"), "--root", str(rugd_root),
                 "--split", "all"]) == 0  # fmt: skip
    assert "ok: 26 pairs, no problems" in capsys.readouterr().out
    assert main(["datasets", "check", str(SHIPPED / "cityscapes-aachen-half.yaml"), "--root",
                 str(cityscapes_half_root), "--split", "all"]) == 0  # fmt: skip
    assert "ok: 100 pairs, no problems" in capsys.readouterr().out
    assert main(["datasets", "check", str(SHIPPED / "rugd-sample.yaml"), "--root", str(rugd_root)]) == 0
    assert "ok: 26 pairs (60 in the splits, which overlap), no problems" in capsys.readouterr().out
    assert main(["datasets", "stats", str(SHIPPED / "rugd-sample.yaml"), "--root", str(rugd_root)]) == 0
    assert "rugd-sample train: 18 labels" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- the added keys
def _id_dataset(root: Path, values: list[int], names=("a", "b")) -> Path:
    for seed, name in enumerate(names):
        image(root / "img" / f"{name}.jpg", 4, 12, seed)
        ids_label(root / "ann" / f"{name}_mask.png", values, 4, 12, seed)
    return root


ID_SPEC = """\
name: mine
taxonomy: camvid
images: "img/*.jpg"
label: ["img/(.*)\\\\.jpg", "ann/\\\\1_mask.png"]
"""


def test_ignore_ids_read_as_255(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 3, 200, 11])
    plain = create_dataset(_spec(tmp_path, ID_SPEC), root)
    assert "unknown label id(s) [200]" in check_dataset(plain).problems[0][1]
    ds = create_dataset(_spec(tmp_path, ID_SPEC + "ignore_ids: [200, 3]\n", "ig.yaml"), root)
    assert check_dataset(ds).ok
    s = ds.samples("all")[0]
    raw, label = read_label_raw(s.label), ds.read_label(s)
    assert (label[(raw == 200) | (raw == 3)] == 255).all()  # 3 is a CamVid class: ignore_ids win
    assert (label[raw == 0] == 0).all() and (label[raw == 11] == 255).all()


def test_ignore_colors_read_as_255(tmp_path):
    root = rugd_fx.make(tmp_path / "rugd")
    odd = (1, 2, 3)
    s = create_dataset("rugd", root).samples("all")[0]
    raw = read_label_raw(s.label).copy()
    spec = _spec(tmp_path, ISSUE_SPEC + "ignore_colors: [[1, 2, 3]]\n")
    before = create_dataset("rugd", root).read_label(s)
    raw[:, 0] = odd
    write_png(s.label, raw)
    ds = create_dataset(spec, root)
    label = ds.read_label(ds.samples("all")[0])
    assert (label[:, 0] == 255).all() and (label[:, 1:] == before[:, 1:]).all()
    assert (
        "unknown colour(s)"
        in check_dataset(create_dataset(_spec(tmp_path, ISSUE_SPEC, "p.yaml"), root)).problems[0][1]
    )


def test_grey_rgb_id_labels_read_as_one_channel(tmp_path):
    root = tmp_path / "d"
    image(root / "img" / "a.jpg", 4, 12)
    ids_label(root / "ann" / "a_mask.png", [0, 1, 2], 4, 12, grey_rgb=True)
    ds = create_dataset(_spec(tmp_path, ID_SPEC), root)
    assert ds.read_label(ds.samples("all")[0])[0, :3].tolist() == [0, 1, 2]


def test_image_suffix_is_cut_from_ids_and_must_end_every_image(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1])
    ds = create_dataset(_spec(tmp_path, ID_SPEC), root)
    assert [s.id for s in ds.samples("all")] == ["a", "b"]
    ds = create_dataset(
        _spec(tmp_path, ID_SPEC.replace("img/*.jpg", "*/*.jpg") + "image_suffix: .jpg\n"), root
    )
    assert [s.id for s in ds.samples("all")] == ["img/a", "img/b"]  # no fixed folder: the whole path
    bad = _spec(tmp_path, ID_SPEC + "image_suffix: _left.jpg\n", "bad.yaml")
    with pytest.raises(SegunifyError, match=r"bad.yaml: image_suffix: image 'img/a.jpg' does not end in"):
        create_dataset(bad, root).samples("all")


def test_list_files_name_images_by_id_or_path(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1], names=("a", "b", "c"))
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text("# mmseg style: ids\na\nimg/c.jpg extra-field\n\n")
    (root / "lists" / "val.txt").write_text("b\n")
    text = ID_SPEC + "splits:\n  train: {list: lists/train.txt}\n  val: {list: lists/val.txt, include: '*'}\n"
    ds = create_dataset(_spec(tmp_path, text), root)
    assert [s.id for s in ds.samples("train")] == ["a", "c"] and [s.id for s in ds.samples("val")] == ["b"]
    (root / "lists" / "val.txt").write_text("b\nzz\n")
    with pytest.raises(SegunifyError, match=r"val.txt:2: listed image 'zz' is not among the images"):
        ds.samples("val")
    (root / "lists" / "val.txt").write_text("../d/img/b.jpg\n")
    with pytest.raises(SegunifyError, match=r"val.txt:1: listed image .* not a path inside the dataset root"):
        ds.samples("val")


def test_include_and_exclude_globs(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1], names=("a1", "a2", "b1"))
    text = (
        ID_SPEC + "splits:\n  one: {include: 'img/a*', exclude: ['*2.jpg']}\n  rest: ['*2.jpg', 'img/b*']\n"
    )
    ds = create_dataset(_spec(tmp_path, text), root)
    assert [s.id for s in ds.samples("one")] == ["a1"] and [s.id for s in ds.samples("rest")] == ["a2", "b1"]


def test_label_variants_are_tried_in_order(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1], names=("a", "b", "c"))
    (root / "ann" / "b_mask.png").rename(root / "ann" / "b_fixed.png")
    (root / "ann" / "c_mask.png").unlink()
    rules = 'label:\n  - ["img/(.*)\\\\.jpg", "ann/\\\\1_fixed.png"]\n  - ["img/(.*)\\\\.jpg", "ann/\\\\1_mask.png"]\n'
    ds = create_dataset(_spec(tmp_path, ID_SPEC.split("label:")[0] + rules), root)
    a, b, c = ds.samples("all")
    assert a.label.name == "a_mask.png" and b.label.name == "b_fixed.png" and c.label is None
    assert c.expected_label == root / "ann" / "c_fixed.png" and c.rel == "img/c.png"
    assert "label file missing (expected" in check_dataset(ds).problems[0][1]


def test_split_placeholder_in_images(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "val"):
        image(root / "images" / split / "x.png", 4, 6)
        ids_label(root / "labels" / split / "x.png", [0, 1], 4, 6)
    text = ('name: mine\ntaxonomy: camvid\nimages: "images/{split}/*.png"\n'
            'label: ["images/(.*)", "labels/\\\\1"]\nsplits: [train, val]\n')  # fmt: skip
    ds = create_dataset(_spec(tmp_path, text), root)
    assert ds.splits == ("train", "val") and ds.samples("val")[0].image == root / "images" / "val" / "x.png"
    assert [s.id for s in ds.samples("train")] == ["x"]
    no_splits = _spec(tmp_path, text.replace("splits: [train, val]\n", ""), "b.yaml")
    with pytest.raises(SegunifyError, match="b.yaml: images holds {split}: name the splits"):
        create_dataset(no_splits, root)


def test_taxonomy_csv_relative_to_the_spec(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "two.csv").write_text(
        "id,name,train_id,category,color\n0,ground,0,flat,1 1 1\n1,thing,1,object,2 2 2\n9,unlabelled,255,void,0 0 0\n"
    )
    root = _id_dataset(tmp_path / "d", [0, 1, 9])
    text = ID_SPEC.replace("taxonomy: camvid", "taxonomy: two.csv")
    ds = create_dataset(_spec(tmp_path / "specs", text), root)
    assert ds.taxonomy.classes == ("ground", "thing") and check_dataset(ds).ok
    assert dataset_taxonomy_name(tmp_path / "specs" / "spec.yaml") == str(tmp_path / "specs" / "two.csv")


# ------------------------------------------------------------------------------------ safety and errors
def test_label_paths_stay_inside_the_root(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1])
    for target, reason in (("../\\\\1.png", "'..' in path"), ("/tmp/\\\\1.png", "absolute path")):
        spec = _spec(tmp_path, ID_SPEC.replace("ann/\\\\1_mask.png", target))
        with pytest.raises(SegunifyError, match=rf"spec.yaml: label path .*not a path inside .*{reason}"):
            create_dataset(spec, root).samples("all")
    same = _spec(tmp_path, ID_SPEC.replace("ann/\\\\1_mask.png", "img/\\\\1.jpg"))
    with pytest.raises(SegunifyError, match="maps image 'img/a.jpg' to itself"):
        create_dataset(same, root).samples("all")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("images: \"img/*.jpg\"", "images: \"../img/*.jpg\""), ":3: images: must be a glob under --root ('..' in path)"),
        (("images: \"img/*.jpg\"", "images: \"/data/*.jpg\""), ":3: images: must be a glob under --root (absolute path)"),
        (("images: \"img/*.jpg\"", "images: \"img/{part}/*.jpg\""), ":3: images: only {split} may stand in braces"),
        (("name: mine", "name: rugd"), ":1: name: 'rugd' is the name of a shipped adapter"),
        (("name: mine", "name: 'my data'"), ":1: name: String should match pattern"),
        (("taxonomy: camvid", "taxonomy: nope.csv"), ":2: taxonomy: "),
        (("taxonomy: camvid", "taxonomy: camvid\nencoding: colour"), ":3: encoding: Input should be 'id', 'color' or 'palette'"),
        (("taxonomy: camvid", "taxonomy: cityscapes\nencoding: color"), ":2: taxonomy: taxonomies/cityscapes.csv: colour (153, 153, 153) is used by two labels"),
        (("taxonomy: camvid", "taxonomy: ycor"), ":2: taxonomy: taxonomies/ycor.csv: taxonomy 'ycor' has no raw ids"),
        (("\\\\.jpg\"", "\\\\.jpg(\""), ":4: label: Value error, rule 0: bad regular expression"),
        (("\\\\1_mask", "\\\\2_mask"), "names group 2, not in the regex"),
        (("name: mine", "name: mine\nsplit: {all: '*'}"), ":2: split: unknown key"),
        (("name: mine\n", ""), ": name: required key missing"),
        (("name: mine", "name: mine\nsplits: {train: {list: ../t.txt}}"), ":2: splits.train.list: Value error, list file '../t.txt' must be a path under --root"),
        (("name: mine", "name: mine\nignore_colors: [[0, 0, 0]]"), ":2: ignore_colors: Value error, id labels hold ids: give ignore_ids"),
        (("name: mine", "name: mine\nsplits: {}"), ":2: splits: Value error, name at least one split"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_one_line_naming_file_and_key(tmp_path, capsys, change, message):
    root = _id_dataset(tmp_path / "d", [0, 1])
    spec = _spec(tmp_path, ID_SPEC.replace(*change))
    err = _one_line_error(capsys, ["datasets", "check", str(spec), "--root", str(root)])
    assert f"error: {spec}" in err and message.replace("Value error, ", "") in err, err


def test_a_missing_spec_and_options_given_to_a_spec(tmp_path, capsys):
    root = _id_dataset(tmp_path / "d", [0, 1])
    err = _one_line_error(capsys, ["datasets", "check", str(tmp_path / "none.yaml"), "--root", str(root)])
    assert err == f"error: {tmp_path / 'none.yaml'}: dataset spec not found"
    spec = _spec(tmp_path, ID_SPEC)
    err = _one_line_error(capsys, ["datasets", "check", str(spec), "--root", str(root), "--opt", "a=1"])
    assert "a dataset spec takes no options" in err


def test_check_of_a_spec_matching_nothing_names_the_glob(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    spec = _spec(tmp_path, ID_SPEC)
    assert main(["datasets", "check", str(spec), "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "no samples found: expected images 'img/*.jpg'" in out and str(spec) in out
    _id_dataset(root, [0, 1])
    spec = _spec(tmp_path, ID_SPEC + "splits: {x: 'nothing/*'}\n", "s.yaml")
    assert main(["datasets", "check", str(spec), "--root", str(root)]) == 1
    assert "images found (2 by 'img/*.jpg') but no split selects any" in capsys.readouterr().out


def test_a_regex_matching_no_image_names_the_image(tmp_path):
    root = _id_dataset(tmp_path / "d", [0, 1])
    spec = _spec(tmp_path, ID_SPEC.replace('"img/(.*)', '"pics/(.*)'))
    with pytest.raises(
        SegunifyError, match=r"spec.yaml: label: no rule's regex matches image path 'img/a.jpg'"
    ):
        create_dataset(spec, root).samples("all")
