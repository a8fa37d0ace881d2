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


LIGHT_COMMANDS = [
    ["--help"],
    ["taxonomy", "list"],
    ["taxonomy", "show", "camvid"],
    ["mapping", "list"],
    ["mapping", "show", "camvid__cityscapes"],
    ["mapping", "check", "camvid__cityscapes"],
    ["mapping", "diff", "camvid__cityscapes", "camvid__cityscapes"],
    ["datasets", "list"],
]
PROBE = """
import json, sys
from segunify.cli import main
seen = []
for args in json.loads(sys.argv[1]):
    seen.append([args, main(args), "torch" in sys.modules])
print(json.dumps(seen), file=sys.stderr)
"""


def test_commands_that_read_package_data_never_import_torch():
    """They answer at once (benchmarks/cli_startup.py times them): no torch on the way, not even for a
    help string. One fresh interpreter runs them in turn, then ``models list``, which needs the model
    families: the control that the probe sees torch when it is there."""
    import json

    commands = [*LIGHT_COMMANDS, ["models", "list"]]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)], capture_output=True, text=True, timeout=300
    )
    seen = json.loads(proc.stderr.strip().splitlines()[-1])
    assert [(args, code) for args, code, _ in seen] == [(args, 0) for args in commands]
    assert [args for args, _, torch in seen if torch] == [["models", "list"]]
