"""The demo's report: ``results.json`` (every figure, the settings, checkpoint hashes, timings) and a
self-contained ``index.html`` with tables, a per-class IoU chart and a picture grid beside it.

The builder is pure presentation: it takes the results dict the demo assembled (see
:func:`segunify.demo.run_demo`) plus, optionally, the arrays of the picture grid, and renders them. Figures
in ``results`` are fractions (0..1); the page shows percentages. Everything is written atomically, and
the HTML references its PNGs by relative name so the folder can be moved or committed as is.

Results schema (keys the page reads; missing sections are skipped, so a partial run still renders)::

    run, created, budget                 strings
    settings                             free-form dict (shown as a table)
    models.{T,S_P,S_R}                   {"checkpoint", "sha256"}
    camvid_val.{T,S_P,S_R}               {"miou", "pixel_acc", "mean_acc", "iou": {class: v}, "pred_share_source"}
    kitti.{T,S_P,S_R}                    the same in Cityscapes' 19 classes
    collapse                             {"classes": [...], "shares": {model: {class: share of CamVid val pixels}}}
    pseudo_labels.{P,R}                  {"images", "pixels", "ignored_share", "changed_share", "per_class_changed"}
    coarse_prior                         {"groups", "shared_classes", "with_priors", "without_priors"}
    goals                                [{"goal", "value", "target", "met"}]
    timings                              {stage: seconds}
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes, write_png
from segunify.jsonio import read_json_object, to_jsonable
from segunify.labels import colorize
from segunify.mapping import Mapping
from segunify.taxonomy import IGNORE, Taxonomy

MODELS = ("T", "S_P", "S_R")
MODEL_LABELS = {
    "T": "T (teacher, Cityscapes weights)",
    "S_P": "S_P (student, pseudo-labels with priors)",
    "S_R": "S_R (student, plain pseudo-labels)",
}
MODEL_COLORS = {"T": "#7f7f7f", "S_P": "#1f77b4", "S_R": "#ff7f0e"}
COLLAPSE_CLASSES = ("wall", "terrain", "truck", "bus", "train", "motorcycle")
GRID_COLUMNS = ("image", "GT", "T", "P", "S_P")
GRID_TILE = (180, 240)  # (H, W) of one picture in the grid: half of CamVid's 360x480


def _pct(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * float(v):.{digits}f}"


def _delta(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{100 * float(v):+.{digits}f}"


def _esc(v) -> str:
    return html.escape(str(v))


def miou_over(iou: dict[str, float | None], classes: Sequence[str]) -> float | None:
    """Mean IoU over the named classes that have a value (absent classes are left out, as in mIoU)."""
    vals = [iou[c] for c in classes if iou.get(c) is not None]
    return float(np.mean(vals)) if vals else None


def shared_group_classes(groups: dict[str, list[str]]) -> list[str]:
    """Classes whose coarse group holds at least one other class (singleton groups are trivially right
    under coarse priors and would inflate the mean)."""
    return [c for members in groups.values() if len(members) > 1 for c in members]


def coarse_groups(fine: Taxonomy, coarse: Taxonomy) -> dict[str, list[str]]:
    """Coarse group -> fine class names, through the raw ids both taxonomies share (CamVid's 0..11)."""
    fine_lut, coarse_lut = fine.id_lut(256), coarse.id_lut(256)
    groups: dict[str, list[str]] = {name: [] for name in coarse.classes}
    for raw in fine.known_ids():
        f, c = int(fine_lut[raw]), int(coarse_lut[raw])
        if f != IGNORE and c != IGNORE and fine.classes[f] not in groups[coarse.classes[c]]:
            groups[coarse.classes[c]].append(fine.classes[f])
    return groups


def evaluate_goals(results: dict) -> list[dict]:
    """The issue's goals, measured: S_P vs T and vs S_R on CamVid val, the coarse-prior gain on shared
    groups. Targets come from ``results["settings"]["goals"]`` (margins as fractions)."""
    targets = results.get("settings", {}).get("goals", {})
    cv = results.get("camvid_val", {})
    out = []

    def add(goal: str, value, target) -> None:
        if value is not None and target is not None:
            out.append(
                {"goal": goal, "value": float(value), "target": float(target), "met": bool(value >= target)}
            )

    def miou(m: str):
        return (cv.get(m) or {}).get("miou")

    if miou("S_P") is not None and miou("T") is not None:
        add("S_P - T, mIoU-11 on CamVid val", miou("S_P") - miou("T"), targets.get("sp_minus_t"))
    if miou("S_P") is not None and miou("S_R") is not None:
        add("S_P - S_R, mIoU-11 on CamVid val", miou("S_P") - miou("S_R"), targets.get("sp_minus_sr"))
    cp = results.get("coarse_prior") or {}
    w, wo = (cp.get("with_priors") or {}), (cp.get("without_priors") or {})
    if w.get("miou_shared") is not None and wo.get("miou_shared") is not None:
        add(
            "coarse priors - none, mIoU over classes sharing a coarse group",
            w["miou_shared"] - wo["miou_shared"],
            targets.get("coarse_shared_gain"),
        )
    return out


# ---------------------------------------------------------------------------------------------- pictures


def iou_chart(camvid_val: dict, classes: Sequence[str]) -> bytes:
    """Grouped bar chart of per-class IoU (T vs S_P vs S_R) as PNG bytes (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    models = [m for m in MODELS if m in camvid_val]
    fig = Figure(figsize=(11, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(classes) + 1)
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        iou = camvid_val[m].get("iou", {})
        vals = [100 * (iou.get(c) or 0.0) for c in classes] + [100 * (camvid_val[m].get("miou") or 0.0)]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, label=m, color=MODEL_COLORS.get(m))
    ax.set_xticks(x, [*classes, "mIoU"], rotation=30, ha="right")
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("CamVid val, 11 classes (predictions mapped from Cityscapes' 19)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _tile(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = GRID_TILE
    interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_NEAREST
    return cv2.resize(rgb, (w, h), interpolation=interp)


def gt_to_source_colors(gt: np.ndarray, mapping: Mapping) -> np.ndarray:
    """Extra-taxonomy GT coloured with the source palette: each class takes the colour of the first
    source class it allows (CamVid Tree -> vegetation, Car -> car); void and unmapped stay black."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for k, allowed in enumerate(mapping.allowed_sets):
        if allowed:
            lut[k] = allowed[0]
    return colorize(lut[gt], mapping.source)


def picture_grid(rows: Sequence[dict], mapping: Mapping) -> np.ndarray:
    """RGB grid, one row per image: image | GT | T | P | S_P (Cityscapes palette, 4 px gaps).

    Each row holds ``image`` (RGB uint8), ``gt`` (extra-taxonomy train ids) and ``T``, ``P``, ``S_P``
    (source-taxonomy train ids, 255 ignore = black); a missing entry leaves its tile grey."""
    h, w = GRID_TILE
    gap = 4
    out = np.full((len(rows) * (h + gap) - gap, len(GRID_COLUMNS) * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        tiles = [
            row.get("image"),
            gt_to_source_colors(row["gt"], mapping) if row.get("gt") is not None else None,
            *(
                colorize(row[k], mapping.source) if row.get(k) is not None else None
                for k in ("T", "P", "S_P")
            ),
        ]
        for c, tile in enumerate(tiles):
            y, x = r * (h + gap), c * (w + gap)
            out[y : y + h, x : x + w] = _tile(tile) if tile is not None else 160
    return out


# ---------------------------------------------------------------------------------------------- HTML


def _table(head: Sequence[str], rows: Sequence[Sequence], cls: str = "") -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _td(cell) -> str:
    """Numbers right-aligned (they line up by digit), words and paths left-aligned."""
    text = re.sub(r"<[^>]+>", "", str(cell)).strip()
    numeric = bool(re.fullmatch(r"[-+]?[\d.,]+|-|&ge; [-+]?[\d.]+", text))
    return f"<td>{cell}</td>" if numeric else f'<td class="l">{cell}</td>'


def _headline(results: dict) -> str:
    cv, kt = results.get("camvid_val", {}), results.get("kitti", {})
    rows = []
    for m in MODELS:
        if m not in cv and m not in kt:
            continue
        a, b = cv.get(m, {}), kt.get(m, {})
        rows.append(
            [
                _esc(MODEL_LABELS[m]),
                f"<b>{_pct(a.get('miou'))}</b>",
                _pct(a.get("pixel_acc")),
                _pct(a.get("mean_acc")),
                _pct(b.get("miou")),
                _pct(b.get("pixel_acc")),
            ]
        )
    return _table(
        [
            "model",
            "CamVid val mIoU-11 %",
            "pixel acc %",
            "mean acc %",
            "KITTI mIoU-19 %",
            "KITTI pixel acc %",
        ],
        rows,
    )


def _goals(results: dict) -> str:
    goals = results.get("goals") or []
    if not goals:
        return "<p>No goal could be measured in this run.</p>"
    rows = [
        [
            _esc(g["goal"]),
            _delta(g["value"]),
            f"&ge; {_delta(g['target'])}",
            '<span class="ok">met</span>'
            if g["met"]
            else f'<span class="miss">missed by {100 * (g["target"] - g["value"]):.1f}</span>',
        ]
        for g in goals
    ]
    return _table(["goal", "measured (points)", "target", ""], rows)


def _per_class(block: dict, classes: Sequence[str]) -> str:
    models = [m for m in MODELS if m in block]
    rows = []
    for c in classes:
        vals = [block[m].get("iou", {}).get(c) for m in models]
        best = max((v for v in vals if v is not None), default=None)
        cells = [f"<b>{_pct(v)}</b>" if v is not None and v == best else _pct(v) for v in vals]
        rows.append([_esc(c), *cells])
    rows.append(["<b>mean</b>", *[f"<b>{_pct(block[m].get('miou'))}</b>" for m in models]])
    return _table(["class", *[f"{m} IoU %" for m in models]], rows)


def _collapse(results: dict) -> str:
    col = results.get("collapse") or {}
    shares = col.get("shares") or {}
    if not shares:
        return ""
    classes = col.get("classes") or list(COLLAPSE_CLASSES)
    models = [m for m in MODELS if m in shares]
    pl = {k: (v or {}).get("class_share") or {} for k, v in (results.get("pseudo_labels") or {}).items()}
    labels = [k for k in ("P", "R") if pl.get(k)]
    rows = [
        [_esc(c), *[_pct(shares[m].get(c), 2) for m in models], *[_pct(pl[k].get(c), 2) for k in labels]]
        for c in classes
    ]
    rows.append(
        [
            "<b>together</b>",
            *[_pct(sum(shares[m].get(c) or 0 for c in classes), 2) for m in models],
            *[_pct(sum(pl[k].get(c) or 0 for c in classes), 2) for k in labels],
        ]
    )
    head = [
        "Cityscapes class",
        *[f"{m} predictions, % of CamVid val" for m in models],
        *[f"{k} labels, % of CamVid train" for k in labels],
    ]
    return _table(head, rows)


def _pseudo(results: dict) -> str:
    pl = results.get("pseudo_labels") or {}
    if not pl:
        return ""
    parts = []
    totals = []
    for key, name in (("P", "P (with priors)"), ("R", "R (no priors)")):
        s = pl.get(key)
        if s:
            totals.append(
                [
                    name,
                    str(s.get("images", "-")),
                    _pct(s.get("ignored_share"), 2),
                    _pct(s.get("changed_share"), 2),
                    "-" if s.get("mean_confidence") is None else f"{s['mean_confidence']:.3f}",
                ]
            )
    if totals:
        parts.append(
            _table(["pseudo-labels", "images", "ignored %", "changed by prior %", "mean confidence"], totals)
        )
    per_class = (pl.get("P") or {}).get("per_class_changed") or {}
    if per_class:
        rows = [[_esc(c), _pct(v, 2)] for c, v in per_class.items()]
        parts.append(_table(["CamVid class (GT)", "pixels changed by the prior %"], rows))
    return "\n".join(parts)


def _coarse(results: dict) -> str:
    cp = results.get("coarse_prior") or {}
    w, wo = cp.get("with_priors") or {}, cp.get("without_priors") or {}
    if not w or not wo:
        return ""
    groups = cp.get("groups") or {}
    shared = set(cp.get("shared_classes") or [])
    summary = _table(
        [
            "T pseudo-labels on CamVid val",
            "mIoU-11 all classes %",
            "mIoU shared-group classes %",
            "pixel acc %",
        ],
        [
            ["no priors", _pct(wo.get("miou")), _pct(wo.get("miou_shared")), _pct(wo.get("pixel_acc"))],
            ["coarse priors", _pct(w.get("miou")), _pct(w.get("miou_shared")), _pct(w.get("pixel_acc"))],
            [
                "<b>gain</b>",
                _delta(_diff(w.get("miou"), wo.get("miou"))),
                _delta(_diff(w.get("miou_shared"), wo.get("miou_shared"))),
                _delta(_diff(w.get("pixel_acc"), wo.get("pixel_acc"))),
            ],
        ],
    )
    rows = []
    for g, members in groups.items():
        for c in members:
            a, b = wo.get("iou", {}).get(c), w.get("iou", {}).get(c)
            rows.append(
                [
                    _esc(g),
                    _esc(c) + ("" if c in shared else " (singleton)"),
                    _pct(a),
                    _pct(b),
                    _delta(_diff(b, a)),
                ]
            )
    detail = _table(["coarse group", "CamVid class", "no priors IoU %", "coarse priors IoU %", "gain"], rows)
    return summary + detail


def _diff(a, b):
    return None if a is None or b is None else a - b


def _kitti(results: dict) -> str:
    kt = results.get("kitti") or {}
    if not kt:
        return ""
    models = [m for m in MODELS if m in kt]
    classes = list(next(iter(kt.values())).get("iou", {}).keys())
    rows = [[_esc(c), *[_pct(kt[m].get("iou", {}).get(c)) for m in models]] for c in classes]
    rows.append(["<b>mean</b>", *[f"<b>{_pct(kt[m].get('miou'))}</b>" for m in models]])
    return _table(["Cityscapes class", *[f"{m} IoU %" for m in models]], rows, cls="compact")


def _kv(d: dict) -> str:
    rows = [
        [_esc(k), f"<code>{_esc(json.dumps(v) if not isinstance(v, str) else v)}</code>"]
        for k, v in d.items()
    ]
    return _table(["key", "value"], rows, cls="compact")


def _legend(taxonomy: Taxonomy) -> str:
    items = "".join(
        f'<span class="sw"><i style="background:rgb{tuple(int(v) for v in col)}"></i>{_esc(name)}</span>'
        for name, col in zip(taxonomy.classes, taxonomy.palette()[: taxonomy.num_classes], strict=True)
    )
    return f'<div class="legend">{items}</div>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;
color:#222;line-height:1.4;padding:0 16px}
h1{margin-bottom:4px} h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0 16px} th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child,td.l{text-align:left}
table.compact td,table.compact th{padding:2px 8px;font-size:90%}
.ok{color:#0a7d22;font-weight:600} .miss{color:#b00020;font-weight:600}
.muted{color:#666;font-size:90%} img{max-width:100%;border:1px solid #ddd}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:88%;margin:6px 0}
.sw i{display:inline-block;width:14px;height:14px;margin-right:4px;vertical-align:-2px;border:1px solid #999}
.cols{display:grid;grid-template-columns:repeat(5,1fr);text-align:center;font-weight:600;max-width:1216px}
code{font-size:85%}
"""


def render_html(
    results: dict, iou_png: str | None, grid_png: str | None, grid_ids: Sequence[str] = ()
) -> str:
    """The page as a string; PNGs are referenced by their file names in the same folder."""
    from segunify.taxonomy import load_taxonomy

    cv = results.get("camvid_val") or {}
    classes = list(next(iter(cv.values())).get("iou", {}).keys()) if cv else []
    s = results.get("settings", {})
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>segunify demo: {_esc(results.get('run', ''))}</title><style>{CSS}</style></head><body>",
        "<h1>Label-space unification by distillation with ground-truth priors</h1>",
        f"<p class='muted'>run <b>{_esc(results.get('run', ''))}</b>, budget <b>{_esc(results.get('budget', ''))}</b>,"
        f" created {_esc(results.get('created', ''))}. A Cityscapes teacher (T) pseudo-labels CamVid train"
        " within the limits of CamVid's own ground truth (P) or without them (R); students S_P and S_R"
        " (same architecture, initialisation and budget) learn from those labels in Cityscapes' 19 classes."
        " CamVid val is used only for the figures below, never for training or for choosing settings.</p>",
        "<h2>Results</h2>",
        _headline(results),
        "<h2>Goals</h2>",
        _goals(results),
    ]
    if cv:
        out += ["<h2>Per-class IoU on CamVid val (11 classes, cross-taxonomy)</h2>"]
        if iou_png:
            out.append(f"<img src='{_esc(iou_png)}' alt='per-class IoU chart'>")
        out.append(_per_class(cv, classes))
    if results.get("collapse"):
        out += [
            "<h2>Cityscapes classes CamVid lacks</h2>",
            "<p>Share of CamVid val pixels predicted as classes CamVid has no class of its own for. "
            "A student that forgot them would predict them nowhere.</p>",
            _collapse(results),
        ]
    if results.get("kitti"):
        out += [
            "<h2>KITTI sample, Cityscapes' 19 classes</h2>",
            f"<p class='muted'>{_esc(s.get('kitti_note', ''))}</p>",
            _kitti(results),
        ]
    if results.get("pseudo_labels"):
        out += ["<h2>Pseudo-label statistics (CamVid train)</h2>", _pseudo(results)]
    if results.get("coarse_prior"):
        out += [
            "<h2>Coarse-prior experiment</h2>",
            "<p>CamVid val ground truth collapsed to 7 coarse groups (taxonomy <code>camvid-coarse</code>, mapping"
            " <code>camvid-coarse__cityscapes</code>); the teacher's pseudo-labels with these coarse priors versus"
            " without, both scored against the fine CamVid ground truth. Singleton groups are trivially right "
            "under their prior, so the mean over classes that share a group is the honest figure.</p>",
            _coarse(results),
        ]
    if grid_png:
        cols = "".join(f"<div>{_esc(c)}</div>" for c in GRID_COLUMNS)
        out += [
            "<h2>CamVid val examples</h2>",
            "<p class='muted'>GT is drawn with the Cityscapes colour of the first class each CamVid class "
            "allows (Tree &rarr; vegetation, Bicyclist &rarr; rider); black = void / ignore. P = the teacher's "
            f"pseudo-label with priors. Images: {_esc(', '.join(grid_ids))}.</p>",
            f"<div class='cols'>{cols}</div>",
            f"<img src='{_esc(grid_png)}' alt='image, GT, T, P, S_P'>",
            _legend(load_taxonomy("cityscapes")),
        ]
    if results.get("timings"):
        t = results["timings"]
        rows = [[_esc(k), f"{v:.1f}"] for k, v in t.items()]
        rows.append(["<b>total</b>", f"<b>{sum(t.values()):.1f}</b>"])
        out += ["<h2>Stage timings</h2>", _table(["stage", "seconds"], rows, cls="compact")]
    if results.get("models"):
        rows = [
            [
                _esc(m),
                f"<code>{_esc(v.get('checkpoint', ''))}</code>",
                f"<code>{_esc(v.get('sha256', ''))}</code>",
            ]
            for m, v in results["models"].items()
        ]
        out += [
            "<h2>Checkpoints</h2>",
            _table(["model", "checkpoint", "weights sha256"], rows, cls="compact"),
        ]
    if s:
        out += ["<h2>Settings</h2>", _kv(s)]
    out.append("</body></html>\n")
    return "\n".join(out)


def build_report(
    results: dict,
    out_dir: str | Path,
    grid_rows: Sequence[dict] | None = None,
    mapping: Mapping | None = None,
) -> Path:
    """Write ``results.json``, ``iou.png``, ``grid.png`` (when rows are given) and ``index.html`` into
    ``out_dir``; returns the HTML path. ``mapping`` (extra -> source) colours the grid's GT column."""
    from segunify.mapping import load_mapping

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = dict(results)
    results.setdefault("created", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if "goals" not in results:
        results["goals"] = evaluate_goals(results)
    cv = results.get("camvid_val") or {}
    iou_name = grid_name = None
    if cv:
        classes = list(next(iter(cv.values())).get("iou", {}).keys())
        atomic_write_bytes(out / "iou.png", iou_chart(cv, classes))
        iou_name = "iou.png"
    grid_ids: list[str] = []
    if grid_rows:
        mapping = mapping or load_mapping("camvid__cityscapes")
        write_png(out / "grid.png", picture_grid(grid_rows, mapping))
        grid_name = "grid.png"
        grid_ids = [str(r.get("id", "")) for r in grid_rows]
        results.setdefault("grid", grid_ids)
    try:
        text = json.dumps(results, indent=2, allow_nan=False, default=to_jsonable)
    except ValueError as exc:
        raise SegunifyError(f"results hold a non-finite number ({exc})", out / "results.json") from None
    atomic_write_bytes(out / "results.json", (text + "\n").encode("utf-8"))
    page = out / "index.html"
    atomic_write_bytes(page, render_html(results, iou_name, grid_name, grid_ids).encode("utf-8"))
    return page


def load_results(path: str | Path) -> dict:
    return read_json_object(path, "results file")


__all__ = [
    "COLLAPSE_CLASSES",
    "build_report",
    "coarse_groups",
    "evaluate_goals",
    "gt_to_source_colors",
    "load_results",
    "miou_over",
    "picture_grid",
    "render_html",
    "shared_group_classes",
]
