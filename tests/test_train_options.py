"""Fine-tuning options of the training engine: frozen BatchNorm statistics, OHEM / class-balanced / soft
cross entropy, a lower encoder learning rate, L2-SP and distillation toward a frozen teacher."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures.pseudo_runs import make_camvid as make_tiny_camvid
from fixtures.pseudo_runs import run as pseudo_run
from fixtures.tiny_models import TINY_SEGFORMER, espnet_checkpoint
from fixtures.train_data import base_config, make_camvid, make_pseudo
from segunify.errors import SegunifyError
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping
from segunify.models import create_model
from segunify.models.checkpoint import read_safetensors
from segunify.taxonomy import IGNORE, load_taxonomy
from segunify.train import train
from segunify.train.config import DistillConfig, LossConfig, TrainConfig
from segunify.train.data import CompoundDataset, resolve_parts
from segunify.train.finetune import encoder_names, param_groups, set_train_mode
from segunify.train.objective import (
    L2SP,
    Distiller,
    Objective,
    balanced_weights,
    check_loss_options,
    ohem_mean,
    pixel_losses,
    summary_shares,
)

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
def test_soft_cross_entropy_equals_a_hand_computed_value():
    # one image, 3 classes, 3 pixels; pixel 0: softmax (1/5, 3/5, 1/5)
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(3), 0.0, 0.0], [0.0, 0.0, 0.0]]).view(1, 3, 1, 3)
    labels = torch.tensor([[[1, 2, 255]]], dtype=torch.uint8)
    class2 = torch.tensor([[[0, 255, 255]]], dtype=torch.uint8)
    p1 = torch.tensor([[[204, 255, 0]]], dtype=torch.uint8)  # 204 / 255 = 0.8
    losses, classes = pixel_losses(logits, labels, class2, p1)
    soft = -(0.8 * math.log(3 / 5) + 0.2 * math.log(1 / 5))  # pixel 0: two classes
    hard = -math.log(1 / 3)  # pixel 1: uniform logits, hard label
    assert losses.tolist() == pytest.approx([soft, hard], rel=1e-6) and classes.tolist() == [1, 2]
    batch = {"label": labels, "class2": class2, "p1": p1}
    loss = Objective(LossConfig(), soft=True)(lambda x: logits, None, torch.zeros(1), batch)
    assert loss.item() == pytest.approx((soft + hard) / 2, rel=1e-6)
    # hard labels through the per-pixel path equal the fused cross entropy of the default
    x = torch.randn(2, 5, 4, 6)
    y = torch.randint(0, 5, (2, 4, 6))
    y[0, 0] = 255
    ours = Objective(LossConfig()).reduce(*pixel_losses(x, y))
    assert ours.item() == pytest.approx(F.cross_entropy(x, y, ignore_index=255).item(), rel=1e-6)


def test_ohem_keeps_the_hard_pixels():
    losses = torch.tensor([0.1, 0.5, 0.9, 2.0])
    assert ohem_mean(losses, 0.357, None, 1).item() == pytest.approx((0.5 + 0.9 + 2.0) / 3)
    assert ohem_mean(losses, 0.357, None, 4).item() == pytest.approx(losses.mean().item())  # min kept
    assert ohem_mean(losses, 0.357, 0.25, 1).item() == pytest.approx(2.0)  # top quarter
    assert ohem_mean(losses, 0.357, 0.25, 2).item() == pytest.approx(1.45)


def test_class_balanced_weights_and_mean():
    w = balanced_weights(torch.tensor([0.75, 0.25, 0.0]), power=1.0, max_weight=10.0)
    assert w.tolist() == pytest.approx([2 / 3, 2.0, 10.0])  # 0.75 * 2/3 + 0.25 * 2 = 1; absent: the cap
    assert balanced_weights(torch.tensor([0.75, 0.25]), 1.0, 1.5).tolist() == pytest.approx([2 / 3, 1.5])
    cfg = LossConfig(name="class_balanced")
    losses, classes = torch.tensor([1.0, 1.0, 1.0, 3.0]), torch.tensor([0, 0, 0, 1])
    assert Objective(cfg).reduce(losses, classes).item() == pytest.approx(2.0)  # mean of class means


def test_class_weights_from_summaries(camvid, tmp_path):
    classes = load_taxonomy("cityscapes").classes
    parts = []
    for i, (weight, hot) in enumerate(((1.0, "road"), (3.0, "car"))):
        out = make_pseudo(camvid, tmp_path / f"p{i}")
        summary = json.loads((out / "summary.json").read_text())
        summary["class_share"] = {c: 1.0 if c == hot else 0.0 for c in classes}
        (out / "summary.json").write_text(json.dumps(summary))
        parts.append(type("P", (), {"pseudo_dir": out, "weight": weight})())
    share = summary_shares(parts, load_taxonomy("cityscapes"))
    assert share[classes.index("road")] == pytest.approx(0.25) and share[classes.index("car")] == 0.75
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes", steps=1)
    cfg["parts"][0]["labels"] = str(tmp_path / "p0")
    cfg["loss"] = {"name": "class_balanced", "class_balanced": {"weights": "summaries", "max_weight": 4}}
    assert np.isfinite(train(TrainConfig.model_validate(cfg))["losses"]).all()


def test_a_model_with_its_own_loss_refuses_loss_options():
    own = type("Own", (torch.nn.Module,), {"has_own_loss": True})()
    cfg = {
        "model": {"name": "mask2former"},
        "taxonomy": "camvid",
        "parts": [{"dataset": "camvid", "root": "."}],
    }
    check_loss_options(TrainConfig.model_validate({**cfg, "steps": 1, "loss": {"l2sp": 0.1}}), own, "c.yaml")
    for loss in ({"name": "ohem"}, {"distill": {"teacher": "t"}}):
        bad = TrainConfig.model_validate({**cfg, "steps": 1, "loss": loss})
        with pytest.raises(SegunifyError, match="trains with its own loss") as err:
            check_loss_options(bad, own, "c.yaml")
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------- keeping the source
def test_encoder_parameters_per_family_attribute_and_heuristic():
    espnet = create_model("espnetv2", 3, s=1.0)
    names = encoder_names(espnet)
    assert names == {n for n, _ in espnet.named_parameters() if n.startswith("base_net.")}
    segformer = create_model("segformer-b0", 3, config=TINY_SEGFORMER)
    assert encoder_names(segformer) and all(n.startswith("hf.segformer.") for n in encoder_names(segformer))

    class Stub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(2, 2)
            self.decoder = torch.nn.ModuleDict({"encoder": torch.nn.Linear(2, 2)})

    assert encoder_names(Stub()) == {"backbone.weight", "backbone.bias"}  # not the decoder's "encoder"
    declared = Stub()
    declared.encoder_prefixes = ("decoder.",)
    assert encoder_names(declared) == {"decoder.encoder.weight", "decoder.encoder.bias"}
    groups = param_groups(espnet, 0.01, lr=1e-3, encoder_lr_mult=0.1)
    enc = [g for g in groups if "lr" in g]
    assert {id(p) for g in enc for p in g["params"]} == {
        id(p) for n, p in espnet.named_parameters() if n in names
    }
    assert all(g["lr"] == pytest.approx(1e-4) for g in enc)
    with pytest.raises(SegunifyError, match="declares no encoder"):
        param_groups(torch.nn.Linear(2, 2), 0.01, lr=1e-3, encoder_lr_mult=0.5)


def test_encoder_lr_mult_zero_leaves_the_encoder_and_l2sp_pulls_toward_the_start(camvid, teacher, tmp_path):
    start = _weights(teacher)
    common = {"steps": 3, "model.weights": str(teacher), "optimizer.lr": 0.05}
    _train(camvid, tmp_path / "enc0", **common, **{"optimizer.encoder_lr_mult": 0.0})
    trained = _weights(tmp_path / "enc0" / "last")
    params = dict(create_model("espnetv2", 11, s=1.0).named_parameters())
    assert all(torch.equal(trained[k], start[k]) for k in params if k.startswith("base_net."))
    assert any(not torch.equal(trained[k], start[k]) for k in params if not k.startswith("base_net."))

    _train(camvid, tmp_path / "plain", **common)
    _train(camvid, tmp_path / "l2sp", **common, **{"loss.l2sp": 50.0})

    def distance(run):
        w = _weights(tmp_path / run / "last")
        return sum(float((w[k] - start[k]).pow(2).sum()) for k in params)

    assert distance("l2sp") < 0.7 * distance("plain")


def test_l2sp_value_and_gradient():
    a, b = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([[3.0]]))
    penalty = L2SP(0.5, [a, b], [torch.zeros(2), torch.ones(1, 1)])
    value = penalty()
    assert value.item() == pytest.approx(0.5 * (1 + 4 + 4))
    value.backward()
    assert a.grad.tolist() == [1.0, 2.0] and b.grad.tolist() == [[2.0]]  # 2 * alpha * (w - w0)


def test_l2sp_needs_initial_weights(camvid, tmp_path):
    with pytest.raises(SegunifyError, match=r"loss.l2sp: needs model.weights"):
        _train(camvid, tmp_path / "run", steps=1, **{"loss.l2sp": 1.0})


# -------------------------------------------------------------------------------------- distillation
def test_distillation_kl_on_the_chosen_pixels():
    teacher_logits = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).T.reshape(1, 2, 1, 2)
    stub = type("T", (torch.nn.Module,), {"forward": lambda self, x: teacher_logits})()
    student = torch.zeros(1, 2, 1, 2)
    codes = torch.tensor([[[1, 2]]], dtype=torch.uint8)  # pixel 0 one-to-many, pixel 1 source
    images = torch.zeros(1, 3, 1, 2, dtype=torch.uint8)

    def kl(logits, t):  # KL(softmax(logits / t) || uniform over 2)
        p = torch.tensor(logits, dtype=torch.float64).div(t).softmax(0)
        return float((p * (p.log() - math.log(0.5))).sum())

    for pixels, expected in (("one_to_many", kl([1, 0], 2)), ("source", kl([0, 2], 2))):
        d = Distiller(
            DistillConfig(teacher="t", temperature=2.0, weight=0.5, pixels=pixels),
            stub,
            (0,) * 3,
            (1,) * 3,
            torch.device("cpu"),
        )
        assert d(student, images, codes).item() == pytest.approx(0.5 * 4 * expected, rel=1e-5)
    both = Distiller(
        DistillConfig(teacher="t", temperature=2.0), stub, (0,) * 3, (1,) * 3, torch.device("cpu")
    )
    assert both(student, images, codes).item() == pytest.approx(
        4 * (kl([1, 0], 2) + kl([0, 2], 2)) / 2, rel=1e-5
    )
    assert both(student, images, torch.zeros_like(codes)).item() == 0.0  # no chosen pixel: no term
    rest = Distiller(
        DistillConfig(teacher="t", temperature=2.0, pixels="not_one_to_many"),
        stub,
        (0,) * 3,
        (1,) * 3,
        torch.device("cpu"),
    )
    other_then_one_to_many = torch.tensor([[[0, 1]]], dtype=torch.uint8)  # a one-to-one pseudo-label pixel
    assert rest(student, images, other_then_one_to_many).item() == pytest.approx(4 * kl([1, 0], 2), rel=1e-5)
    ignored_then_source = torch.tensor([[[IGNORE, 2]]], dtype=torch.uint8)
    assert rest(student, images, ignored_then_source).item() == pytest.approx(4 * kl([0, 2], 2), rel=1e-5)
    # pixel 0 left ignore by the pseudo-labels (void or gated) on a one-to-many GT class, pixel 1 source
    unlabelled_then_source = torch.tensor([[[1 | 4, 2]]], dtype=torch.uint8)
    for pixels, expected in (
        ("unlabelled", kl([1, 0], 2)),
        (["source", "unlabelled"], (kl([1, 0], 2) + kl([0, 2], 2)) / 2),
        ("not_one_to_many", kl([0, 2], 2)),
    ):
        d = Distiller(
            DistillConfig(teacher="t", temperature=2.0, pixels=pixels), stub, (0,) * 3, (1,) * 3, "cpu"
        )
        assert d(student, images, unlabelled_then_source).item() == pytest.approx(4 * expected, rel=1e-5)
    unlabelled = Distiller(DistillConfig(teacher="t", pixels="unlabelled"), stub, (0,) * 3, (1,) * 3, "cpu")
    other_then_padding = torch.tensor([[[0, IGNORE]]], dtype=torch.uint8)
    assert unlabelled(student, images, other_then_padding).item() == 0.0


def test_distill_codes_mark_one_to_many_unlabelled_and_source_pixels(camvid, tmp_path):
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"][0]["labels"] = str(pseudo)
    target, parts = resolve_parts(TrainConfig.model_validate(cfg), "<config>")
    item = CompoundDataset(parts, None, extras=("distill",))[0]
    gt = parts[0].adapter.read_label(parts[0].samples[0])
    mapping = load_mapping("camvid__cityscapes")  # e.g. Car -> car;truck;bus;train: one-to-many
    lut = np.zeros(256, dtype=np.uint8)
    lut[[k for k in range(mapping.extra.num_classes) if mapping.kind(k) == "one-to-many"]] = 1
    assert 0 < lut.sum() < mapping.extra.num_classes
    label = mapping.first_allowed_lut()[gt]  # what make_pseudo wrote: IGNORE on void ground truth
    unlabelled = np.where(label == IGNORE, 4, 0).astype(np.uint8)
    assert unlabelled.any()
    assert torch.equal(item["distill"], torch.from_numpy(lut[gt] | unlabelled))
    source = base_config(camvid, tmp_path / "run2")  # CamVid GT in the CamVid taxonomy: the source part
    _, gt_parts = resolve_parts(TrainConfig.model_validate(source), "<config>")
    assert bool((CompoundDataset(gt_parts, None, extras=("distill",))[0]["distill"] == 2).all())


def test_training_with_distillation_and_a_wrong_teacher(camvid, teacher, tmp_path):
    summary = _train(
        camvid, tmp_path / "run", steps=2, **{"loss.distill": {"teacher": str(teacher), "pixels": "all"}}
    )
    assert len(summary["losses"]) == 2 and np.isfinite(summary["losses"]).all()
    other = espnet_checkpoint(tmp_path / "other", taxonomy="cityscapes", num_classes=19)
    with pytest.raises(SegunifyError, match="loss.distill.teacher"):
        _train(camvid, tmp_path / "run2", steps=1, **{"loss.distill": {"teacher": str(other)}})


# ---------------------------------------------------------------------------------------- soft parts
def test_training_on_soft_pseudo_labels(tmp_path):
    root = make_tiny_camvid(tmp_path / "camvid", n=4, size=(32, 48))
    pseudo_run(root, tmp_path / "soft", soft=True)
    pseudo_run(root, tmp_path / "hard")
    cfg = base_config(root, tmp_path / "run", taxonomy="cityscapes", steps=2)
    cfg["augmentation"]["crop"] = [32, 48]
    cfg["parts"][0].update(labels=str(tmp_path / "soft"), soft=True)
    target, parts = resolve_parts(TrainConfig.model_validate(cfg), "<config>")
    item = CompoundDataset(parts, None, extras=("class2", "p1"))[0]
    soft_png = parts[0].pseudo_dir / "soft" / parts[0].samples[0].rel
    stored = torch.from_numpy(read_label_raw(soft_png))
    assert torch.equal(torch.stack([item["label"], item["class2"], item["p1"]], -1), stored)
    assert np.isfinite(train(TrainConfig.model_validate(cfg))["losses"]).all()
    cfg["parts"][0]["labels"] = str(tmp_path / "hard")
    with pytest.raises(SegunifyError, match="made without --soft"):
        resolve_parts(TrainConfig.model_validate(cfg), "<config>")
    cfg["parts"][0]["labels"] = "gt"
    with pytest.raises(ValueError, match="soft: true needs a pseudo-label directory"):
        TrainConfig.model_validate(cfg)


def test_resume_with_every_option_equals_an_uninterrupted_run(camvid, teacher, tmp_path):
    """L2-SP's w0 comes from model.weights again on --resume (not from last/), and the encoder's LR group,
    frozen BN and the distillation teacher are rebuilt alike: the resumed weights are bit-identical."""
    options = {
        "steps": 4,
        "model.weights": str(teacher),
        "model.freeze_bn": True,
        "optimizer.encoder_lr_mult": 0.5,
        "loss.l2sp": 1.0,
        "loss.name": "ohem",
        "loss.ohem": {"min_kept": 500},
        "loss.distill": {"teacher": str(teacher), "pixels": "all", "weight": 0.5},
    }
    straight = TrainConfig.model_validate(base_config(camvid, tmp_path / "a", **options))
    split = TrainConfig.model_validate(base_config(camvid, tmp_path / "b", **options))
    train(straight)
    train(split, stop_after=2)
    train(split, resume=True)
    a, b = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], _weights(teacher)[k]) for k in a)


def test_repeat_factor_sampling_and_rare_crops_train_and_resume_exactly(camvid, tmp_path):
    """Both sampling options change what is drawn (not the part shares) and stay a pure function of the
    seed and the step: a run stopped and resumed ends with the same weights."""
    cfg = base_config(camvid, tmp_path / "a", steps=4, **{"augmentation.crop": [32, 32]})
    cfg["parts"][0]["repeat_threshold"] = 0.9
    cfg["augmentation"] |= {"rare_crop": 1.0, "rare_classes": ["Pole", "SignSymbol"]}
    train(TrainConfig.model_validate(cfg))
    split = TrainConfig.model_validate(cfg | {"out": str(tmp_path / "b")})
    train(split, stop_after=2)
    train(split, resume=True)
    a, b = _weights(tmp_path / "a" / "last"), _weights(tmp_path / "b" / "last")
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = base_config(camvid, tmp_path / "c", steps=4, **{"augmentation.crop": [32, 32]})
    train(TrainConfig.model_validate(plain))
    c = _weights(tmp_path / "c" / "last")
    assert any(not torch.equal(a[k], c[k]) for k in a)
