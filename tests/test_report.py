"""The demo report builder, from a synthetic results dict: files, tables, goals, JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segunify.errors import SegunifyError
from segunify.labels import read_image
from segunify.mapping import load_mapping
from segunify.report import (
    GRID_TILE,
    build_report,
    coarse_groups,
    evaluate_goals,
    gt_to_source_colors,
    load_results,
    miou_over,
    picture_grid,
    shared_group_classes,
)
from segunify.taxonomy import load_taxonomy

CAMVID = list(load_taxonomy("camvid").classes)
CITYSCAPES = list(load_taxonomy("cityscapes").classes)


def _block(base: float) -> dict:
    iou = {c: round(base + 0.01 * i, 4) for i, c in enumerate(CAMVID)}
    return {
        "miou": float(np.mean(list(iou.values()))),
        "pixel_acc": base + 0.2,
        "mean_acc": base + 0.1,
        "iou": iou,
    }


def synthetic_results() -> dict:
    groups = coarse_groups(load_taxonomy("camvid"), load_taxonomy("camvid-coarse"))
    shared = shared_group_classes(groups)
    with_iou = {c: 0.8 for c in CAMVID}
    without_iou = {c: 0.6 for c in CAMVID}
    return {
        "run": "synthetic",
        "budget": "toy",
        "settings": {
            "goals": {"sp_minus_t": 0.12, "sp_minus_sr": 0.08, "coarse_shared_gain": 0.10},
            "steps": 2,
        },
        "models": {m: {"checkpoint": f"work/{m}", "sha256": "ab" * 32} for m in ("T", "S_P", "S_R")},
        "camvid_val": {"T": _block(0.60), "S_P": _block(0.75), "S_R": _block(0.70)},
        "kitti": {
            m: {"miou": 0.5, "pixel_acc": 0.8, "iou": {c: 0.5 for c in CITYSCAPES}} for m in ("T", "S_P")
        },
        "collapse": {
            "classes": ["wall", "bus"],
            "shares": {"T": {"wall": 0.01, "bus": 0.002}, "S_P": {"wall": 0.0}},
        },
        "pseudo_labels": {
            "P": {
                "images": 4,
                "ignored_share": 0.03,
                "changed_share": 0.12,
                "per_class_changed": {"Tree": 0.25},
            },
            "R": {"images": 4, "ignored_share": 0.0, "changed_share": 0.0},
        },
        "coarse_prior": {
            "groups": groups,
            "shared_classes": shared,
            "with_priors": {"miou": 0.8, "miou_shared": 0.8, "pixel_acc": 0.9, "iou": with_iou},
            "without_priors": {"miou": 0.6, "miou_shared": 0.6, "pixel_acc": 0.85, "iou": without_iou},
        },
        "timings": {"pseudo-label P": 1.5, "train S_P": 2.25},
    }


def _rows(n: int = 2) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "id": f"img{i}",
            "image": rng.integers(0, 255, (36, 48, 3), dtype=np.uint8),
            "gt": rng.integers(0, 11, (36, 48), dtype=np.uint8),
            "T": rng.integers(0, 19, (36, 48), dtype=np.uint8),
            "P": np.full((36, 48), 255, np.uint8),
            "S_P": rng.integers(0, 19, (36, 48), dtype=np.uint8),
        }
        for i in range(n)
    ]


def test_coarse_groups_and_shared_classes():
    groups = coarse_groups(load_taxonomy("camvid"), load_taxonomy("camvid-coarse"))
    assert groups["flat"] == ["Road", "Pavement"] or sorted(groups["flat"]) == ["Pavement", "Road"]
    assert groups["sky"] == ["Sky"] and groups["vehicle"] == ["Car"] and groups["nature"] == ["Tree"]
    assert sorted(groups["human"]) == ["Bicyclist", "Pedestrian"]
    shared = shared_group_classes(groups)
    assert sorted(shared) == sorted(
        ["Road", "Pavement", "Building", "Fence", "Pole", "SignSymbol", "Pedestrian", "Bicyclist"]
    )
    assert sum(len(v) for v in groups.values()) == 11


def test_miou_over_skips_absent():
    assert miou_over({"a": 0.5, "b": None, "c": 1.0}, ["a", "b", "c"]) == pytest.approx(0.75)
    assert miou_over({"a": None}, ["a"]) is None


def test_goals_measured_against_targets():
    goals = {g["goal"]: g for g in evaluate_goals(synthetic_results())}
    sp_t = goals["S_P - T, mIoU-11 on CamVid val"]
    assert sp_t["value"] == pytest.approx(0.15) and sp_t["met"]
    sp_sr = goals["S_P - S_R, mIoU-11 on CamVid val"]
    assert sp_sr["value"] == pytest.approx(0.05) and not sp_sr["met"]
    coarse = goals["coarse priors - none, mIoU over classes sharing a coarse group"]
    assert coarse["value"] == pytest.approx(0.2) and coarse["met"]


def test_gt_colours_follow_first_allowed_source_class():
    mapping = load_mapping("camvid__cityscapes")
    city = load_taxonomy("cityscapes")
    gt = np.array([[5, 8, 255, 10]], dtype=np.uint8)  # Tree, Car, void, Bicyclist
    rgb = gt_to_source_colors(gt, mapping)
    pal = city.palette()
    assert (rgb[0, 0] == pal[city.index("vegetation")]).all()
    assert (rgb[0, 1] == pal[city.index("car")]).all()
    assert (rgb[0, 2] == 0).all()
    assert (rgb[0, 3] == pal[city.index("rider")]).all()


def test_picture_grid_layout_and_palette():
    mapping = load_mapping("camvid__cityscapes")
    rows = _rows(2)
    rows[1]["S_P"] = np.full((36, 48), CITYSCAPES.index("sky"), np.uint8)
    del rows[0]["P"]
    grid = picture_grid(rows, mapping)
    h, w = GRID_TILE
    assert grid.shape == (2 * h + 4, 5 * w + 4 * 4, 3)
    sky = load_taxonomy("cityscapes").palette()[CITYSCAPES.index("sky")]
    tile = grid[h + 4 :, 4 * (w + 4) :]
    assert (tile == sky).all()
    missing = grid[:h, 3 * (w + 4) : 3 * (w + 4) + w]
    assert (missing == 160).all()


def test_build_report_writes_page_images_and_json(tmp_path):
    results = synthetic_results()
    page = build_report(results, tmp_path / "run", grid_rows=_rows(2))
    assert page == tmp_path / "run" / "index.html"
    for name in ("results.json", "iou.png", "grid.png"):
        assert (tmp_path / "run" / name).stat().st_size > 100
    chart = read_image(tmp_path / "run" / "iou.png")
    assert chart.shape[0] > 200 and chart.std() > 0
    text = page.read_text(encoding="utf-8")
    assert "<img src='iou.png'" in text and "<img src='grid.png'" in text
    assert text.count("<table") >= 8
    assert "CamVid val mIoU-11 %" in text and "<b>80.0</b>" in text  # S_P headline mIoU
    assert "Coarse-prior experiment" in text and "+20.0" in text
    assert "Pseudo-label statistics" in text and "25.00" in text  # Tree changed share
    assert 'class="miss">missed by 3.0' in text  # S_P - S_R = 5 points vs 8
    assert "img0, img1" in text

    loaded = load_results(tmp_path / "run" / "results.json")
    assert loaded["camvid_val"] == results["camvid_val"]
    assert loaded["grid"] == ["img0", "img1"]
    assert [g["met"] for g in loaded["goals"]] == [True, False, True]
    page2 = build_report(loaded, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "results.json").read_text()) == loaded
    assert "grid.png" not in page2.read_text(encoding="utf-8")


def test_partial_results_still_render(tmp_path):
    page = build_report({"run": "empty", "settings": {}}, tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "No goal could be measured" in text
    assert not (tmp_path / "iou.png").exists()


def test_non_finite_numbers_are_refused(tmp_path):
    results = synthetic_results()
    results["camvid_val"]["T"]["miou"] = math.nan
    with pytest.raises(SegunifyError, match="non-finite"):
        build_report(results, tmp_path)


def test_load_results_errors(tmp_path):
    with pytest.raises(SegunifyError, match="not found"):
        load_results(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SegunifyError, match="JSON object"):
        load_results(bad)
