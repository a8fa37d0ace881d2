"""Evaluation loop and ``segunify evaluate``: results on generated and real data, every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.evaluation import EvalResult, Evaluator, ModelPredictions, PredDir, evaluate_dataset
from segunify.io import write_index_png, write_png
from segunify.labels import read_image
from segunify.mapping import load_mapping
from segunify.metrics import confusion_matrix, scores
from segunify.taxonomy import load_taxonomy

H, W = 12, 16


@pytest.fixture()
def camvid(tmp_path):
    """A 3-image CamVid val split in the SegNet layout. Images carry the label in their red channel
    (``20 * id``) so a stand-in model can 'predict' from the image alone."""
    root = tmp_path / "CamVid"
    rng = np.random.default_rng(0)
    labels = {}
    for name in ("a", "b", "c"):
        label = rng.integers(0, 10, (H, W), dtype=np.uint8)  # class 10 (Bicyclist) never occurs
        label[0, :4] = 11  # void
        image = np.zeros((H, W, 3), dtype=np.uint8)
        image[..., 0] = np.minimum(label, 10) * 20
        write_png(root / "val" / f"{name}.png", image)
        write_index_png(root / "valannot" / f"{name}.png", label)
        labels[name] = np.where(label == 11, 255, label).astype(np.uint8)
    return root, labels


def noisy(labels: dict, rng, num_classes: int = 11) -> dict:
    out = {}
    for k, gt in labels.items():
        pred = np.where(gt == 255, 0, gt).astype(np.uint8)
        flip = rng.random(gt.shape) < 0.3
        pred[flip] = rng.integers(0, num_classes, int(flip.sum()), dtype=np.uint8)
        out[k] = pred
    return out


def write_preds(pred_dir, preds: dict) -> None:
    for k, p in preds.items():
        write_index_png(pred_dir / "valannot" / f"{k}.png", p)


def camvid_val(root, *extra: str) -> list[str]:
    """``segunify evaluate`` on the fixture's CamVid val split, then ``extra``."""
    return ["evaluate", "--dataset", "camvid", "--root", str(root), "--split", "val", *extra]


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- library


def test_evaluate_pred_dir_matches_direct_scores(camvid, tmp_path):
    root, labels = camvid
    preds = noisy(labels, np.random.default_rng(1))
    write_preds(tmp_path / "pred", preds)
    ds = create_dataset("camvid", root)
    result = evaluate_dataset(ds, "val", PredDir(tmp_path / "pred"))
    cm = sum(confusion_matrix(labels[k], preds[k], 11) for k in labels)
    s = scores(cm)
    assert result.miou == pytest.approx(s.miou) and result.pixel_acc == pytest.approx(s.pixel_acc)
    assert result.images == 3 and result.pixels == 3 * (H * W - 4)
    assert [c.iou for c in result.classes[:10]] == pytest.approx(s.iou[:10].tolist())
    assert result.confusion == cm.tolist()
    # Bicyclist is never in the GT; whether it is absent depends on the noise predicting it
    predicted_10 = any((p == 10).any() for p in preds.values())
    assert ("Bicyclist" in result.absent_classes) == (not predicted_10)
    assert sum(c.gt_share for c in result.classes) == pytest.approx(1.0)
    assert sum(c.pred_share for c in result.classes) == pytest.approx(1.0)


def test_evaluate_model_stand_in_is_perfect(camvid):
    root, labels = camvid
    ds = create_dataset("camvid", root)
    seen = []

    def predict(image):
        seen.append(image.shape)
        return (image[..., 0] // 20).astype(np.uint8)

    result = evaluate_dataset(ds, "val", ModelPredictions(predict))
    assert seen == [(H, W, 3)] * 3
    assert result.miou == 1.0 and result.pixel_acc == 1.0
    assert result.absent_classes == ["Bicyclist"]
    assert "Bicyclist" in result.note and "excluded" in result.note


def test_model_predictions_from_predictor_takes_first_of_batch(camvid):
    root, _ = camvid

    class FakePredictor:
        def predict(self, images):
            batch = np.asarray(images)[None] if np.asarray(images).ndim == 3 else np.asarray(images)
            return (batch[..., 0] // 20).astype(np.uint8)

    result = evaluate_dataset(
        create_dataset("camvid", root), "val", ModelPredictions.from_predictor(FakePredictor(), "fake")
    )
    assert result.miou == 1.0 and result.predictions == "fake"


def test_evaluate_cross_taxonomy_through_mapping(camvid, tmp_path):
    root, labels = camvid
    mapping = load_mapping("camvid__cityscapes")
    rng = np.random.default_rng(2)
    # predict a random allowed source class for each pixel: every pixel is right under the mapping
    choices = [np.array(s) for s in mapping.allowed_sets]
    preds = {}
    for k, gt in labels.items():
        pick = rng.integers(0, 4, gt.shape)
        pred = np.zeros(gt.shape, dtype=np.uint8)
        for c in range(11):
            m = gt == c
            pred[m] = choices[c][pick[m] % len(choices[c])]
        preds[k] = pred
    write_preds(tmp_path / "pred", preds)
    result = evaluate_dataset(
        create_dataset("camvid", root), "val", PredDir(tmp_path / "pred"), mapping=mapping
    )
    assert result.mode == "cross" and result.partition
    assert result.miou == 1.0 and result.pixel_acc_allowed == 1.0
    shares = result.pred_share_source
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["truck"] > 0 and shares["wall"] > 0  # one-to-many classes spread over their sets
    car = result.allowed_breakdown["Car"]
    assert set(car) == {"car", "truck", "bus", "train"} and sum(car.values()) == pytest.approx(1.0)


def test_evaluator_non_partition_mapping_reports_allowed_accuracy():
    from segunify.mapping import parse_mapping

    camvid, cityscapes = load_taxonomy("camvid"), load_taxonomy("cityscapes")
    rows = [
        f"{k},{n},{'car;truck' if n == 'Car' else ('building;truck' if n == 'Building' else 'sky')}"
        for k, n in enumerate(camvid.classes)
    ]
    mapping = parse_mapping("\n".join(rows), camvid, cityscapes)
    assert not mapping.is_partition
    ev = Evaluator(camvid, mapping)
    gt = np.array([[8, 8, 1, 1, 0, 255]], dtype=np.uint8)  # Car, Car, Building, Building, Sky, void
    pred = np.array([[14, 0, 14, 2, 10, 0]], dtype=np.uint8)  # truck, road, truck, building, sky, road
    ev.update(gt, pred)
    r = ev.result()
    assert r.miou is None and not r.partition
    assert r.pixel_acc == pytest.approx(4 / 5)
    acc = {c.name: c.acc for c in r.classes}
    assert acc["Car"] == 0.5 and acc["Building"] == 1.0 and acc["Sky"] == 1.0 and acc["Road"] is None
    assert "Road" in r.absent_classes and "not a partition" in r.note and "without ground-truth" in r.note
    assert r.mean_acc == pytest.approx((0.5 + 1 + 1) / 3)


HEAD_KEYS = ["mode", "taxonomy", "pred_taxonomy", "mapping", "images", "pixels", "partition", "void_classes"]
SCORE_KEYS = ["classes", "miou", "pixel_acc", "mean_acc", "absent_classes", "note", "confusion"]
RUN_KEYS = ["dataset", "root", "split", "predictions"]


def test_results_file_keeps_its_key_order_and_reads_back_byte_for_byte(camvid, tmp_path):
    """The typed result writes the results file as the dict it replaced did (keys in this order; the
    cross-taxonomy and per-image keys only where they apply), and a file read back writes the same bytes."""
    root, labels = camvid
    write_preds(tmp_path / "pred", noisy(labels, np.random.default_rng(7)))
    ds, preds = create_dataset("camvid", root), PredDir(tmp_path / "pred")
    same = evaluate_dataset(ds, "val", preds, per_image=True)
    cross = Evaluator(mapping=load_mapping("camvid__cityscapes")).result()
    assert list(same.to_json()) == [*HEAD_KEYS, "pixel_acc_allowed", *SCORE_KEYS, "per_image", *RUN_KEYS]
    assert list(cross.to_json()) == [
        *HEAD_KEYS, "pixel_acc_allowed", "pred_share_source", "allowed_breakdown", *SCORE_KEYS
    ]  # fmt: skip
    assert list(same.to_json()["classes"][0]) == ["name", "iou", "acc", "gt_pixels", "gt_share", "pred_share"]
    assert same.to_json()["per_image"][0] == {"id": "val/a"} | same.per_image[0].model_dump(exclude={"id"})
    for result in (same, cross.model_copy(update={"overlays": ["val/a"], "seconds": 1.5})):
        result.write(tmp_path / "r.json")
        text = (tmp_path / "r.json").read_text()
        again = EvalResult.from_json(json.loads(text))
        assert again == result
        again.write(tmp_path / "again.json")
        assert (tmp_path / "again.json").read_text() == text
    (tmp_path / "bad.json").write_text(json.dumps(same.to_json() | {"miou": "high"}))
    with pytest.raises(SegunifyError, match=r"bad.json: corrupt evaluation result: miou: "):
        EvalResult.read(tmp_path / "bad.json")


def test_evaluator_torch_batches_equal_numpy():
    tax = load_taxonomy("cityscapes")
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 20, (3, 8, 8), dtype=np.uint8)
    gt[gt == 19] = 255
    pred = rng.integers(0, 19, (3, 8, 8), dtype=np.uint8)
    a, b = Evaluator(tax), Evaluator(tax)
    a.update(torch.from_numpy(gt), torch.from_numpy(pred))
    for i in range(3):
        b.update(gt[i], pred[i])
    assert a.images == b.images == 3
    ra, rb = a.result(), b.result()
    assert ra.confusion == rb.confusion and ra.miou == rb.miou


def test_evaluator_rejects_mapping_of_other_taxonomy():
    with pytest.raises(
        SegunifyError, match="extra taxonomy 'camvid' .* is not the taxonomy of the ground truth"
    ):
        Evaluator(load_taxonomy("kitti"), load_mapping("camvid__cityscapes"))


def test_pseudo_label_style_predictions_with_255_on_void_pixels(camvid, tmp_path):
    root, labels = camvid
    write_preds(tmp_path / "pred", labels)  # 255 exactly where the GT is void
    result = evaluate_dataset(create_dataset("camvid", root), "val", PredDir(tmp_path / "pred"))
    assert result.miou == 1.0


def test_kitti_real_labels_as_predictions(kitti_root, tmp_path):
    ds = create_dataset("kitti", kitti_root, label_crop="4,18")
    for s in ds.samples("train"):
        write_index_png(tmp_path / s.rel, ds.read_label(s))
    result = evaluate_dataset(ds, "train", PredDir(tmp_path))
    assert result.images == 5 and result.miou == 1.0 and result.absent_classes == []
    assert result.pixels > 0.9 * 5 * 370 * 1224


# ---------------------------------------------------------------- CLI


def test_cli_pred_dir_table_and_json(camvid, tmp_path, capsys):
    root, labels = camvid
    preds = noisy(labels, np.random.default_rng(4), num_classes=10)  # Bicyclist never predicted: absent
    write_preds(tmp_path / "pred", preds)
    out_json = tmp_path / "out" / "result.json"
    code, out, err = run(
        camvid_val(root, "--pred-dir", str(tmp_path / "pred"), "--json", str(out_json)),
        capsys,
    )
    assert code == 0, err
    assert "Pedestrian" in out and "mIoU" in out
    assert "absent" in out and "Bicyclist" in out
    result = json.loads(out_json.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    cm = sum(confusion_matrix(labels[k], preds[k], 11) for k in labels)
    assert result["miou"] == pytest.approx(scores(cm).miou)
    assert result["absent_classes"] == ["Bicyclist"]
    assert f"{100 * result['miou']:.2f}" in out
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["result.json"]


def test_cli_per_image_and_pictures(camvid, tmp_path, capsys):
    root, labels = camvid
    preds = noisy(labels, np.random.default_rng(5))
    write_preds(tmp_path / "pred", preds)
    vis = tmp_path / "vis"
    code, out, err = run(
        base(root, tmp_path / "pred")
        + ["--per-image", "--vis", str(vis), "--vis-count", "2", "--json", str(tmp_path / "r.json")],
        capsys,
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    per = {r["id"]: r for r in result["per_image"]}
    assert sorted(per) == ["val/a", "val/b", "val/c"]
    s = scores(confusion_matrix(labels["b"], preds["b"], 11))
    assert per["val/b"]["pixel_acc"] == pytest.approx(s.pixel_acc) and per["val/b"]["miou"] == pytest.approx(
        s.miou
    )
    assert "lowest pixel accuracy" in out
    pictures = ["iou.png", "legend.png", "val_a.png", "val_b.png"]  # 2 of 3 samples, evenly spread
    assert sorted(p.name for p in vis.iterdir()) == [".segunify-vis", *pictures]
    picture = read_image(vis / "val_a.png")
    assert picture.shape[1] == 4 * W + 3 * 4  # image | GT | prediction | errors


def test_cli_cross_taxonomy(camvid, tmp_path, capsys):
    root, labels = camvid
    preds = {k: np.full(g.shape, 13, dtype=np.uint8) for k, g in labels.items()}  # all 'car'
    write_preds(tmp_path / "pred", preds)
    code, out, err = run(
        camvid_val(
            str(root),
            "--pred-dir",
            str(tmp_path / "pred"),
            "--mapping",
            "camvid__cityscapes",
            "--json",
            str(tmp_path / "r.json"),
        ),
        capsys,
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    car_px = sum(int((g == 8).sum()) for g in labels.values())
    total = sum(int((g != 255).sum()) for g in labels.values())
    assert result["pixel_acc"] == pytest.approx(car_px / total)
    assert result["pred_share_source"]["car"] == 1.0
    assert "predicted cityscapes classes" in out


def test_cli_model_checkpoint(camvid, tmp_path, capsys, one_thread):
    """--model goes through Predictor.from_checkpoint: a tiny untrained ESPNetv2 must give a valid result."""
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint

    root, _ = camvid
    torch.manual_seed(0)
    model = create_model("espnetv2", 11, s=1.0)
    ckpt = tmp_path / "ckpt"
    save_checkpoint(
        ckpt, model, {"taxonomy": "camvid", "mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [32, 32]}
    )
    out_json = tmp_path / "m.json"
    code, out, err = run(
        camvid_val(root, "--model", str(ckpt), "--size", "32,32", "--flip", "--json", str(out_json)),
        capsys,
    )
    assert code == 0, err
    result = json.loads(out_json.read_text())
    assert result["images"] == 3 and result["pixels"] == 3 * (H * W - 4)
    assert result["predictions"] == f"model {ckpt}"
    # sliding windows at two scales take the same path and score the same pixels
    code, out, err = run(
        camvid_val(
            str(root),
            "--model",
            str(ckpt),
            "--mode",
            "slide",
            "--size",
            "8,8",
            "--stride",
            "4,4",
            "--scales",
            "1,1.5",
            "--json",
            str(out_json),
            "--overwrite",
        ),
        capsys,
    )
    assert code == 0, err
    assert json.loads(out_json.read_text())["pixels"] == 3 * (H * W - 4)
    # the checkpoint predicts camvid; the cityscapes mapping expects cityscapes predictions
    code, _, err = run(
        camvid_val(root, "--model", str(ckpt), "--mapping", "camvid__cityscapes"),
        capsys,
    )
    assert code == 1 and "meta.json" in err and "camvid" in err and len(err.strip().splitlines()) == 1


def _bad(capsys, argv, code_expected=1):
    code, _, err = run(argv, capsys)
    assert code == code_expected, err
    lines = err.strip().splitlines()
    if code_expected == 1:
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err
    return err


def base(root, pred):
    return camvid_val(root, "--pred-dir", str(pred))


def test_bad_missing_prediction_file(camvid, tmp_path, capsys):
    root, labels = camvid
    write_preds(tmp_path / "pred", {k: v for k, v in labels.items() if k != "b"})
    err = _bad(capsys, base(root, tmp_path / "pred"))
    assert str(tmp_path / "pred" / "valannot" / "b.png") in err and "not found" in err


def test_bad_prediction_size(camvid, tmp_path, capsys):
    root, labels = camvid
    preds = dict(labels)
    preds["a"] = np.zeros((H, W - 1), dtype=np.uint8)
    write_preds(tmp_path / "pred", preds)
    err = _bad(capsys, base(root, tmp_path / "pred"))
    assert "valannot/a.png" in err and f"{W - 1}x{H}" in err and f"{W}x{H}" in err


def test_bad_prediction_ids_out_of_range(camvid, tmp_path, capsys):
    root, labels = camvid
    preds = {k: np.where(v == 255, 0, v).astype(np.uint8) for k, v in labels.items()}
    preds["c"][5, 5] = 42
    write_preds(tmp_path / "pred", preds)
    err = _bad(capsys, base(root, tmp_path / "pred"))
    assert "valannot/c.png" in err and "42" in err and "0..10" in err


def test_bad_prediction_rgb_and_corrupt(camvid, tmp_path, capsys):
    root, labels = camvid
    write_preds(tmp_path / "pred", labels)
    write_png(tmp_path / "pred" / "valannot" / "a.png", np.zeros((H, W, 3), dtype=np.uint8))
    err = _bad(capsys, base(root, tmp_path / "pred"))
    assert "valannot/a.png" in err and "single-channel" in err
    (tmp_path / "pred" / "valannot" / "a.png").write_bytes(b"not a png")
    err = _bad(capsys, base(root, tmp_path / "pred"))
    assert "valannot/a.png" in err and "cannot decode" in err


def test_bad_prediction_folder_and_mapping_and_options(camvid, tmp_path, capsys):
    root, labels = camvid
    err = _bad(capsys, base(root, tmp_path / "nope"))
    assert str(tmp_path / "nope") in err
    write_preds(tmp_path / "pred", labels)
    err = _bad(capsys, base(root, tmp_path / "pred") + ["--mapping", "kitti__cityscapes"])
    assert "kitti__cityscapes" in err and "camvid" in err
    err = _bad(capsys, base(root, tmp_path / "pred") + ["--mapping", str(tmp_path / "missing.csv")])
    assert "missing.csv" in err
    err = _bad(capsys, base(root, tmp_path / "pred") + ["--dataset-opt", "label_crop=4,18"])
    assert "label_crop" in err
    err = _bad(capsys, base(root, tmp_path / "pred") + ["--dataset-opt", "oops"], 2)  # usage (issue 25)
    assert "key=value" in err
    err = _bad(
        capsys,
        camvid_val(tmp_path / "x", "--pred-dir", str(tmp_path / "pred")),
    )
    assert str(tmp_path / "x") in err
    err = _bad(
        capsys,
        base(root, tmp_path / "pred")[:-4] + ["--split", "nosplit", "--pred-dir", str(tmp_path / "pred")],
    )
    assert "nosplit" in err


def test_bad_model_checkpoint(camvid, tmp_path, capsys):
    root, _ = camvid
    (tmp_path / "ckpt").mkdir()
    argv = camvid_val(root, "--model", str(tmp_path / "ckpt"))
    err = _bad(capsys, argv)
    assert str(tmp_path / "ckpt") in err and "meta.json" in err
    (tmp_path / "ckpt" / "meta.json").write_text("{broken")
    err = _bad(capsys, argv)
    assert "meta.json" in err


def test_usage_errors_exit_2(camvid, tmp_path, capsys):
    root, _ = camvid
    common = camvid_val(root)
    _bad(capsys, common, 2)  # neither --pred-dir nor --model
    _bad(capsys, common + ["--pred-dir", str(tmp_path), "--model", str(tmp_path)], 2)
    _bad(capsys, common + ["--model", str(tmp_path), "--size", "big"], 2)
    _bad(capsys, common + ["--pred-dir", str(tmp_path), "--flip"], 2)
    _bad(capsys, common + ["--model", str(tmp_path), "--mode", "tiles"], 2)
    _bad(capsys, common + ["--model", str(tmp_path), "--scales", "1,-2"], 2)
    _bad(capsys, common + ["--model", str(tmp_path), "--stride", "1"], 2)


@pytest.mark.slow
def test_teacher_on_camvid_val_reproduces_the_published_figure(camvid_root, weights_dir, tmp_path, capsys):
    """ESPNetv2 s=2.0 Cityscapes teacher on CamVid val through the mapping: about 63.9 mIoU, 90.4 % acc."""
    code, _, err = run(
        [
            "import-weights",
            "--pth",
            str(weights_dir / "espnetv2_s2.0_cityscapes_1024x512.pth"),
            "--model",
            "espnetv2",
            "--s",
            "2.0",
            "--taxonomy",
            "cityscapes",
            "--out",
            str(tmp_path / "teacher"),
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = run(
        [
            "evaluate",
            "--model",
            str(tmp_path / "teacher"),
            "--dataset",
            "camvid",
            "--root",
            str(camvid_root),
            "--split",
            "val",
            "--mapping",
            "camvid__cityscapes",
            "--size",
            "512,1024",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capsys,
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["miou"] == pytest.approx(0.639, abs=0.005)
    assert result["pixel_acc"] == pytest.approx(0.904, abs=0.005)
