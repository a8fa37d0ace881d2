"""Pictures: exact colours, overlay arithmetic, grid layout, legend swatches, IoU chart files."""

from __future__ import annotations

import numpy as np
import pytest

from segunify import viz
from segunify.evaluation import Evaluator
from segunify.labels import read_image
from segunify.mapping import load_mapping
from segunify.taxonomy import load_taxonomy

CAMVID = load_taxonomy("camvid")
CITYSCAPES = load_taxonomy("cityscapes")


def test_colorize_uses_palette_and_ignore_color():
    ids = np.array([[0, 3], [255, 11]], dtype=np.uint8)
    rgb = viz.colorize(ids, CAMVID)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == CAMVID.colors[0] and tuple(rgb[0, 1]) == CAMVID.colors[3]
    assert tuple(rgb[1, 0]) == (0, 0, 0)
    assert tuple(viz.colorize(ids, CAMVID, ignore_color=(9, 8, 7))[1, 1]) == (9, 8, 7)  # 11 = void in camvid


def test_overlay_blends_and_keeps_ignore_pixels():
    image = np.full((2, 2, 3), 100, dtype=np.uint8)
    ids = np.array([[0, 255], [1, 1]], dtype=np.uint8)
    out = viz.overlay(image, ids, CITYSCAPES, alpha=0.25)
    expected = np.round(0.75 * 100 + 0.25 * np.array(CITYSCAPES.colors[0]))
    assert out[0, 0].tolist() == expected.astype(int).tolist()
    assert out[0, 1].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match="differ"):
        viz.overlay(image, ids[:1], CITYSCAPES)


def test_error_map_same_and_cross_taxonomy():
    gt = np.array([[0, 1, 255]], dtype=np.uint8)
    pred = np.array([[0, 2, 5]], dtype=np.uint8)
    out = viz.error_map(gt, pred)
    assert [tuple(p) for p in out[0]] == [viz.CORRECT_COLOR, viz.WRONG_COLOR, (0, 0, 0)]
    allowed = load_mapping("camvid__cityscapes").allowed
    gt_c = np.array([[8, 8, 8, 5]], dtype=np.uint8)  # Car, Car, Car, Tree
    pred_s = np.array([[13, 14, 0, 9]], dtype=np.uint8)  # car, truck, road, terrain
    out = viz.error_map(gt_c, pred_s, allowed)
    assert [tuple(p) for p in out[0]] == [
        viz.CORRECT_COLOR,
        viz.CORRECT_COLOR,
        viz.WRONG_COLOR,
        viz.CORRECT_COLOR,
    ]


def test_grid_layout_scales_and_places_panels():
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    b = np.full((5, 5), 7, dtype=np.uint8)  # grey, half height: scaled to 10x10
    g = viz.grid([a, b], pad=2)
    assert g.shape == (10, 20 + 2 + 20, 3)
    assert (g[:, :20] == 0).all() and (g[:, 22:32] == 7).all() and (g[:, 32:] == 255).all()
    titled = viz.grid([a, a, a], titles=["x", "y", "z"], cols=2, pad=3, title_height=12)
    assert titled.shape == (2 * 22 + 3, 2 * 20 + 3, 3)
    assert (titled[:12, :20] < 255).any()  # some text was drawn
    with pytest.raises(ValueError):
        viz.grid([a], titles=["x", "y"])


def test_comparison_has_image_gt_preds_and_errors():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    gt = rng.integers(0, 11, (12, 16), dtype=np.uint8)
    out = viz.comparison(image, gt, [gt, gt], CAMVID, names=["a", "b"])
    assert out.shape == (12 + 24, 5 * 16 + 4 * 4, 3)
    assert (out[24:, :16] == image).all()
    assert (out[24:, 20:36] == viz.colorize(gt, CAMVID)).all()
    assert (out[24:, 4 * 20 : 4 * 20 + 16] == np.array(viz.CORRECT_COLOR, dtype=np.uint8)).all()


def test_legend_draws_every_swatch():
    leg = viz.legend(CAMVID, cols=2)
    assert leg.shape == (6 * 22, 2 * 220, 3)
    colours = {tuple(c) for c in leg.reshape(-1, 3)}
    assert set(CAMVID.colors) <= colours
    few = viz.legend(CITYSCAPES, classes=[13, 14])
    assert few.shape[0] == 2 * 22 and CITYSCAPES.colors[14] in {tuple(c) for c in few.reshape(-1, 3)}


def test_iou_bar_chart_writes_png(tmp_path):
    ev = Evaluator(CAMVID)
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 10, (40, 40), dtype=np.uint8)  # class 10 absent: drawn as n/a
    pred = np.where(rng.random(gt.shape) < 0.3, rng.integers(0, 10, gt.shape), gt).astype(np.uint8)
    ev.update(gt, pred)
    path = tmp_path / "sub" / "iou.png"
    rgb = viz.iou_bar_chart(ev.result(), path, title="test")
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # no temp files left
    disk = read_image(path)
    assert disk.shape == rgb.shape and disk.shape[2] == 3 and disk.shape[1] >= 600
    assert (disk == rgb).all()
    # the bars use the taxonomy's colours
    colours = {tuple(c) for c in disk.reshape(-1, 3)}
    assert CAMVID.colors[3] in colours


def test_save_round_trip(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    viz.save(tmp_path / "x.png", rgb)
    assert (read_image(tmp_path / "x.png") == rgb).all()


def test_fit_height_keeps_aspect_and_label_values():
    ids = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    big = viz.fit_height(ids, 6)
    assert big.shape == (6, 6) and set(np.unique(big)) == {0, 1, 2, 3}  # nearest: no blended ids
    photo = np.zeros((100, 300, 3), np.uint8)
    photo[:, 150:] = 200
    small = viz.fit_height(photo, 10, smooth=True)
    assert small.shape == (10, 30, 3) and small[0, 14, 0] <= small[0, 15, 0]


def test_grouped_bar_chart_draws_one_colour_per_series():
    series = {"T": {"a": 0.5, "b": 0.2}, "S_P": {"a": 0.9, "b": None}}
    rgb = viz.grouped_bar_chart(series, ["a", "b"], title="t", colors={"T": "#ff0000", "S_P": "#0000ff"})
    assert rgb.ndim == 3 and rgb.dtype == np.uint8
    colours = {tuple(c) for c in rgb.reshape(-1, 3)}
    assert (255, 0, 0) in colours and (0, 0, 255) in colours
    red = np.all(rgb == (255, 0, 0), axis=-1).sum()
    blue = np.all(rgb == (0, 0, 255), axis=-1).sum()
    assert blue > red  # S_P's one 90 % bar covers more than T's 50 % + 20 % bars minus the legend swatch


def test_grouped_bar_chart_draws_error_bars_where_given():
    series = {"T": {"a": 0.5, "b": 0.2}, "S_P": {"a": 0.5, "b": None}}
    plain = viz.grouped_bar_chart(series, ["a", "b"])
    bars = viz.grouped_bar_chart(series, ["a", "b"], errors={"S_P": {"a": 0.2, "b": None}})
    assert plain.shape == bars.shape
    changed = np.argwhere(np.any(plain != bars, axis=-1))
    assert len(changed) > 40  # a 40-point bar with caps: 30 % to 70 %, T and the missing b have none
    rows, cols = changed[:, 0], changed[:, 1]
    assert rows.max() - rows.min() > 0.25 * plain.shape[0] and cols.max() - cols.min() < 0.1 * plain.shape[1]
