"""``segunify train CONFIG.yaml [--set key=value ...] [--resume]``: the same command on one CPU, under
``torchrun`` or ``accelerate launch`` (GPUs, nodes, or several CPU processes over gloo)."""

from __future__ import annotations

from pathlib import Path

import typer

from segunify.cli._util import MAX_PIXELS_HELP, check_overrides, set_max_pixels


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path = typer.Argument(..., help="training config (YAML); see configs/train_*.yaml"),
        overrides: list[str] = typer.Option(
            None,
            "--set",
            help="override a config key, e.g. --set steps=20 --set parts.0.weight=2",
            callback=check_overrides,
        ),
        resume: bool = typer.Option(False, "--resume", help="continue exactly from <out>/last"),
        stop_after: int = typer.Option(
            None,
            "--stop-after",
            min=1,
            help="stop (and checkpoint) after this step; the schedule still targets 'steps'",
        ),
        max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
    ) -> int:
        """Train a model on a compound dataset (ground truth and/or pseudo-labels, weighted parts)."""
        from segunify.cli import err_console
        from segunify.cli._util import accelerate_cpu_processes, relaunch
        from segunify.train.config import load_config
        from segunify.train.trainer import train

        set_max_pixels(max_pixels)
        cfg = load_config(config, overrides or [])
        n = accelerate_cpu_processes()
        if n > 1:
            return relaunch(n)
        summary = train(cfg, config, resume=resume, stop_after=stop_after, console=err_console)
        if summary["main"]:
            err_console.print(f"done: step {summary['step']}, checkpoint {summary['last']}")
        return 0

    @app.command("interpolate")
    def interpolate_cmd(
        start: Path = typer.Argument(..., help="checkpoint the fine-tuning started from (e.g. the teacher)"),
        end: Path = typer.Argument(..., help="the fine-tuned checkpoint (e.g. a student's last/)"),
        alpha: float = typer.Option(
            ..., "--alpha", min=0.0, max=1.0, help="weight of END: 1 = END, 0 = START"
        ),
        out: Path = typer.Option(..., "--out", help="folder of the new checkpoint"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace a checkpoint at --out"),
    ) -> int:
        """WiSE-FT: write (1 - alpha) * START + alpha * END, weight by weight (same model and classes)."""
        from segunify.cli import err_console
        from segunify.train.interpolate import interpolate_checkpoints

        interpolate_checkpoints(start, end, alpha, out, overwrite=overwrite)
        err_console.print(f"wrote {out}: {1 - alpha:g} x {start} + {alpha:g} x {end}")
        return 0
