"""Predictor: resize policy, flip/scale TTA against hand-written averages, sliding windows, input forms,
and ``segunify predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_image, read_label_raw
from segunify.models.checkpoint import save_checkpoint
from segunify.models.inference import Predictor

torch.set_num_threads(2)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TinyNet(nn.Module):
    """Not flip-symmetric (a 3x3 conv with random weights) and outputs at half resolution, so flips,
    resizes and the logits' resize back all matter."""

    def __init__(self, pointwise: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.pointwise = pointwise
        self.conv = nn.Conv2d(3, 4, 1 if pointwise else 3, padding=0 if pointwise else 1)

    def forward(self, x):
        y = self.conv(x)
        return y if self.pointwise else F.avg_pool2d(y, 2)


def _norm(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _probs_of(model, x, size):
    """The policy by hand: logits resized (bilinear) to the original size, then softmax."""
    return torch.softmax(F.interpolate(model(x), size=size, mode="bilinear", align_corners=False), 1)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(2, 30, 44, 3), dtype=np.uint8)


def test_resize_policy_equals_manual(images):
    model = TinyNet().eval()
    got = Predictor(model, MEAN, STD, size=(48, 64)).probs(images)
    x = F.interpolate(_norm(images), size=(48, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ref = _probs_of(model, x, (30, 44))
    assert got.dtype == torch.float32 and got.shape == (2, 4, 30, 44)
    assert torch.allclose(got, ref, atol=1e-6)


def test_flip_tta_equals_manual_average(images):
    model = TinyNet().eval()
    got = Predictor(model, MEAN, STD, size=(48, 64), flip=True).probs(images)
    x = F.interpolate(_norm(images), size=(48, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        plain = _probs_of(model, x, (30, 44))
        flipped = torch.softmax(
            F.interpolate(model(x.flip(-1)).flip(-1), size=(30, 44), mode="bilinear", align_corners=False), 1
        )
    assert torch.allclose(got, (plain + flipped) / 2, atol=1e-6)
    assert not torch.allclose(plain, flipped, atol=1e-3)  # the flip really changes the prediction


def test_multi_scale_equals_manual_average(images):
    model = TinyNet().eval()
    got = Predictor(model, MEAN, STD, size=None, scales=(0.5, 1.0, 1.5)).probs(images)
    x = _norm(images)
    with torch.no_grad():
        ref = sum(
            _probs_of(model, F.interpolate(x, size=(round(30 * s), round(44 * s)), mode="bilinear"), (30, 44))
            if s != 1.0
            else _probs_of(model, x, (30, 44))
            for s in (0.5, 1.0, 1.5)
        )
    assert torch.allclose(got, ref / 3, atol=1e-6)


def test_predict_is_argmax_and_input_forms_agree(images):
    pred = Predictor(TinyNet(), MEAN, STD, size=(48, 64))
    ids = pred.predict(images)
    assert ids.dtype == np.uint8 and ids.shape == (2, 30, 44)
    assert np.array_equal(ids, pred.probs(images).argmax(1).numpy())
    assert np.array_equal(pred.predict(images[0]), ids[:1])
    assert np.array_equal(pred.predict(torch.from_numpy(images)), ids)
    assert np.array_equal(pred.predict(torch.from_numpy(images).permute(0, 3, 1, 2)), ids)
    assert np.array_equal(pred.predict([images[0], images[1]]), ids)
    with pytest.raises(SegunifyError, match="uint8"):
        pred.predict(images.astype(np.float32))
    with pytest.raises(SegunifyError, match="3 channels"):
        pred.predict(np.zeros((1, 8, 8, 4), dtype=np.uint8))


@pytest.mark.parametrize("window", [(16, 16), (24, 40), (64, 64)])
def test_sliding_window_stitches_exactly(images, window):
    """With a pointwise model every window sees the same values as the whole image, so the stitched
    result must equal a single full-image pass (overlaps, borders and padding included)."""
    model = TinyNet(pointwise=True).eval()
    slide = Predictor(model, MEAN, STD, size=window, mode="slide", flip=True).probs(images)
    whole = Predictor(model, MEAN, STD, size=None, flip=True).probs(images)
    assert torch.allclose(slide, whole, atol=1e-6)


def test_sliding_window_needs_a_size():
    with pytest.raises(SegunifyError, match="window size"):
        Predictor(TinyNet(), MEAN, STD, mode="slide")
    with pytest.raises(SegunifyError, match="unknown inference mode"):
        Predictor(TinyNet(), MEAN, STD, mode="tiles")


@pytest.fixture(scope="module")
def espnet_ckpt(tmp_path_factory):
    from segunify.models import create_model

    torch.manual_seed(0)
    model = create_model("espnetv2", 11, s=1.0).eval()
    path = tmp_path_factory.mktemp("inf") / "ck"
    save_checkpoint(path, model, {"taxonomy": "camvid", "input_size": (64, 96)})
    return path


def test_from_checkpoint_uses_meta_size(espnet_ckpt, images):
    pred = Predictor.from_checkpoint(espnet_ckpt)
    assert pred.size == (64, 96) and pred.meta["num_classes"] == 11 and pred.meta["taxonomy"] == "camvid"
    probs = pred.probs(images)
    assert probs.shape == (2, 11, 30, 44)
    assert torch.allclose(probs.sum(1), torch.ones(2, 30, 44), atol=1e-5)
    with pytest.raises(SegunifyError, match="taxonomy 'camvid' but 'cityscapes'"):
        Predictor.from_checkpoint(espnet_ckpt, taxonomy="cityscapes")


def test_predict_cli_writes_index_colour_and_overlay(espnet_ckpt, images, tmp_path):
    from segunify.taxonomy import load_taxonomy

    src = tmp_path / "in"
    write_png(src / "a.png", images[0])
    write_png(src / "b.png", images[1])
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(espnet_ckpt), str(src), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "a.png",
        "a_color.png",
        "a_overlay.png",
        "b.png",
        "b_color.png",
        "b_overlay.png",
    ]
    ids = read_label_raw(out / "a.png")
    expected = Predictor.from_checkpoint(espnet_ckpt).predict(images[0])[0]
    assert ids.dtype == np.uint8 and np.array_equal(ids, expected)
    palette = load_taxonomy("camvid").palette()
    assert np.array_equal(read_image(out / "a_color.png"), palette[ids])
    blend = (images[0].astype(np.float32) + palette[ids]) / 2
    assert np.abs(read_image(out / "a_overlay.png").astype(np.float32) - blend).max() <= 0.5
    assert main(["predict", "--model", str(espnet_ckpt), str(tmp_path / "nope.png"), "--out", str(out)]) == 1
