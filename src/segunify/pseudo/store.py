"""The on-disk format of a pseudo-label folder (layout: :mod:`segunify.pseudo`) and its safety rules.

* **Ours only.** A folder is claimed by writing the marker ``.segunify-pseudo`` first; a non-empty
  folder without it is refused, and only temp files under names this module writes are ever deleted.
* **Inside only.** Every output path is a sample's relative path proven (lexically) to stay under the
  folder, and the folder may neither lie inside the dataset root nor contain it.
* **Honest resume.** ``settings.json`` holds the fingerprint (dataset root, teacher, mapping, options);
  each journal line holds the sample's input signature (size, mtime and ctime of image and label), so
  a changed sample is redone and a changed root or option is refused.
* **One writer.** Rank 0 of a run holds the advisory lock of :func:`segunify.outputs.folder_lock` (the
  ranks of one launched job share rank 0's claim: they start only after it, and a job whose rank 0 is
  refused ends); a second run fails naming the pid.

The marker, the location rules and the lock are :mod:`segunify.outputs`, shared by every command that
writes.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from segunify.datasets import DatasetAdapter, Sample
from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes, atomic_write_json, encode_png
from segunify.jsonio import read_json_object, validate_object
from segunify.labels import declared_size
from segunify.mapping import Mapping
from segunify.outputs import LOCK as LOCK  # re-exported: the lock file of a pseudo-label folder
from segunify.outputs import check_apart, claim_folder, folder_lock, marker_name, sample_inputs
from segunify.pseudo.settings import PseudoSettings, TeacherInfo
from segunify.pseudo.stats import FORMAT, FORMAT_VERSION, ImageStats, PseudoSummary, RankTiming

MANIFEST = "manifest.jsonl"
SUMMARY = "summary.json"
SETTINGS = "settings.json"
MARKER = marker_name("pseudo")
PARTS = ".parts"
CONFIDENCE = "confidence"
_OWN_FILES = {MANIFEST, SUMMARY, SETTINGS, MARKER}
_OWN_PART = re.compile(r"\.parts/timing-\d{5}\.json")
_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # segunify.io's mkstemp names


def fingerprint(
    dataset: DatasetAdapter, split: str, teacher: TeacherInfo, mapping: Mapping, settings: PseudoSettings
) -> dict:
    """What determines the bytes of a folder; a restart must match it exactly. A dataset read through a
    spec file adds the file's sha256 (an edited spec, e.g. other ignore ids, labels other pixels); a
    dataset by name adds nothing, so its folders keep their fingerprint."""
    spec = getattr(dataset, "spec_sha256", None)
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "root": str(Path(dataset.root).resolve()),
        "split": split,
        "teacher_sha256": teacher.sha256,
        "mapping_sha256": mapping.sha256,
        **({"spec_sha256": spec} if spec is not None else {}),
        **settings.fingerprint(),
    }


def pseudo_label_path(out: str | Path, sample: Sample) -> Path:
    """Where the pseudo-label of ``sample`` lives in the pseudo-label folder ``out``."""
    return PseudoStore(out).label_path(sample)


def input_signature(sample: Sample) -> list[int]:
    """Size, mtime and ctime (ns) of the image and the label (links followed): cheap, and changes when
    either is rewritten. ctime is set by the kernel on every change of the file, also by an edit that
    restores size and mtime (``os.utime`` itself sets it), so such an edit is seen too; it also changes
    on a copy, ``chmod`` or ``chown``, after which the sample is redone."""
    sig: list[int] = []
    for path in (sample.image, sample.label):
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        sig += [st.st_size, st.st_mtime_ns, st.st_ctime_ns] if st is not None else [-1, -1, -1]
    return sig


def same_inputs(recorded, signature: list[int]) -> bool:
    """Whether a record's signature matches ``signature`` (:func:`input_signature`). A record of a folder
    written before ctime was recorded (four numbers: size and mtime of image and label) is judged by the
    rule it was made under, size and mtime; the sample's next record holds ctime too."""
    if isinstance(recorded, list) and len(recorded) == 4:
        return recorded == [signature[i] for i in (0, 1, 3, 4)]
    return recorded == signature


def check_locations(root: str | Path, outs: Sequence[str | Path], samples: Sequence[Sample] = ()) -> None:
    """Outputs may not overwrite ground truth (inside the root or an input folder, or holding one) nor
    each other: :func:`segunify.outputs.check_apart`."""
    check_apart(outs, sample_inputs(root, samples))


def load_summary(out: str | Path) -> PseudoSummary:
    """``summary.json`` of a finished pseudo-label folder; one clear line otherwise."""
    path = Path(out) / SUMMARY
    if not path.is_file():
        raise SegunifyError("not a finished pseudo-label directory (summary.json missing)", out)
    data = read_json_object(path, "pseudo-label summary")
    if data.get("format") != FORMAT:
        raise SegunifyError(f"not a segunify pseudo-label summary (format != {FORMAT!r})", path)
    if data.get("format_version") != FORMAT_VERSION:
        raise SegunifyError(
            f"pseudo-label summary of format version {data.get('format_version')!r}, this segunify reads "
            f"{FORMAT_VERSION}: run pseudo-label again into a new folder",
            path,
        )
    settings = data.get("settings")
    if isinstance(settings, dict):  # soft priors (--soft) left the product: older summaries record the flag
        settings.pop("soft", None)
    return validate_object(PseudoSummary, data, "pseudo-label summary", path)


def _png_ok(path: Path, height: int, width: int) -> bool:
    """Whether our PNG at ``path`` decodes at the recorded size (one of another size, e.g. a replaced
    file declaring 30000x30000, is not decoded at all)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return False
    if declared_size(data) != (width, height):
        return False
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return arr is not None and arr.dtype == np.uint8 and arr.shape == (height, width)


class Journal:
    """Append-only JSON lines of one rank; a line goes in only after its PNGs are in place."""

    def __init__(self, path: Path):
        self.lock = threading.Lock()
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
            if path.stat().st_size:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    torn = f.read(1) != b"\n"
                if torn:  # a torn line from a kill stays unparseable, not glued to the next
                    self.file.write("\n")
                    self.file.flush()
        except OSError as exc:
            raise SegunifyError(f"cannot write journal: {exc.strerror or exc}", path) from None

    def append(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:
            try:
                self.file.write(line)
                self.file.flush()
            except OSError as exc:
                raise SegunifyError(f"cannot write journal: {exc.strerror or exc}", self.path) from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # a failed flush was already reported by append; the next run re-checks every line


class PseudoStore:
    """One pseudo-label folder: where each file goes, claiming and locking it, the journal, resume."""

    def __init__(self, out: str | Path):
        self.out = Path(out)

    # ------------------------------------------------------------------------------------------ paths
    @property
    def manifest_path(self) -> Path:
        """The merged manifest, written at the end of a run (before the summary)."""
        return self.out / MANIFEST

    def label_path(self, sample: Sample) -> Path:
        return self.out / self._rel(sample)

    def confidence_path(self, sample: Sample) -> Path:
        return self.out / CONFIDENCE / self._rel(sample)

    def _rel(self, sample: Sample) -> PurePosixPath:
        rel = PurePosixPath(sample.rel)
        if not sample.rel or "\\" in sample.rel or rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise SegunifyError(
                f"sample {sample.id!r} has output path {sample.rel!r}, which would lie outside the output "
                "folder; refusing to write it",
                self.out,
            )
        return rel

    # ------------------------------------------------------------------------------ claim and lock
    @contextmanager
    def open_for_writing(self, samples: Sequence[Sample], wanted: dict) -> Iterator[None]:
        """Rank 0's start: claim the folder, lock it, clear our own stale temps, record the settings."""
        own = {self._rel(s).as_posix() for s in samples}  # every output path is checked before any write
        self.claim()
        with self.lock():
            self._remove_own_temps(own | {f"{CONFIDENCE}/{r}" for r in own})
            for old in (self.out / PARTS).glob("timing-*.json"):
                old.unlink(missing_ok=True)
            self.check_settings(wanted, write=True)
            yield

    def claim(self) -> None:
        """Make the folder ours (marker first), or refuse one that holds anything else."""
        out = self.out
        old = out.is_dir() and not (out / MARKER).is_file() and (out / SETTINGS).is_file()
        if old and (out / PARTS).is_dir():
            raise SegunifyError(
                "pseudo-label folder of an older segunify (no marker, no dataset root recorded): "
                "write into a new folder",
                out,
            )
        claim_folder(out, "pseudo", {"format": FORMAT})

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's advisory lock, or fail naming the pid of the run that holds it."""
        with folder_lock(self.out, "pseudo-label"):
            yield

    def _remove_own_temps(self, own: set[str]) -> None:
        """Temp files a killed run left, only under names this module writes."""
        for dirpath, _dirs, files in os.walk(self.out):
            rel_dir = PurePosixPath(Path(dirpath).relative_to(self.out).as_posix())
            for name in files:
                match = _TEMP.fullmatch(name)
                if match is None:
                    continue
                rel = (rel_dir / match["name"]).as_posix()
                if rel in own or rel in _OWN_FILES or _OWN_PART.fullmatch(rel):
                    Path(dirpath, name).unlink(missing_ok=True)

    def check_settings(self, wanted: dict, write: bool) -> None:
        path = self.out / SETTINGS
        if not path.is_file():
            if write:
                atomic_write_json(path, wanted, indent=2, sort_keys=True)
            return
        have = read_json_object(path, "settings file")
        if have == wanted:
            return
        if have.get("root") != wanted.get("root"):
            raise SegunifyError(
                f"this folder holds pseudo-labels of dataset root {have.get('root')!r}, not "
                f"{wanted.get('root')!r}; use another output folder or delete it",
                path,
            )
        diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != wanted.get(k))
        raise SegunifyError(
            f"this folder holds pseudo-labels made with other settings ({', '.join(diff)}); "
            "use another output folder or delete it",
            path,
        )

    # ------------------------------------------------------------------------------ journal, resume
    def journal(self, rank: int) -> Journal:
        return Journal(self.out / PARTS / f"manifest-{rank:05d}.jsonl")

    def records(self) -> dict[str, list[dict]]:
        """Records by id from the manifest and then the journals (a torn line from kill -9 is skipped).
        An id may have several (redone after its inputs changed, maybe by another rank): see :meth:`current`."""
        parts = sorted((self.out / PARTS).glob("manifest-*.jsonl")) if (self.out / PARTS).is_dir() else []
        records: dict[str, list[dict]] = {}
        for path in [self.out / MANIFEST, *parts]:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    records.setdefault(rec["id"], []).append(rec)
        return records

    @staticmethod
    def current(records: dict[str, list[dict]], sample: Sample) -> dict | None:
        """The sample's latest record made from its inputs as they are now (``None``: redo it)."""
        signature = input_signature(sample)
        mine = [r for r in records.get(sample.id, ()) if same_inputs(r.get("signature"), signature)]
        return mine[-1] if mine and mine[-1].get("output") == sample.rel else None

    def stale(self, samples: Sequence[Sample]) -> str | None:
        """Why the folder does not hold a pseudo-label of each of ``samples`` made from its inputs as
        they are now (one line), or ``None``: what a reader checks before trusting the labels."""
        records = self.records()
        for s in samples:
            if self.current(records, s) is not None:
                continue
            if not records.get(s.id):
                return f"no pseudo-label of sample {s.id!r} (made for other samples or with --limit)"
            return (
                f"sample {s.id!r} changed since its pseudo-label was made (image {s.image} or label "
                f"{s.label}): run pseudo-label again with the same --out, which redoes changed samples"
            )
        return None

    def finished(
        self,
        samples: Sequence[Sample],
        indices: Sequence[int],
        save_confidence: bool,
        threads: int,
    ) -> set[int]:
        """Indices with a current record (inputs unchanged) whose PNG(s) decode at the recorded size."""
        records = self.records()

        def ok(i: int) -> bool:
            rec = self.current(records, samples[i])
            return rec is not None and self.outputs_ok(samples[i], rec, save_confidence)

        candidates = [i for i in indices if samples[i].id in records]
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            flags = list(pool.map(ok, candidates))
        return {i for i, good in zip(candidates, flags, strict=True) if good}

    def outputs_ok(self, sample: Sample, rec: dict, save_confidence: bool) -> bool:
        """The sample's PNG(s) decode at the size its record gives."""
        try:
            h, w = int(rec["height"]), int(rec["width"])
        except (KeyError, TypeError, ValueError):
            return False
        if not _png_ok(self.label_path(sample), h, w):
            return False
        return not save_confidence or _png_ok(self.confidence_path(sample), h, w)

    def write(
        self,
        sample: Sample,
        labels: np.ndarray,
        conf: np.ndarray | None,
        stats: ImageStats,
        signature: list[int],
    ) -> dict:
        """Write one image's PNG(s) atomically; returns its manifest record (journal it afterwards)."""
        atomic_write_bytes(self.label_path(sample), encode_png(labels))
        conf_rel = None
        if conf is not None:
            atomic_write_bytes(self.confidence_path(sample), encode_png(conf))
            conf_rel = f"{CONFIDENCE}/{sample.rel}"
        return {
            "id": sample.id,
            "input": str(sample.image),
            "label": None if sample.label is None else str(sample.label),
            "output": sample.rel,
            "confidence": conf_rel,
            "signature": signature,
            **stats.to_record(),
        }

    # ------------------------------------------------------------------------------------- the end
    def write_timing(self, timing: RankTiming) -> None:
        atomic_write_json(self.out / PARTS / f"timing-{timing.rank:05d}.json", timing.model_dump())

    def timings(self) -> list[RankTiming]:
        out = []
        for path in sorted((self.out / PARTS).glob("timing-*.json")):
            try:
                out.append(RankTiming.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out

    def write_manifest(self, ordered: Sequence[dict]) -> None:
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in ordered)
        atomic_write_bytes(self.manifest_path, text.encode("utf-8"))

    def write_summary(self, summary: PseudoSummary) -> None:
        atomic_write_json(self.out / SUMMARY, summary.model_dump(mode="json"), indent=2)
