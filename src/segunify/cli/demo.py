"""``segunify demo [--full]``: the whole method on real data, end to end, with a report."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        full: bool = typer.Option(
            False, "--full", help="the full budget (make reproduce) instead of the quick one"
        ),
        out: Path = typer.Option(None, "--out", help="report folder (default reports/demo-<run>)"),
        work: Path = typer.Option(
            None, "--work", help="work folder for checkpoints and labels (default runs/demo-<run>)"
        ),
        steps: int = typer.Option(
            None, "--steps", min=1, help="training steps per student (overrides the config)"
        ),
        config: Path = typer.Option(
            None, "--config", help="demo config (default configs/demo_quick.yaml or demo_full.yaml)"
        ),
    ) -> int:
        """Teacher -> pseudo-labels with/without priors -> students -> evaluation -> reports/<run>/index.html.

        Needs CamVid, the KITTI sample and the ESPNetv2 weights ('segunify fetch --dest DIR', then
        SEGUNIFY_DATA=DIR). Finished stages are kept in the work folder and skipped on a rerun.
        """
        from segunify.cli import console
        from segunify.demo import find_config, load_demo_config, run_demo, summary_tables

        path = find_config(full, config)
        cfg = load_demo_config(path, steps=steps)
        out = out or Path("reports") / f"demo-{cfg.run}"
        work = work or Path("runs") / f"demo-{cfg.run}"

        def say(text: str) -> None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)

        results = run_demo(cfg, path, out, work, say=say)
        for table in summary_tables(results):
            console.print(table)
        return 0
