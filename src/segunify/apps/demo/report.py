"""The demo's report: ``results.json`` plus ``index.html`` rendered from a Jinja2 template with its
stylesheet beside it, per-dataset IoU charts and overlay pictures (drawn by :mod:`segunify.viz`).

The page is presentation only: :func:`write_report` takes the results dict (see
:mod:`segunify.apps.demo.results`) and the pictures, renders the package's template and writes every
file atomically into one folder, referenced by relative name so the folder can be moved or published.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np

from segunify import viz
from segunify.apps.demo.params import EvaluateParams
from segunify.apps.demo.plan import MODELS, Layout
from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes, atomic_write_text
from segunify.jsonio import to_jsonable
from segunify.taxonomy import Taxonomy, load_taxonomy

PACKAGE = "segunify.apps.demo"
TEMPLATE = "report.html.j2"
STYLESHEET = "report.css"
MODEL_COLORS = {"T": "#7f7f7f", "S_P": "#1f77b4", "S_R": "#ff7f0e"}
TILE_HEIGHT = 160  # pixels of one overlay tile


def pct(value, digits: int = 1) -> str:
    """A fraction as a percentage (``0.639`` -> ``63.9``); ``-`` for a missing value."""
    return "-" if value is None else f"{100 * float(value):.{digits}f}"


def points(value, digits: int = 1) -> str:
    """A difference of fractions as signed points (``0.075`` -> ``+7.5``)."""
    return "-" if value is None else f"{100 * float(value):+.{digits}f}"


def palette(taxonomy: Taxonomy) -> list[dict]:
    """Class names with their colours, for the legend."""
    return [
        {"name": n, "rgb": "rgb({}, {}, {})".format(*c)}
        for n, c in zip(taxonomy.classes, taxonomy.colors, strict=False)
    ]


def iou_chart(block: dict) -> np.ndarray:
    classes = list(block["T"]["iou"])
    series = {m: block[m]["iou"] for m in MODELS}
    errors = {m: block[m]["iou_std"] for m in MODELS if "iou_std" in block[m]}  # several seeds: mean +- std
    title = (
        f"{block['dataset']} {block['split']}: per-class IoU in {block['taxonomy']} ({len(classes)} classes)"
    )
    title += f", mean ± std over {len(block['S_P']['seeds'])} seeds" if errors else ""
    return viz.grouped_bar_chart(series, classes, title=title, colors=MODEL_COLORS, errors=errors)


def overlay_picture(rows: list[dict], gt_taxonomy: Taxonomy, pred_taxonomy: Taxonomy, allowed) -> np.ndarray:
    """One row per frame: image | GT | T | S_P, each scaled to :data:`TILE_HEIGHT` rows."""
    pictures = []
    for row in rows:
        image = viz.fit_height(row["image"], TILE_HEIGHT, smooth=True)
        gt, t, sp = (viz.fit_height(row[k], TILE_HEIGHT) for k in ("gt", "T", "S_P"))
        names = ["T", "S_P"]
        pictures.append(
            viz.comparison(image, gt, [t, sp], gt_taxonomy, pred_taxonomy, names, allowed, errors=False)
        )
    return viz.grid(pictures, cols=1)


def overlay_rows(name: str, params: EvaluateParams, lay: Layout) -> list[dict]:
    """Image, GT and the T / S_P predictions of the overlay frames kept by the evaluation stage."""
    from segunify.datasets import create_dataset
    from segunify.evaluation import EvalResult
    from segunify.labels import read_label_raw

    dataset = create_dataset(params.dataset, params.root, **params.options)
    picks = set(EvalResult.read(lay.eval_json(name, "T")).overlays or [])
    rows = []
    for s in dataset.samples(params.split):
        if s.id in picks:
            image, gt = dataset.sample(s)
            preds = {m: read_label_raw(lay.overlay_dir(name, m) / s.rel) for m in ("T", "S_P")}
            rows.append({"id": s.id, "image": image, "gt": gt, **preds})
    return rows


def _template():
    from jinja2 import Environment, StrictUndefined

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=pct, points=points)
    text = (resources.files(PACKAGE) / "templates" / TEMPLATE).read_text(encoding="utf-8")
    return env.from_string(text)


def render_html(results: dict, pictures: Mapping[str, Mapping[str, str]], legends: Mapping[str, list]) -> str:
    """The page; ``pictures[dataset]`` names its ``chart`` / ``overlays`` files, ``legends[taxonomy]``
    lists its classes and colours."""
    best = {}
    for row in results["table"].values():
        for col, v in row.items():
            if v is not None and (best.get(col) is None or v > best[col]):
                best[col] = v
    context = {"r": results, "models": MODELS, "colors": MODEL_COLORS, "best": best}
    return _template().render(**context, pictures=pictures, legends=legends)


def write_results(results: dict, out: Path) -> None:
    try:
        text = json.dumps(results, indent=2, allow_nan=False, default=to_jsonable)
    except ValueError as exc:
        raise SegunifyError(f"results hold a non-finite number ({exc})", out / "results.json") from None
    atomic_write_text(out / "results.json", text + "\n")


def write_report(results: dict, out: str | Path, overlays: Mapping[str, np.ndarray] | None = None) -> Path:
    """``results.json``, ``report.css``, ``<dataset>-iou.png``, ``<dataset>-overlays.png`` and
    ``index.html`` in ``out``; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_results(results, out)
    pictures: dict[str, dict[str, str]] = {}
    legends = {"source": palette(load_taxonomy(results["settings"]["teacher"]["taxonomy"]))}
    for name, block in results["datasets"].items():
        pictures[name] = {"chart": f"{name}-iou.png"}
        viz.save(out / pictures[name]["chart"], iou_chart(block))
        if overlays and name in overlays:
            pictures[name]["overlays"] = f"{name}-overlays.png"
            viz.save(out / pictures[name]["overlays"], overlays[name])
        legends[block["taxonomy"]] = palette(load_taxonomy(block["taxonomy"]))
    css = (resources.files(PACKAGE) / "static" / STYLESHEET).read_bytes()
    atomic_write_bytes(out / STYLESHEET, css)
    page = out / "index.html"
    atomic_write_text(page, render_html(results, pictures, legends))
    return page


__all__ = ["overlay_picture", "overlay_rows", "pct", "points", "render_html", "write_report", "write_results"]
