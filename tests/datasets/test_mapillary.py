import json
import re

import numpy as np
import pytest

from fixtures import mapillary as fx
from fixtures.urban_util import assert_clean, assert_reported, image, palette_png, read_palette, widen
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset
from segunify.errors import SegunifyError
from segunify.mapping import load_mapping

V12, V20 = "mapillary-vistas-v1.2", "mapillary-vistas-v2.0"


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "vistas")


@pytest.mark.parametrize("name", [V12, V20])
def test_fixture_passes_check(root, name):
    assert_clean(name, root, fx.COUNTS)


def test_v1_release_layout_passes_check(tmp_path):
    root = fx.make(tmp_path / "v1", layout="v1.2")
    assert_clean(V12, root, fx.COUNTS)
    assert (
        create_dataset(V12, root).samples("train")[0].label == root / "training" / "labels" / "0Az0HK8eAB.png"
    )


def test_samples_ids_and_paths(root):
    ds = create_dataset(V20, root)
    s = ds.samples("val")[0]
    assert s.id == "val/aX9jq0Lr5E"
    assert s.label == root / "validation" / "v2.0" / "labels" / "aX9jq0Lr5E.png"
    assert s.rel == "validation/v2.0/labels/aX9jq0Lr5E.png"


def test_palette_labels_decode_by_index_not_colour(root):
    """Column c holds label id (c + shift) % N: v1.2 id 65 (unlabeled) -> 255, ids 0..64 -> themselves. In v2.0
    several labels share a colour (every marking is white), so only the index can tell them apart."""
    ds = create_dataset(V12, root)
    s = ds.samples("train")[0]  # shift 1
    label = ds.read_label(s)
    assert label.shape == (fx.H, fx.W) and label.dtype == np.uint8
    assert label[0, 0] == 1 and ds.taxonomy.classes[label[5, 12]] == "construction--flat--road"  # id 13
    assert label[0, 64] == 255  # id 65 = void--unlabeled
    assert ds.taxonomy.classes[label[0, 63]] == "void--ego-vehicle"

    ds2 = create_dataset(V20, root)
    label2 = ds2.read_label(ds2.samples("train")[0])
    names = ds2.taxonomy.classes
    white = [c for c in range(123) if ds2.taxonomy.colors[c] == (255, 255, 255)]
    assert len(white) > 5  # markings share white in the config
    assert (
        names[label2[0, 34]] == "marking--continuous--dashed"
        and names[label2[0, 35]] == "marking--continuous--solid"
    )
    assert label2[0, 122] == 255  # id 123 = void--unlabeled


def test_every_label_pixel_has_a_mapping_row(root):
    """Through the shipped mappings every decoded pixel is ignore or has an allowed row (void rows allowed)."""
    for name, mapping in [(V12, f"{V12}__cityscapes"), (V20, f"{V20}__cityscapes"), (V20, f"{V20}__{V12}")]:
        ds = create_dataset(name, root)
        label = ds.read_label(ds.samples("train")[0])
        allowed = load_mapping(mapping).gt_lookup
        assert allowed[label].shape == (fx.H, fx.W, allowed.shape[1])
        covered = np.unique(label[label != 255])
        assert covered.size == ds.taxonomy.num_classes


def _unknown_index(path):
    arr = read_palette(path).copy()
    arr[0, 0] = 200
    palette_png(path, arr, [(0, 0, 0)] * 256)


@pytest.mark.parametrize(
    ("damage", "text", "named"),
    [
        (lambda p: p.unlink(), "label file missing", "image"),
        (_unknown_index, "unknown label id(s) [200]", "label"),
        (widen, "differs from image size", "label"),
        (lambda p: p.write_bytes(b"not a png"), "cannot decode label", "label"),
    ],
    ids=["missing", "unknown-id", "size", "corrupt"],
)
def test_corrupted_label_is_reported(root, damage, text, named, capsys):
    assert_reported(V12, root, damage, text, capsys, named=named)


def test_unknown_v20_id_is_reported(root):
    ds = create_dataset(V20, root)
    s = ds.samples("train")[0]
    arr = read_palette(s.label).copy()
    arr[0, 0] = 124
    palette_png(s.label, arr, [(0, 0, 0)] * 256)
    with pytest.raises(SegunifyError, match=r"unknown label id\(s\) \[124\]") as exc:
        ds.read_label(s)
    assert exc.value.path == str(s.label)


def test_rgb_labels_decode_by_colour_in_v12_only(root, capsys):
    """A v1.2 label re-saved as RGB decodes by colour (v1.2 colours are unique) to the same classes; an
    RGB v2.0 label is reported, because its colours are ambiguous."""
    from segunify.io import write_png

    ds = create_dataset(V12, root)
    s = ds.samples("train")[0]
    before = ds.read_label(s)
    write_png(s.label, ds.taxonomy.palette()[before].astype(np.uint8))
    np.testing.assert_array_equal(ds.read_label(s), before)
    text = "v2.0 colours are ambiguous"
    assert_reported(V20, root, lambda p: write_png(p, np.zeros((fx.H, fx.W, 3), np.uint8)), text, capsys)


def _v1_layout_with_v20_labels(tmp_path):
    """A v1.x-style folder (``config.json``, ``<split>/labels``) holding v2.0 labels and the v2.0 config."""
    root = tmp_path / "v1-of-v20"
    (root / "config.json").parent.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(fx.config("v2.0")))
    for split, keys in fx.KEYS.items():
        for i, key in enumerate(keys):
            image(root / split / "images" / f"{key}.jpg", fx.H, fx.W, i)
            if split != "testing":
                fx.write_label(root / split / "labels" / f"{key}.png", "v2.0", 0)  # ids 0..: v1.2 ids too
    return root


def test_v20_config_given_to_v12_adapter_is_an_error_naming_the_file(tmp_path, capsys):
    """Issue 11 #17: v2.0 labels in the v1.x layout were decoded with v1.2's classes (ids 0..64 silently wrong,
    only ids > 65 reported per file); now the release's config.json is compared with the taxonomy first."""
    root = _v1_layout_with_v20_labels(tmp_path)
    problems = check_dataset(create_dataset(V12, root)).problems
    assert {m for _, m in problems} == {f"{root / 'config.json'}: 124 labels here but 66 in taxonomy '{V12}': "
                                         "a release of another version?"}  # fmt: skip
    assert main(["datasets", "check", V12, "--root", str(root)]) == 1
    assert "config.json: 124 labels here but 66" in capsys.readouterr().out


def test_config_of_another_version_only(root):
    (root / "config_v1.2.json").unlink()
    with pytest.raises(SegunifyError, match=r"no config_v1.2.json here, only config_v2.0.json") as exc:
        create_dataset(V12, root).samples("train")
    assert exc.value.path == str(root / "config_v2.0.json")
    assert len(create_dataset(V20, root).samples("train")) == 2


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda labels: labels[2].update(name="construction--barrier--ambiguous"), "label 2 is 'construction--barrier--ambiguous' here but 'construction--barrier--curb'"),
        (lambda labels: labels[3].update(color=[1, 2, 3]), "label 3 (construction--barrier--fence) has colour (1, 2, 3) here but (190, 153, 153)"),
        (lambda labels: labels.insert(0, labels.pop(1)), "label 0 is 'animal--ground-animal' here but 'animal--bird'"),
        (lambda labels: labels[4].pop("color"), "not a Vistas config"),
    ],
    ids=["name", "colour", "order", "malformed"],
)  # fmt: skip
def test_config_mismatch_names_the_file(root, change, text):
    path = root / "config_v1.2.json"
    data = json.loads(path.read_text())
    change(data["labels"])
    path.write_text(json.dumps(data))
    with pytest.raises(SegunifyError, match=re.escape(text)) as exc:
        create_dataset(V12, root).samples("train")
    assert exc.value.path == str(path)
    assert len(create_dataset(V20, root).samples("train")) == 2  # v2.0's own config is untouched
