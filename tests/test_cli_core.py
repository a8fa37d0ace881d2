import subprocess
import sys

from segunify.cli import main


def test_taxonomy_commands(capsys):
    assert main(["taxonomy", "list"]) == 0
    out = capsys.readouterr().out
    assert "cityscapes" in out and "camvid" in out
    assert main(["taxonomy", "show", "camvid"]) == 0
    assert "Bicyclist" in capsys.readouterr().out
    assert main(["taxonomy", "show", "nope"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: unknown taxonomy 'nope'")


def test_mapping_show_and_list(capsys):
    assert main(["mapping", "show", "camvid__cityscapes"]) == 0
    out = capsys.readouterr().out
    assert "one-to-many" in out and "car, truck, bus, train" in out
    assert main(["mapping", "list"]) == 0
    assert "camvid__cityscapes.csv" in capsys.readouterr().out


def test_console_script_one_line_error_no_traceback(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("extra_id,extra_name,source_classes\n0,Sky,skyy\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segunify",
            "mapping",
            "check",
            str(bad),
            "--extra",
            "camvid",
            "--source",
            "cityscapes",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}:2: unknown source class 'skyy' (taxonomy 'cityscapes')"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_usage_error_exit_2():
    proc = subprocess.run(
        [sys.executable, "-m", "segunify", "mapping", "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_usage_errors_exit_2_everywhere(tmp_path, capsys):
    """Issue 25, small. Before: ``--limit 0`` (pseudo-label, mapping suggest/audit), ``--set novalue`` and
    ``--set =x`` (train, demo) and a malformed ``--opt`` exited 1 like bad input; they are usage errors."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {name: espnetv2}\ntaxonomy: camvid\nparts: [{dataset: camvid, root: .}]\nsteps: 1\n"
    )
    common = ["--teacher", "t", "--dataset", "camvid", "--root", str(tmp_path)]
    for argv in (
        ["train", str(config), "--set", "novalue"],
        ["train", str(config), "--set", "=x"],
        ["demo", "--plan", "--set", "novalue"],
        ["pseudo-label", *common, "--mapping", "camvid__cityscapes", "--out", "o", "--limit", "0"],
        ["mapping", "suggest", *common, "--out", "d.csv", "--limit", "0"],
        ["mapping", "audit", "camvid__cityscapes", *common, "--limit", "0"],
        ["datasets", "check", "camvid", "--root", str(tmp_path), "--opt", "x"],
        ["evaluate", "--dataset", "camvid", "--root", str(tmp_path), "--split", "val", "--pred-dir", "p",
         "--dataset-opt", "=1"],
    ):  # fmt: skip
        assert main(argv) == 2, argv
    assert not (tmp_path / "o").exists()


def test_a_root_that_is_a_file_says_not_a_folder(tmp_path, capsys):
    """Issue 25, small. Before: ``--root <a regular file>`` said "dataset root ... not found"."""
    afile = tmp_path / "passwd"
    afile.write_text("root:x:0:0\n")
    assert main(["datasets", "check", "camvid", "--root", str(afile)]) == 1
    assert capsys.readouterr().err == f"error: {afile}: dataset root of 'camvid' is not a folder\n"
