"""Training refuses bad input before the first step, with one line (issues 11 and 12), and honours the
parts' sampling weights (and says what each part got)."""

from __future__ import annotations

import errno
import json
import tempfile

import numpy as np
import pytest

from fixtures.train_data import base_config, make_camvid, write_config
from segunify.cli import main
from segunify.models import create_model
from segunify.models.checkpoint import save_checkpoint
from segunify.train import TrainConfig, train
from segunify.train.engine import make_accelerator

pytestmark = pytest.mark.usefixtures("one_thread")


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
