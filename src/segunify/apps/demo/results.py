"""The demo's results: every figure of a finished run gathered into one JSON-ready dict.

Schema (``results.json``; IoU and shares are fractions in [0, 1])::

    run, budget, description, created, config      strings
    seeds                  [student seeds]: S_P and S_R were trained once per seed (``seeds`` in the config)
    datasets.<name>        {"dataset", "taxonomy", "split", "images", "mapping", "size",
                            "T" | "S_P" | "S_R": {"miou", "pixel_acc", "iou": {class: v},
                                                  "pred_share_source": {source class: share}}}
                           with several seeds S_P and S_R hold the mean over the seeds of each figure
                           (a class's IoU over the seeds where it is defined), the sample std (ddof=1)
                           beside it ("miou_std", "pixel_acc_std", "iou_std": {class: std}) and each
                           seed's own figures: "seeds": {"<seed>": {"miou", "pixel_acc", "iou", ...}}
    table.<model>          {<dataset name>: mIoU, ..., "mean": mean over the datasets}
    table_std.<model>      several seeds only, S_P and S_R: the sample std over the seeds of each cell
    per_seed.<model>       several seeds only: {"<seed>": that seed's row of the table}
    below_teacher          [{"dataset", "class", "T", "S_P", "diff"}]: classes whose (seed-averaged) S_P
                           IoU is more than 1 point below T's, over every dataset, the largest loss first
    collapse.<name>        {"classes": [source classes the dataset's GT cannot tell apart],
                            "shares": {model: {class: share of the dataset's pixels}}}
    pseudo_labels.<part>   {"P" | "R": {"images", "ignored_share", "changed_share", "mean_confidence",
                                        "changed_per_class": {extra class: share}}}
    sampling.<model>       {<part>: share of the first seed's training samples drawn from it}
    models.<model>         {"checkpoint", "sha256", "interpolation"? (WiSE-FT: alpha and both inputs)};
                           another seed's students as "S_P-seed<seed>", "S_R-seed<seed>"
    goals                  the claims checked, with the config's targets:
                           [{"goal", "value", "target", "met", "unit": "points" | "ratio" | "classes",
                             "strict"? (value > target), "at_most"? (value <= target)}]
    timings                {stage: seconds, a finished stage's from its first run}
    wall_seconds           this run's time;  stage_seconds: the sum of timings (every stage's time)
    machine                {"description", "cpus", "cpu", "gpu", "torch"}: where the wall time was measured
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from segunify.apps.demo.config import DemoConfig, GoalsConfig
from segunify.apps.demo.plan import LABELS, MODELS, Layout, students
from segunify.evaluation import EvalResult
from segunify.jsonio import read_json_object

BELOW_T = 0.01  # a class "below T": its S_P IoU more than 1 point below T's


def score_block(result: EvalResult) -> dict:
    """The figures of an evaluation result the report shows (void classes left out)."""
    block = {"miou": result.miou, "pixel_acc": result.pixel_acc, "iou": result.class_iou()}
    if result.pred_share_source is not None:
        block["pred_share_source"] = result.pred_share_source
    return block


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1) of the values that are not ``None``; the std is
    ``None`` for fewer than two values (one seed has no spread to show, not a spread of 0)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None


def seed_block(blocks: dict[str, dict]) -> dict:
    """One student's figures over its seeds (``blocks[seed]``: score blocks): each figure's mean with
    its std beside it and the seeds' own blocks under ``seeds``; one seed's block as it is."""
    if len(blocks) == 1:
        return next(iter(blocks.values()))
    runs = list(blocks.values())
    out: dict = {}
    for key in ("miou", "pixel_acc"):
        out[key], out[f"{key}_std"] = mean_std(b.get(key) for b in runs)
    iou = {c: mean_std(b["iou"].get(c) for b in runs) for c in runs[0]["iou"]}
    out |= {"iou": {c: v[0] for c, v in iou.items()}, "iou_std": {c: v[1] for c, v in iou.items()}}
    if "pred_share_source" in runs[0]:
        shares = runs[0]["pred_share_source"]
        out["pred_share_source"] = {
            c: mean_std(b["pred_share_source"].get(c) for b in runs)[0] for c in shares
        }
    return out | {"seeds": blocks}


def dataset_block(name: str, cfg: DemoConfig, lay: Layout) -> dict:
    spec = cfg.eval[name]
    trained = students(cfg)
    runs = {m: EvalResult.read(lay.eval_json(name, m)) for m in scored(cfg)}
    first = runs["T"]
    block = {
        "dataset": spec.dataset,
        "taxonomy": first.taxonomy,
        "split": spec.split,
        "images": first.images,
        "mapping": spec.mapping,
        "size": list(spec.size),
        "overlays": first.overlays or [],
        "note": spec.note,
    }
    block["T"] = score_block(runs["T"])
    for model in LABELS:
        seeds = {str(s.seed): score_block(runs[s.name]) for s in trained if s.model == model}
        block[model] = seed_block(seeds)
    return block


def scored(cfg: DemoConfig) -> list[str]:
    """The names of every model scored: T and each seed's students."""
    return ["T", *(s.name for s in students(cfg))]


def paper_table(datasets: dict, models: tuple[str, ...] = MODELS) -> dict:
    """Rows T, S_P, S_R: each dataset's mIoU in its own taxonomy and their mean."""
    table = {}
    for m in models:
        row = {name: d[m]["miou"] for name, d in datasets.items()}
        table[m] = row | {"mean": mean_std(row.values())[0]}
    return table


def seed_tables(datasets: dict) -> tuple[dict, dict]:
    """``per_seed`` (each seed's row of the table, per student) and ``table_std`` (the sample std of each
    cell over the seeds); both empty with one seed."""
    per_seed: dict = {}
    for m in LABELS:
        seeds = next(iter(datasets.values()))[m].get("seeds") or {}
        alone = {s: {n: {m: d[m]["seeds"][s]} for n, d in datasets.items()} for s in seeds}
        per_seed |= {m: {s: paper_table(v, (m,))[m] for s, v in alone.items()}} if seeds else {}
    std = {
        m: {col: mean_std(row[col] for row in rows.values())[1] for col in next(iter(rows.values()))}
        for m, rows in per_seed.items()
    }
    return per_seed, std


def below_teacher(datasets: dict, margin: float = BELOW_T) -> list[dict]:
    """The classes whose S_P IoU (the mean over the seeds) is more than ``margin`` below T's, over every
    dataset, the largest loss first."""
    rows = [
        {"dataset": name, "class": c, "T": t, "S_P": d["S_P"]["iou"].get(c), "diff": d["S_P"]["iou"][c] - t}
        for name, d in datasets.items()
        for c, t in d["T"]["iou"].items()
        if t is not None and d["S_P"]["iou"].get(c) is not None
    ]
    below = [r for r in rows if r["diff"] < -margin - 1e-9]  # 1e-9: float noise of a difference
    return sorted(below, key=lambda r: r["diff"])


def lacked_classes(mapping_name: str) -> list[str]:
    """Source classes the extra taxonomy cannot tell apart: in an allowed set with other classes, or in
    none. A student trained on such labels only keeps them from the teacher's choices."""
    from segunify.mapping import resolve_mapping

    m = resolve_mapping(mapping_name)
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


def checkpoints(lay: Layout, models: list[str]) -> dict:
    from segunify.models.checkpoint import load_meta

    out = {}
    for m in models:
        meta = load_meta(lay.checkpoint(m))
        out[m] = {"checkpoint": str(lay.checkpoint(m)), "sha256": meta.weights_sha256}
        if meta.interpolation is not None:
            out[m]["interpolation"] = meta.interpolation.model_dump()
    return out


def goals(g: GoalsConfig, table: dict, datasets: dict, coll: dict, source: str | None) -> list[dict]:
    """The claims this run checks (the paper's: S_P beats T, the priors help; and that S_P keeps what T
    knew), with the config's targets (``goals``), measured on the means over the seeds (margins as fractions; ``met`` when value >= target, > for ``strict`` claims: S_P beats T
    on every dataset (in every seed), <= for ``at_most`` claims: a count of classes)."""
    out: list[dict] = []

    def add(goal: str, value, target, unit: str = "points", cmp: str = ">=") -> None:
        if value is not None and target is not None:
            # 1e-9: float noise of a difference
            met = {">=": value >= target - 1e-9, ">": value > target, "<=": value <= target + 1e-9}[cmp]
            entry = {"goal": goal, "value": float(value), "target": float(target), "met": bool(met)}
            entry |= {"unit": unit} | {">": {"strict": True}, "<=": {"at_most": True}}.get(cmp, {})
            out.append(entry)

    sp, t, sr = table["S_P"], table["T"], table["S_R"]
    add("S_P beats T on the mean over datasets", _diff(sp["mean"], t["mean"]), g.sp_minus_t_mean)
    if g.sp_minus_t_each is not None:
        for name in datasets:
            add(f"S_P beats T on {name}", _diff(sp[name], t[name]), g.sp_minus_t_each, cmp=">")
        lowest = lowest_seed_margin(datasets)
        add("S_P beats T on every dataset in every seed (the lowest)", lowest, g.sp_minus_t_each, cmp=">")
    for name, target in g.sp_minus_t.items():
        add(f"S_P beats T on {name}", _diff(sp.get(name), t.get(name)), target)
    add("the priors help: S_P beats S_R on the mean", _diff(sp["mean"], sr["mean"]), g.sp_minus_sr_mean)
    for name, target in g.sp_minus_sr.items():
        add(f"the priors help: S_P beats S_R on {name}", _diff(sp.get(name), sr.get(name)), target)
    if source is not None:
        add(f"S_P keeps the source: S_P - T on {source}", _diff(sp[source], t[source]), g.source_retention)
    if g.collapse_ratio is not None:
        add(
            "S_P still predicts the source classes an extra dataset lacks (lowest S_P / T share)",
            lowest_ratio(coll, g.collapse_min_share),
            g.collapse_ratio,
            unit="ratio",
        )
    below = len(below_teacher(datasets))
    add(
        "no class falls behind T: classes more than 1 point below T (seed-averaged IoU)",
        below,
        g.max_classes_below_t,
        "classes",
        "<=",
    )
    return out


def lowest_seed_margin(datasets: dict) -> float | None:
    """The lowest S_P - T mIoU over every dataset and seed; ``None`` with one seed (the per-dataset claims
    say it)."""
    margins = [
        s["miou"] - d["T"]["miou"]
        for d in datasets.values()
        for s in (d["S_P"].get("seeds") or {}).values()
        if s["miou"] is not None and d["T"]["miou"] is not None
    ]
    return min(margins) if margins else None


def lowest_ratio(coll: dict, min_share: float) -> float | None:
    """Lowest S_P / T prediction share over the lacked classes T predicts on >= ``min_share``."""
    ratios = [
        (c["shares"]["S_P"].get(k) or 0.0) / t
        for c in coll.values()
        for k, t in c["shares"]["T"].items()
        if t is not None and t >= min_share
    ]
    return min(ratios) if ratios else None


def machine() -> dict:
    """Where a run was made, so that its wall time can be read: the CPU cores this process may use and
    their model, the GPU torch sees (``None`` without one), torch's version."""
    import os
    import platform

    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        cpu = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    text = f"{cpus} CPU cores ({cpu})" + (f" and a {gpu}" if gpu else "")
    return {"description": text, "cpus": cpus, "cpu": cpu, "gpu": gpu, "torch": torch.__version__}


def _diff(a, b):
    return None if a is None or b is None else a - b


def collect(cfg: DemoConfig, lay: Layout, config_name: str) -> dict:
    datasets = {name: dataset_block(name, cfg, lay) for name in cfg.eval}
    table = paper_table(datasets)
    per_seed, table_std = seed_tables(datasets)
    coll = collapse(cfg, datasets)
    source = next((n for n, e in cfg.eval.items() if e.mapping is None), None)
    return {
        "run": cfg.run,
        "budget": cfg.budget,
        "description": cfg.description,
        "config": config_name,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seeds": [s.seed for s in students(cfg) if s.model == "S_P"],
        "datasets": datasets,
        "table": table,
        **({"table_std": table_std, "per_seed": per_seed} if per_seed else {}),
        "below_teacher": below_teacher(datasets),
        "collapse": coll,
        "pseudo_labels": {
            p.name: {k: pseudo_block(lay.pseudo(p.name, k)) for k in ("P", "R")} for p in cfg.extra_parts
        },
        "sampling": sampling(cfg, lay),
        "models": checkpoints(lay, scored(cfg)),
        "goals": goals(cfg.goals, table, datasets, coll, source),
        "settings": cfg.model_dump(mode="json"),
    }


__all__ = [
    "below_teacher",
    "collapse",
    "collect",
    "goals",
    "lacked_classes",
    "machine",
    "mean_std",
    "paper_table",
    "score_block",
    "seed_block",
    "seed_tables",
]
