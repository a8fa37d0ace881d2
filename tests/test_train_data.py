"""Compound dataset, weighted sampler (weights honoured, sharded, resumable), augmentation, schedule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.train_data import base_config, make_camvid, make_pseudo
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.mapping import load_mapping
from segunify.train.config import AugmentationConfig, TrainConfig
from segunify.train.data import CompoundDataset, WeightedDrawSampler, build_augmentation
from segunify.train.engine import lr_factor
from segunify.train.parts import resolve_parts


def part_of(sampler: WeightedDrawSampler, idx: np.ndarray) -> np.ndarray:
    return np.searchsorted(sampler.offsets, idx, side="right") - 1


def test_part_frequencies_follow_weights_not_sizes():
    # sizes 5/40/3 would give 10/83/6 % if weights were ignored (the authors' code); weights say 10/20/70 %
    s = WeightedDrawSampler([5, 40, 3], [1, 2, 7], batch_size=8, seed=3)
    freq = np.bincount(part_of(s, s.global_indices(0, 40000)), minlength=3) / 40000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.7], atol=0.01)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4),
    data=st.data(),
)
def test_frequencies_match_any_weights(sizes, data):
    weights = data.draw(st.lists(st.floats(0.05, 10), min_size=len(sizes), max_size=len(sizes)))
    s = WeightedDrawSampler(sizes, weights, batch_size=4, seed=data.draw(st.integers(0, 99)))
    n = 8192
    freq = np.bincount(part_of(s, s.global_indices(0, n)), minlength=len(sizes)) / n
    p = np.asarray(weights) / sum(weights)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-9)


def test_ranks_are_disjoint_and_cover_the_global_stream():
    kw = dict(sizes=[7, 13], weights=[1, 1], batch_size=3, seed=5, steps=40)
    ref = WeightedDrawSampler(**kw).global_indices(0, 40 * 3 * 4)
    draws = {}
    for rank in range(4):
        items = list(WeightedDrawSampler(**kw, num_replicas=4, rank=rank))
        assert len(items) == 40 * 3
        for index, draw in items:
            assert draw not in draws
            assert ref[draw] == index
            draws[draw] = rank
    assert sorted(draws) == list(range(40 * 3 * 4))
    # step s of rank r is the r-th block of the step's global batch
    assert [draws[g] for g in range(24)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] * 2


def test_resume_position_and_epochs():
    kw = dict(sizes=[6, 4], weights=[3, 1], batch_size=2, num_replicas=2, rank=1, seed=9, steps=5000)
    full = list(WeightedDrawSampler(**kw))
    assert list(WeightedDrawSampler(**kw, start_step=1234)) == full[1234 * 2 :]
    # within a part, every sample once before any repeats (shuffled epochs)
    s = WeightedDrawSampler([6, 4], [3, 1], batch_size=2, seed=9)
    idx = s.global_indices(0, 4096)
    first = idx[part_of(s, idx) == 0]
    for e in range(5):
        assert sorted(first[6 * e : 6 * e + 6].tolist()) == list(range(6))
    assert not np.array_equal(first[:6], first[6:12])  # reshuffled
    assert not np.array_equal(
        idx, WeightedDrawSampler([6, 4], [3, 1], batch_size=2, seed=10).global_indices(0, 4096)
    )


def test_lr_schedule_hand_computed():
    assert lr_factor(0, 100, 10, 0.1, 0.9) == pytest.approx(0.1)
    assert lr_factor(5, 100, 10, 0.1, 0.9) == pytest.approx(0.55)
    assert lr_factor(10, 100, 10, 0.1, 0.9) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1, 0.9) == pytest.approx(0.5**0.9)
    assert lr_factor(100, 100, 10, 0.1, 0.9) == 0.0


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=4, n_val=1, size=(40, 56))


def test_gt_and_pseudo_parts_give_target_labels(camvid, tmp_path):
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = TrainConfig.model_validate(
        base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
        | {
            "parts": [
                {"dataset": "camvid", "root": str(camvid), "labels": str(pseudo), "weight": 1},
                {"dataset": "camvid", "root": str(camvid), "mapping": str(tmp_path / "m.csv"), "weight": 3},
            ]
        }
    )
    # a one-to-one CamVid -> Cityscapes mapping (Building -> building only, Tree -> vegetation, ...)
    rows = ["extra_id,extra_name,source_classes"]
    firsts = [
        "sky",
        "building",
        "pole",
        "road",
        "sidewalk",
        "vegetation",
        "traffic light",
        "fence",
        "car",
        "person",
        "rider",
    ]
    rows += [
        f"{k},{n},{c}"
        for k, (n, c) in enumerate(zip(load_mapping("camvid__cityscapes").extra.classes, firsts, strict=True))
    ]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    target, parts = resolve_parts(cfg, "cfg.yaml")
    ds = CompoundDataset(parts, None)
    assert len(ds) == 8 and ds.locate(5) == (1, 1)
    adapter = create_dataset("camvid", camvid)
    gt = adapter.read_label(adapter.samples("train")[1])
    want = np.array([target.index(c) for c in firsts] + [255] * 245, dtype=np.uint8)[gt]
    for i in (1, 5):  # the same sample through its pseudo-labels and through the one-to-one GT mapping
        item = ds[(i, 0)]
        np.testing.assert_array_equal(item["label"].numpy(), want)
        assert item["image"].dtype.is_floating_point is False and item["image"].shape == (3, 40, 56)


def test_one_to_one_lut_rejects_merging_mappings():
    with pytest.raises(SegunifyError, match="not one-to-one for 'Building' \\(building;wall\\), 'Tree'"):
        load_mapping("camvid__cityscapes").one_to_one_lut()


def test_augmentation_is_seeded_by_draw_and_pads_with_ignore(camvid, tmp_path):
    cfg = TrainConfig.model_validate(base_config(camvid, tmp_path / "run"))
    _, parts = resolve_parts(cfg, "cfg.yaml")
    aug = build_augmentation(
        AugmentationConfig(scale=(0.5, 1.5), crop=(64, 80), hflip=True, color_jitter=0.3)
    )
    ds = CompoundDataset(parts, aug, seed=1)
    a, b, c = ds[(2, 17)], ds[(2, 17)], ds[(2, 18)]
    assert a["image"].shape == (3, 64, 80) and a["label"].shape == (64, 80)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    assert not np.array_equal(a["image"], c["image"])
    # the crop is larger than any scaled 40x56 image: the border is ignore, never a class
    assert (a["label"].numpy() == 255).sum() >= 64 * 80 - int(40 * 1.5 + 1) * int(56 * 1.5 + 1)
    assert set(np.unique(a["label"].numpy())) <= set(range(11)) | {255}
