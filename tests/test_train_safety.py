"""Training refuses bad input before the first step, with one line (issues 11 and 12), and honours the
parts' sampling weights (and says what each part got)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures.train_data import base_config, make_camvid, make_pseudo, write_config
from segunify.cli import main
from segunify.models import create_model
from segunify.models.checkpoint import save_checkpoint
from segunify.train import TrainConfig, train
from segunify.train.engine import make_accelerator
from segunify.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=4, n_val=4)


def run_cli(args, capsys) -> tuple[int, list[str]]:
    code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def test_unwritable_out_is_refused_before_the_first_step(camvid, tmp_path, capsys, monkeypatch):
    """Before: ``out`` was first written at the first checkpoint, after the training steps, and a failure
    was an OSError traceback. Now: checked when the run is built, one line naming the folder."""
    (tmp_path / "file").write_text("not a folder")
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "file" / "run"))
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: out: cannot write to {tmp_path / 'file' / 'run'}"), lines[0]

    def read_only(*args, **kwargs):  # a read-only file system (a chmod does not stop root)
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run"))
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and lines == [
        f"error: {path}: out: cannot write to {tmp_path / 'run'} (Read-only file system)"
    ]
    assert not (tmp_path / "run" / "last").exists()


def test_corrupt_image_is_one_line_with_and_without_workers(tmp_path, capsys):
    """Before: with ``num_workers > 0`` the worker's SegunifyError reached the user as a DataLoader
    traceback ("Caught SegunifyError in DataLoader worker process 0 ..."). Now: the same line as
    without workers."""
    root = make_camvid(tmp_path / "camvid", n_train=4, n_val=1)
    bad = sorted((root / "train").glob("*.png"))[1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    last_lines = []
    for workers in (0, 2):
        cfg = base_config(root, tmp_path / f"run{workers}", steps=2, num_workers=workers)
        code, lines = run_cli(["train", str(write_config(tmp_path / "c.yaml", cfg))], capsys)
        assert code == 1
        assert lines[-1].startswith(f"error: {bad}: cannot decode image"), lines
        assert not any("Traceback" in line or "worker" in line for line in lines), lines
        last_lines.append(lines[-1])
    assert last_lines[0] == last_lines[1]


def test_weights_of_another_class_count_need_reinit_head(camvid, tmp_path, capsys):
    """Before: a checkpoint of 11 classes given to a 19-class taxonomy got a fresh classifier silently.
    Now: refused (exit 1) unless ``model.reinit_head: true``, which is logged."""
    ckpt = save_checkpoint(tmp_path / "ckpt", create_model("espnetv2", 11, s=1.0), {"taxonomy": "camvid"})
    cfg = base_config(camvid, tmp_path / "run", steps=1)
    cfg.update(taxonomy="cityscapes")
    cfg["parts"][0]["mapping"] = str(tmp_path / "id.csv")
    rows = ["extra_id,extra_name,source_classes"]
    rows += [f"{k},{n},{c}" for k, (n, c) in enumerate(zip(CAMVID, CITYSCAPES_OF_CAMVID, strict=True))]
    (tmp_path / "id.csv").write_text("\n".join(rows) + "\n")
    cfg["model"]["weights"] = str(ckpt)
    path = write_config(tmp_path / "c.yaml", cfg)
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert (
        "model.weights: ckpt does not fit taxonomy 'cityscapes': it holds 11 classes, the taxonomy 19"
        in lines[0]
    )
    assert "model.reinit_head: true" in lines[0]
    code, lines = run_cli(["train", str(path), "--set", "model.reinit_head=true"], capsys)
    assert code == 0, lines
    assert (
        "model.reinit_head: new classifier for 'cityscapes' (it holds 11 classes, the taxonomy 19)" in lines
    )


CAMVID = "Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist".split(",")
CITYSCAPES_OF_CAMVID = "sky,building,pole,road,sidewalk,vegetation,traffic sign,fence,car,person,rider".split(
    ","
)


def test_sampled_shares_follow_the_part_weights(camvid, tmp_path):
    """Parts of 4 and 4 samples weighted 3 : 1 get about 75 / 25 % of the draws (not 50 / 50 as their
    sizes would give); ``sampling.json`` reports the draws the ranks actually trained on."""
    cfg = base_config(camvid, tmp_path / "run", steps=60, batch_size=4)
    cfg["parts"] = [
        {"dataset": "camvid", "root": str(camvid), "split": "train", "weight": 3.0},
        {"dataset": "camvid", "root": str(camvid), "split": "val", "weight": 1.0},
    ]
    cfg["log"]["rank_record"] = True
    summary = train(TrainConfig.model_validate(cfg))
    record = json.loads((tmp_path / "run" / "sampling.json").read_text())
    assert record == summary["sampling"] and record["draws"] == 240
    shares = [p["share"] for p in record["parts"]]
    assert [p["expected_share"] for p in record["parts"]] == [0.75, 0.25]
    np.testing.assert_allclose(shares, [0.75, 0.25], atol=3 * np.sqrt(0.75 * 0.25 / 240))
    trained = json.loads((tmp_path / "run" / "ranks" / "rank0.json").read_text())["draws"]
    per_part = np.bincount([index >= 4 for _, index in trained], minlength=2)
    assert per_part.tolist() == [p["draws"] for p in record["parts"]]


def test_ddp_searches_unused_parameters_only_where_the_family_says(camvid, tmp_path):
    """Before: ``find_unused_parameters=True`` for every model (a search each step under DDP)."""
    from fixtures.tiny_models import TINY_SEGFORMER

    cfg = TrainConfig.model_validate(base_config(camvid, tmp_path / "run"))
    espnet = create_model("espnetv2", 11, s=1.0)
    segformer = create_model("segformer-b0", 11, config=TINY_SEGFORMER)
    assert make_accelerator(cfg, espnet).ddp_handler.find_unused_parameters is True
    assert make_accelerator(cfg, segformer).ddp_handler.find_unused_parameters is False


# ------------------------------------------------------------------------------------------ issue 25


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture()
def no_steps(monkeypatch):
    """Fails the test if a training step runs: every refusal below must come before step 1."""

    def step(*args, **kwargs):
        raise AssertionError("a training step ran before the refusal")

    monkeypatch.setattr(Trainer, "train_step", step)


@pytest.mark.parametrize(
    "where", ["dataset root", "label folder", "eval root", "pseudo-label folder", "user folder"]
)
def test_out_that_would_overwrite_someone_elses_files_is_refused_before_step_1(
    camvid, tmp_path, capsys, no_steps, where
):
    """Case 2. Before: ``train`` wrote ``last/``, ``best/`` and ``sampling.json`` into any ``out``: a
    dataset root, an eval root, a pseudo-label folder or a user's folder (its ``sampling.json``
    overwritten), exit 0. Now: one line before the first step, every byte as it was."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "sampling.json").write_text('{"my": "notes"}')
    evals = make_camvid(tmp_path / "evalset", n_train=1, n_val=2)
    pseudo = make_pseudo(camvid, tmp_path / "pseudo", taxonomy="camvid")
    out = {
        "dataset root": camvid,
        "label folder": camvid / "trainannot",
        "eval root": evals,
        "pseudo-label folder": pseudo,
        "user folder": user,
    }[where]
    cfg = base_config(camvid, out, steps=2)
    cfg["eval"] = {"parts": [{"dataset": "camvid", "root": str(evals), "split": "val"}]}
    if where == "pseudo-label folder":
        (pseudo / ".segunify-pseudo").write_text("{}")  # as pseudo-label writes it
    before = {p: snapshot(p) for p in (camvid, evals, pseudo, user)}
    code, lines = run_cli(["train", str(write_config(tmp_path / "c.yaml", cfg))], capsys)
    assert code == 1 and len(lines) == 1, lines
    expected = {
        "dataset root": "lies inside the dataset root of parts.0",
        "label folder": "lies inside the dataset root of parts.0",
        "eval root": "lies inside the dataset root of eval.parts.0",
        "pseudo-label folder": "is a segunify pseudo-label folder, not a training run folder",
        "user folder": "not empty and not a segunify training run folder",
    }[where]
    assert f"out: {out}" in lines[0] and expected in lines[0], lines[0]
    assert {p: snapshot(p) for p in before} == before


def test_a_conflicting_best_is_found_before_step_1(camvid, tmp_path, capsys, monkeypatch):
    """Case 2. Before: a ``best/`` that is no checkpoint (here a user's folder) was found only when the
    first evaluation improved, after the run had trained. Now: at build, with ``--resume`` too."""
    out = tmp_path / "run"
    cfg = base_config(camvid, out, steps=2)
    path = write_config(tmp_path / "c.yaml", cfg)
    assert run_cli(["train", str(path), "--stop-after", "1"], capsys)[0] == 0
    (out / "best").mkdir()
    (out / "best" / "plots.txt").write_text("mine")
    monkeypatch.setattr(Trainer, "train_step", lambda *a, **k: pytest.fail("a step ran"))
    code, lines = run_cli(["train", str(path), "--resume"], capsys)
    assert code == 1 and len(lines) == 1 and "best: not empty and not a segunify checkpoint" in lines[0], (
        lines
    )
    assert (out / "best" / "plots.txt").read_text() == "mine"


HOLDER = """
import sys, time
from segunify.outputs import claim_folder, folder_lock
claim_folder(sys.argv[1], "train")
with folder_lock(sys.argv[1], "train"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_one_out_is_refused_naming_the_pid(camvid, tmp_path, capsys):
    """Case 4. Before: two ``train`` runs on one ``out`` both ran (a ``--resume`` 9 s into a 60-step run
    started at the other run's step 30 and both wrote ``last/``). Now the second fails at once naming
    the first one's pid, ``--resume`` included; after it ends, the run goes through."""
    out = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", base_config(camvid, out, steps=2))
    assert run_cli(["train", str(path), "--stop-after", "1"], capsys)[0] == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        state = (out / "last" / "train_state.pt").read_bytes()
        code, lines = run_cli(["train", str(path), "--resume"], capsys)
        assert code == 1 and len(lines) == 1, lines
        assert f"another train run (pid {holder.pid}) is writing to this folder" in lines[0]
        assert (out / "last" / "train_state.pt").read_bytes() == state
    finally:
        holder.kill()
        holder.wait()
    assert run_cli(["train", str(path), "--resume"], capsys)[0] == 0


def _pseudo_part(camvid, tmp_path, **part) -> Path:
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", steps=1, taxonomy="cityscapes")
    cfg["parts"][0].update(labels=str(pseudo), **part)
    return write_config(tmp_path / "p.yaml", cfg)


def test_pseudo_labels_of_other_images_never_train(tmp_path, capsys, no_steps):
    """Case 6. Before: pseudo-labels made from another root (same file names, other frames) trained
    silently, and so did labels of an image replaced since. Now the folder's recorded root and per-file
    input signatures are compared always; one line naming the part and the disagreement."""
    a = make_camvid(tmp_path / "a", n_train=3, n_val=1)
    b = make_camvid(tmp_path / "b", n_train=3, n_val=1, seed=7)  # same names, other frames
    path = _pseudo_part(a, tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["parts"][0]["root"] = str(b)
    code, lines = run_cli(["train", str(write_config(path, cfg))], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert f"parts.0.labels: pseudo-labels pseudo were made from dataset root '{a}'" in lines[0]
    assert f"not the root read '{b}'" in lines[0]
    cfg["parts"][0]["root"] = str(a)
    image = sorted((a / "train").glob("*.png"))[1]
    image.write_bytes((b / "train" / image.name).read_bytes())  # the image replaced after labelling
    code, lines = run_cli(["train", str(write_config(path, cfg))], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert f"sample 'train/{image.stem}' changed since its pseudo-label was made" in lines[0], lines[0]


def test_pseudo_labels_of_another_teacher_or_mapping_need_naming(camvid, tmp_path, capsys, no_steps):
    """Case 6. Before: the teacher and mapping were compared only when the part named ``teacher:`` /
    ``mapping:``, so labels of another teacher trained a student started from other weights silently.
    Now the start weights (or the distillation teacher) and the shipped mapping are compared when the part
    names none; naming the right ones lets the run start."""
    from fixtures.tiny_models import espnet_checkpoint
    from fixtures.train_data import TEACHER_SHA256

    start = espnet_checkpoint(tmp_path / "start", "cityscapes", 19)
    path = _pseudo_part(camvid, tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"]["weights"] = str(start)
    code, lines = run_cli(["train", str(write_config(path, cfg))], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert "parts.0.labels: pseudo-labels pseudo were made by another teacher" in lines[0]
    assert (
        "than model.weights" in lines[0]
        and "name the teacher they were made by in parts.0.teacher" in lines[0]
    )
    summary = json.loads((tmp_path / "pseudo" / "summary.json").read_text())
    summary["mapping"]["sha256"] = "00" * 32
    (tmp_path / "pseudo" / "summary.json").write_text(json.dumps(summary))
    cfg["parts"][0]["teacher"] = TEACHER_SHA256
    code, lines = run_cli(["train", str(write_config(path, cfg))], capsys)
    assert code == 1 and "with another mapping" in lines[0] and "name theirs in parts.0.mapping" in lines[0]
