"""Fine-tuning options of the training engine: frozen BatchNorm statistics, distillation toward a frozen
teacher on the source parts' pixels, repeat-factor sampling and rare-class crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures.tiny_models import espnet_checkpoint
from fixtures.train_data import base_config, make_camvid, make_pseudo
from segunify.errors import SegunifyError
from segunify.models import create_model
from segunify.models.checkpoint import read_safetensors
from segunify.taxonomy import IGNORE
from segunify.train import train
from segunify.train.config import DistillConfig, TrainConfig
from segunify.train.data import CompoundDataset
from segunify.train.finetune import param_groups, set_train_mode
from segunify.train.objective import Distiller, check_loss_options, pixel_losses
from segunify.train.parts import resolve_parts

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=4, n_val=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return espnet_checkpoint(tmp_path_factory.mktemp("teacher") / "t", taxonomy="camvid", varied=True)


def _weights(path):
    return read_safetensors(path / "model.safetensors")


def _train(camvid, out, **overrides):
    return train(TrainConfig.model_validate(base_config(camvid, out, **overrides)))


# ------------------------------------------------------------------------------------------ BatchNorm
def test_freeze_bn_keeps_running_statistics_and_trains_the_affine_part(camvid, teacher, tmp_path):
    start = _weights(teacher)
    _train(camvid, tmp_path / "frozen", steps=2, **{"model.weights": str(teacher), "model.freeze_bn": True})
    _train(camvid, tmp_path / "free", steps=2, **{"model.weights": str(teacher)})
    frozen, free = _weights(tmp_path / "frozen" / "last"), _weights(tmp_path / "free" / "last")
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    affine = [k.replace("running_mean", "weight") for k in stats if k.endswith("running_mean")]
    assert stats and all(torch.equal(frozen[k], start[k]) for k in stats)
    assert any(not torch.equal(frozen[k], start[k]) for k in affine)  # BN weights still learn
    assert any(not torch.equal(free[k], start[k]) for k in stats)  # the default updates the statistics


def test_set_train_mode():
    model = create_model("espnetv2", 3, s=1.0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    set_train_mode(model.eval(), freeze_bn=True)
    assert model.training and not any(m.training for m in bns)
    set_train_mode(model, freeze_bn=False)
    assert all(m.training for m in bns)


# ------------------------------------------------------------------------------------------- losses
def test_per_pixel_cross_entropy_equals_the_fused_one():
    """The per-pixel path (taken with distillation) equals the fused cross entropy of the default."""
    x = torch.randn(2, 5, 4, 6)
    y = torch.randint(0, 5, (2, 4, 6))
    y[0, 0] = 255
    assert pixel_losses(x, y).mean().item() == pytest.approx(F.cross_entropy(x, y, ignore_index=255).item())


def test_a_model_with_its_own_loss_refuses_loss_options():
    own = type("Own", (torch.nn.Module,), {"has_own_loss": True})()
    cfg = {
        "model": {"name": "mask2former"},
        "taxonomy": "camvid",
        "parts": [{"dataset": "camvid", "root": "."}],
    }
    check_loss_options(TrainConfig.model_validate({**cfg, "steps": 1}), own, "c.yaml")
    bad = TrainConfig.model_validate({**cfg, "steps": 1, "loss": {"distill": {"teacher": "t"}}})
    with pytest.raises(
        SegunifyError, match="loss.distill: model 'mask2former' trains with its own loss"
    ) as err:
        check_loss_options(bad, own, "c.yaml")
    assert "\n" not in str(err.value)
    for removed in ({"name": "ohem"}, {"l2sp": 0.1}):  # options that lost on held-out data are gone
        with pytest.raises(ValueError, match="Extra inputs are not permitted"):
            TrainConfig.model_validate({**cfg, "steps": 1, "loss": removed})
    soft = {**cfg, "steps": 1, "parts": [{**cfg["parts"][0], "soft": True}]}  # soft priors too
    with pytest.raises(ValueError, match=r"parts\.0\.soft\n  Extra inputs are not permitted"):
        TrainConfig.model_validate(soft)


def test_param_groups_exempt_biases_and_norms_from_weight_decay():
    model = create_model("espnetv2", 3, s=1.0)
    groups = param_groups(model, 0.01)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_decay[0.0] == {id(p) for p in model.parameters() if p.ndim <= 1}
    assert by_decay[0.01] == {id(p) for p in model.parameters() if p.ndim > 1}


# -------------------------------------------------------------------------------------- distillation
def test_distillation_kl_on_the_source_pixels():
    teacher_logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)
    stub = type("T", (torch.nn.Module,), {"forward": lambda self, x: teacher_logits})()
    student = torch.zeros(1, 2, 1, 2)
    images = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)

    def kl(logits, t):  # KL(softmax(logits / t) || uniform over 2)
        p = torch.tensor(logits, dtype=torch.float64).div(t).softmax(0)
        return float((p * (p.log() - math.log(0.5))).sum())

    d = Distiller(DistillConfig(teacher="t", temperature=2.0, weight=0.5), stub, (0,) * 3, (1,) * 3, "cpu")
    other_then_source = torch.tensor([[[0, 1]]], dtype=torch.uint8)
    assert d(student, images, other_then_source).item() == pytest.approx(0.5 * 4 * kl([0, 2], 2), rel=1e-5)
    both_source = torch.ones(1, 1, 2, dtype=torch.uint8)
    both = (kl([1, 0], 2) + kl([0, 2], 2)) / 2
    assert d(student, images, both_source).item() == pytest.approx(0.5 * 4 * both, rel=1e-5)
    padding_then_other = torch.tensor([[[IGNORE, 0]]], dtype=torch.uint8)
    assert d(student, images, padding_then_other).item() == 0.0  # no source pixel: no term


def test_distillation_runs_the_teacher_on_the_source_crops_only():
    """A compound batch: the teacher sees only the crops with source pixels; the term is the one of the
    whole batch (the KL's mean over the same source pixels)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    seen: list[int] = []

    class Teacher(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return conv(x)

    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    codes = torch.zeros(3, 8, 8, dtype=torch.uint8)
    codes[1, :5] = 1  # crop 1 is a source crop (with padding below); crops 0 and 2 are pseudo-labelled
    codes[1, 5:] = IGNORE
    student = torch.randn(3, 4, 8, 8)
    d = Distiller(DistillConfig(teacher="t", temperature=2.0), Teacher(), (0,) * 3, (1,) * 3, "cpu")
    got = d(student, images, codes)
    assert seen == [1]
    with torch.no_grad():
        target = (conv(images.float() / 255.0) / 2.0).softmax(1)  # mean 0, std 1 of [0, 1] inputs
    kl = (target * (target.log() - F.log_softmax(student / 2.0, 1))).sum(1)
    assert got.item() == pytest.approx(4.0 * kl[codes == 1].mean().item(), rel=1e-5)


def test_distill_codes_mark_the_source_parts_pixels(camvid, tmp_path):
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"][0]["labels"] = str(pseudo)
    _, parts = resolve_parts(TrainConfig.model_validate(cfg), "<config>")
    assert bool((CompoundDataset(parts, None, pixel_arrays=("distill",))[0]["distill"] == 0).all())
    source = base_config(camvid, tmp_path / "run2")  # CamVid GT in the CamVid taxonomy: the source part
    _, gt_parts = resolve_parts(TrainConfig.model_validate(source), "<config>")
    assert bool((CompoundDataset(gt_parts, None, pixel_arrays=("distill",))[0]["distill"] == 1).all())


def test_training_with_distillation_and_a_wrong_teacher(camvid, teacher, tmp_path):
    summary = _train(camvid, tmp_path / "run", steps=2, **{"loss.distill": {"teacher": str(teacher)}})
    assert len(summary["losses"]) == 2 and np.isfinite(summary["losses"]).all()
    other = espnet_checkpoint(tmp_path / "other", taxonomy="cityscapes", num_classes=19)
    with pytest.raises(SegunifyError, match="loss.distill.teacher"):
        _train(camvid, tmp_path / "run2", steps=1, **{"loss.distill": {"teacher": str(other)}})


def test_resume_with_every_option_equals_an_uninterrupted_run(camvid, teacher, tmp_path):
    """Frozen BN and the distillation teacher are rebuilt alike on --resume: the resumed weights are
    bit-identical."""
    options = {
        "steps": 4,
        "model.weights": str(teacher),
        "model.freeze_bn": True,
        "loss.distill": {"teacher": str(teacher), "weight": 0.5},
    }
    straight = TrainConfig.model_validate(base_config(camvid, tmp_path / "a", **options))
    split = TrainConfig.model_validate(base_config(camvid, tmp_path / "b", **options))
    train(straight)
    train(split, stop_after=2)
    train(split, resume=True)
    a, b = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], _weights(teacher)[k]) for k in a)
