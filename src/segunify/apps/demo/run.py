"""Running the demo's stages: each kind of stage is one library call (no command line in between).

Finished stages are recorded in ``<work>/stages.json`` with their parameters; a rerun with the same
parameters skips them, so an interrupted demo continues where it stopped. Long stages resume by
themselves too (the pseudo-label runner and the trainer both resume exactly).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segunify.apps.demo.config import DemoConfig
from segunify.apps.demo.params import (
    EvaluateParams,
    ImportParams,
    InterpolateParams,
    PseudoParams,
    TrainParams,
    ViewParams,
)
from segunify.apps.demo.plan import Layout, Stage
from segunify.datasets.base import evenly
from segunify.errors import SegunifyError
from segunify.io import atomic_write_json, atomic_write_text, write_index_png

Say = Callable[[str], None]
VIEW_MARK = ".segunify-view.json"


def choose(samples: list, include: list[str], exclude: list[str], limit: int | None) -> list:
    """Samples whose id matches an ``include`` glob (all when none is given) and no ``exclude`` glob,
    thinned evenly to ``limit``."""

    def matches(sample, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(sample.id, p) for p in patterns)

    kept = [s for s in samples if (not include or matches(s, include)) and not matches(s, exclude)]
    return evenly(kept, limit)


def build_view(p: ViewParams) -> None:
    """A folder mirroring the dataset's layout with links to the chosen samples only, so every adapter
    reads it as the dataset itself (rebuilt from scratch: no stale link survives a config change)."""
    from segunify.datasets import create_dataset

    src = create_dataset(p.dataset, p.root, **p.options)
    chosen = choose(src.samples(p.split), list(p.include), list(p.exclude), p.limit)
    if not chosen:
        raise SegunifyError(f"no {p.dataset} {p.split} sample is left by include/exclude", p.root)
    out = Path(p.out)
    if out.exists():
        shutil.rmtree(out)
    for s in chosen:
        for path in (s.image, s.label):
            if path is not None:
                link = out / path.resolve().relative_to(src.root.resolve())
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(path.resolve(), link)
    got = [s.id for s in create_dataset(p.dataset, out, **p.options).samples(p.split)]
    if got != [s.id for s in chosen]:
        raise SegunifyError(f"the {p.dataset} adapter does not read a view of links as its dataset", out)
    atomic_write_json(out / VIEW_MARK, {"samples": len(chosen), "source": str(src.root)})


def import_teacher(p: ImportParams) -> None:
    """The weights file as a checkpoint; a file of the pretrained table brings its own input size and
    normalisation, another one needs the config's model, options and taxonomy."""
    from segunify.models.pretrained import identify, import_weights

    weights = Path(p.weights)
    if not weights.is_file():
        raise SegunifyError("teacher weights not found", weights)
    options = {"model": p.model, "model_kwargs": p.kwargs, "taxonomy": p.taxonomy}
    import_weights(weights, p.out, identify(weights), **options, overwrite=True)


def replace_stale(record: Path, text: str, *folders: Path) -> bool:
    """Whether ``record`` already holds ``text`` (a stage's parameters): then an interrupted run of the
    stage resumes. Otherwise the stage's folders, the demo's own in the run folder, were made for other
    parameters: they are removed and ``text`` is recorded."""
    if record.is_file() and record.read_text(encoding="utf-8") == text:
        return True
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
    record.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, text)
    return False


def pseudo_label(p: PseudoParams, onnx_cache: str | None = None, fingerprint: str = "") -> None:
    """One teacher pass writes both label sets: P (with the priors) and R (without). An interrupted pass of
    the same stage resumes; one for other parameters or other inputs (``fingerprint``) starts afresh."""
    from segunify.datasets import create_dataset
    from segunify.mapping import resolve_mapping
    from segunify.pseudo import PseudoSettings, run_pseudo_label
    from segunify.pseudo.runner import teacher_from_checkpoint

    out, without = Path(p.out), Path(p.without_priors)
    record = json.dumps(p.to_json() | {"fingerprint": fingerprint}, sort_keys=True, indent=1)
    replace_stale(out.parent / "stage.json", record, out, without)
    options = {"flip": p.flip, "backend": p.backend, "scales": tuple(p.scales)}
    options["min_allowed_mass"] = p.min_allowed_mass
    options["ignore_conflicts"] = p.ignore_conflicts
    settings = PseudoSettings(size=tuple(p.size), batch_size=p.batch_size, workers=1, **options)
    dataset = create_dataset(p.dataset, p.root, **p.options)
    teacher, info = teacher_from_checkpoint(p.teacher, "cpu", settings, onnx_cache=onnx_cache)
    mapping = resolve_mapping(p.mapping, dataset.taxonomy, info.taxonomy)
    run_pseudo_label(
        teacher, info, dataset, p.split, mapping, p.out, settings, also_without_priors=p.without_priors
    )


def train_student(p: TrainParams, fingerprint: str = "") -> None:
    """Write the student's training config (the file ``segunify train`` would read) and train it. An
    interrupted run of the same stage resumes; a run of another config, or of the same config on other
    inputs (remade pseudo-labels behind the same paths: ``fingerprint``), is replaced, never resumed."""
    import yaml

    from segunify.train import load_config, train

    config, out = Path(p.config), Path(p.train["out"])
    text = f"# demo stage {fingerprint}\n" + yaml.safe_dump(p.train, sort_keys=False)
    same = replace_stale(config, text, out)
    train(load_config(config), config, resume=same and (out / "last" / "train_state.pt").is_file())


def interpolate(p: InterpolateParams) -> None:
    """The WiSE-FT mix of the teacher and a trained student (replaced when the parameters change)."""
    from segunify.train.interpolate import interpolate_checkpoints

    interpolate_checkpoints(p.start, p.end, p.alpha, p.out, overwrite=True)


def evaluate(p: EvaluateParams, onnx_cache: str | None = None) -> None:
    """Score a checkpoint on a split in the dataset's taxonomy; keep the overlay frames' predictions."""
    from segunify.datasets import create_dataset
    from segunify.evaluation import ModelPredictions, evaluate_dataset
    from segunify.mapping import resolve_mapping
    from segunify.models.inference import Predictor

    dataset = create_dataset(p.dataset, p.root, **p.options)
    mapping = resolve_mapping(p.mapping, dataset.taxonomy) if p.mapping else None
    opts = {"backend": p.backend, "onnx_cache": onnx_cache}
    predictor = Predictor.from_checkpoint(p.checkpoint, size=tuple(p.size), **opts)
    picks = {s.id for s in evenly(dataset.samples(p.split), p.overlays)}
    keep = Path(p.overlay_dir)

    def on_pair(sample, image, label, pred) -> None:
        if sample.id in picks:
            write_index_png(keep / sample.rel, np.asarray(pred, dtype=np.uint8))

    source = ModelPredictions.from_predictor(predictor, name=f"model {p.checkpoint}")
    result = evaluate_dataset(dataset, p.split, source, mapping=mapping, on_pair=on_pair)
    result.model_copy(update={"overlays": sorted(picks)}).write(p.out)


# an executor takes a stage's params (what it writes depends on them) and its runtime as keywords; those that
# resume their own folders also take the stage's fingerprint, so that they resume only the same stage
RESUMES = {"pseudo", "train"}
EXECUTORS: dict[str, Callable[..., None]] = {
    "view": build_view,
    "import": import_teacher,
    "pseudo": pseudo_label,
    "train": train_student,
    "interpolate": interpolate,
    "evaluate": evaluate,
}


class StageLog:
    """``<work>/stages.json``: each finished stage's fingerprint (its parameters and the fingerprints of
    the stages it reads) and seconds."""

    def __init__(self, work: Path):
        self.path = work / "stages.json"
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.done = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                self.done = {}

    def finished(self, stage: Stage, fingerprint: str) -> dict | None:
        rec = self.done.get(stage.name)
        if rec and rec.get("fingerprint") == fingerprint and stage.output.exists():
            return rec
        return None

    def record(self, stage: Stage, fingerprint: str, seconds: float) -> None:
        self.done[stage.name] = {"fingerprint": fingerprint, "seconds": round(seconds, 2)}
        atomic_write_json(self.path, self.done)


def fingerprint(stage: Stage, upstream: dict[str, str]) -> str:
    """sha256 of the stage's parameters and of the fingerprints of the stages it reads."""
    text = json.dumps(
        [stage.params.to_json(), [upstream[a] for a in stage.after]], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_taxonomies(cfg: DemoConfig) -> None:
    """Before anything runs: every part and evaluation dataset meets the teacher's taxonomy, directly
    (the same taxonomy) or through a mapping from the dataset's taxonomy to the teacher's."""
    from segunify.datasets import dataset_taxonomy_name
    from segunify.mapping import resolve_mapping
    from segunify.taxonomy import load_taxonomy

    teacher = cfg.teacher.taxonomy
    specs = [(f"parts.{p.name}", p) for p in cfg.parts] + [(f"eval.{n}", e) for n, e in cfg.eval.items()]
    for key, spec in specs:
        taxonomy = load_taxonomy(dataset_taxonomy_name(spec.dataset))
        own = taxonomy.name
        if spec.mapping is None:
            if own != teacher:
                raise SegunifyError(
                    f"{key}: {spec.dataset} is labelled in taxonomy {own!r}, the teacher predicts {teacher!r}; "
                    f"give a mapping (e.g. {own}__{teacher})"
                )
            continue
        mapping = resolve_mapping(spec.mapping, taxonomy, teacher)
        if (mapping.extra.name, mapping.source.name) != (own, teacher):
            raise SegunifyError(
                f"{key}: mapping {spec.mapping} maps {mapping.extra.name!r} to {mapping.source.name!r}, "
                f"but {spec.dataset} is labelled in {own!r} and the teacher predicts {teacher!r}"
            )


def check_inputs(cfg: DemoConfig, base: Path) -> list[tuple[Path, str]]:
    """Every dataset and weights file the demo reads, as ``(path, what)``; or one line naming all that
    are missing."""
    from segunify.config import resolve_path
    from segunify.paths import ENV

    wanted = {"teacher weights": cfg.teacher.weights}
    wanted |= {f"part {p.name}": p.root for p in cfg.parts}
    wanted |= {f"eval {n}": e.root for n, e in cfg.eval.items()}
    missing, found = [], []
    for what, text in wanted.items():
        try:
            path = resolve_path(text, base, what)
        except SegunifyError:
            path = Path(text)
        if not path.exists():
            missing.append(f"{what} ({path})")
        found.append((path, f"the {what} root" if what != "teacher weights" else "the teacher weights"))
    if missing:
        raise SegunifyError(
            f"the demo needs data that is missing: {'; '.join(missing)}. Get it with 'segunify fetch --dest DIR' "
            f"and set {ENV}=DIR (a folder holding data/ and weights/)"
        )
    return found


def claim_work(work: Path, inputs: list[tuple[Path, str]]) -> None:
    """The run folder by the one output policy (stages replace their own folders in it, so it must be
    the demo's): apart from the data it reads, claimed with ``.segunify-demo``; a run folder of an older
    segunify (its ``stages.json`` there, no marker) is adopted."""
    from segunify.outputs import check_apart, claim_folder, folder_kind, marker_name

    check_apart([work], inputs, noun="run folder")
    if (work / "stages.json").is_file() and folder_kind(work) is None:
        atomic_write_json(work / marker_name("demo"), {"kind": "demo"})
    claim_folder(work, "demo")


def run_stages(stages: list[Stage], lay: Layout, say: Say) -> dict[str, float]:
    """Run every stage not yet finished with the same parameters; returns seconds per stage."""
    log = StageLog(lay.work)
    timings: dict[str, float] = {}
    prints: dict[str, str] = {}
    lay.work.mkdir(parents=True, exist_ok=True)
    for i, stage in enumerate(stages, 1):
        head = f"[{i}/{len(stages)}] {stage.name}"
        prints[stage.name] = fingerprint(stage, prints)
        rec = log.finished(stage, prints[stage.name])
        if rec is not None:
            say(f"{head}: already done ({rec['seconds']:.1f} s earlier)")
            timings[stage.name] = rec["seconds"]
            continue
        say(f"{head}: {stage.command or stage.note}")
        t0 = time.perf_counter()
        resume = {"fingerprint": prints[stage.name]} if stage.kind in RESUMES else {}
        EXECUTORS[stage.kind](stage.params, **stage.runtime, **resume)
        if not stage.output.exists():
            raise SegunifyError(f"demo stage {stage.name!r} finished but wrote nothing", stage.output)
        timings[stage.name] = round(time.perf_counter() - t0, 2)
        log.record(stage, prints[stage.name], timings[stage.name])
        say(f"{head}: {timings[stage.name]:.1f} s")
    return timings


__all__ = [
    "EXECUTORS",
    "StageLog",
    "check_inputs",
    "check_taxonomies",
    "choose",
    "claim_work",
    "evenly",
    "run_stages",
]
