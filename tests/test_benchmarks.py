"""Every benchmark script runs at a toy size and prints one JSON object: the README's figures come from
these scripts, and a refactor that breaks one (an import moved) must fail here, not at measuring time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = {
    "gpu_check.py": [
        "--dry"
    ],  # every section on the CPU at toy sizes, synthetic data: runs without ../shared
    "cli_startup.py": ["--rounds", "1"],
    "metrics.py": ["--images", "1", "--repeat", "1"],
    "teacher_backends.py": ["--frames", "1", "--repeats", "1", "--size", "64,128", "--skip", "compile"],
    "teacher_camvid.py": ["--limit", "1", "--s", "1.0"],
    "pseudo_label.py": ["--limit", "2", "--size", "64,128", "--repeat", "1", "--batch-size", "2"],
    "train.py": [
        "--steps",
        "1",
        "--warmup",
        "0",
        "--size",
        "64,128",
        "--models",
        "espnetv2",
        "--workers",
        "0",
    ],
    "train_options.py": [
        "--size",
        "64,64",
        "--batch",
        "2",
        "--steps",
        "1",
        "--rounds",
        "1",
        "--repeats",
        "1",
    ],
}
NEEDS_DATA = {"teacher_backends.py", "teacher_camvid.py", "pseudo_label.py", "train.py"}


def test_every_benchmark_has_a_toy_run():
    assert sorted(TOY) == sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", sorted(TOY))
def test_benchmark_prints_one_json_object(script, tmp_path):
    if script in NEEDS_DATA:
        from conftest import _shared

        _shared("weights")
        _shared("data", "CamVid")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "SEGUNIFY_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *TOY[script]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict) and figures
    if script == "cli_startup.py":  # the commands that read package data only never import torch
        assert (
            not figures["segunify taxonomy list"]["imports_torch"]
            and not figures["segunify --help"]["imports_torch"]
        )
    if script == "gpu_check.py":  # one line, every section run and passed
        assert len(lines) == 1 and figures["ok"] and figures["mode"] == "dry", figures
        sections = ("environment", "teacher_pass", "forward", "train", "multiprocess")
        assert all(figures[k]["ok"] for k in sections), figures
        assert (
            figures["multiprocess"]["killed"]["identical_to_one"]
            and not figures["multiprocess"]["summary_after_kill"]
        )
