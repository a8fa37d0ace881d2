"""The hooks of a training run (:class:`Callback`) and what a run shows and records through them: a rich
progress bar (plain lines in log files) with evaluation tables, TensorBoard scalars, and a per-rank
record of the draws trained on (audits sharding and weight sync). The trainer imports this module; it
names the trainer only for type checking."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from segunify.evaluation import EvalResult
    from segunify.train.trainer import Trainer


class Callback:
    """Hooks the trainer calls on every rank (output callbacks act on the main process only)."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_batch(self, trainer: Trainer, batch: dict) -> None: ...
    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None: ...
    def on_step(self, trainer: Trainer) -> None: ...
    def on_eval(self, trainer: Trainer, results: dict[str, EvalResult]) -> None: ...
    def on_end(self, trainer: Trainer) -> None: ...
    def close(self) -> None: ...


class ProgressCallback(Callback):
    """A progress bar on a terminal, a plain line per log step otherwise; a table per evaluation."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None

    def on_start(self, trainer: Trainer) -> None:
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[ips]} img/s"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not (trainer.main and trainer.cfg.log.progress),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=trainer.cfg.steps, completed=trainer.step, loss="-", ips="-"
        )

    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None:
        assert self.progress is not None
        self.progress.update(self.task, loss=f"{stats['loss']:.4f}", ips=f"{stats['ips']:.1f}")
        cfg = trainer.cfg
        if trainer.main and cfg.log.progress and not self.console.is_terminal:  # log files get plain lines
            eta = (cfg.steps - trainer.step) * cfg.batch_size * trainer.world / max(stats["ips"], 1e-9)
            self.console.print(
                f"step {trainer.step}/{cfg.steps}  loss {stats['loss']:.4f}  {stats['ips']:.2f} img/s  "
                f"lr {stats['lr']:.3g}  eta {time.strftime('%H:%M:%S', time.gmtime(eta))}"
            )

    def on_step(self, trainer: Trainer) -> None:
        assert self.progress is not None
        self.progress.update(self.task, completed=trainer.step)

    def on_eval(self, trainer: Trainer, results: dict[str, EvalResult]) -> None:
        from segunify.evaluation import result_table, summary_line

        if not trainer.main:
            return
        for name, result in results.items():
            self.console.print(result_table(result, title=f"{name} at step {trainer.step}"))
            self.console.print(summary_line(result), highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class TensorBoardCallback(Callback):
    """Loss, learning rate, throughput and evaluation scores under ``<out>/tb`` (main process)."""

    def __init__(self) -> None:
        self.writer = None

    def on_start(self, trainer: Trainer) -> None:
        if trainer.main:
            from torch.utils.tensorboard import SummaryWriter

            purge = trainer.step if trainer.resume else None
            self.writer = SummaryWriter(str(trainer.out / "tb"), purge_step=purge)

    def on_log(self, trainer: Trainer, stats: dict[str, float]) -> None:
        if self.writer is not None:
            self.writer.add_scalar("train/loss", stats["loss"], trainer.step)
            self.writer.add_scalar("train/lr", stats["lr"], trainer.step)
            self.writer.add_scalar("train/images_per_s", stats["ips"], trainer.step)

    def on_eval(self, trainer: Trainer, results: dict[str, EvalResult]) -> None:
        if self.writer is None:
            return
        for name, r in results.items():
            if r.miou is not None:
                self.writer.add_scalar(f"eval/{name}/miou", r.miou, trainer.step)
            if r.pixel_acc is not None:
                self.writer.add_scalar(f"eval/{name}/pixel_acc", r.pixel_acc, trainer.step)
            for c in r.classes:
                if c.iou is not None:
                    self.writer.add_scalar(f"eval_iou/{name}/{c.name}", c.iou, trainer.step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class RankRecordCallback(Callback):
    """``<out>/ranks/rank<r>.json``: the (draw, index) pairs this rank trained on and the hash of the
    weights it ended with (``log.rank_record``)."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_batch(self, trainer: Trainer, batch: dict) -> None:
        self.seen.extend([int(d), int(i)] for d, i in zip(batch["draw"], batch["index"], strict=True))

    def on_end(self, trainer: Trainer) -> None:
        from segunify.io import atomic_write_bytes
        from segunify.train.engine import state_sha256

        record = {
            "rank": trainer.rank,
            "step": trainer.step,
            "draws": self.seen,
            "weights_sha256": state_sha256(trainer.unwrapped),
        }
        atomic_write_bytes(trainer.out / "ranks" / f"rank{trainer.rank}.json", json.dumps(record).encode())
