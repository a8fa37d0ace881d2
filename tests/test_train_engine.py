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
from accelerate.utils import set_seed

from fixtures.tiny_models import TINY_MASK2FORMER, TINY_SEGFORMER
from fixtures.train_data import base_config, make_camvid, make_pseudo, write_config
from segunify.models import create_model
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.models.checkpoint import load_checkpoint, load_meta, read_safetensors, save_checkpoint
from segunify.train import Callback, train
from segunify.train.config import TrainConfig, load_config
from segunify.train.data import CompoundDataset, WeightedDrawSampler, build_augmentation, collate
from segunify.train.engine import compute_loss, normaliser, state_sha256, step_seed
from segunify.train.parts import resolve_parts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=12, n_val=2)


def evaluate_last(tmp_path, camvid) -> list[str]:
    """``segunify evaluate`` of the run's last checkpoint on the CamVid fixture; the split etc. follow."""
    return [
        "evaluate",
        "--model",
        str(tmp_path / "run" / "last"),
        "--dataset",
        "camvid",
        "--root",
        str(camvid),
    ]


def test_one_batch_overfits(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=2, n_val=1)
    cfg = base_config(root, tmp_path / "run", steps=30, **{"optimizer.lr": 0.05, "schedule.power": 0.0})
    summary = train(TrainConfig.model_validate(cfg))
    losses = summary["losses"]
    assert len(losses) == 30
    assert losses[-1] < 0.1 * losses[0], losses  # > 90 % drop
    meta = load_meta(tmp_path / "run" / "last")
    assert meta.classes[0] == "Sky" and meta.train_config["steps"] == 30 and meta.step == 30


def test_normalisation_is_the_configs_else_the_start_checkpoints_else_the_familys(tmp_path):
    from fixtures.tiny_models import espnet_checkpoint
    from segunify.models.checkpoint import save_checkpoint
    from segunify.train.config import ModelConfig
    from segunify.train.engine import normalisation

    model = create_model("espnetv2", 11, s=1.0)
    teacher = save_checkpoint(
        tmp_path / "t", model, {"taxonomy": "camvid", "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.3, 0.4)}
    )
    plain = espnet_checkpoint(tmp_path / "plain")  # recorded: the family's
    cfg = ModelConfig(name="espnetv2")
    assert normalisation(cfg, teacher, model) == ((0.5, 0.5, 0.5), (0.2, 0.3, 0.4))
    assert (
        normalisation(cfg, None, model) == normalisation(cfg, plain, model) == (IMAGENET_MEAN, IMAGENET_STD)
    )
    assert normalisation(cfg, tmp_path, model) == (IMAGENET_MEAN, IMAGENET_STD)  # no checkpoint: the family's
    given = ModelConfig(name="espnetv2", mean=(0.1, 0.2, 0.3))  # each field on its own
    assert normalisation(given, teacher, model) == ((0.1, 0.2, 0.3), (0.2, 0.3, 0.4))


def test_a_student_trains_and_is_saved_with_its_teachers_normalisation(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=2, n_val=1)
    model = create_model("espnetv2", 11, s=1.0)
    teacher = save_checkpoint(
        tmp_path / "t", model, {"taxonomy": "camvid", "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.3, 0.4)}
    )
    train(
        TrainConfig.model_validate(
            base_config(root, tmp_path / "run", steps=1, **{"model.weights": str(teacher)})
        )
    )
    meta = load_meta(tmp_path / "run" / "last")
    assert (meta.mean, meta.std) == ((0.5, 0.5, 0.5), (0.2, 0.3, 0.4))
    assert meta.train_config["model"]["mean"] is None  # the config left it to the checkpoint


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
    assert first["step"] == 3 and load_meta(tmp_path / "b" / "last").step == 3
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


def test_engine_evaluation_equals_evaluate_cli(camvid, tmp_path, capsys):
    """Cityscapes-taxonomy training on pseudo-labels, scored on CamVid GT through the mapping: the numbers
    the trainer stores in the checkpoint are those ``segunify evaluate --model`` prints for it.
    Before: the engine had its own scoring code (and evaluated at the image's size while the checkpoint
    declared the crop size), so the two could differ."""
    from segunify.cli import main

    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes", steps=2)
    cfg["parts"][0]["labels"] = str(pseudo)
    cfg["eval"] = {
        "parts": [{"dataset": "camvid", "root": str(camvid), "mapping": "camvid__cityscapes"}],
        "size": [32, 48],
        "select": "camvid/val/miou",
    }
    summary = train(TrainConfig.model_validate(cfg))
    engine = summary["eval"]["camvid/val"]
    assert [c.name for c in engine.classes][:4] == ["Sky", "Building", "Pole", "Road"]
    assert engine.images == 2 and engine.pixels > 0.9 * 2 * 48 * 64
    meta = load_meta(tmp_path / "run" / "best")
    assert meta.metrics["camvid/val"] == engine.to_json() and meta.input_size == (32, 48)
    assert meta.selected_metric.model_dump() == {"name": "camvid/val/miou", "value": engine.miou}
    out = tmp_path / "cli.json"
    argv = evaluate_last(tmp_path, camvid)
    assert main([*argv, "--split", "val", "--mapping", "camvid__cityscapes", "--json", str(out)]) == 0
    capsys.readouterr()
    cli = json.loads(out.read_text())
    assert cli["confusion"] == engine.confusion
    for key in ("miou", "pixel_acc", "mean_acc", "classes", "pixels"):
        assert cli[key] == engine.to_json()[key], key


def test_best_checkpoint_follows_the_selected_metric(camvid, tmp_path):
    """``best/`` is chosen on ``eval.select`` alone. Before: on the mean of mIoU and (for parts without
    mIoU) allowed-set accuracy, two numbers of different meaning."""
    cfg = base_config(camvid, tmp_path / "run", steps=4, **{"optimizer.lr": 0.05})
    cfg["eval"] = {
        "every": 1,
        "parts": [{"dataset": "camvid", "root": str(camvid)}],
        "select": "camvid/val/pixel_acc",
    }
    scores = []

    class Record(Callback):
        def on_eval(self, trainer, results):
            scores.append(results["camvid/val"].pixel_acc)

    train(TrainConfig.model_validate(cfg), callbacks=[Record()])
    assert len(scores) == 4
    best = load_meta(tmp_path / "run" / "best")
    assert best.selected_metric.value == max(scores)
    assert best.step == 1 + scores.index(max(scores))  # the first step that reached the maximum


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_share_the_data(camvid, tmp_path):
    """``accelerate launch --num_processes 2 --cpu``: disjoint draws per rank, identical final weights."""
    cfg = base_config(camvid, tmp_path / "run", steps=3)
    cfg["log"]["rank_record"] = True
    cfg["eval"] = {"parts": [{"dataset": "camvid", "root": str(camvid)}]}  # one val image per rank
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
    # the ranks' confusion matrices were summed: the result is that of one process on both images
    from segunify.cli import main

    out = tmp_path / "one.json"
    argv = evaluate_last(tmp_path, camvid)
    assert main([*argv, "--split", "val", "--json", str(out)]) == 0
    engine = meta.metrics["camvid/val"]
    assert engine["images"] == 2 and engine["confusion"] == json.loads(out.read_text())["confusion"]


def test_cli_stop_and_resume(camvid, tmp_path):
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run", steps=4))
    from segunify.cli import main

    assert main(["train", str(path), "--stop-after", "2"]) == 0
    assert load_meta(tmp_path / "run" / "last").step == 2
    assert main(["train", str(path), "--resume", "--set", "log.every=2"]) == 0
    assert load_meta(tmp_path / "run" / "last").step == 4
    assert load_config(path).steps == 4
    shutil.rmtree(tmp_path / "run")


TINY_HF = {"segformer-b0": TINY_SEGFORMER, "mask2former": TINY_MASK2FORMER}


@pytest.mark.parametrize("name", ["segformer-b0", "mask2former"])
def test_hf_models_train_with_their_loss(camvid, tmp_path, name):
    """SegFormer trains with cross entropy, Mask2Former with its own matched loss (``has_own_loss``)."""
    cfg = base_config(camvid, tmp_path / "run", steps=3, **{"optimizer.lr": 1e-3})
    cfg["model"] = {"name": name, "kwargs": {"config": TINY_HF[name]}}
    summary = train(TrainConfig.model_validate(cfg))
    # the first logged loss is the family's loss of the seeded initial model on the first batch
    set_seed(0)
    model = create_model(name, 11, config=TINY_HF[name])
    model.train()
    parts = resolve_parts(TrainConfig.model_validate(cfg), "<config>")[1]
    dataset = CompoundDataset(parts, build_augmentation(TrainConfig.model_validate(cfg).augmentation))
    draws = list(WeightedDrawSampler(dataset.sizes, [1.0], batch_size=2, steps=1))
    batch = collate([dataset[d] for d in draws])
    torch.manual_seed(step_seed(0, 0, 0))
    x = normaliser(IMAGENET_MEAN, IMAGENET_STD, "cpu")(batch["image"])
    with torch.no_grad():
        first = compute_loss(model, model, x, batch["label"].long()).item()
    assert summary["losses"][0] == pytest.approx(first, rel=1e-4)
    trained, meta = load_checkpoint(tmp_path / "run" / "last", taxonomy="camvid")
    assert meta.model == name
    moved = [k for k, v in trained.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert moved, "three steps left every weight unchanged"
    with torch.no_grad():
        assert trained(torch.zeros(1, 3, 48, 64)).shape == (1, 11, 48, 64)
