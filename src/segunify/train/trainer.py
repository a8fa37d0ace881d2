"""The training loop as a class with explicit state: :class:`Trainer` (``step``, ``best``, ``losses``,
``results``) and small methods (``build``, ``train_step``, ``evaluate``, ``save``, ``fit``).

Everything the user can get wrong is checked in :meth:`Trainer.build`, before the first step: the
parts and their labels (mapping coverage, taxonomy, pseudo-label fingerprint), the output folder (it
must be writable), the pretrained weights (their class count must fit the taxonomy unless
``model.reinit_head``). Output goes through callbacks (rich progress, TensorBoard, per-rank records),
so the loop itself only trains, evaluates and saves.

Evaluation is :class:`segunify.evaluation.Evaluator` over :func:`segunify.evaluation.score_samples`,
the same code as ``segunify evaluate --model``: the numbers in a checkpoint's ``meta.json`` are the
numbers that command prints for it. ``best/`` is chosen on one metric, ``eval.select``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console

from segunify.errors import SegunifyError
from segunify.models.checkpoint import check_target
from segunify.outputs import check_apart, folder_lock
from segunify.train.callbacks import Callback, ProgressCallback, RankRecordCallback, TensorBoardCallback
from segunify.train.config import TrainConfig, resolve_config_path
from segunify.train.data import (
    CompoundDataset,
    LoadError,
    WeightedDrawSampler,
    build_augmentation,
    collate,
    drawn_shares,
)
from segunify.train.engine import (
    BEST,
    LAST,
    STATE,
    check_writable,
    claim_out,
    find_last,
    head_mismatch,
    load_state,
    lr_factor,
    make_accelerator,
    normalisation,
    normaliser,
    process_state,
    step_seed,
    sync_buffers,
    use_channels_last,
)
from segunify.train.engine import train_step as optimisation_step
from segunify.train.finetune import param_groups, set_train_mode
from segunify.train.objective import build_objective
from segunify.train.parts import PseudoPart, is_sha256, resolve_eval_parts, resolve_parts

if TYPE_CHECKING:
    from segunify.evaluation import EvalResult

SAMPLING = "sampling.json"


def selected_score(results: dict[str, EvalResult], select: str) -> float | None:
    """The one metric that picks ``best/`` (``eval.select``): ``mean_miou`` or ``<part>/<metric>``
    (``metric``: one of :data:`~segunify.train.config.SELECTABLE`, a field of the result)."""
    if select == "mean_miou":
        values = [r.miou for r in results.values()]
        return None if not values or None in values else float(np.mean(values))
    part, metric = select.rsplit("/", 1)
    return getattr(results[part], metric)


class Trainer:
    """One training run; :func:`train` is ``Trainer(...).fit()``. ``callbacks`` are added to the default
    ones (progress, TensorBoard when ``log.tensorboard``, rank records when ``log.rank_record``)."""

    def __init__(
        self,
        cfg: TrainConfig,
        config_path: str | Path = "<config>",
        resume: bool = False,
        console: Console | None = None,
        callbacks: list[Callback] | None = None,
    ):
        self.cfg, self.config_path, self.resume = cfg, str(config_path), resume
        self.console = console or Console(stderr=True)
        self.extra_callbacks = list(callbacks or [])
        self.step = 0
        self.best: float | None = None
        self.losses: list[float] = []
        self.results: dict[str, EvalResult] = {}
        self.sampling: dict | None = None
        self.accelerator = None
        self._held = ExitStack()  # the output folder's lock, from build() to the end of fit()

    # ------------------------------------------------------------------------------------ building
    def build(self) -> Trainer:
        """Resolve and check every input, then build model, optimiser and data stream."""
        from accelerate.utils import set_seed

        set_seed(self.cfg.seed)
        self.target, self.parts = resolve_parts(self.cfg, self.config_path)
        self.eval_parts = resolve_eval_parts(self.cfg, self.target, self.config_path)
        self._check_select()
        try:
            self._check_out()
            model, notes = self._build_model()
            self.accelerator = make_accelerator(self.cfg, model)
            self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
            self.main = self.accelerator.is_main_process
            self.channels_last = use_channels_last(model, self.accelerator.device)
            self._build_optimisation(model)
            self._build_loader()
        except BaseException:
            self._held.close()
            raise
        self.callbacks = self._default_callbacks() + self.extra_callbacks
        if self.main:
            for note in notes:
                self.console.print(note, markup=False, highlight=False, soft_wrap=True)
        return self

    def _check_select(self) -> None:
        select, names = self.cfg.eval.select, [p.name for p in self.eval_parts]
        if select == "mean_miou":
            needed = [p for p in self.eval_parts if not p.same_taxonomy and not p.mapping.is_partition]
        else:
            part, metric = select.rsplit("/", 1)
            if part not in names:
                raise SegunifyError(
                    f"eval.select: no evaluation part named {part!r} (parts: {', '.join(names) or 'none'})",
                    self.config_path,
                )
            needed = [p for p in self.eval_parts if p.name == part and metric == "miou"]
            needed = [p for p in needed if not p.same_taxonomy and not p.mapping.is_partition]
        if needed:
            raise SegunifyError(
                f"eval.select: {select} needs the mIoU of {needed[0].name}, but its mapping is not a partition "
                f"(mIoU undefined); select another metric, e.g. {needed[0].name}/pixel_acc",
                self.config_path,
            )

    def _check_out(self) -> None:
        """``out`` by the one output policy (:mod:`segunify.outputs`), all before the first step: apart
        from everything the run reads, claimed with its marker and locked by the main process (a second
        run, ``--resume`` included, fails naming the holder's pid), and ``last/``/``best/`` where they can
        be written."""
        self.out = resolve_config_path(self.cfg.out, self.config_path, "out")
        with self._keyed("out"):
            check_apart([self.out], self._inputs())
        if process_state().is_main_process:
            check_writable(self.out, self.config_path)
            with self._keyed("out"):
                claim_out(self.out)
                self._held.enter_context(folder_lock(self.out, "train"))
        self.last = find_last(self.out)
        if self.resume and self.last is None:
            raise SegunifyError(
                f"resume: no previous run in {self.out} ({LAST}/{STATE} missing)", self.config_path
            )
        for name in (LAST, BEST) if not self.resume else ():
            if (self.out / name).exists():
                raise SegunifyError(
                    f"out: {self.out} already holds a run; add --resume or choose another out ({name}/ is there)",
                    self.config_path,
                )
        with self._keyed("out"):
            for folder in (self.out / LAST, self.out / BEST):
                check_target(folder, overwrite=True)  # a folder there that is no checkpoint: refused now

    def _inputs(self) -> list[tuple[Path, str]]:
        """Everything the run reads (dataset roots and sample folders, pseudo-label folders, weights)."""
        inputs: list[tuple[Path, str]] = []
        for kind, parts in (("parts", self.parts), ("eval.parts", self.eval_parts)):
            for i, part in enumerate(parts):
                inputs += [(part.adapter.root, f"the dataset root of {kind}.{i}")]
                folders = {p.parent for s in part.samples for p in (s.image, s.label) if p is not None}
                inputs += [(f, f"an input folder of {kind}.{i}") for f in sorted(folders)]
                if isinstance(part, PseudoPart):
                    inputs.append((part.folder.path, f"the pseudo-label folder of {kind}.{i}"))
        named = [(self.cfg.model.weights, "model.weights")]
        named += [(p.teacher, f"parts.{i}.teacher") for i, p in enumerate(self.cfg.parts)]
        if self.cfg.loss.distill is not None:
            named.append((self.cfg.loss.distill.teacher, "loss.distill.teacher"))
        for text, key in named:
            if text is not None and not is_sha256(text):
                inputs.append((resolve_config_path(text, self.config_path, key), key))
        return inputs

    @contextmanager
    def _keyed(self, key: str) -> Iterator[None]:
        """A :class:`SegunifyError` raised inside names the config file and ``key``."""
        try:
            yield
        except SegunifyError as exc:
            raise SegunifyError(f"{key}: {exc}", self.config_path) from None

    def _build_model(self) -> tuple[torch.nn.Module, list[str]]:
        """The model with its pretrained weights (a resumed run takes every weight from ``last/``)."""
        from segunify.models import create_model
        from segunify.models.checkpoint import read_safetensors

        cfg, notes = self.cfg, []
        weights = None if self.resume else cfg.model.weights
        path = None if weights is None else resolve_config_path(weights, self.config_path, "model.weights")
        if path is not None and not path.exists():
            raise SegunifyError(f"model.weights: file not found: {path}", self.config_path)
        try:
            model = create_model(cfg.model.name, self.target.num_classes, weights=path, **cfg.model.kwargs)
        except SegunifyError as exc:
            raise SegunifyError(f"model: {exc}", self.config_path) from None
        with self._keyed("model.weights"):  # a resumed run keeps the normalisation last/ recorded
            self.mean, self.std = normalisation(cfg.model, self.last if self.resume else path, model)
        reason = None if path is None else head_mismatch(path, model)
        if reason and not cfg.model.reinit_head:
            raise SegunifyError(
                f"model.weights: {path.name} does not fit taxonomy {self.target.name!r}: {reason}; set "  # type: ignore[union-attr]
                "model.reinit_head: true to train a new classifier",
                self.config_path,
            )
        if reason:
            notes.append(f"model.reinit_head: new classifier for {self.target.name!r} ({reason})")
        if self.resume:
            model.load_state_dict(read_safetensors(self.last / "model.safetensors"), strict=True)  # type: ignore[operator]
        return model, notes

    def _build_optimisation(self, model: torch.nn.Module) -> None:
        cfg, acc = self.cfg, self.accelerator
        state = load_state(self.last) if self.resume else None  # type: ignore[arg-type]
        if state is not None:
            saved = tuple(state["sampler"]["global_batch"])
            if saved != (self.world, cfg.batch_size):
                raise SegunifyError(
                    f"resume: the run used {saved[0]} process(es) x batch {saved[1]}, now {self.world} x "
                    f"{cfg.batch_size}; resume with the same layout",
                    self.config_path,
                )
        if cfg.sync_bn and not cfg.model.freeze_bn and self.world > 1 and acc.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        set_train_mode(model, cfg.model.freeze_bn)
        o = cfg.optimizer
        optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas)
        s = cfg.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda i: lr_factor(i, cfg.steps, s.warmup, s.warmup_factor, s.power)
        )
        self.model, self.optimizer = acc.prepare(
            model, optimizer
        )  # the data stream is sharded by our sampler
        self.unwrapped = acc.unwrap_model(self.model)
        self.objective = build_objective(cfg, self.unwrapped, self.target, acc.device, self.config_path)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.best = int(state["step"]), state.get("best")

    def _build_loader(self) -> None:
        cfg = self.cfg
        self.dataset = CompoundDataset(
            self.parts,
            build_augmentation(cfg.augmentation),
            seed=cfg.seed,
            pixel_arrays=self.objective.pixel_arrays,
        )
        self.sampler = WeightedDrawSampler(
            self.dataset.sizes,
            [p.weight for p in self.parts],
            cfg.batch_size,
            self.world,
            self.rank,
            cfg.seed,
            start_step=self.step,
            steps=cfg.steps,
        )
        self.loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=cfg.num_workers,
            collate_fn=collate,
            pin_memory=self.accelerator.device.type == "cuda",
            persistent_workers=False,
        )
        self.normalise = normaliser(self.mean, self.std, self.accelerator.device, self.channels_last)

    def _default_callbacks(self) -> list[Callback]:
        callbacks: list[Callback] = [ProgressCallback(self.console)]
        if self.cfg.log.tensorboard:
            callbacks.append(TensorBoardCallback())
        if self.cfg.log.rank_record:
            callbacks.append(RankRecordCallback())
        return callbacks

    # ------------------------------------------------------------------------------------- the loop
    def train_step(self, batch: dict | LoadError) -> torch.Tensor:
        """One optimisation step; the torch RNG is seeded from (seed, step, rank) first."""
        if isinstance(batch, LoadError):  # a sample a worker could not read: the same line as without workers
            raise SegunifyError(batch.message)
        for callback in self.callbacks:
            callback.on_batch(self, batch)
        torch.manual_seed(step_seed(self.cfg.seed, self.step, self.rank))
        loss = optimisation_step(
            self.accelerator,
            self.model,
            self.optimizer,
            self.scheduler,
            batch,
            self.normalise,
            self.cfg.grad_clip,
            None if self.objective.plain else self.objective,
        )
        self.step += 1
        return loss

    def fit(self, stop_after: int | None = None) -> dict:
        """Train to ``steps`` (or stop after ``stop_after``, checkpointing it; the schedule still targets
        ``steps``); returns a summary (final step, logged losses, evaluation results, paths)."""
        if self.accelerator is None:
            self.build()
        cfg = self.cfg
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        self._announce()
        self._log_mark = (time.perf_counter(), self.step)
        try:
            for callback in self.callbacks:
                callback.on_start(self)
            batches = iter(self.loader)
            while self.step < end:
                loss = self.train_step(next(batches))
                self._after_step(loss, end)
            if self.step >= cfg.steps and self.eval_parts:
                self.results = self.evaluate()
            self.save(self.results if self.step >= cfg.steps else None)
            self.write_sampling()
            for callback in self.callbacks:
                callback.on_end(self)
        finally:
            for callback in self.callbacks:
                callback.close()
            self._held.close()
        summary = self.summary()
        self.accelerator.end_training()
        return summary

    def _after_step(self, loss: torch.Tensor, end: int) -> None:
        """Log, evaluate and checkpoint on the configured schedule."""
        cfg, step = self.cfg, self.step
        if step % cfg.log.every == 0 or step == end:
            self._log(loss)
        for callback in self.callbacks:
            callback.on_step(self)
        evaluating = (
            bool(self.eval_parts) and cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.steps
        )
        if evaluating:
            self.results = self.evaluate()
        every = cfg.checkpoint_every or cfg.eval.every
        if every and step % every == 0 and step < end:
            self.save(self.results if evaluating else None)

    def _log(self, loss: torch.Tensor) -> None:
        mean_loss = self.accelerator.reduce(loss.detach().float(), reduction="mean").item()
        self.losses.append(mean_loss)
        now, (then, then_step) = time.perf_counter(), self._log_mark
        ips = (self.step - then_step) * self.cfg.batch_size * self.world / max(now - then, 1e-9)
        self._log_mark = (now, self.step)
        stats = {"loss": mean_loss, "lr": self.scheduler.get_last_lr()[0], "ips": ips}
        for callback in self.callbacks:
            callback.on_log(self, stats)

    def _announce(self) -> None:
        if not self.main:
            return
        parts = ", ".join(f"{p.name} x{p.weight:g}" for p in self.parts)
        self.console.print(
            f"train {self.cfg.model.name} on {len(self.dataset)} samples from {len(self.parts)} part(s) "
            f"({parts}), {self.world} process(es) x batch {self.cfg.batch_size}, device "
            f"{self.accelerator.device}, steps {self.step}->{self.cfg.steps}"
        )

    # ------------------------------------------------------------------------- evaluation and saving
    def evaluate(self) -> dict[str, EvalResult]:
        """Score the model on every evaluation part (samples sharded over ranks, confusion summed)."""
        from segunify.evaluation import Evaluator, ModelPredictions, score_samples
        from segunify.models.inference import Predictor

        sync_buffers(self.unwrapped, self.world)
        was_training = self.unwrapped.training
        cfg, device = self.cfg, self.accelerator.device
        predictor = Predictor(self.unwrapped, self.mean, self.std, size=cfg.eval.size, device=device)
        predictions = ModelPredictions.from_predictor(predictor, name="the model in training")
        results = {}
        for part in self.eval_parts:
            evaluator = Evaluator(part.adapter.taxonomy, None if part.same_taxonomy else part.mapping)
            score_samples(part.adapter, part.samples[self.rank :: self.world], predictions, evaluator)
            if self.world > 1:
                counts = torch.as_tensor(np.asarray(evaluator.confusion), device=device)
                evaluator.confusion = self.accelerator.reduce(counts, reduction="sum").cpu().numpy()
                images = torch.tensor([evaluator.images], device=device)
                evaluator.images = int(self.accelerator.reduce(images, reduction="sum").item())
            results[part.name] = evaluator.result()
        if was_training:
            set_train_mode(self.unwrapped, self.cfg.model.freeze_bn)
        for callback in self.callbacks:
            callback.on_eval(self, results)
        return results

    def save(self, results: dict[str, EvalResult] | None) -> None:
        """``last/`` (weights + meta + training state, one atomic swap); ``best/`` when ``eval.select``
        improved."""
        from segunify.models.checkpoint import save_checkpoint

        sync_buffers(self.unwrapped, self.world)
        score = selected_score(results, self.cfg.eval.select) if results else None
        improved = score is not None and (self.best is None or score > self.best)
        if improved:
            self.best = score
        if self.main:
            meta = self._meta(results or {}, score)
            state = {
                "step": self.step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "sampler": {
                    "position": self.step,
                    "global_batch": [self.world, self.cfg.batch_size],
                    "seed": self.cfg.seed,
                },
                "best": self.best,
            }
            write_state = {STATE: lambda path: torch.save(state, path)}
            save_checkpoint(self.out / LAST, self.unwrapped, meta, overwrite=True, extra_files=write_state)
            if improved:
                save_checkpoint(self.out / BEST, self.unwrapped, meta, overwrite=True)
        self.accelerator.wait_for_everyone()

    def _meta(self, results: dict[str, EvalResult], score: float | None) -> dict:
        cfg = self.cfg
        return {
            "taxonomy": self.target.name,
            "classes": list(self.target.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": list(cfg.eval.size) if cfg.eval.size else None,
            "train_config": cfg.to_json_dict(),
            "metrics": {name: r.to_json() for name, r in results.items()},
            "selected_metric": {"name": cfg.eval.select, "value": score},
            "step": self.step,
        }

    def write_sampling(self) -> None:
        """``<out>/sampling.json``: the share of the run's draws each part got, beside its weight's share."""
        from segunify.io import atomic_write_json

        counts = drawn_shares(self.sampler, self.step * self.cfg.batch_size * self.world)
        total, weights = sum(counts), sum(p.weight for p in self.parts)
        self.sampling = {
            "draws": total,
            "steps": self.step,
            "parts": [
                {
                    "part": i,
                    "name": p.name,
                    "weight": p.weight,
                    "expected_share": p.weight / weights,
                    "draws": n,
                    "share": n / total if total else None,
                }
                for i, (p, n) in enumerate(zip(self.parts, counts, strict=True))
            ],
        }
        if self.main:
            atomic_write_json(self.out / SAMPLING, self.sampling, indent=2)
            shares = ", ".join(
                f"{r['name']} {100 * (r['share'] or 0):.1f} % (weight {100 * r['expected_share']:.1f} %)"
                for r in self.sampling["parts"]
            )
            self.console.print(
                f"sampled share per part: {shares}", markup=False, highlight=False, soft_wrap=True
            )

    def summary(self) -> dict:
        return {
            "step": self.step,
            "losses": self.losses,
            "eval": self.results,
            "last": str(self.out / LAST),
            "best": str(self.out / BEST) if (self.out / BEST).exists() else None,
            "sampling": self.sampling,
            "world": self.world,
            "main": self.main,
        }


def train(
    cfg: TrainConfig,
    config_path: str | Path = "<config>",
    resume: bool = False,
    stop_after: int | None = None,
    console: Console | None = None,
    callbacks: list[Callback] | None = None,
) -> dict:
    """Run (or resume) training; returns the summary of :meth:`Trainer.fit`. Relative paths in ``cfg``
    are taken from the folder of ``config_path`` (the current folder for a config built in code)."""
    trainer = Trainer(cfg, config_path, resume=resume, console=console, callbacks=callbacks)
    return trainer.fit(stop_after)
