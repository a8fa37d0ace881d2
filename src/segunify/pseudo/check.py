"""Is a pseudo-label folder complete? The question before training on it, or after a preempted job.

Complete means: the run finished (``summary.json``, ``manifest.jsonl``), every sample it was asked for
has a record made from its inputs as they are now (size + mtime of image and label unchanged) and a
label PNG (and a confidence PNG where the run wrote one) that decodes at the recorded size. The
samples come from the dataset named in ``settings.json`` (its recorded root, split and ``--limit``);
where that root cannot be read (another machine), the manifest's own records are checked instead.
Nothing is written: this reads the folder, as :meth:`~segunify.pseudo.store.PseudoStore.finished`
does on a restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from segunify.datasets import Sample
from segunify.errors import SegunifyError
from segunify.pseudo.folder import PseudoFolder, RecordedRun
from segunify.pseudo.store import PseudoStore


@dataclass
class FolderCheck:
    """What :func:`check_folder` found; ``missing``/``stale`` hold sample ids (all of them)."""

    out: Path
    dataset: str
    split: str
    finished: bool
    expected: int
    done: int
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    checked_against: str = "dataset"  # or "manifest" where the dataset root is not readable

    @property
    def complete(self) -> bool:
        return self.finished and self.done == self.expected and not self.missing and not self.stale

    def line(self) -> str:
        """One line for the terminal: the verdict and what to do."""
        what = f"{self.dataset}/{self.split}"
        how = "" if self.checked_against == "dataset" else " (dataset root not readable here: manifest only)"
        if self.complete:
            return (
                f"complete: {self.done} of {self.expected} images of {what}, every label PNG decodes at its "
                f"recorded size, inputs unchanged since labelling{how}"
            )
        parts = [f"{self.done} of {self.expected} images of {what} done"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing or unreadable (e.g. {self.missing[0]!r})")
        if self.stale:
            parts.append(f"{len(self.stale)} with changed inputs (e.g. {self.stale[0]!r})")
        if not self.finished:  # a --limit is recorded in summary.json only: the whole split is counted
            parts.append("no summary.json (the run has not finished; counted against the whole split)")
        return f"incomplete{how}: {'; '.join(parts)}; rerun the same pseudo-label command to finish it"

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "complete": self.complete,
            **{k: getattr(self, k) for k in ("dataset", "split", "finished", "expected", "done")},
            **{k: getattr(self, k) for k in ("missing", "stale", "checked_against")},
        }


def _samples(run: RecordedRun, limit: int | None) -> list[Sample] | None:
    """The samples the run was asked for, from the recorded dataset and root; None where unreadable."""
    from segunify.datasets import create_dataset

    if not run.root or not os.path.isdir(run.root):
        return None
    try:
        return create_dataset(run.dataset, run.root).samples(run.split)[:limit]
    except (SegunifyError, TypeError, KeyError, OSError):
        return None


def _manifest_samples(store: PseudoStore, records: dict[str, list[dict]]) -> list[Sample]:
    """The manifest's records as samples (the dataset root cannot be read here)."""
    out = []
    for rid, recs in records.items():
        rec = recs[-1]
        label = Path(rec["label"]) if rec.get("label") else None
        image, rel = Path(rec.get("input", "")), str(rec.get("output", ""))
        out.append(Sample(id=rid, image=image, label=label, split="", rel=rel))
    return out


def check_folder(out: str | Path, threads: int = 4) -> FolderCheck:
    """Check the pseudo-label folder ``out`` (see the module docstring); raises only for a folder that
    is not a segunify pseudo-label folder."""
    folder = PseudoFolder(out)
    run = folder.recorded_run()
    summary = folder.summary if folder.finished else None
    limit = summary.settings.limit if summary is not None else None
    store = PseudoStore(out)
    records = store.records()
    samples = _samples(run, limit)
    against = "dataset"
    if samples is None:
        samples, against = _manifest_samples(store, records), "manifest"
    save_conf = summary.settings.save_confidence if summary is not None else False
    if against == "dataset":
        done = store.finished(samples, range(len(samples)), save_conf, threads)
    else:  # the inputs are elsewhere: only the outputs can be checked
        done = {i for i, s in enumerate(samples) if store.outputs_ok(s, records[s.id][-1], save_conf)}
    not_done = [s for i, s in enumerate(samples) if i not in done]
    changed = [s for s in not_done if against == "dataset" and s.id in records]
    stale = [s.id for s in changed if store.current(records, s) is None]
    stale_ids = set(stale)
    expected = summary.images if summary is not None and against == "manifest" else len(samples)
    return FolderCheck(
        out=folder.path,
        dataset=run.dataset,
        split=run.split,
        finished=summary is not None,
        expected=expected,
        done=len(done),
        missing=[s.id for s in not_done if s.id not in stale_ids],
        stale=stale,
        checked_against=against,
    )


__all__ = ["FolderCheck", "check_folder"]
