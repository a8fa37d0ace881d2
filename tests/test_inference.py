"""Predictor: resize policy, flip/scale TTA against hand-written averages, sliding windows, input forms,
and ``segunify predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fixtures.tiny_models import espnet_checkpoint
from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_image, read_label_raw
from segunify.models.base import IMAGENET_MEAN, IMAGENET_STD
from segunify.models.inference import Predictor

torch.set_num_threads(2)
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD


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
    return espnet_checkpoint(tmp_path_factory.mktemp("inf") / "ck")


class BatchCounter(nn.Module):
    """Records the batch size of every forward."""

    def __init__(self):
        super().__init__()
        self.batches: list[int] = []
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.conv(x)


def test_cpu_runs_one_image_at_a_time_with_batch_independent_bytes(espnet_ckpt, images):
    """On the CPU a batch is run image by image (faster there), so the labels of a batch are those of
    its images one by one, byte for byte."""
    counter = BatchCounter().eval()
    Predictor(counter, MEAN, STD, size=(32, 48)).probs(images)
    assert counter.batches == [1, 1]
    pred = Predictor.from_checkpoint(espnet_ckpt)
    together = pred.probs(images)
    alone = torch.cat([pred.probs(images[i : i + 1]) for i in range(len(images))])
    assert torch.equal(together, alone)


def test_espnetv2_runs_channels_last_on_the_cpu_with_the_same_labels(espnet_ckpt, images, monkeypatch):
    from segunify.models.espnetv2 import ESPNetv2Seg

    fast = Predictor.from_checkpoint(espnet_ckpt)
    assert fast.channels_last and Predictor(TinyNet(), MEAN, STD).channels_last is False
    monkeypatch.setattr(ESPNetv2Seg, "cpu_channels_last", False)
    plain = Predictor.from_checkpoint(espnet_ckpt)
    assert not plain.channels_last
    assert torch.allclose(fast.probs(images), plain.probs(images), atol=1e-5)
    assert np.array_equal(fast.predict(images), plain.predict(images))


def test_from_checkpoint_uses_meta_size(espnet_ckpt, images):
    pred = Predictor.from_checkpoint(espnet_ckpt)
    assert pred.size == (64, 96) and pred.meta.num_classes == 11 and pred.meta.taxonomy == "camvid"
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
        ".lock",
        ".segunify-predict",
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


@pytest.fixture(scope="module")
def city_ckpt(tmp_path_factory):
    """A tiny random Cityscapes-19 model whose predictions cover several classes at 48x64."""
    return espnet_checkpoint(tmp_path_factory.mktemp("city") / "ck", "cityscapes", 19, seed=1, varied=True)


@pytest.fixture(scope="module")
def camvid_fixture(tmp_path_factory):
    from fixtures import camvid

    return camvid.make(tmp_path_factory.mktemp("camvid"))


def _predict(ckpt, inputs, out, *extra) -> int:
    return main(["predict", "--model", str(ckpt), *map(str, inputs), "--out", str(out), *extra])


def test_raw_id_lut_hand_cases():
    from segunify.models.predict import raw_id_lut
    from segunify.taxonomy import load_taxonomy

    lut = raw_id_lut(load_taxonomy("cityscapes"))
    assert lut[0] == 7 and lut[1] == 8 and lut[10] == 23 and lut[18] == 33  # road, sidewalk, sky, bicycle
    assert lut[255] == 0  # ignore -> 'unlabeled'
    assert len(set(lut[:19].tolist())) == 19


def test_predict_to_another_taxonomy_and_raw_ids(city_ckpt, camvid_fixture, tmp_path):
    """Issue 13.4: --to camvid writes CamVid train ids through the mapping's LUT, coloured with CamVid's
    palette; --raw-ids writes Cityscapes labelIds; the plain run stays in the model's train ids."""
    from segunify.mapping import load_mapping
    from segunify.models.predict import raw_id_lut
    from segunify.taxonomy import load_taxonomy

    src = camvid_fixture / "train"
    assert _predict(city_ckpt, [src], tmp_path / "plain") == 0
    assert _predict(city_ckpt, [src], tmp_path / "camvid", "--to", "camvid") == 0
    assert _predict(city_ckpt, [src], tmp_path / "raw", "--raw-ids") == 0
    lut = load_mapping("camvid__cityscapes").source_to_extra_lut()
    camvid_palette, city = load_taxonomy("camvid").palette(), load_taxonomy("cityscapes")
    for img in sorted(src.iterdir()):
        ids = read_label_raw(tmp_path / "plain" / img.name)
        assert len(np.unique(ids)) >= 2  # a test on a constant picture would prove little
        assert np.array_equal(read_label_raw(tmp_path / "camvid" / img.name), lut[ids])
        assert np.array_equal(
            read_image(tmp_path / "camvid" / f"{img.stem}_color.png"), camvid_palette[lut[ids]]
        )
        raw = read_label_raw(tmp_path / "raw" / img.name)
        assert np.array_equal(raw, raw_id_lut(city)[ids]) and np.array_equal(city.id_lut()[raw], ids)
        assert np.array_equal(read_image(tmp_path / "raw" / f"{img.stem}_color.png"), city.palette()[ids])


def test_predict_to_needs_a_partition_naming_the_overlap(city_ckpt, camvid_fixture, tmp_path, capsys):
    from segunify.mapping import load_mapping

    text = (
        load_mapping("camvid__cityscapes")
        .to_csv()
        .replace("9,Pedestrian,person", "9,Pedestrian,person;rider")
    )
    csv = tmp_path / "camvid__cityscapes.csv"
    csv.write_text(text)
    code = _predict(
        city_ckpt, [camvid_fixture / "train"], tmp_path / "out", "--to", "camvid", "--mapping", csv
    )
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "not a partition" in err and "['rider']" in err and str(csv) in err
    assert not (tmp_path / "out").exists()
    code = _predict(
        city_ckpt, [camvid_fixture / "train"], tmp_path / "out", "--to", "kitti", "--mapping", csv
    )
    assert code == 1 and "is not the taxonomy of the output taxonomy 'kitti'" in " ".join(
        capsys.readouterr().err.split()
    )
    assert _predict(city_ckpt, [camvid_fixture / "train"], tmp_path / "out", "--to", "goose") == 1
    assert "no shipped mapping goose__cityscapes" in capsys.readouterr().err
    assert _predict(city_ckpt, [camvid_fixture / "train"], tmp_path / "out", "--to", "rugd") == 1
    # RUGD has no traffic light nor train (and road is in 5 RUGD sets): refused for the first problem found
    err = " ".join(capsys.readouterr().err.split())
    assert "rugd__cityscapes.csv: mapping leaves source class(es) ['traffic light', 'train'] in no set" in err


def test_predict_to_round_trips_with_evaluate_mapping(city_ckpt, camvid_fixture, tmp_path):
    """Predictions written with --to camvid, scored as a plain CamVid prediction folder, give exactly the
    figures of ``evaluate --model --mapping camvid__cityscapes`` (the cross-taxonomy path)."""
    import json
    import shutil

    root = camvid_fixture
    assert _predict(city_ckpt, [root / "train"], tmp_path / "pred", "--to", "camvid") == 0
    for img in (root / "train").iterdir():
        (tmp_path / "dir" / "trainannot").mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "pred" / img.name, tmp_path / "dir" / "trainannot" / img.name)
    common = ["evaluate", "--dataset", "camvid", "--root", str(root), "--split", "train"]
    assert (
        main(
            [
                *common,
                "--model",
                str(city_ckpt),
                "--mapping",
                "camvid__cityscapes",
                "--json",
                str(tmp_path / "a.json"),
            ]
        )
        == 0
    )
    assert main([*common, "--pred-dir", str(tmp_path / "dir"), "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["pixels"] == b["pixels"] > 0 and a["pixel_acc"] == b["pixel_acc"] and a["miou"] == b["miou"]
    assert [c["iou"] for c in a["classes"]] == [c["iou"] for c in b["classes"]]
    assert sum(c["iou"] is not None for c in a["classes"]) >= 2


def test_predict_never_overwrites_its_inputs(city_ckpt, tmp_path, images, capsys):
    """Writing next to the inputs (--out = the input folder) replaced a.png with its own label map."""
    write_png(tmp_path / "a.png", images[0])
    before = (tmp_path / "a.png").read_bytes()
    assert _predict(city_ckpt, [tmp_path], tmp_path) == 1
    assert "output folder lies inside an input folder" in capsys.readouterr().err
    assert _predict(city_ckpt, [tmp_path / "a.png"], tmp_path) == 1  # the image named, not its folder
    assert "output folder contains the input image a.png" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png"
    ]


def test_predict_unwritable_output_is_one_line(city_ckpt, tmp_path, images, capsys, monkeypatch):
    """Issue 11.7: an output that is a file, or a disk that fills up, ends as one line naming the path."""
    import errno
    import tempfile

    write_png(tmp_path / "in" / "a.png", images[0])
    (tmp_path / "taken").write_text("a file")
    assert _predict(city_ckpt, [tmp_path / "in"], tmp_path / "taken") == 1
    err = capsys.readouterr().err
    assert "not a folder" in err and str(tmp_path / "taken") in err and len(err.strip().splitlines()) == 1

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    assert _predict(city_ckpt, [tmp_path / "in"], tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(tmp_path / "out" / ".segunify-predict") in err
    assert len(err.strip().splitlines()) == 1


def test_predictions_get_the_users_umask(city_ckpt, tmp_path, images):
    import os

    write_png(tmp_path / "in" / "a.png", images[0])
    old = os.umask(0o022)
    try:
        assert _predict(city_ckpt, [tmp_path / "in"], tmp_path / "out") == 0
    finally:
        os.umask(old)
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()} == {0o644}
