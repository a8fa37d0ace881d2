"""Issue 11 item 7 for ``evaluate --json`` and ``export``: an output that cannot be written (a path below
a file, a full disk) is one stderr line naming the path and exit 1. Before (a22546b): a 40-line
``FileExistsError`` traceback from ``mkdir`` (both commands), exit 1."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from fixtures.tiny_models import espnet_checkpoint
from segunify.cli import main
from segunify.io import write_index_png, write_png


@pytest.fixture()
def camvid_and_preds(tmp_path):
    """A 2-image CamVid val split and a prediction folder equal to its labels."""
    root, preds = tmp_path / "CamVid", tmp_path / "pred"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        label = rng.integers(0, 11, (8, 12), dtype=np.uint8)
        write_png(root / "val" / f"{name}.png", np.zeros((8, 12, 3), np.uint8))
        write_index_png(root / "valannot" / f"{name}.png", label)
        write_index_png(preds / "valannot" / f"{name}.png", label)
    return root, preds


def evaluate_args(root, preds) -> list[str]:
    return [
        "evaluate",
        "--dataset",
        "camvid",
        "--root",
        str(root),
        "--split",
        "val",
        "--pred-dir",
        str(preds),
    ]


def one_line_naming(capsys, path) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert str(path) in err, err
    return err


def test_evaluate_json_below_a_file_or_on_a_full_disk_is_one_line(
    camvid_and_preds, tmp_path, capsys, monkeypatch
):
    root, preds = camvid_and_preds
    (tmp_path / "taken").write_text("a file, not a folder")
    args = evaluate_args(root, preds)
    target = tmp_path / "taken" / "r.json"
    assert main([*args, "--json", str(target)]) == 1
    one_line_naming(capsys, target)
    assert (tmp_path / "taken").read_text() == "a file, not a folder"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    target = tmp_path / "out" / "r.json"
    assert main([*args, "--json", str(target)]) == 1
    assert "No space left on device" in one_line_naming(capsys, target)
    assert not target.exists() and not [p for p in (tmp_path / "out").iterdir()]  # no temp file left


def test_export_below_a_file_is_one_line(tmp_path, capsys):
    ckpt = espnet_checkpoint(tmp_path / "ck")
    (tmp_path / "taken").write_text("a file, not a folder")
    target = tmp_path / "taken" / "m.onnx"
    assert main(["export", str(ckpt), "--onnx", str(target), "--size", "32,32"]) == 1
    one_line_naming(capsys, target)
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


def test_evaluate_json_is_checked_before_the_split_is_scored(camvid_and_preds, tmp_path, capsys, monkeypatch):
    """Before: an unwritable ``--json`` was found only after scoring the whole split (time lost)."""
    import segunify.cli.evaluate as cli_evaluate

    root, preds = camvid_and_preds
    (tmp_path / "taken").write_text("a file, not a folder")

    def no_scoring(*a, **k):
        raise AssertionError("the split was scored before the output was checked")

    monkeypatch.setattr(cli_evaluate, "_score", no_scoring)
    target = tmp_path / "taken" / "r.json"
    args = evaluate_args(root, preds)
    assert main([*args, "--json", str(target)]) == 1
    one_line_naming(capsys, target)


# ------------------------------------------------------------------------------------------ issue 25 case 3


def test_evaluate_json_never_replaces_a_file_silently(camvid_and_preds, tmp_path, capsys):
    """Issue 25 case 3. Before: ``evaluate --json FILE`` replaced an existing file without asking (exit
    0). Now: refused without ``--overwrite`` (exit 1, the file as it was), replaced with it."""
    root, preds = camvid_and_preds
    target = tmp_path / "results.json"
    target.write_text("my notes")
    assert main([*evaluate_args(root, preds), "--json", str(target)]) == 1
    assert "output exists; pass --overwrite to replace it" in one_line_naming(capsys, target)
    assert target.read_text() == "my notes"
    assert main([*evaluate_args(root, preds), "--json", str(target), "--overwrite"]) == 0
    assert json.loads(target.read_text())["images"] == 2


@pytest.mark.parametrize("where", ["root", "label folder", "prediction folder"])
def test_evaluate_outputs_inside_what_it_reads_are_refused(camvid_and_preds, capsys, where):
    """Issue 25 case 3. Before: ``--json`` (and ``--vis``) were written inside the dataset root, e.g.
    beside the labels. Now: refused before scoring, nothing written there."""
    root, preds = camvid_and_preds
    folder = {"root": root, "label folder": root / "valannot", "prediction folder": preds}[where]
    before = sorted(folder.rglob("*"))
    assert main([*evaluate_args(root, preds), "--json", str(folder / "r.json")]) == 1
    assert "output file lies inside" in one_line_naming(capsys, folder / "r.json")
    assert main([*evaluate_args(root, preds), "--vis", str(folder / "vis")]) == 1
    assert "output folder lies inside" in one_line_naming(capsys, folder / "vis")
    assert sorted(folder.rglob("*")) == before
