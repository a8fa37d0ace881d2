"""The pseudo-labelling runner: teacher probabilities + priors for every image of a split, through
loader -> teacher -> labels -> writer, sharded over the ranks of a launcher. Files: :mod:`.store`;
figures: :mod:`.stats`.

Why it is built this way:

* **Shards of whole batches.** The split's samples are cut into global batches of ``batch_size`` in
  sample order and batch ``i`` goes to rank ``i % world``. Every image is therefore always computed in
  the same batch, whatever the number of processes or restarts, so the union of a multi-process run
  equals a single-process run byte for byte (a batch's composition can change convolution arithmetic).
* **Resume.** A PNG is written atomically and only then its record is journalled; a restart re-runs a
  batch only when one of its images is not finished (see :meth:`.store.PseudoStore.finished`).
* **One forward pass, two label sets.** With ``also_without_priors`` the same probabilities give the
  prior-constrained labels and the plain argmax, each written to its own complete folder.
* **No waiting on I/O.** Images and labels are decoded in DataLoader workers; PNG encoding and writing
  happen in a thread pool (OpenCV releases the GIL) while the next batch runs through the teacher.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segunify.datasets import DatasetAdapter, Sample
from segunify.errors import SegunifyError
from segunify.mapping import Mapping
from segunify.pseudo.priors import PriorTable, label_probs, prior_table
from segunify.pseudo.settings import PseudoSettings, Teacher, TeacherInfo, teacher_from_checkpoint
from segunify.pseudo.stats import ImageStats, PseudoSummary, RankTiming, RunInfo, image_stats, summarize
from segunify.pseudo.store import (
    Journal,
    PseudoStore,
    check_locations,
    fingerprint,
    input_signature,
    load_summary,
)

__all__ = [
    "PseudoSettings",
    "PseudoSummary",
    "Teacher",
    "TeacherInfo",
    "load_summary",
    "run_pseudo_label",
    "teacher_from_checkpoint",
]


# ---------------------------------------------------------------------------------------------- loader


class _Items(torch.utils.data.Dataset):
    """Image + GT + input signature of one sample; errors travel back as text (one line in the end)."""

    def __init__(self, dataset: DatasetAdapter, samples: Sequence[Sample], need_gt: bool):
        self.dataset, self.samples, self.need_gt = dataset, samples, need_gt

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        signature = input_signature(s)  # before reading: a file changed meanwhile is redone next time
        try:
            image, gt = self._read(s)
        except SegunifyError as exc:
            return {"index": i, "error": str(exc)}
        except Exception as exc:  # a decoder crash on a broken file must still name the file
            return {"index": i, "error": f"{s.image}: cannot read sample {s.id!r}: {exc}"}
        return {
            "index": i,
            "error": None,
            "signature": signature,
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "gt": None if gt is None else torch.from_numpy(np.ascontiguousarray(gt)),
        }

    def _read(self, s: Sample) -> tuple[np.ndarray, np.ndarray | None]:
        if s.label is None:
            if self.need_gt:
                raise SegunifyError(f"sample {s.id!r} has no ground-truth label; priors need one", s.image)
            return self.dataset.read_image(s), None
        return self.dataset.sample(s)  # ground-truth ids checked where the adapter decodes them


def _collate(items: list[dict]) -> list[dict]:
    return items


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class _Target:
    """One output folder of the run (the prior-constrained one, and optionally the plain one)."""

    store: PseudoStore
    settings: PseudoSettings
    fingerprint: dict
    finished: set[int] = field(default_factory=set)
    journal: Journal | None = None
    done: int = 0
    skipped: int = 0


@dataclass
class _Run:
    """What every stage of the pipeline needs: inputs, the device, the targets and the counters."""

    teacher: Teacher
    dataset: DatasetAdapter
    samples: Sequence[Sample]
    mapping: Mapping
    settings: PseudoSettings
    device: torch.device
    targets: list[_Target]
    rank: int = 0
    world: int = 1
    forward_seconds: float = 0.0
    advance: Callable[[int], Any] | None = None
    _tables: dict[bool, PriorTable] = field(default_factory=dict)

    def priors(self, fill_void: bool) -> PriorTable:
        """The mapping's prior table on the run's device, made once per run (per ``fill_void``)."""
        if fill_void not in self._tables:
            self._tables[fill_void] = prior_table(self.mapping, fill_void=fill_void, device=self.device)
        return self._tables[fill_void]

    @property
    def num_source(self) -> int:
        return self.mapping.source.num_classes

    @property
    def num_extra(self) -> int:
        return self.mapping.extra.num_classes


def run_pseudo_label(
    teacher: Teacher,
    teacher_info: TeacherInfo,
    dataset: DatasetAdapter,
    split: str,
    mapping: Mapping,
    out: str | Path,
    settings: PseudoSettings,
    *,
    also_without_priors: str | Path | None = None,
    device: str | torch.device = "cpu",
    state=None,
    progress: Callable[[int, int], Any] | None = None,
) -> PseudoSummary | None:
    """Pseudo-label one split into ``out``; returns its summary on rank 0 (``None`` on other ranks).

    ``also_without_priors``: a second folder that receives the plain teacher argmax from the same
    forward pass (its own settings, journal and summary: read it with :func:`load_summary`).
    ``state`` is an ``accelerate.PartialState`` (rank, world size, barrier); ``None`` = one process.
    ``progress(todo, skipped)`` may return a callable ``advance(n)`` (e.g. a rich progress bar on rank 0).
    """
    mapping.check_compatible(
        dataset.taxonomy, teacher_info.classes, f"dataset {dataset.name!r}", "the teacher"
    )
    variants = [settings] + ([settings.without_priors()] if also_without_priors is not None else [])
    outs = [Path(out)] + ([Path(also_without_priors)] if also_without_priors is not None else [])
    if also_without_priors is not None and not settings.priors:
        raise SegunifyError("a second folder without priors needs a run with priors", also_without_priors)
    samples = dataset.samples(split)[: settings.limit]
    if not samples:
        raise SegunifyError(f"dataset {dataset.name!r} has no samples in split {split!r}", dataset.root)
    check_locations(dataset.root, outs, samples)
    targets = [
        _Target(PseudoStore(o), s, fingerprint(dataset, split, teacher_info, mapping, s))
        for o, s in zip(outs, variants, strict=True)
    ]
    rank = state.process_index if state is not None else 0
    world = state.num_processes if state is not None else 1
    run = _Run(teacher, dataset, samples, mapping, settings, torch.device(device), targets, rank, world)
    with ExitStack() as stack:
        if rank == 0:
            for t in targets:
                stack.enter_context(t.store.open_for_writing(samples, t.fingerprint))
        _barrier(state)
        if rank != 0:
            for t in targets:
                t.store.check_settings(t.fingerprint, write=False)
        _run_shard(run, progress)
        _barrier(state)
        if rank != 0:
            return None
        summaries = [_finish(run, t, split, teacher_info) for t in targets]
    return summaries[0]


def _barrier(state) -> None:
    """Wait for every rank. With a process group, torch's plain barrier: accelerate's passes
    ``device_ids=[local rank]``, a GPU that does not exist when ranks share GPUs (rank 1 of 2 on one GPU)."""
    if state is None or state.num_processes <= 1:
        return
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    else:
        state.wait_for_everyone()


def _run_shard(run: _Run, progress: Callable[[int, int], Any] | None) -> None:
    """This rank's batches: skip the finished ones, process the rest, record the timing."""
    n, bs = len(run.samples), run.settings.batch_size
    batches = [list(range(i, min(i + bs, n))) for i in range(0, n, bs)][run.rank :: run.world]
    mine = [i for b in batches for i in b]
    for t in run.targets:
        t.finished = t.store.finished(run.samples, mine, t.settings.save_confidence, run.settings.writers)
        t.skipped = len(t.finished)
    todo = [b for b in batches if any(i not in t.finished for t in run.targets for i in b)]
    todo_images = sum(1 for b in todo for i in b if any(i not in t.finished for t in run.targets))
    skipped = len(mine) - sum(1 for i in mine if any(i not in t.finished for t in run.targets))
    run.advance = progress(todo_images, skipped) if progress is not None else None
    start = time.perf_counter()
    if todo:
        with ExitStack() as stack:
            for t in run.targets:
                t.journal = t.store.journal(run.rank)
                stack.callback(t.journal.close)
            _process(run, todo)
    seconds = round(time.perf_counter() - start, 3)
    for t in run.targets:
        timing = RankTiming(
            rank=run.rank,
            images=t.done,
            skipped=t.skipped,
            seconds=seconds,
            forward_seconds=round(run.forward_seconds, 3),
        )
        t.store.write_timing(timing)


def _process(run: _Run, batches: list[list[int]]) -> None:
    """loader -> teacher -> labels -> writer pool, with a bounded queue of pending writes."""
    need_gt = any(t.settings.priors for t in run.targets)
    workers = run.settings.workers
    loader = torch.utils.data.DataLoader(
        _Items(run.dataset, run.samples, need_gt=need_gt),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    writers = run.settings.writers
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="pseudo-writer") as pool:
        for batch in loader:
            for item in batch:
                if item["error"]:
                    raise SegunifyError(item["error"])
            by_shape: dict[tuple[int, ...], list[dict]] = {}
            for item in batch:
                by_shape.setdefault(tuple(item["image"].shape), []).append(item)
            for group in by_shape.values():
                pending.extend(_label_group(run, group, pool))
                while len(pending) > 2 * writers + 2:
                    pending.popleft().result().done += 1
        while pending:
            pending.popleft().result().done += 1


def _forward(run: _Run, group: list[dict]) -> torch.Tensor:
    t0 = time.perf_counter()
    probs = run.teacher.probs(torch.stack([it["image"] for it in group]))
    run.forward_seconds += time.perf_counter() - t0
    if probs.ndim != 4 or probs.shape[1] != run.num_source:
        raise SegunifyError(
            f"the teacher returned {tuple(probs.shape)} scores but the mapping's source taxonomy "
            f"{run.mapping.source.name!r} has {run.num_source} classes"
        )
    return probs


def _label_group(run: _Run, group: list[dict], pool: ThreadPoolExecutor) -> list[Future]:
    """One same-size group through the teacher once, then each target's labels and writes."""
    # one copy into class planes: a channels_last teacher's probabilities made every target's priors op copy
    # them again and its argmax read strided planes (benchmarks/pseudo_label.py); the values are the same
    probs = _forward(run, group).contiguous()
    have_gt = all(it["gt"] is not None for it in group)
    gt = torch.stack([it["gt"] for it in group]).to(run.device, non_blocking=True) if have_gt else None
    futures = []
    for t in run.targets:
        opts = t.settings
        table = run.priors(opts.fill_void)
        labels, conf, changed = label_probs(
            probs,
            gt,
            table,
            priors=opts.priors,
            fill_void=opts.fill_void,
            min_confidence=opts.min_confidence,
            min_allowed_mass=opts.min_allowed_mass,
            ignore_conflicts=opts.ignore_conflicts,
        )
        stats = image_stats(labels, conf, changed, gt, run.num_source, run.num_extra)
        conf_u8 = (
            (conf * 255.0).round_().to(torch.uint8).cpu().numpy() if t.settings.save_confidence else None
        )
        labels_np = labels.cpu().numpy()
        for i, item in enumerate(group):
            if item["index"] in t.finished:
                continue
            c = None if conf_u8 is None else conf_u8[i]
            futures.append(
                pool.submit(_write_one, t, run.samples[item["index"]], labels_np[i], c, stats[i], item)
            )
    if run.advance:
        run.advance(sum(1 for it in group if any(it["index"] not in t.finished for t in run.targets)))
    return futures


def _write_one(
    target: _Target,
    sample: Sample,
    labels: np.ndarray,
    conf: np.ndarray | None,
    stats: ImageStats,
    item: dict,
) -> _Target:
    """Runs in a writer thread; the main thread counts the image as done when it collects the result."""
    record = target.store.write(sample, labels, conf, stats, item["signature"])
    assert target.journal is not None
    target.journal.append(record)
    return target


def _finish(run: _Run, target: _Target, split: str, teacher: TeacherInfo) -> PseudoSummary:
    """Merge the journals into ``manifest.jsonl`` (sample order) and write ``summary.json``."""
    store = target.store
    records = store.records()
    current = [store.current(records, s) for s in run.samples]
    missing = [s.id for s, rec in zip(run.samples, current, strict=True) if rec is None]
    if missing:
        raise SegunifyError(
            f"{len(missing)} image(s) have no current manifest record (e.g. {missing[0]!r}); run again",
            store.out,
        )
    ordered = [rec for rec in current if rec is not None]
    store.write_manifest(ordered)
    summary = summarize(
        [ImageStats.from_record(r) for r in ordered],
        dataset=run.dataset.name,
        split=split,
        root=target.fingerprint["root"],
        mapping=run.mapping,
        teacher=teacher,
        settings=target.settings,
        run=RunInfo(world_size=run.world, ranks=store.timings()),
    )
    store.write_summary(summary)
    return summary
