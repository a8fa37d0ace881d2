"""The pseudo-labelling runner: teacher probabilities + priors for every image of a split, written as
index PNGs with a manifest and a summary (layout in :mod:`segunify.pseudo`).

Why it is built this way:

* **Shards of whole batches.** The split's samples are cut into global batches of ``batch_size`` in
  sample order and batch ``i`` goes to rank ``i % world``. Every image is therefore always computed in
  the same batch, whatever the number of processes or restarts, so the union of a multi-process run
  equals a single-process run byte for byte (a batch's composition can change convolution arithmetic).
* **Resume.** A PNG is written atomically (temp + rename) and only then its manifest line is appended
  to this rank's journal. A restart takes every journalled image whose PNG decodes at the recorded size
  as finished, and re-runs a batch only when one of its images is not; ``kill -9`` thus loses at most
  the images in flight, and a half-written PNG never exists under its real name.
* **No waiting on I/O.** Images and labels are decoded in DataLoader workers; PNG encoding and writing
  happen in a thread pool (OpenCV releases the GIL) while the next batch runs through the teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from segunify.datasets import DatasetAdapter, Sample
from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes, encode_png
from segunify.jsonio import read_json_object
from segunify.mapping import Mapping
from segunify.pseudo.priors import apply_priors, plain_argmax, score_at
from segunify.taxonomy import IGNORE

MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"
SETTINGS = "settings.json"
PARTS = ".parts"
CONFIDENCE = "confidence"
FORMAT = "segunify-pseudo-labels"
FORMAT_VERSION = 1


class Teacher(Protocol):
    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> softmax probabilities ``[B, C, H, W]`` at the images' resolution."""


@dataclass(frozen=True)
class TeacherInfo:
    """What identifies a teacher: its class names (checked against the mapping) and weights hash."""

    classes: tuple[str, ...]
    taxonomy: str | None = None
    path: str = ""
    sha256: str = ""


@dataclass
class PseudoSettings:
    """Run options. ``size``/``flip``/``scales``/``amp`` are applied by the teacher and recorded here."""

    priors: bool = True
    fill_void: bool = False
    min_confidence: float | None = None
    save_confidence: bool = False
    size: tuple[int, int] | None = None
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    amp: bool = False
    batch_size: int = 4
    workers: int = 2
    writers: int = 2
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise SegunifyError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0 or self.writers < 1:
            raise SegunifyError("--workers must be >= 0 and the writer pool >= 1")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise SegunifyError(f"--min-confidence must be in [0, 1], got {self.min_confidence}")
        if self.limit is not None and self.limit < 1:
            raise SegunifyError(f"--limit must be >= 1, got {self.limit}")

    def fingerprint(self) -> dict[str, Any]:
        """The options that change output bytes (batch size, workers and limit do not)."""
        return {
            "priors": self.priors,
            "fill_void": self.fill_void,
            "min_confidence": self.min_confidence,
            "size": list(self.size) if self.size else None,
            "flip": self.flip,
            "scales": list(self.scales),
            "amp": self.amp,
        }


def pseudo_label_path(out: str | Path, sample: Sample) -> Path:
    """Where the pseudo-label of ``sample`` lives in a pseudo-label directory."""
    return Path(out) / sample.rel


def confidence_path(out: str | Path, sample: Sample) -> Path:
    return Path(out) / CONFIDENCE / sample.rel


def load_summary(out: str | Path) -> dict:
    """``summary.json`` of a finished pseudo-label directory, with a clear error otherwise."""
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise SegunifyError("not a finished pseudo-label directory (summary.json missing)", out)
    data = read_json_object(path, "summary")
    if data.get("format") != FORMAT:
        raise SegunifyError(f"not a segunify pseudo-label summary (format != {FORMAT!r})", path)
    return data


def teacher_from_checkpoint(
    checkpoint: str | Path,
    device: str | torch.device,
    settings: PseudoSettings,
) -> tuple[Teacher, TeacherInfo]:
    """The real teacher: a :class:`~segunify.models.inference.Predictor` on a segunify checkpoint."""
    from segunify.models.checkpoint import WEIGHTS, sha256_file
    from segunify.models.inference import Predictor

    opts: dict[str, Any] = {"flip": settings.flip, "scales": settings.scales, "amp": settings.amp}
    if settings.size is not None:
        opts["size"] = settings.size
    predictor = Predictor.from_checkpoint(checkpoint, device=device, **opts)
    meta = predictor.meta
    if settings.size is None and predictor.size is not None:
        settings.size = tuple(predictor.size)
    digest = meta.get("weights_sha256") or sha256_file(Path(checkpoint) / WEIGHTS)
    info = TeacherInfo(
        classes=tuple(meta["classes"]),
        taxonomy=meta.get("taxonomy"),
        path=str(Path(checkpoint).resolve()),
        sha256=str(digest),
    )
    return predictor, info


def check_compatible(mapping: Mapping, dataset: DatasetAdapter, teacher: TeacherInfo) -> None:
    """The mapping must lead from the dataset's taxonomy to exactly the teacher's classes."""
    where = mapping.path or None
    src, tax = mapping.source, dataset.taxonomy
    if tuple(src.classes) != tuple(teacher.classes):
        raise SegunifyError(
            f"mapping's source taxonomy {src.name!r} ({src.num_classes} classes) does not match the teacher's "
            f"classes ({teacher.taxonomy or '?'}, {len(teacher.classes)} classes)",
            where,
        )
    if tuple(mapping.extra.classes) != tuple(tax.classes):
        raise SegunifyError(
            f"mapping's extra taxonomy {mapping.extra.name!r} ({mapping.extra.num_classes} classes) is not the "
            f"taxonomy of dataset {dataset.name!r} ({tax.name!r}, {tax.num_classes} classes)",
            where,
        )


# ----------------------------------------------------------------------------------------------------
# decoding (DataLoader workers)


class _Items(torch.utils.data.Dataset):
    """Image + GT of one sample; errors travel back as text so the main process can report one line."""

    def __init__(self, dataset: DatasetAdapter, samples: Sequence[Sample], num_extra: int, need_gt: bool):
        self.dataset, self.samples, self.num_extra, self.need_gt = dataset, samples, num_extra, need_gt

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        try:
            if s.label is None:
                if self.need_gt:
                    raise SegunifyError(
                        f"sample {s.id!r} has no ground-truth label; priors need one", s.image
                    )
                image, gt = self.dataset.read_image(s), None
            else:
                image, gt = self.dataset.sample(s)
                bad = np.flatnonzero(np.bincount(gt.ravel(), minlength=256)[self.num_extra : IGNORE])
                if bad.size:
                    raise SegunifyError(
                        f"ground truth holds id(s) {(bad + self.num_extra).tolist()[:10]} that the mapping "
                        f"lacks (extra classes 0..{self.num_extra - 1}, 255 = ignore)",
                        s.label,
                    )
        except SegunifyError as exc:
            return {"index": i, "error": str(exc)}
        except Exception as exc:  # a decoder crash on a broken file must still name the file
            return {"index": i, "error": f"{s.image}: cannot read sample {s.id!r}: {exc}"}
        return {
            "index": i,
            "error": None,
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "gt": None if gt is None else torch.from_numpy(np.ascontiguousarray(gt)),
        }


def _collate(items: list[dict]) -> list[dict]:
    return items


# ----------------------------------------------------------------------------------------------------
# journal (per-rank manifest parts)


def _read_records(paths: Sequence[Path]) -> dict[str, dict]:
    """Manifest records by id from journals/manifests; a torn last line (kill -9) is skipped."""
    records: dict[str, dict] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "id" in rec:
                records[rec["id"]] = rec
    return records


def _record_paths(out: Path) -> list[Path]:
    parts = sorted((out / PARTS).glob("manifest-*.jsonl")) if (out / PARTS).is_dir() else []
    return [out / MANIFEST, *parts] if (out / MANIFEST).is_file() else parts


def _png_ok(path: Path, height: int, width: int) -> bool:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return False
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return arr is not None and arr.dtype == np.uint8 and arr.shape == (height, width)


class _Journal:
    """Append-only JSON lines of this rank; a line goes in only after its PNGs are in place."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if path.stat().st_size:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self.file.write("\n")  # a torn line from a kill stays unparseable, not glued
                    self.file.flush()

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:
            self.file.write(line)
            self.file.flush()

    def close(self) -> None:
        self.file.close()


# ----------------------------------------------------------------------------------------------------
# the run


@dataclass
class _Counters:
    done: int = 0
    skipped: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_settings(out: Path, wanted: dict, write: bool) -> None:
    path = out / SETTINGS
    if path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SegunifyError(f"corrupt settings file: {exc}", path) from None
        if have != wanted:
            diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
            raise SegunifyError(
                f"this folder holds pseudo-labels made with other settings ({', '.join(diff)}); "
                "use another --out or delete it",
                path,
            )
    elif write:
        atomic_write_bytes(path, (json.dumps(wanted, indent=2, sort_keys=True) + "\n").encode())


def _remove_stale_temps(out: Path) -> None:
    """Temp files left by a killed run (``.<name>.*.tmp`` of atomic_write_bytes)."""
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                Path(dirpath, name).unlink(missing_ok=True)


def run_pseudo_label(
    teacher: Teacher,
    teacher_info: TeacherInfo,
    dataset: DatasetAdapter,
    split: str,
    mapping: Mapping,
    out: str | Path,
    settings: PseudoSettings,
    *,
    device: str | torch.device = "cpu",
    state=None,
    progress: Callable[[int, int], Any] | None = None,
) -> dict | None:
    """Pseudo-label one split; returns the summary on rank 0 (``None`` on other ranks).

    ``state`` is an ``accelerate.PartialState`` (rank, world size, barrier); ``None`` = one process.
    ``progress(todo, skipped)`` may return a callable ``advance(n)`` (e.g. a rich progress bar on rank 0).
    """
    check_compatible(mapping, dataset, teacher_info)
    out = Path(out)
    rank = state.process_index if state is not None else 0
    world = state.num_processes if state is not None else 1
    device = torch.device(device)
    samples = dataset.samples(split)
    if settings.limit is not None:
        samples = samples[: settings.limit]
    if not samples:
        raise SegunifyError(f"dataset {dataset.name!r} has no samples in split {split!r}", dataset.root)

    fingerprint = {
        "format": FORMAT,
        "dataset": dataset.name,
        "split": split,
        "teacher_sha256": teacher_info.sha256,
        "mapping_sha256": _sha256_text(mapping.to_csv()),
        **settings.fingerprint(),
    }
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        for old in (out / PARTS).glob("timing-*.json"):
            old.unlink(missing_ok=True)
    _check_settings(out, fingerprint, write=rank == 0)
    records = _read_records(_record_paths(out))
    _barrier(state)

    batches = [
        list(range(i, min(i + settings.batch_size, len(samples))))
        for i in range(0, len(samples), settings.batch_size)
    ]
    mine = batches[rank::world]
    finished = _verify_finished(out, samples, [i for b in mine for i in b], records, settings)
    todo_batches = [b for b in mine if not all(i in finished for i in b)]
    counters = _Counters(skipped=sum(1 for b in mine for i in b if i in finished))
    todo_images = sum(1 for b in todo_batches for i in b if i not in finished)
    advance = progress(todo_images, counters.skipped) if progress is not None else None

    allowed = torch.as_tensor(mapping.allowed, device=device)
    start = time.perf_counter()
    if todo_batches:
        journal = _Journal(out / PARTS / f"manifest-{rank:05d}.jsonl")
        try:
            _process(
                teacher,
                dataset,
                samples,
                todo_batches,
                finished,
                allowed,
                mapping,
                out,
                settings,
                device,
                journal,
                counters,
                advance,
            )
        finally:
            journal.close()
    counters.seconds = time.perf_counter() - start
    _write_timing(out, rank, counters)
    _barrier(state)
    if rank != 0:
        return None
    return _finish(out, samples, dataset, split, mapping, teacher_info, settings, world, counters)


def _barrier(state) -> None:
    if state is not None and state.num_processes > 1:
        state.wait_for_everyone()


def _verify_finished(
    out: Path,
    samples: Sequence[Sample],
    indices: Sequence[int],
    records: dict[str, dict],
    settings: PseudoSettings,
) -> set[int]:
    """Indices whose journal record exists and whose PNG(s) decode at the recorded size."""
    candidates = [i for i in indices if samples[i].id in records]

    def ok(i: int) -> bool:
        rec, s = records[samples[i].id], samples[i]
        try:
            h, w = int(rec["height"]), int(rec["width"])
        except (KeyError, TypeError, ValueError):
            return False
        if rec.get("output") != s.rel or not _png_ok(pseudo_label_path(out, s), h, w):
            return False
        return not settings.save_confidence or _png_ok(confidence_path(out, s), h, w)

    if not candidates:
        return set()
    with ThreadPoolExecutor(max_workers=max(1, settings.writers)) as pool:
        flags = list(pool.map(ok, candidates))
    return {i for i, good in zip(candidates, flags, strict=True) if good}


def _process(
    teacher: Teacher,
    dataset: DatasetAdapter,
    samples: Sequence[Sample],
    batches: list[list[int]],
    finished: set[int],
    allowed: torch.Tensor,
    mapping: Mapping,
    out: Path,
    settings: PseudoSettings,
    device: torch.device,
    journal: _Journal,
    counters: _Counters,
    advance: Callable[[int], Any] | None,
) -> None:
    num_extra = mapping.extra.num_classes
    num_source = mapping.source.num_classes
    items = _Items(dataset, samples, num_extra, need_gt=settings.priors)
    loader = torch.utils.data.DataLoader(
        items,
        batch_sampler=batches,
        num_workers=settings.workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if settings.workers > 0 else None,
    )
    pending: deque[Future] = deque()
    max_pending = 2 * settings.writers + 2
    with ThreadPoolExecutor(max_workers=settings.writers, thread_name_prefix="pseudo-writer") as pool:
        for batch in loader:
            for item in batch:
                if item["error"]:
                    raise SegunifyError(item["error"])
            by_shape: dict[tuple[int, ...], list[dict]] = {}
            for item in batch:
                by_shape.setdefault(tuple(item["image"].shape), []).append(item)
            for group in by_shape.values():
                t0 = time.perf_counter()
                images = torch.stack([it["image"] for it in group])
                probs = teacher.probs(images)
                counters.forward_seconds += time.perf_counter() - t0
                if probs.ndim != 4 or probs.shape[1] != num_source:
                    raise SegunifyError(
                        f"the teacher returned {tuple(probs.shape)} scores but the mapping's source taxonomy "
                        f"{mapping.source.name!r} has {num_source} classes"
                    )
                results = _label_group(probs, group, allowed, settings, device, num_extra)
                for item, result in zip(group, results, strict=True):
                    if item["index"] in finished:
                        continue
                    pending.append(
                        pool.submit(_write_one, out, samples[item["index"]], result, settings, journal)
                    )
                while len(pending) > max_pending:
                    pending.popleft().result()
                    counters.done += 1
                    if advance:
                        advance(1)
        while pending:
            pending.popleft().result()
            counters.done += 1
            if advance:
                advance(1)


def _label_group(
    probs: torch.Tensor,
    group: list[dict],
    allowed: torch.Tensor,
    settings: PseudoSettings,
    device: torch.device,
    num_extra: int,
) -> list[dict]:
    """Labels, confidence and per-image statistics of one same-size group, computed batch-wise."""
    b, _, h, w = probs.shape
    have_gt = all(it["gt"] is not None for it in group)
    gt = torch.stack([it["gt"] for it in group]).to(device, non_blocking=True) if have_gt else None
    if settings.priors:
        assert gt is not None
        labels, conf = apply_priors(
            probs,
            gt,
            allowed,
            fill_void=settings.fill_void,
            min_confidence=settings.min_confidence,
            scores_are_probs=True,
        )
        best = probs.amax(1)
        valid = labels != IGNORE
        changed = valid & (score_at(probs, labels) < best)
    else:
        labels, conf = plain_argmax(probs, scores_are_probs=True)
        if settings.min_confidence is not None:
            low = conf < settings.min_confidence
            labels.masked_fill_(low, IGNORE)
            conf = conf.masked_fill(low, 0.0)
        valid = labels != IGNORE
        changed = torch.zeros_like(valid)
    offs = (torch.arange(b, device=device) * 256).view(b, 1, 1)
    class_pixels = torch.bincount((labels.long() + offs).view(-1), minlength=b * 256).view(b, 256)
    kept = valid.view(b, -1).sum(1)
    conf_sum = conf.double().view(b, -1).sum(1)
    if gt is not None:
        g = gt.long() + offs
        extra_pixels = torch.bincount(g.view(-1), minlength=b * 256).view(b, 256)
        extra_changed = torch.bincount(g[changed], minlength=b * 256).view(b, 256)
    else:
        extra_pixels = extra_changed = torch.zeros(b, 256, dtype=torch.long, device=device)
    conf_u8 = (conf * 255.0).round_().to(torch.uint8).cpu().numpy() if settings.save_confidence else None
    labels_np = labels.cpu().numpy()
    stats = torch.stack([kept, changed.view(b, -1).sum(1)], 1).cpu().tolist()
    class_pixels = class_pixels.cpu().numpy()
    extra_pixels, extra_changed = extra_pixels.cpu().numpy(), extra_changed.cpu().numpy()
    conf_sum = conf_sum.cpu().tolist()
    num_source = probs.shape[1]
    results = []
    for i in range(b):
        n_kept, n_changed = stats[i]
        results.append(
            {
                "labels": labels_np[i],
                "confidence": None if conf_u8 is None else conf_u8[i],
                "height": h,
                "width": w,
                "pixels": h * w,
                "ignored": h * w - n_kept,
                "changed": n_changed,
                "mean_confidence": round(conf_sum[i] / n_kept, 6) if n_kept else 0.0,
                "class_pixels": class_pixels[i, :num_source].tolist(),
                "extra_pixels": extra_pixels[i, :num_extra].tolist()
                + [int(extra_pixels[i, num_extra:].sum())],
                "extra_changed": extra_changed[i, :num_extra].tolist(),
                "has_gt": have_gt,
            }
        )
    return results


def _write_one(out: Path, sample: Sample, result: dict, settings: PseudoSettings, journal: _Journal) -> None:
    target = pseudo_label_path(out, sample)
    conf_rel = None
    try:
        atomic_write_bytes(target, encode_png(result["labels"]))
        if result["confidence"] is not None:
            target = confidence_path(out, sample)
            atomic_write_bytes(target, encode_png(result["confidence"]))
            conf_rel = f"{CONFIDENCE}/{sample.rel}"
    except OSError as exc:
        raise SegunifyError(f"cannot write pseudo-label: {exc.strerror or exc}", target) from None
    record = {
        "id": sample.id,
        "input": str(sample.image),
        "label": None if sample.label is None else str(sample.label),
        "output": sample.rel,
        "confidence": conf_rel,
        **{k: v for k, v in result.items() if k not in ("labels", "confidence", "has_gt")},
    }
    if not result["has_gt"]:
        record["extra_pixels"] = record["extra_changed"] = None
    journal.append(record)


def _write_timing(out: Path, rank: int, counters: _Counters) -> None:
    data = {
        "rank": rank,
        "images": counters.done,
        "skipped": counters.skipped,
        "seconds": round(counters.seconds, 3),
        "forward_seconds": round(counters.forward_seconds, 3),
    }
    atomic_write_bytes(out / PARTS / f"timing-{rank:05d}.json", (json.dumps(data) + "\n").encode())


def _finish(
    out: Path,
    samples: Sequence[Sample],
    dataset: DatasetAdapter,
    split: str,
    mapping: Mapping,
    teacher: TeacherInfo,
    settings: PseudoSettings,
    world: int,
    counters: _Counters,
) -> dict:
    """Merge the journals into ``manifest.jsonl`` (sample order) and write ``summary.json``."""
    records = _read_records(_record_paths(out))
    missing = [s.id for s in samples if s.id not in records]
    if missing:
        raise SegunifyError(
            f"{len(missing)} image(s) have no manifest record (e.g. {missing[0]!r}); run again", out
        )
    ordered = [records[s.id] for s in samples]
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in ordered)
    atomic_write_bytes(out / MANIFEST, text.encode("utf-8"))

    src, extra = mapping.source, mapping.extra
    class_pixels = np.sum([r["class_pixels"] for r in ordered], axis=0, dtype=np.int64)
    with_gt = [r for r in ordered if r.get("extra_pixels") is not None]
    extra_pixels = (
        np.sum([r["extra_pixels"] for r in with_gt], axis=0, dtype=np.int64)
        if with_gt
        else np.zeros(extra.num_classes + 1, dtype=np.int64)
    )
    extra_changed = (
        np.sum([r["extra_changed"] for r in with_gt], axis=0, dtype=np.int64)
        if with_gt
        else np.zeros(extra.num_classes, dtype=np.int64)
    )
    pixels = sum(r["pixels"] for r in ordered)
    ignored = sum(r["ignored"] for r in ordered)
    kept = pixels - ignored
    conf_total = sum(r["mean_confidence"] * (r["pixels"] - r["ignored"]) for r in ordered)
    timings = []
    for path in sorted((out / PARTS).glob("timing-*.json")):
        try:
            timings.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    summary = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset.name,
        "split": split,
        "root": str(dataset.root),
        "source_taxonomy": src.name,
        "extra_taxonomy": extra.name,
        "mapping": {"path": mapping.path, "sha256": _sha256_text(mapping.to_csv())},
        "teacher": {"path": teacher.path, "sha256": teacher.sha256, "taxonomy": teacher.taxonomy},
        "settings": {**asdict(settings), "size": list(settings.size) if settings.size else None},
        "images": len(ordered),
        "pixels": pixels,
        "ignored": ignored,
        "ignored_share": round(ignored / pixels, 6) if pixels else 0.0,
        "changed": int(extra_changed.sum()),
        "changed_share": round(int(extra_changed.sum()) / kept, 6) if kept else 0.0,
        "mean_confidence": round(conf_total / kept, 6) if kept else 0.0,
        "class_pixels": {c: int(n) for c, n in zip(src.classes, class_pixels, strict=True)},
        "class_share": {
            c: round(int(n) / kept, 6) if kept else 0.0
            for c, n in zip(src.classes, class_pixels, strict=True)
        },
        "extra_classes": {
            name: {
                "kind": mapping.kind(k),
                "pixels": int(extra_pixels[k]),
                "changed": int(extra_changed[k]),
                "changed_share": round(int(extra_changed[k]) / int(extra_pixels[k]), 6)
                if extra_pixels[k]
                else 0.0,
            }
            for k, name in enumerate(extra.classes)
        },
        "changed_share_per_class": {
            name: round(int(extra_changed[k]) / int(extra_pixels[k]), 6) if extra_pixels[k] else None
            for k, name in enumerate(extra.classes)
        },
        "void_gt_pixels": int(extra_pixels[extra.num_classes]),
        "run": {
            "world_size": world,
            "processed": sum(t.get("images", 0) for t in timings),
            "skipped": sum(t.get("skipped", 0) for t in timings),
            "seconds": max((t.get("seconds", 0.0) for t in timings), default=0.0),
            "ranks": timings,
        },
    }
    atomic_write_bytes(out / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary
