"""The end-to-end demo of label-space unification, and its report.

``segunify demo`` runs :func:`run_demo` with a shipped config (``configs/quick.yaml`` by default):

1. T: the shipped teacher (pretrained weights imported as a checkpoint);
2. P / R: T's pseudo-labels of every extra part's training images, with / without the priors of that
   part's mapping (one teacher pass writes both);
3. S_P / S_R: one student each on ONE compound set: the source part's ground truth plus every extra
   part's P (or R) labels, parts drawn with the configured weights (``seeds: N``: N students each,
   student seeds ``student.seed + 0..N-1``, reported as mean +- std);
4. T, S_P and S_R scored on every evaluation dataset in that dataset's own taxonomy;
5. ``report/index.html`` + ``results.json`` (:mod:`segunify.apps.demo.report`).

The stages are plain data (:mod:`.plan`), each one library call (:mod:`.run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from segunify.apps.demo.config import (
    DemoConfig,
    config_file,
    load_demo_config,
    shipped_configs,
    with_spec_paths,
)
from segunify.apps.demo.plan import Layout, Stage, plan

Say = Callable[[str], None]


def default_work(cfg: DemoConfig) -> Path:
    """``runs/<run>`` in the current folder: the outputs of a run, ignored by git."""
    return Path("runs") / cfg.run


def overlay_pictures(cfg: DemoConfig, stages: list[Stage], lay: Layout) -> dict:
    """image | GT | T | S_P for the overlay frames of every evaluation dataset."""
    from segunify.apps.demo.report import overlay_picture, overlay_rows
    from segunify.mapping import resolve_mapping
    from segunify.taxonomy import load_taxonomy

    source = load_taxonomy(cfg.teacher.taxonomy)
    out = {}
    for name, spec in cfg.eval.items():
        stage = next(s for s in stages if s.kind == "evaluate" and s.name == f"evaluate T on {name}")
        rows = overlay_rows(name, stage.params, lay)
        if rows:
            mapping = resolve_mapping(spec.mapping, source=source) if spec.mapping else None
            gt_taxonomy = mapping.extra if mapping else source
            out[name] = overlay_picture(rows, gt_taxonomy, source, mapping.allowed if mapping else None)
    return out


def run_demo(cfg: DemoConfig, config_name: str, base: Path, work: Path, say: Say = print) -> dict:
    """Run every stage not done yet, then write ``<work>/report/``; returns the results dict."""
    from segunify.apps.demo.report import write_report
    from segunify.apps.demo.results import collect, machine
    from segunify.apps.demo.run import check_inputs, check_taxonomies, claim_work, run_stages
    from segunify.outputs import folder_lock

    cfg = with_spec_paths(cfg, base)
    check_taxonomies(cfg)
    inputs = check_inputs(cfg, base)
    stages, lay = plan(cfg, base, work)
    claim_work(work, inputs)
    start = time.perf_counter()
    with folder_lock(work, "demo"):
        timings = run_stages(stages, lay, say)
        t0 = time.perf_counter()
        results = collect(cfg, lay, config_name)
        overlays = overlay_pictures(cfg, stages, lay) if cfg.overlays else {}
        timings["results and report"] = round(time.perf_counter() - t0, 2)
        results |= {"timings": timings, "wall_seconds": round(time.perf_counter() - start, 2)}
        results["stage_seconds"] = round(sum(timings.values()), 2)  # a rerun skips finished stages
        results["machine"] = machine()
        page = write_report(results, lay.report, overlays)
    say(f"report: {page}")
    return results


__all__ = [
    "DemoConfig",
    "config_file",
    "default_work",
    "load_demo_config",
    "plan",
    "run_demo",
    "shipped_configs",
]
