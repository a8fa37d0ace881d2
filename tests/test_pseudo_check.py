"""``segunify pseudo check OUT``: is a pseudo-label folder complete (after a preempted job, before
training on it)? Checked against the dataset its settings.json names, or the manifest alone where that
root is not readable; an incomplete folder is one line and exit 1."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from fixtures.pseudo_runs import make_camvid, run
from segunify.cli import main
from segunify.pseudo.check import check_folder


@pytest.fixture()
def done(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    run(root, tmp_path / "p")
    return root, tmp_path / "p"


def _line(capsys) -> str:
    captured = capsys.readouterr()
    text = (captured.out + captured.err).strip()
    assert len(text.splitlines()) == 1, text
    return text


def test_a_finished_folder_is_complete(done, tmp_path, capsys):
    _, out = done
    assert main(["pseudo", "check", str(out), "--json", str(tmp_path / "c.json")]) == 0
    line = _line(capsys)
    assert "complete: 7 of 7 images of camvid/train" in line and "inputs unchanged" in line
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["complete"] and report["missing"] == [] and report["checked_against"] == "dataset"


def test_missing_broken_and_changed_samples_are_named(done, capsys):
    root, out = done
    (out / "trainannot" / "0001TP_000003.png").unlink()
    (out / "trainannot" / "0001TP_000005.png").write_bytes(b"not a png")
    image = root / "train" / "0001TP_000001.png"
    os.utime(image, ns=(1, 1))  # the input changed after labelling: its label is stale
    result = check_folder(out)
    assert result.missing == ["train/0001TP_000003", "train/0001TP_000005"] and result.stale == [
        "train/0001TP_000001"
    ]
    assert result.done == 4 and result.expected == 7 and not result.complete
    assert main(["pseudo", "check", str(out)]) == 1
    line = _line(capsys)
    assert (
        "incomplete: 4 of 7 images of camvid/train done; 2 missing or unreadable (e.g. 'train/0001TP_000003')"
        in line
    )
    assert (
        "1 with changed inputs (e.g. 'train/0001TP_000001')" in line and "rerun the same pseudo-label" in line
    )
    run(root, out)  # the resume redoes exactly these
    assert check_folder(out).complete


def test_an_unfinished_run_is_incomplete(done):
    _, out = done
    (out / "summary.json").unlink()
    result = check_folder(out)
    assert not result.finished and not result.complete and result.done == 7
    assert "no summary.json (the run has not finished; counted against the whole split)" in result.line()


def test_a_limited_run_is_complete_at_its_limit(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    run(root, tmp_path / "p", limit=3)
    result = check_folder(tmp_path / "p")
    assert result.complete and (result.done, result.expected) == (3, 3)


def test_without_the_dataset_the_manifest_is_checked(done, capsys):
    root, out = done
    shutil.move(root, root.with_name("elsewhere"))
    assert main(["pseudo", "check", str(out)]) == 0
    assert "complete: 7 of 7" in _line(capsys)
    (out / "trainannot" / "0001TP_000002.png").unlink()
    result = check_folder(out)
    assert (
        result.checked_against == "manifest"
        and result.missing == ["train/0001TP_000002"]
        and not result.stale
    )
    assert "(dataset root not readable here: manifest only)" in result.line()


def test_a_foreign_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["pseudo", "check", str(tmp_path / "x")]) == 1
    assert "not a segunify pseudo-label folder (settings.json missing)" in _line(capsys)
