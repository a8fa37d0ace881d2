"""Pictures of labels and scores: colour label maps, overlays, side-by-side grids, legends, IoU charts.

Everything returns ``uint8`` RGB arrays (``[H, W, 3]``) so callers can compose them; :func:`save`
writes one atomically. Text is drawn with OpenCV (no font files); charts use matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segunify.io import atomic_write_bytes, write_png
from segunify.taxonomy import IGNORE, Taxonomy

IGNORE_COLOR = (0, 0, 0)
CORRECT_COLOR = (0, 170, 0)
WRONG_COLOR = (220, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def colorize(
    ids: np.ndarray, taxonomy: Taxonomy, ignore_color: tuple[int, int, int] = IGNORE_COLOR
) -> np.ndarray:
    """Train ids ``[H, W]`` -> RGB with the taxonomy's palette; ignore (and ids >= C) get ``ignore_color``."""
    palette = taxonomy.palette().copy()
    palette[taxonomy.num_classes :] = ignore_color
    return palette[np.asarray(ids, dtype=np.uint8)]


def blend(image: np.ndarray, color: np.ndarray, alpha: float, where: np.ndarray | None = None) -> np.ndarray:
    """``image`` blended with the colour picture ``color`` (``alpha`` = colour weight), rounded half up;
    only at ``where`` (``[H, W]`` bool) when given, the image elsewhere."""
    out = image.astype(np.float32)
    mixed = (1 - alpha) * out + alpha * color.astype(np.float32)
    out = mixed if where is None else np.where(where[..., None], mixed, out)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, ids: np.ndarray, taxonomy: Taxonomy, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour label onto the image (``alpha`` = label weight); ignore pixels keep the image."""
    if image.shape[:2] != ids.shape:
        raise ValueError(f"image {image.shape[:2]} and label {ids.shape} differ in size")
    return blend(image, colorize(ids, taxonomy), alpha, ids < taxonomy.num_classes)


def error_map(gt: np.ndarray, pred: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Green where the prediction is right, red where wrong, black where the GT is ignore.

    With ``allowed`` (``[K, C]`` from a mapping), a source-taxonomy prediction is right when it is in
    the GT class's allowed set (the cross-taxonomy rule of :mod:`segunify.metrics`).
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in size")
    if allowed is None:
        valid, right = gt != IGNORE, gt == pred
    else:
        k, c = allowed.shape
        table = np.zeros((256, 256), dtype=bool)
        table[:k, :c] = allowed
        valid, right = gt < k, table[gt, pred]
    out = np.zeros(gt.shape + (3,), dtype=np.uint8)
    out[valid & right] = CORRECT_COLOR
    out[valid & ~right] = WRONG_COLOR
    return out


def fit_height(panel: np.ndarray, height: int, smooth: bool = False) -> np.ndarray:
    """``panel`` scaled to ``height`` rows, aspect ratio kept; nearest neighbour (labels stay crisp) unless
    ``smooth`` (photos: area averaging when shrinking)."""
    if panel.shape[0] == height:
        return panel
    width = max(1, round(panel.shape[1] * height / panel.shape[0]))
    mode = cv2.INTER_NEAREST
    if smooth:
        mode = cv2.INTER_AREA if height < panel.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(panel, (width, height), interpolation=mode)


def _rgb(panel: np.ndarray) -> np.ndarray:
    return np.repeat(panel[..., None], 3, axis=2) if panel.ndim == 2 else panel


def _text_strip(text: str, width: int, height: int) -> np.ndarray:
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    scale = height / 40
    thickness = max(1, round(scale * 1.5))
    (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    while tw > width - 4 and len(text) > 4:  # shorten what does not fit
        text = text[:-4] + "..."
        (tw, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    cv2.putText(strip, text, (2, int(height * 0.72)), _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return strip


def grid(
    panels: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    cols: int | None = None,
    pad: int = 4,
    title_height: int = 24,
) -> np.ndarray:
    """Panels side by side (``cols`` per row, default all in one row), each scaled to the first panel's
    height (nearest neighbour, so labels stay crisp), with an optional title above each."""
    if not panels:
        raise ValueError("no panels")
    if titles is not None and len(titles) != len(panels):
        raise ValueError(f"{len(titles)} titles for {len(panels)} panels")
    height = panels[0].shape[0]
    fitted = [_rgb(fit_height(p, height)) for p in panels]
    if titles is not None:
        fitted = [
            np.vstack([_text_strip(t, p.shape[1], title_height), p])
            for t, p in zip(titles, fitted, strict=True)
        ]
    cols = cols or len(fitted)
    rows = [fitted[i : i + cols] for i in range(0, len(fitted), cols)]
    cell_w = max(p.shape[1] for p in fitted)
    cell_h = fitted[0].shape[0]
    out = np.full(
        (len(rows) * cell_h + (len(rows) - 1) * pad, cols * cell_w + (cols - 1) * pad, 3), 255, dtype=np.uint8
    )
    for r, row in enumerate(rows):
        for c, p in enumerate(row):
            y, x = r * (cell_h + pad), c * (cell_w + pad)
            out[y : y + p.shape[0], x : x + p.shape[1]] = p
    return out


def comparison(
    image: np.ndarray,
    gt: np.ndarray,
    preds: Sequence[np.ndarray],
    gt_taxonomy: Taxonomy,
    pred_taxonomy: Taxonomy | None = None,
    names: Sequence[str] | None = None,
    allowed: np.ndarray | None = None,
    errors: bool = True,
) -> np.ndarray:
    """image | GT | prediction(s) [| error map of the first prediction], in one row with titles.

    Predictions are in ``pred_taxonomy`` (default: the GT's); pass ``allowed`` from the mapping when
    they differ so the error map uses the allowed-set rule.
    """
    pred_taxonomy = pred_taxonomy or gt_taxonomy
    names = list(names) if names is not None else [f"prediction {i + 1}" for i in range(len(preds))]
    if len(names) != len(preds):
        raise ValueError(f"{len(names)} names for {len(preds)} predictions")
    panels = [image, colorize(gt, gt_taxonomy)] + [colorize(p, pred_taxonomy) for p in preds]
    titles = ["image", f"ground truth ({gt_taxonomy.name})"] + [f"{n} ({pred_taxonomy.name})" for n in names]
    if errors and preds:
        panels.append(error_map(gt, preds[0], allowed))
        titles.append(f"errors of {names[0]}")
    return grid(panels, titles)


def legend(
    taxonomy: Taxonomy,
    classes: Sequence[int] | None = None,
    cols: int = 1,
    row_height: int = 22,
    width: int = 220,
) -> np.ndarray:
    """A colour swatch and the name of each class (all, or the train ids in ``classes``)."""
    ids = list(range(taxonomy.num_classes)) if classes is None else list(classes)
    rows = -(-len(ids) // cols)
    out = np.full((max(rows, 1) * row_height, cols * width, 3), 255, dtype=np.uint8)
    sw = row_height - 6
    for n, i in enumerate(ids):
        r, c = n % rows, n // rows
        y, x = r * row_height + 3, c * width + 3
        out[y : y + sw, x : x + sw] = taxonomy.colors[i]
        cv2.rectangle(out, (x, y), (x + sw - 1, y + sw - 1), (0, 0, 0), 1)
        cv2.putText(
            out,
            f"{i} {taxonomy.classes[i]}",
            (x + sw + 6, y + sw - 3),
            _FONT,
            row_height / 50,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out


def iou_bar_chart(
    result, path: str | Path | None = None, title: str | None = None, dpi: int = 100
) -> np.ndarray:
    """Per-class IoU bars of an evaluation result (:class:`segunify.evaluation.EvalResult`), in the
    taxonomy's colours when it is a shipped one, with the mIoU as a line; absent classes are marked
    ``n/a``. Returns the RGB picture and writes it as PNG to ``path`` (atomically) when given."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg: no pyplot, no display

    classes = result.classes
    names = [c.name for c in classes]
    metric = "IoU" if result.miou is not None else "allowed accuracy"
    values = [c.iou if metric == "IoU" else c.acc for c in classes]
    try:
        from segunify.taxonomy import load_taxonomy

        tax = load_taxonomy(result.taxonomy)
        colors = [np.array(tax.colors[tax.index(n)]) / 255 for n in names]
    except Exception:  # a taxonomy file that moved: plain bars are fine
        colors = ["tab:blue"] * len(names)
    fig = Figure(figsize=(max(6, 0.45 * len(names) + 1.5), 4), dpi=dpi)
    ax = fig.add_subplot()
    xs = np.arange(len(names))
    heights = [100 * v if v is not None else 0 for v in values]
    ax.bar(xs, heights, color=colors, edgecolor="black", linewidth=0.5)
    for x, v in zip(xs, values, strict=True):
        ax.text(
            x,
            (100 * v if v is not None else 0) + 1,
            "n/a" if v is None else f"{100 * v:.0f}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    mean = result.miou if metric == "IoU" else result.mean_acc
    if mean is not None:
        ax.axhline(100 * mean, color="black", linestyle="--", linewidth=1)
        ax.text(
            len(names) - 0.5, 100 * mean + 1, f"mean {100 * mean:.1f}", ha="right", va="bottom", fontsize=8
        )
    ax.set_xticks(xs, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"{metric} %")
    ax.set_title(title or f"{result.dataset or result.taxonomy} {result.split or ''}".strip(), fontsize=10)
    fig.tight_layout()
    data, rgb = _png_to_rgb(fig)
    if path is not None:
        atomic_write_bytes(path, data)
    return rgb


def _png_to_rgb(fig) -> tuple[bytes, np.ndarray]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return data, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def grouped_bar_chart(
    series: dict[str, dict[str, float | None]],
    classes: Sequence[str],
    title: str = "",
    colors: dict[str, str] | None = None,
    ylabel: str = "IoU %",
    dpi: int = 100,
    errors: dict[str, dict[str, float | None]] | None = None,
) -> np.ndarray:
    """One group of bars per class, one bar per series (e.g. per model), values as fractions shown in
    percent; a missing value draws no bar. ``errors[series][class]``: a +- error bar on that bar (e.g. the
    std over seeds). Returns the RGB picture (legend beside the axes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.55 * len(classes) * max(len(series), 1) ** 0.5 + 2.5), 3.8), dpi=dpi)
    ax = fig.add_subplot()
    xs = np.arange(len(classes))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        heights = [100 * v if v is not None else np.nan for v in (values.get(c) for c in classes)]
        offset = (i - (len(series) - 1) / 2) * width
        spread = (errors or {}).get(name)
        yerr = [100 * spread[c] if spread.get(c) is not None else np.nan for c in classes] if spread else None
        ax.bar(xs + offset, heights, width, label=name, color=(colors or {}).get(name), yerr=yerr, capsize=2)
    ax.set_xticks(xs, list(classes), rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png_to_rgb(fig)[1]


def save(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB picture as PNG, atomically."""
    write_png(path, rgb)
