"""Metrics: hand-computed cases, parity with cityscapesScripts and torchmetrics, hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segunify.mapping import load_mapping
from segunify.metrics import (
    confusion_matrix,
    confusion_matrix_rect,
    cross_taxonomy_scores,
    predicted_share,
    scores,
)
from segunify.taxonomy import load_taxonomy

pytestmark = pytest.mark.usefixtures("one_thread")

GT = np.array([[0, 0, 1], [1, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 2]], dtype=np.uint8)


def reference_cm(gt, pred, k, c, ignore=255):
    """Slow, obviously correct confusion matrix (np.add.at over valid pixels)."""
    gt = np.asarray(gt, dtype=np.int64).ravel()
    pred = np.asarray(pred, dtype=np.int64).ravel()
    valid = (gt >= 0) & (gt < k) & (gt != ignore)
    cm = np.zeros((k, c), dtype=np.int64)
    np.add.at(cm, (gt[valid], pred[valid]), 1)
    return cm


# ---------------------------------------------------------------- hand-computed


@pytest.mark.parametrize("kind", ["uint8", "int64", "torch-uint8", "torch-int64"])
def test_hand_computed_confusion_and_scores(kind):
    gt, pred = GT, PRED
    if kind.endswith("int64"):
        gt, pred = gt.astype(np.int64), pred.astype(np.int64)
    if kind.startswith("torch"):
        gt, pred = torch.from_numpy(gt), torch.from_numpy(pred)
    cm = confusion_matrix(gt, pred, 3)
    assert isinstance(cm, torch.Tensor) == kind.startswith("torch")
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert np.asarray(cm).tolist() == expected
    s = scores(cm)
    assert s.iou == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s.acc == pytest.approx([0.5, 1.0, 0.0])
    assert s.miou == pytest.approx(1 / 3)
    assert s.pixel_acc == pytest.approx(3 / 5)
    assert s.mean_acc == pytest.approx(0.5)
    assert s.pixels == 5 and s.absent == []
    assert s.gt_pixels.tolist() == [2, 2, 1] and s.pred_pixels.tolist() == [2, 3, 0]


def test_absent_class_is_excluded_and_listed():
    cm = confusion_matrix(GT, PRED, 5)
    s = scores(cm)
    assert s.absent == [3, 4]
    assert math.isnan(s.iou[3]) and math.isnan(s.acc[4])
    assert s.miou == pytest.approx(1 / 3)  # the mean of the three present classes only


def test_class_only_predicted_counts_with_iou_zero():
    gt = np.array([0, 0, 0, 1], dtype=np.uint8)
    pred = np.array([0, 0, 2, 1], dtype=np.uint8)
    s = scores(confusion_matrix(gt, pred, 3))
    assert s.iou.tolist() == [pytest.approx(2 / 3), 1.0, 0.0]
    assert s.absent == [] and math.isnan(s.acc[2])
    assert s.miou == pytest.approx((2 / 3 + 1) / 3)


@pytest.mark.parametrize("to", [lambda a: a, lambda a: a.astype(np.int64), torch.from_numpy])
def test_prediction_out_of_range_on_valid_pixel_is_an_error(to):
    pred = PRED.copy()
    pred[0, 0] = 7
    with pytest.raises(ValueError, match="prediction ids 7 outside 0..2"):
        confusion_matrix(to(GT.copy()), to(pred), 3)


def test_prediction_out_of_range_on_ignored_pixel_is_fine():
    pred = PRED.copy()
    pred[1, 2] = 255  # GT is 255 there: pseudo-labels keep 255 on void pixels
    assert confusion_matrix(GT, pred, 3).sum() == 5
    assert confusion_matrix(GT.astype(np.int64), pred.astype(np.int64), 3).sum() == 5


def test_gt_outside_classes_is_skipped_and_custom_ignore_index():
    gt = np.array([0, 1, 2, 9, 255], dtype=np.uint8)
    pred = np.array([0, 1, 1, 0, 0], dtype=np.uint8)
    assert confusion_matrix(gt, pred, 3).sum() == 3
    cm = confusion_matrix(gt, pred, 3, ignore_index=0)  # class 0 ignored, 255 still outside 0..2
    assert cm.tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert (
        cm.tolist()
        == confusion_matrix(gt.astype(np.int64), pred.astype(np.int64), 3, ignore_index=0).tolist()
    )


def test_plain_lists_and_mixed_numpy_torch():
    cm = confusion_matrix(GT.tolist(), PRED.tolist(), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    mixed = confusion_matrix(GT, torch.from_numpy(PRED), 3)
    assert isinstance(mixed, torch.Tensor) and mixed.tolist() == cm.tolist()


def test_shape_mismatch_and_float_labels_are_errors():
    with pytest.raises(ValueError, match="shape mismatch"):
        confusion_matrix(GT, PRED[:, :2], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(GT.astype(np.float32), PRED.astype(np.float32), 3)


def test_large_input_crosses_chunk_boundaries():
    rng = np.random.default_rng(3)
    n = (1 << 18) * 2 + 12345
    gt = rng.integers(0, 21, n, dtype=np.uint8)
    gt[rng.random(n) < 0.2] = 255
    pred = rng.integers(0, 19, n, dtype=np.uint8)
    assert (confusion_matrix(gt, pred, 19) == reference_cm(gt, pred, 19, 19)).all()


def test_predicted_share():
    share = predicted_share(confusion_matrix(GT, PRED, 3))
    assert share.tolist() == pytest.approx([2 / 5, 3 / 5, 0.0])
    assert np.isnan(predicted_share(np.zeros((2, 2)))).all()


# ---------------------------------------------------------------- cross-taxonomy


def test_cross_taxonomy_hand_computed_partition():
    # extra classes: A -> {0, 1}, B -> {2}, V -> void; source class 3 is claimed by nobody
    allowed = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 255], dtype=np.uint8)
    pred = np.array([0, 1, 2, 3, 2, 0, 1, 3], dtype=np.uint8)
    cm = confusion_matrix_rect(gt, pred, *allowed.shape)
    assert cm.tolist() == [[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 0]]
    out = cross_taxonomy_scores(cm, allowed)
    assert out["void_classes"] == [2] and out["partition"]
    assert out["pixels"] == 6  # the void class's pixel is ignored
    assert out["pixel_acc_allowed"] == pytest.approx(3 / 6)
    assert out["acc_allowed"][:2].tolist() == pytest.approx([2 / 4, 1 / 2])
    assert math.isnan(out["acc_allowed"][2])
    assert out["extra_confusion"].tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]
    s = out["scores"]
    # A: tp 2, gt 4 (one pixel predicted as unclaimed class 3 is a miss), predicted A 3 -> 2 / 5
    # B: tp 1, gt 2, predicted B 2 -> 1 / 3
    assert s.iou[:2].tolist() == pytest.approx([2 / 5, 1 / 3])
    assert math.isnan(s.iou[2]) and s.absent == []
    assert s.miou == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert s.pixel_acc == pytest.approx(3 / 6)
    assert out["pred_share"].tolist() == pytest.approx([2 / 6, 1 / 6, 2 / 6, 1 / 6])


def test_cross_taxonomy_non_partition_has_allowed_accuracy_only():
    allowed = np.array([[1, 1, 0], [0, 1, 1]], dtype=bool)  # source class 1 in both sets
    gt = np.array([0, 0, 1, 1, 1], dtype=np.uint8)
    pred = np.array([1, 2, 1, 2, 0], dtype=np.uint8)
    out = cross_taxonomy_scores(confusion_matrix_rect(gt, pred, *allowed.shape), allowed)
    assert not out["partition"] and "scores" not in out
    assert out["acc_allowed"].tolist() == pytest.approx([1 / 2, 2 / 3])
    assert out["pixel_acc_allowed"] == pytest.approx(3 / 5)


def test_cross_taxonomy_with_identity_mapping_equals_plain_scores():
    mapping = load_mapping("kitti__cityscapes")
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 19, (60, 80), dtype=np.uint8)
    gt[:5] = 255
    pred = rng.integers(0, 19, (60, 80), dtype=np.uint8)
    out = cross_taxonomy_scores(confusion_matrix_rect(gt, pred, *mapping.allowed.shape), mapping.allowed)
    plain = scores(confusion_matrix(gt, pred, 19))
    np.testing.assert_allclose(out["scores"].iou, plain.iou)
    assert out["scores"].miou == pytest.approx(plain.miou)
    assert out["pixel_acc_allowed"] == pytest.approx(plain.pixel_acc)


def test_cross_taxonomy_partition_equals_mapping_predictions_back():
    """For a partition, scoring through the mapping == mapping each prediction to its extra class."""
    mapping = load_mapping("camvid__cityscapes")
    assert mapping.is_partition
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 11, (90, 70), dtype=np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 19, (90, 70), dtype=np.uint8)
    out = cross_taxonomy_scores(confusion_matrix_rect(gt, pred, *mapping.allowed.shape), mapping.allowed)
    back = scores(confusion_matrix(gt, mapping.source_to_extra_lut()[pred], 11))
    np.testing.assert_allclose(out["scores"].iou, back.iou)
    assert out["scores"].pixel_acc == pytest.approx(back.pixel_acc)
    assert out["scores"].mean_acc == pytest.approx(back.mean_acc)


def test_rect_confusion_rejects_predictions_outside_source():
    with pytest.raises(ValueError, match="outside 0..3"):
        confusion_matrix_rect(np.array([0, 1], np.uint8), np.array([0, 4], np.uint8), 2, 4)


# ---------------------------------------------------------------- hypothesis properties

labels = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.integers(1, 30),
        arrays(np.uint8, n, elements=st.integers(0, 255)),
        arrays(np.uint8, n, elements=st.integers(0, 255)),
    )
)


@settings(max_examples=60, deadline=None)
@given(labels)
def test_property_all_paths_agree_and_sum_to_valid_pixels(case):
    c, gt, raw_pred = case
    gt = np.where(gt % 3 == 0, 255, gt % (c + 2)).astype(np.uint8)  # ignore, classes and a few ids >= C
    pred = (raw_pred % c).astype(np.uint8)
    ref = reference_cm(gt, pred, c, c)
    assert ref.sum() == int((gt < c).sum())
    for g, p in [
        (gt, pred),
        (gt.astype(np.int64), pred.astype(np.int64)),
        (gt.astype(np.uint16), pred),
        (torch.from_numpy(gt), torch.from_numpy(pred)),
        (torch.from_numpy(gt).long(), torch.from_numpy(pred).int()),
    ]:
        assert np.asarray(confusion_matrix(g, p, c)).tolist() == ref.tolist()


@settings(max_examples=60, deadline=None)
@given(labels, st.randoms(use_true_random=False))
def test_property_permutation_and_swap_symmetry(case, rnd):
    c, gt, pred = case
    gt, pred = (gt % c).astype(np.uint8), (pred % c).astype(np.uint8)
    cm = confusion_matrix(gt, pred, c)
    s = scores(cm)
    perm = np.arange(c)
    rnd.shuffle(perm)
    lut = perm.astype(np.uint8)
    cm_p = confusion_matrix(lut[gt], lut[pred], c)
    assert (cm_p[np.ix_(perm, perm)] == cm).all()
    s_p = scores(cm_p)
    np.testing.assert_allclose(s_p.iou[perm], s.iou)
    assert s_p.miou == pytest.approx(s.miou, nan_ok=True) and s_p.pixel_acc == pytest.approx(s.pixel_acc)
    # swapping GT and prediction transposes the matrix and keeps every IoU
    cm_t = confusion_matrix(pred, gt, c)
    assert (cm_t == cm.T).all()
    np.testing.assert_allclose(scores(cm_t).iou, s.iou)


# ---------------------------------------------------------------- parity on real labels


@pytest.fixture(scope="module")
def kitti_pairs(kitti_root):
    """GT train ids of the 5 KITTI labels (full 1242x375 labels) and predictions with 30 % of the
    pixels swapped to a random class (seeded)."""
    from segunify.datasets import create_dataset

    ds = create_dataset("kitti", kitti_root)
    samples = ds.samples("train")
    assert len(samples) == 5
    rng = np.random.default_rng(2025)
    out = []
    for s in samples:
        gt = ds.read_label(s)
        pred = np.where(gt == 255, rng.integers(0, 19, gt.shape), gt).astype(np.uint8)
        swap = rng.random(gt.shape) < 0.3
        pred[swap] = rng.integers(0, 19, int(swap.sum()), dtype=np.uint8)
        out.append((s, gt, pred))
    return out


def test_parity_with_cityscapesscripts(kitti_pairs, tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from cityscapesscripts.helpers.labels import trainId2label

    from segunify.io import write_index_png

    tax = load_taxonomy("cityscapes")
    to_label_id = np.zeros(256, dtype=np.uint8)
    for t in range(19):
        to_label_id[t] = trainId2label[t].id
    pred_files, gt_files = [], []
    cm = np.zeros((19, 19), dtype=np.int64)
    for s, gt, pred in kitti_pairs:
        path = tmp_path / f"{s.label.stem}_pred.png"
        write_index_png(path, to_label_id[pred])
        pred_files.append(str(path))
        gt_files.append(str(s.label))  # the original file: Cityscapes label ids
        cm += confusion_matrix(gt, pred, 19)
    args = cs.args
    saved = {k: getattr(args, k) for k in ("evalInstLevelScore", "JSONOutput", "quiet", "evalPixelAccuracy")}
    args.evalInstLevelScore, args.JSONOutput, args.quiet, args.evalPixelAccuracy = False, False, True, False
    try:
        result = cs.evaluateImgLists(pred_files, gt_files, args)
    finally:
        for k, v in saved.items():
            setattr(args, k, v)
    ours = scores(cm)
    theirs = result["classScores"]
    for t, name in enumerate(tax.classes):
        assert ours.iou[t] == pytest.approx(theirs[name], abs=1e-12), name
    assert ours.miou == pytest.approx(result["averageScoreClasses"], abs=1e-12)
    # their confusion matrix (label ids) restricted to evaluated rows/cols == ours (train ids)
    ids = [trainId2label[t].id for t in range(19)]
    their_cm = np.asarray(result["confMatrix"], dtype=np.int64)
    assert (their_cm[np.ix_(ids, ids)] == cm).all()
    assert ours.absent == []


def test_parity_with_torchmetrics(kitti_pairs):
    from torchmetrics.classification import MulticlassJaccardIndex

    opts = {"num_classes": 19, "ignore_index": 255, "validate_args": False}  # validation: 5x slower
    per_class = MulticlassJaccardIndex(average="none", **opts)
    macro = MulticlassJaccardIndex(average="macro", **opts)
    cm = np.zeros((19, 19), dtype=np.int64)
    for _, gt, pred in kitti_pairs:
        g, p = torch.from_numpy(gt).long(), torch.from_numpy(pred).long()
        per_class.update(p, g)
        macro.update(p, g)
        cm += confusion_matrix(gt, pred, 19)
    ours = scores(cm)
    np.testing.assert_allclose(ours.iou, per_class.compute().numpy(), rtol=1e-5)
    assert ours.miou == pytest.approx(float(macro.compute()), rel=1e-5)


def test_torchmetrics_macro_also_excludes_absent_classes():
    from torchmetrics.classification import MulticlassJaccardIndex

    gt = torch.tensor([0, 0, 1, 1, 255])
    pred = torch.tensor([0, 1, 1, 1, 2])
    ours = scores(confusion_matrix(gt, pred, 4))
    assert ours.absent == [2, 3]
    macro = MulticlassJaccardIndex(num_classes=4, average="macro", ignore_index=255)(pred, gt)
    assert ours.miou == pytest.approx(float(macro))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_numpy():
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    pred = rng.integers(0, 19, (4, 64, 64), dtype=np.uint8)
    ref = confusion_matrix(gt, pred, 19)
    for g, p in [(gt, pred), (gt.astype(np.int64), pred.astype(np.int64))]:
        cm = confusion_matrix(torch.from_numpy(g).cuda(), torch.from_numpy(p).cuda(), 19)
        assert cm.device.type == "cuda"
        assert (cm.cpu().numpy() == ref).all()
    bad = torch.from_numpy(pred).cuda()
    bad[gt < 19] = 30
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.from_numpy(gt).cuda(), bad, 19)
