"""The training loop: it learns, it resumes bit-exactly, and two CPU processes (gloo) share the work."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fixtures.tiny_models import TINY_MASK2FORMER, TINY_SEGFORMER
from segunify.models.checkpoint import load_checkpoint, read_meta, read_safetensors
from segunify.train.config import TrainConfig, load_config
from segunify.train.engine import state_sha256, train
from test_train_fixtures import base_config, make_camvid, make_pseudo, write_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tests share 2 cores with other work: one intra-op thread is both faster and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=12, n_val=2)


def test_one_batch_overfits(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=2, n_val=1)
    cfg = base_config(root, tmp_path / "run", steps=30, **{"optimizer.lr": 0.05, "schedule.power": 0.0})
    summary = train(TrainConfig.model_validate(cfg))
    losses = summary["losses"]
    assert len(losses) == 30
    assert losses[-1] < 0.1 * losses[0], losses  # > 90 % drop
    meta = read_meta(tmp_path / "run" / "last")
    assert meta["classes"][0] == "Sky" and meta["train_config"]["steps"] == 30 and meta["step"] == 30


def test_resume_equals_uninterrupted_run(camvid, tmp_path):
    extra = {
        "grad_clip": 1.0,
        "schedule.warmup": 2,
        "augmentation.hflip": True,
        "augmentation.scale": [0.8, 1.2],
    }
    straight = TrainConfig.model_validate(base_config(camvid, tmp_path / "a", steps=6, **extra))
    split = TrainConfig.model_validate(base_config(camvid, tmp_path / "b", steps=6, **extra))
    train(straight)
    first = train(split, stop_after=3)
    assert first["step"] == 3 and read_meta(tmp_path / "b" / "last")["step"] == 3
    early = read_safetensors(tmp_path / "b" / "last" / "model.safetensors")
    second = train(split, resume=True)
    assert second["step"] == 6
    a = read_safetensors(tmp_path / "a" / "last" / "model.safetensors")
    b = read_safetensors(tmp_path / "b" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    diff = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert diff == 0.0, f"resumed weights differ by {diff}"
    sa = torch.load(tmp_path / "a" / "last" / "train_state.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "last" / "train_state.pt", weights_only=True)
    assert sa["scheduler"] == sb["scheduler"] and sa["step"] == sb["step"] == 6
    for k, st in sa["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], sb["optimizer"]["state"][k]["exp_avg_sq"])
    # the weights after 3 steps differ from those after 6: the equality above is not trivially true
    assert any(not torch.equal(early[k], a[k]) for k in a)


def test_pseudo_labels_train_and_evaluate_across_taxonomies(camvid, tmp_path):
    """Cityscapes-taxonomy training on pseudo-labels, scored on CamVid GT through the mapping."""
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes", steps=2)
    cfg["parts"][0]["labels"] = str(pseudo)
    cfg["eval"] = {"parts": [{"dataset": "camvid", "root": str(camvid), "mapping": "camvid__cityscapes"}]}
    summary = train(TrainConfig.model_validate(cfg))
    result = summary["eval"]["camvid/val"]
    assert set(result["iou"]) == {
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    }
    assert 0.0 <= result["pixel_acc"] <= 1.0
    model, meta = load_checkpoint(tmp_path / "run" / "best", taxonomy="cityscapes")
    assert meta["metrics"]["camvid/val"]["pixel_acc"] == result["pixel_acc"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_share_the_data(camvid, tmp_path):
    """``accelerate launch --num_processes 2 --cpu``: disjoint draws per rank, identical final weights."""
    cfg = base_config(camvid, tmp_path / "run", steps=3)
    cfg["log"]["rank_record"] = True
    path = write_config(tmp_path / "c.yaml", cfg)
    accelerate = Path(sys.executable).with_name("accelerate")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    cmd = [
        str(accelerate),
        "launch",
        "--num_processes",
        "2",
        "--cpu",
        "--main_process_port",
        str(_free_port()),
    ]
    cmd += ["--mixed_precision", "no", "--num_machines", "1", "--dynamo_backend", "no"]
    cmd += ["-m", "segunify", "train", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads((tmp_path / "run" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    draws = [[d for d, _ in rec["draws"]] for rec in records]
    indices = [{i for _, i in rec["draws"]} for rec in records]
    assert len(draws[0]) == len(draws[1]) == 3 * 2
    assert sorted(draws[0] + draws[1]) == list(range(12))  # 3 steps x 2 ranks x batch 2
    assert not indices[0] & indices[1]  # 12 draws from 12 samples: no sample on both ranks
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    model, meta = load_checkpoint(tmp_path / "run" / "last")
    assert state_sha256(model) == records[0]["weights_sha256"]
    assert torch.load(tmp_path / "run" / "last" / "train_state.pt", weights_only=True)["sampler"][
        "global_batch"
    ] == [2, 2]


def test_cli_stop_and_resume(camvid, tmp_path):
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run", steps=4))
    from segunify.cli import main

    assert main(["train", str(path), "--stop-after", "2"]) == 0
    assert read_meta(tmp_path / "run" / "last")["step"] == 2
    assert main(["train", str(path), "--resume", "--set", "log.every=2"]) == 0
    assert read_meta(tmp_path / "run" / "last")["step"] == 4
    assert load_config(path).steps == 4
    shutil.rmtree(tmp_path / "run")


TINY_HF = {"segformer-b0": TINY_SEGFORMER, "mask2former": TINY_MASK2FORMER}


@pytest.mark.parametrize("name", ["segformer-b0", "mask2former"])
def test_hf_models_train_with_their_loss(camvid, tmp_path, name):
    """SegFormer trains with cross entropy, Mask2Former with its own matched loss (``has_own_loss``)."""
    cfg = base_config(camvid, tmp_path / "run", steps=3, **{"optimizer.lr": 1e-3})
    cfg["model"] = {"name": name, "kwargs": {"config": TINY_HF[name]}}
    summary = train(TrainConfig.model_validate(cfg))
    assert len(summary["losses"]) == 3 and all(torch.isfinite(torch.tensor(summary["losses"])))
    model, meta = load_checkpoint(tmp_path / "run" / "last", taxonomy="camvid")
    assert meta["model"] == name
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 48, 64)).shape == (1, 11, 48, 64)
