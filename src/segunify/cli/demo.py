"""``segunify demo``: the whole method on real data, end to end, with a report (:mod:`segunify.apps.demo`)."""

from __future__ import annotations

from pathlib import Path

import typer

from segunify.cli._util import check_overrides


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        config: str = typer.Option(
            None,
            "--config",
            help="a shipped config by name (quick, full, camvid, camvid-full) or a YAML file; default quick",
        ),
        full: bool = typer.Option(False, "--full", help="the larger budget: the same as --config full"),
        plan_only: bool = typer.Option(
            False, "--plan", help="print the stages and their equivalent commands; run nothing"
        ),
        work: Path = typer.Option(
            None, "--work", help="run folder (default runs/<run>; the report is in report/)"
        ),
        overrides: list[str] = typer.Option(
            None, "--set", help="override a config key, e.g. --set student.steps=20", callback=check_overrides
        ),
        seeds: int = typer.Option(
            None,
            "--seeds",
            min=1,
            help="students per label set, seeds student.seed + 0..N-1; figures are mean +- std "
            "(the same as --set seeds=N)",
        ),
    ) -> int:
        """Teacher -> pseudo-labels with / without priors -> two students -> scores -> runs/<run>/report/.

        Needs the datasets and weights the config names ('segunify fetch --dest DIR', then
        SEGUNIFY_DATA=DIR). Finished stages are kept in the run folder and skipped on a rerun.
        """
        from segunify.apps.demo import config_file, default_work, load_demo_config, plan, run_demo
        from segunify.cli import console

        if full and config is not None:
            raise typer.BadParameter("give --full or --config, not both", param_hint="--full")
        name = "full" if full else config
        with config_file(name) as path:
            cfg = load_demo_config(path, [*(overrides or []), *([f"seeds={seeds}"] if seeds else [])])
            base = path.parent if Path(str(name or "")).is_file() else Path.cwd()
        work = work or default_work(cfg)

        def say(text: str) -> None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)

        if plan_only:
            stages, _ = plan(cfg, base, work)
            say(f"demo {cfg.run} ({cfg.budget}): {len(stages)} stages, outputs in {work}")
            for i, stage in enumerate(stages, 1):
                say(f"{i:2d}. {stage.name}" + (f"  [{stage.note}]" if stage.note else ""))
                if stage.command:
                    say(f"    {stage.command}")
            return 0
        results = run_demo(cfg, str(name or "quick"), base, work, say=say)
        for table in summary_tables(results):
            console.print(table)
        return 0


def summary_tables(results: dict) -> list:
    """The paper-style table (mIoU % per dataset and the mean; mean +- std over the student seeds when
    there are several) and the claims it checks, for the terminal."""
    from rich.table import Table

    def pct(v, std=None) -> str:
        return "-" if v is None else f"{100 * v:.1f}" + ("" if std is None else f" +- {100 * std:.1f}")

    columns = [*results["datasets"], "mean"]
    seeds = results.get("seeds", [0])
    title = "mIoU % per dataset, each in its own taxonomy"
    title += f"; S_P, S_R: mean +- std over {len(seeds)} seeds" if len(seeds) > 1 else ""
    head = Table(title=title, title_justify="left")
    head.add_column("model")
    for col in columns:
        head.add_column(col, justify="right")
    stds = results.get("table_std", {})
    for model, row in results["table"].items():
        head.add_row(model, *(pct(row.get(col), stds.get(model, {}).get(col)) for col in columns))
    goals = Table(title="claims checked", title_justify="left")
    for col in ("claim", "measured", "target", ""):
        goals.add_column(col)
    for g in results["goals"]:
        unit = g.get("unit", "points")
        value, target = (
            f"{100 * g[k]:+.1f}" if unit == "points" else f"{g[k]:.2f}" if unit == "ratio" else f"{g[k]:.0f}"
            for k in ("value", "target")
        )
        op = ">" if g.get("strict") else "<=" if g.get("at_most") else ">="
        goals.add_row(g["goal"], value, f"{op} {target}", "met" if g["met"] else "MISSED")
    return [head, goals]
