"""The demo's results: every figure of a finished run gathered into one JSON-ready dict.

Schema (``results.json``; IoU and shares are fractions in [0, 1])::

    run, budget, description, created, config      strings
    datasets.<name>        {"dataset", "taxonomy", "split", "images", "mapping", "size",
                            "T" | "S_P" | "S_R": {"miou", "pixel_acc", "iou": {class: v},
                                                  "pred_share_source": {source class: share}}}
    table.<model>          {<dataset name>: mIoU, ..., "mean": mean over the datasets}
    collapse.<name>        {"classes": [source classes the dataset's GT cannot tell apart],
                            "shares": {model: {class: share of the dataset's pixels}}}
    pseudo_labels.<part>   {"P" | "R": {"images", "ignored_share", "changed_share", "mean_confidence",
                                        "changed_per_class": {extra class: share}}}
    sampling.<model>       {<part>: share of the training samples drawn from it}
    models.<model>         {"checkpoint", "sha256", "interpolation"? (WiSE-FT: alpha and both inputs)}
    goals                  [{"goal", "value", "target", "met", "unit": "points" | "ratio", "strict"?}]
    timings                {stage: seconds, a finished stage's from its first run}
    wall_seconds           this run's time;  stage_seconds: the sum of timings (every stage's time)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from segunify.apps.demo.config import DemoConfig, GoalsConfig
from segunify.apps.demo.plan import LABELS, MODELS, Layout
from segunify.jsonio import read_json_object


def score_block(result: dict) -> dict:
    """The figures of an evaluation result the report shows (void classes left out)."""
    void = set(result.get("void_classes") or [])
    block = {
        "miou": result.get("miou"),
        "pixel_acc": result.get("pixel_acc"),
        "iou": {c["name"]: c["iou"] for c in result["classes"] if c["name"] not in void},
    }
    if result.get("pred_share_source") is not None:
        block["pred_share_source"] = result["pred_share_source"]
    return block


def dataset_block(name: str, cfg: DemoConfig, lay: Layout) -> dict:
    spec = cfg.eval[name]
    runs = {m: read_json_object(lay.eval_json(name, m), "evaluation result") for m in MODELS}
    first = runs["T"]
    block = {
        "dataset": spec.dataset,
        "taxonomy": first["taxonomy"],
        "split": spec.split,
        "images": first["images"],
        "mapping": spec.mapping,
        "size": list(spec.size),
        "overlays": first.get("overlays", []),
        "note": spec.note,
    }
    return block | {m: score_block(r) for m, r in runs.items()}


def paper_table(datasets: dict) -> dict:
    """Rows T, S_P, S_R: each dataset's mIoU in its own taxonomy and their mean."""
    table = {}
    for m in MODELS:
        row = {name: d[m]["miou"] for name, d in datasets.items()}
        vals = [v for v in row.values() if v is not None]
        table[m] = row | {"mean": float(np.mean(vals)) if vals else None}
    return table


def lacked_classes(mapping_name: str) -> list[str]:
    """Source classes the extra taxonomy cannot tell apart: in an allowed set with other classes, or in
    none. A student trained on such labels only keeps them from the teacher's choices."""
    from segunify.mapping import load_mapping

    m = load_mapping(mapping_name)
    alone = {s[0] for s in m.allowed_sets if len(s) == 1}
    return [c for i, c in enumerate(m.source.classes) if i not in alone]


def collapse(cfg: DemoConfig, datasets: dict) -> dict:
    out = {}
    for name, spec in cfg.eval.items():
        if spec.mapping is None:
            continue
        classes = lacked_classes(spec.mapping)
        shares = {
            m: {c: datasets[name][m].get("pred_share_source", {}).get(c) for c in classes} for m in MODELS
        }
        out[name] = {"classes": classes, "shares": shares}
    return out


def pseudo_block(folder: Path) -> dict:
    from segunify.pseudo import load_summary

    s = load_summary(folder)
    return {
        "images": s.images,
        "ignored_share": s.ignored_share,
        "changed_share": s.changed_share,
        "mean_confidence": s.mean_confidence,
        "changed_per_class": {k: v.changed_share for k, v in s.extra_classes.items() if v.kind != "void"},
        "class_share": dict(s.class_share),
    }


def sampling(cfg: DemoConfig, lay: Layout) -> dict:
    """Share of training samples each part actually got (written by the trainer)."""
    out = {}
    for model in LABELS:
        shares = read_json_object(lay.student(model) / "sampling.json", "sampling record").get("parts", [])
        out[model] = {p.name: s.get("share") for p, s in zip(cfg.parts, shares, strict=False)}
    return out


def checkpoints(lay: Layout) -> dict:
    from segunify.models.checkpoint import read_meta

    out = {}
    for m in MODELS:
        meta = read_meta(lay.checkpoint(m))
        out[m] = {"checkpoint": str(lay.checkpoint(m)), "sha256": meta.get("weights_sha256")}
        out[m] |= {"interpolation": meta["interpolation"]} if "interpolation" in meta else {}
    return out


def goals(g: GoalsConfig, table: dict, datasets: dict, coll: dict, source: str | None) -> list[dict]:
    """The issue's goals, measured (margins as fractions; ``met`` when value >= target, or > for
    ``strict`` goals: S_P must beat T on every dataset)."""
    out: list[dict] = []

    def add(goal: str, value, target, strict: bool = False, unit: str = "points") -> None:
        if value is not None and target is not None:
            met = value > target if strict else value >= target - 1e-9  # 1e-9: float noise of a difference
            entry = {"goal": goal, "value": float(value), "target": float(target), "met": bool(met)}
            out.append(entry | {"unit": unit} | ({"strict": True} if strict else {}))

    sp, t, sr = table["S_P"], table["T"], table["S_R"]
    add("S_P - T, mean over datasets", _diff(sp["mean"], t["mean"]), g.sp_minus_t_mean)
    if g.sp_minus_t_each is not None:
        for name in datasets:
            add(f"S_P - T on {name}", _diff(sp[name], t[name]), g.sp_minus_t_each, strict=True)
    for name, target in g.sp_minus_t.items():
        add(f"S_P - T on {name}", _diff(sp.get(name), t.get(name)), target)
    add("S_P - S_R, mean over datasets", _diff(sp["mean"], sr["mean"]), g.sp_minus_sr_mean)
    for name, target in g.sp_minus_sr.items():
        add(f"S_P - S_R on {name}", _diff(sp.get(name), sr.get(name)), target)
    if source is not None:
        add(f"source retention: S_P - T on {source}", _diff(sp[source], t[source]), g.source_retention)
    if g.collapse_ratio is not None:
        add(
            "no collapse: lowest S_P / T share of a lacked class",
            lowest_ratio(coll, g.collapse_min_share),
            g.collapse_ratio,
            unit="ratio",
        )
    return out


def lowest_ratio(coll: dict, min_share: float) -> float | None:
    """Lowest S_P / T prediction share over the lacked classes T predicts on >= ``min_share``."""
    ratios = [
        (c["shares"]["S_P"].get(k) or 0.0) / t
        for c in coll.values()
        for k, t in c["shares"]["T"].items()
        if t is not None and t >= min_share
    ]
    return min(ratios) if ratios else None


def _diff(a, b):
    return None if a is None or b is None else a - b


def collect(cfg: DemoConfig, lay: Layout, config_name: str) -> dict:
    datasets = {name: dataset_block(name, cfg, lay) for name in cfg.eval}
    table = paper_table(datasets)
    coll = collapse(cfg, datasets)
    source = next((n for n, e in cfg.eval.items() if e.mapping is None), None)
    return {
        "run": cfg.run,
        "budget": cfg.budget,
        "description": cfg.description,
        "config": config_name,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "datasets": datasets,
        "table": table,
        "collapse": coll,
        "pseudo_labels": {
            p.name: {k: pseudo_block(lay.pseudo(p.name, k)) for k in ("P", "R")} for p in cfg.extra_parts
        },
        "sampling": sampling(cfg, lay),
        "models": checkpoints(lay),
        "goals": goals(cfg.goals, table, datasets, coll, source),
        "settings": cfg.model_dump(mode="json"),
    }


__all__ = ["collect", "collapse", "goals", "lacked_classes", "paper_table", "score_block"]
