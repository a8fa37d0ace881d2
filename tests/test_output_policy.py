"""Issue 25: every command that writes follows pseudo-label's rules (:mod:`segunify.outputs`). Each test's
docstring says how the code before the issue failed on the same input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures import camvid
from fixtures.tiny_models import espnet_checkpoint
from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.mapping import load_mapping
from segunify.outputs import check_apart, check_output_file, claim_folder, folder_kind


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too, links followed) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def city_ckpt(tmp_path_factory):
    return espnet_checkpoint(tmp_path_factory.mktemp("city") / "ck", "cityscapes", 19, seed=1, varied=True)


@pytest.fixture()
def camvid_root(tmp_path):
    return camvid.make(tmp_path / "data" / "CamVid")


def predict(ckpt, inputs, out, *extra) -> int:
    return main(["predict", "--model", str(ckpt), *map(str, inputs), "--out", str(out), *extra])


# ------------------------------------------------------------------------------------------ case 1


@pytest.mark.parametrize("how", ["directly", "through a symlink", "into a user's folder"])
def test_predict_into_an_annotation_folder_changes_no_byte(city_ckpt, camvid_root, tmp_path, capsys, how):
    """Case 1. Before: ``predict --out <root>/trainannot --to camvid --raw-ids`` replaced the ground truth
    with valid CamVid labels (so ``datasets check`` still passed) and exited 0; a user's own folder got
    predictions mixed in. Now: refused (exit 1, one line naming the folder), every byte as it was."""
    annot = camvid_root / "trainannot"
    user = tmp_path / "thesis"
    write_png(user / "0016E5_07959.png", np.zeros((4, 4, 3), np.uint8))
    (user / "notes.txt").write_text("years of work")
    (tmp_path / "link").symlink_to(annot)
    out = {"directly": annot, "through a symlink": tmp_path / "link", "into a user's folder": user}[how]
    before, mine = snapshot(camvid_root), snapshot(user)
    assert predict(city_ckpt, [camvid_root / "val"], out, "--to", "camvid", "--raw-ids") == 1
    line = error_line(capsys)
    assert str(out) in line and "not empty and not a segunify prediction folder" in line
    assert snapshot(camvid_root) == before and snapshot(user) == mine


def test_predict_into_a_copy_of_real_camvid_trainannot(city_ckpt, tmp_path, capsys):
    """Case 1, the bar: a copy of the real CamVid ``trainannot/`` (367 labels) stays byte for byte."""
    from segunify.paths import shared_root

    real = (shared_root(required=False) or Path("/nonexistent")) / "data" / "CamVid"
    if not (real / "trainannot").is_dir():
        pytest.skip("real CamVid not available (set SEGUNIFY_DATA)")
    copy = tmp_path / "trainannot"
    shutil.copytree(real / "trainannot", copy)
    before = snapshot(copy)
    image = sorted((real / "val").glob("*.png"))[0]
    assert predict(city_ckpt, [image], copy, "--to", "camvid", "--raw-ids") == 1
    assert "not a segunify prediction folder" in error_line(capsys)
    assert len(before) == 367 and snapshot(copy) == before


def test_predict_claims_its_folder_and_may_write_there_again(city_ckpt, camvid_root, tmp_path, capsys):
    """A new folder gets the marker first; a second predict into it replaces its own outputs only; a
    folder inside an input folder, or a pseudo-label folder, is refused."""
    out = tmp_path / "pred"
    assert predict(city_ckpt, [camvid_root / "val"], out) == 0
    assert folder_kind(out) == "predict"
    assert predict(city_ckpt, [camvid_root / "val"], out, "--to", "camvid") == 0
    assert predict(city_ckpt, [camvid_root / "val"], camvid_root / "val" / "pred") == 1
    assert "lies inside an input folder" in error_line(capsys)
    pseudo = tmp_path / "pseudo"
    claim_folder(pseudo, "pseudo")
    assert predict(city_ckpt, [camvid_root / "val"], pseudo) == 1
    assert "is a segunify pseudo-label folder, not a prediction folder" in error_line(capsys)


# ------------------------------------------------------------------------------------------ case 3
# (evaluate --json and --vis: tests/test_safety_outputs.py)


def test_mapping_suggest_out_inside_the_dataset_root_is_refused(city_ckpt, camvid_root, capsys):
    """Case 3. Before: ``mapping suggest --out`` wrote its draft inside the dataset root (after the whole
    teacher pass). Now: refused at once, one line."""
    before = snapshot(camvid_root)
    args = [
        "mapping",
        "suggest",
        "--teacher",
        str(city_ckpt),
        "--dataset",
        "camvid",
        "--root",
        str(camvid_root),
    ]
    assert main([*args, "--out", str(camvid_root / "draft.csv")]) == 1
    assert "output file lies inside the dataset root" in error_line(capsys)
    assert snapshot(camvid_root) == before


def test_output_file_rules():
    """The single-file rule: never over an input file, a folder, or an existing file without overwrite."""
    here = Path(__file__)
    with pytest.raises(SegunifyError, match="output is the mapping file"):
        check_output_file(here, True, [(here, "the mapping file")])
    with pytest.raises(SegunifyError, match="output is a folder"):
        check_output_file(here.parent, True)
    with pytest.raises(SegunifyError, match="pass --overwrite"):
        check_output_file(here)
    with pytest.raises(SegunifyError, match="contains the dataset root"):
        check_apart([here.parent.parent], [(here.parent, "the dataset root")])


# ------------------------------------------------------------------------------------------ case 10 and small


def test_predict_to_needs_every_class_in_a_set(city_ckpt, camvid_root, tmp_path, capsys):
    """Case 10. Before: a mapping leaving a source class in no set was accepted by ``predict --to`` and
    that class's pixels were silently written as void, while ``mapping check`` printed "partition: yes".
    Now: predict refuses naming the class; check says "partition: no"."""
    text = load_mapping("camvid__cityscapes").to_csv()
    building = next(line for line in text.splitlines() if line.startswith("1,Building,"))
    assert "wall" in building
    csv = tmp_path / "camvid__cityscapes.csv"
    csv.write_text(text.replace(building, building.replace(";wall", "").replace("wall;", "")))
    assert (
        predict(city_ckpt, [camvid_root / "val"], tmp_path / "out", "--to", "camvid", "--mapping", csv) == 1
    )
    line = error_line(capsys)
    assert "['wall'] in no set" in line and str(csv) in line and not (tmp_path / "out").exists()
    assert main(["mapping", "check", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "partition: no (1 source class(es) in no set)" in out and "allows: wall" in out


def test_predict_to_its_own_taxonomy_is_the_identity(city_ckpt, camvid_root, tmp_path, capsys):
    """Small. Before: ``--to cityscapes`` on a Cityscapes model said "no shipped mapping
    cityscapes__cityscapes"; an unknown name said the same instead of "unknown taxonomy"."""
    assert predict(city_ckpt, [camvid_root / "val"], tmp_path / "a") == 0
    assert predict(city_ckpt, [camvid_root / "val"], tmp_path / "b", "--to", "cityscapes") == 0
    capsys.readouterr()
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k.endswith(".png"))
    assert predict(city_ckpt, [camvid_root / "val"], tmp_path / "c", "--to", "nosuch") == 1
    assert "unknown taxonomy 'nosuch'" in error_line(capsys)


def test_the_demo_run_folder_is_claimed_too(tmp_path):
    """Issue 25 ("every command that writes"). Before: ``demo --work DIR`` ran in any folder, and a stage
    whose parameters changed removed its folder there (``teacher/``, ``students/``...) even when the
    user's own. Now the run folder is claimed like every output: a foreign non-empty folder and one inside
    the data it reads are refused; a run folder of an older segunify (``stages.json``) is adopted."""
    from segunify.apps.demo.run import claim_work

    data = tmp_path / "data"
    (data / "CamVid").mkdir(parents=True)
    inputs = [(data / "CamVid", "the part camvid root")]
    mine = tmp_path / "project"
    (mine / "teacher").mkdir(parents=True)
    (mine / "teacher" / "notes.txt").write_text("mine")
    with pytest.raises(SegunifyError, match="not empty and not a segunify demo run folder"):
        claim_work(mine, inputs)
    with pytest.raises(SegunifyError, match="run folder lies inside the part camvid root"):
        claim_work(data / "CamVid" / "run", inputs)
    old = tmp_path / "old-run"
    (old / "teacher").mkdir(parents=True)
    (old / "stages.json").write_text("{}")
    claim_work(old, inputs)
    assert folder_kind(old) == "demo" and (mine / "teacher" / "notes.txt").read_text() == "mine"
