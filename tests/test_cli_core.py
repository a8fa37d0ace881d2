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
