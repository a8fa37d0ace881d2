"""``segunify train CONFIG.yaml [--set key=value ...] [--resume]``: the same command on one CPU, under
``torchrun`` or ``accelerate launch`` (GPUs, nodes, or several CPU processes over gloo)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer


def _accelerate_cpu_processes() -> int:
    """Processes asked of ``accelerate launch --cpu --num_processes N``.

    Accelerate's launcher starts only ONE process for ``--cpu`` (several CPU processes need mpirun), and
    says so nowhere; it does export ``MASTER_PORT`` when N > 1. Read N from the launcher's command line
    so that we can start the N processes ourselves with torch's elastic launcher (gloo).
    """
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true") or "MASTER_PORT" not in env:
        return 1
    if any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")):
        return 1
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return 1
    if "launch" not in argv:
        return 1
    from accelerate.commands.launch import launch_command_parser

    args, _ = launch_command_parser().parse_known_args(argv[argv.index("launch") + 1 :])
    return int(args.num_processes or 1) if args.num_machines in (None, 1) else 1


def _relaunch(n: int) -> int:
    import torch.distributed.run as elastic

    from segunify.cli import err_console

    err_console.print(
        f"accelerate launch --cpu starts one process; starting {n} CPU processes (gloo) instead"
    )
    os.environ["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    elastic.main(
        [
            f"--nproc_per_node={n}",
            f"--master_addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
            f"--master_port={os.environ['MASTER_PORT']}",
            "-m",
            "segunify",
            *sys.argv[1:],
        ]
    )
    return 0


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        config: Path = typer.Argument(..., help="training config (YAML); see configs/train_*.yaml"),
        overrides: list[str] = typer.Option(
            None, "--set", help="override a config key, e.g. --set steps=20 --set parts.0.weight=2"
        ),
        resume: bool = typer.Option(False, "--resume", help="continue exactly from <out>/last"),
        stop_after: int = typer.Option(
            None,
            "--stop-after",
            min=1,
            help="stop (and checkpoint) after this step; the schedule still targets 'steps'",
        ),
    ) -> int:
        """Train a model on a compound dataset (ground truth and/or pseudo-labels, weighted parts)."""
        from segunify.cli import err_console
        from segunify.train.config import load_config
        from segunify.train.trainer import train

        cfg = load_config(config, overrides or [])
        n = _accelerate_cpu_processes()
        if n > 1:
            return _relaunch(n)
        summary = train(cfg, config, resume=resume, stop_after=stop_after, console=err_console)
        if summary["main"]:
            err_console.print(f"done: step {summary['step']}, checkpoint {summary['last']}")
        return 0
