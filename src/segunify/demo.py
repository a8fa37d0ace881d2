"""The end-to-end demo: teacher -> pseudo-labels with and without priors -> students -> evaluation -> report.

It only orchestrates the public commands of the other areas (``import-weights``, ``pseudo-label``,
``train``, ``evaluate``) through :func:`segunify.cli.main`, so the demo exercises exactly what a user
runs; reading their JSON outputs and drawing the picture grid is all it does itself.

The experiment (see ``configs/demo_quick.yaml`` / ``configs/demo_full.yaml``):

* T: the shipped ESPNetv2 s=2.0 Cityscapes weights, imported as a segunify checkpoint;
* P / R: T's pseudo-labels of CamVid train with the ``camvid__cityscapes`` priors / plain argmax;
* S_P / S_R: the same student config (teacher weights fine-tuned, same steps, batch, seed) on P / R;
* T, S_P, S_R scored on CamVid val in CamVid's 11 classes through the mapping, and on the KITTI sample
  in Cityscapes' 19 classes (labels cropped to the images, ``label_crop=4,18``);
* coarse priors: T pseudo-labels CamVid val with the ``camvid-coarse`` ground truth as priors, versus
  none, both scored against the fine CamVid labels.

The adapters read a *view* of CamVid (a folder of symbolic links in the work directory), so a config
can hold sequences out of training or shrink the data for a toy run without touching the publisher's
layout. CamVid val is never used to choose anything.

Stages that finished are recorded in ``<work>/stages.json`` with their command line; a rerun with the
same settings skips them, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes
from segunify.jsonio import read_json_object

Pair = tuple[int, int]
MODELS = ("T", "S_P", "S_R")
DEMO_CONFIGS = {"quick": "demo_quick.yaml", "full": "demo_full.yaml"}


class GoalsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sp_minus_t: float = 0.08
    sp_minus_sr: float = 0.08
    coarse_shared_gain: float = 0.10


class DemoConfig(BaseModel):
    """A demo run. Paths: ``data:X`` / ``weights:X`` name entries of the shared data folder
    (:mod:`segunify.paths`); other relative paths are taken from the config file's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    run: str
    budget: str
    camvid: str = "data:CamVid"
    kitti: str | None = "data:KITTI_semantics_sample"
    kitti_label_crop: str = "4,18"
    kitti_size: Pair = (512, 1696)
    teacher_weights: str = "weights:espnetv2_s2.0_cityscapes_1024x512.pth"
    teacher_model: str = "espnetv2"
    teacher_s: float = 2.0
    teacher_size: Pair = (512, 1024)
    teacher_batch_size: Annotated[int, Field(gt=0)] = 1
    student_config: str = "demo_student.yaml"
    student_set: list[str] = Field(default_factory=list)
    steps: Annotated[int, Field(gt=0)]
    holdout_sequences: list[str] = Field(default_factory=list)
    train_limit: Annotated[int, Field(gt=0)] | None = None
    val_limit: Annotated[int, Field(gt=0)] | None = None
    grid_images: Annotated[int, Field(ge=0)] = 8
    coarse_prior: bool = True
    goals: GoalsConfig = GoalsConfig()


def find_config(full: bool, explicit: str | Path | None = None) -> Path:
    """``--config`` as given, else ``configs/demo_{quick,full}.yaml`` in the current folder or the checkout."""
    if explicit is not None:
        return Path(explicit)
    name = DEMO_CONFIGS["full" if full else "quick"]
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "configs" / name).is_file():
            return base / "configs" / name
    raise SegunifyError(f"demo config {name} not found (run from the segunify checkout or give --config)")


def load_demo_config(path: str | Path, steps: int | None = None) -> DemoConfig:
    path = Path(path)
    if not path.is_file():
        raise SegunifyError("demo config not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SegunifyError(f"cannot read demo config: {str(exc).splitlines()[0]}", path) from None
    if not isinstance(data, dict):
        raise SegunifyError("demo config must be a mapping of keys to values", path)
    if steps is not None:
        data["steps"] = steps
    try:
        return DemoConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise SegunifyError(f"{key}: {msg}", path) from None


def resolve(text: str, base: Path) -> Path:
    """``data:X`` / ``weights:X`` under the shared folder (it may not exist: checked later, all at once)."""
    from segunify.paths import ENV, shared_root

    for prefix in ("data", "weights"):
        if text.startswith(prefix + ":"):
            root = shared_root(required=False)
            if root is None:
                return Path(f"${ENV}") / prefix / text[len(prefix) + 1 :]
            return root / prefix / text[len(prefix) + 1 :]
    p = Path(text).expanduser()
    return p if p.is_absolute() else (base / p)


def check_inputs(cfg: DemoConfig, base: Path) -> dict[str, Path]:
    """Every input the demo needs, or one line naming all that are missing and how to get them."""
    need = {"CamVid": resolve(cfg.camvid, base), "teacher weights": resolve(cfg.teacher_weights, base)}
    if cfg.kitti:
        need["KITTI sample"] = resolve(cfg.kitti, base)
    need["student config"] = resolve(cfg.student_config, base)
    missing = [f"{k} ({v})" for k, v in need.items() if not v.exists()]
    if missing:
        from segunify.paths import ENV

        raise SegunifyError(
            f"the demo needs data that is missing: {'; '.join(missing)}. Get it with 'segunify fetch --dest DIR' "
            f"and set {ENV}=DIR (a folder holding data/ and weights/)"
        )
    return need


# ---------------------------------------------------------------------------------------------- views


def camvid_view(
    src: Path,
    dst: Path,
    splits: dict[str, Sequence[str]],
) -> Path:
    """A CamVid folder of symbolic links (``<split>/X.png``, ``<split>annot/X.png``) holding only the
    named files per split; returns ``dst``. Rebuilt from scratch so it never keeps stale links."""
    import shutil

    if dst.exists():
        shutil.rmtree(dst)
    for split, names in splits.items():
        for sub in (split, f"{split}annot"):
            (dst / sub).mkdir(parents=True, exist_ok=True)
            for name in names:
                os.symlink((src / sub / name).resolve(), dst / sub / name)
    return dst


def camvid_names(root: Path, split: str) -> list[str]:
    from segunify.datasets import create_dataset

    return [s.image.name for s in create_dataset("camvid", root).samples(split)]


def select_train(names: Sequence[str], holdout: Sequence[str], limit: int | None) -> list[str]:
    """Train file names without the held-out sequences (``<sequence>_<frame>.png``), evenly thinned
    to ``limit`` (consecutive frames are near duplicates, so even spacing keeps the most variety)."""
    kept = [n for n in names if n.split("_")[0] not in set(holdout)]
    return evenly(kept, limit)


def evenly(items: Sequence, n: int | None) -> list:
    if n is None or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class Stage:
    """One command of the demo: a name, the ``segunify`` arguments and the file that proves it ran."""

    name: str
    argv: list[str]
    output: Path
    kind: str = "cli"
    extra: dict = field(default_factory=dict)


@dataclass
class Layout:
    work: Path
    camvid: Path  # the view
    grid: Path  # view with the grid images as val
    kitti: Path | None
    teacher: Path
    student_config: Path

    def pseudo(self, key: str) -> Path:
        return self.work / "pseudo" / key

    def student(self, key: str) -> Path:
        return self.work / "students" / key

    def val_preds(self, key: str) -> Path:
        return self.work / "val" / key

    def eval_json(self, name: str) -> Path:
        return self.work / "eval" / f"{name}.json"


def plan(cfg: DemoConfig, lay: Layout, teacher_weights: Path) -> list[Stage]:
    """The demo as a list of ``segunify`` command lines, in order (pure: nothing runs here)."""
    size = f"{cfg.teacher_size[0]},{cfg.teacher_size[1]}"
    stages = [
        Stage(
            "import teacher",
            [
                "import-weights",
                "--pth",
                str(teacher_weights),
                "--model",
                cfg.teacher_model,
                "--s",
                str(cfg.teacher_s),
                "--taxonomy",
                "cityscapes",
                "--out",
                str(lay.teacher),
            ],
            lay.teacher / "meta.json",
        )
    ]

    def pseudo(
        name: str, dataset: str, root: Path, split: str, mapping: str, out: Path, priors: bool
    ) -> Stage:
        argv = [
            "pseudo-label",
            "--teacher",
            str(lay.teacher),
            "--dataset",
            dataset,
            "--root",
            str(root),
            "--split",
            split,
            "--mapping",
            mapping,
            "--out",
            str(out),
            "--size",
            size,
            "--batch-size",
            str(cfg.teacher_batch_size),
        ]
        return Stage(name, argv + ([] if priors else ["--no-priors"]), out / "summary.json")

    stages.append(
        pseudo("pseudo-label P", "camvid", lay.camvid, "train", "camvid__cityscapes", lay.pseudo("P"), True)
    )
    stages.append(
        pseudo("pseudo-label R", "camvid", lay.camvid, "train", "camvid__cityscapes", lay.pseudo("R"), False)
    )
    for key in ("P", "R"):
        out = lay.student(f"S_{key}")
        sets = [
            f"parts.0.root={lay.camvid}",
            f"parts.0.labels={lay.pseudo(key)}",
            f"model.weights={lay.teacher}",
            f"steps={cfg.steps}",
            f"out={out}",
            *cfg.student_set,
        ]
        argv = ["train", str(lay.student_config)] + [a for s in sets for a in ("--set", s)]
        stages.append(Stage(f"train S_{key}", argv, out / "last" / "meta.json"))

    def evaluate(
        name: str, dataset: str, root: Path, split: str, source: list[str], extra: list[str]
    ) -> Stage:
        out = lay.eval_json(name)
        argv = ["evaluate", *source, "--dataset", dataset, "--root", str(root), "--split", split, *extra]
        return Stage(f"evaluate {name}", [*argv, "--json", str(out)], out)

    camvid_eval = ["--mapping", "camvid__cityscapes"]
    # T's CamVid val predictions are its pseudo-labels without priors (the same resize, softmax and
    # argmax as 'evaluate --model'): scored as T, kept for the picture grid, and the baseline of the
    # coarse-prior experiment, so the teacher runs over val once for all three.
    stages.append(
        pseudo(
            "T predictions CamVid val",
            "camvid",
            lay.camvid,
            "val",
            "camvid__cityscapes",
            lay.val_preds("T"),
            False,
        )
    )
    stages.append(
        evaluate(
            "camvid_T", "camvid", lay.camvid, "val", ["--pred-dir", str(lay.val_preds("T"))], camvid_eval
        )
    )
    students = {"S_P": lay.student("S_P") / "last", "S_R": lay.student("S_R") / "last"}
    for m, ckpt in students.items():
        stages.append(
            evaluate(
                f"camvid_{m}",
                "camvid",
                lay.camvid,
                "val",
                ["--model", str(ckpt)],
                [*camvid_eval, "--size", size],
            )
        )
    if lay.kitti is not None:
        kitti = [
            "--dataset-opt",
            f"label_crop={cfg.kitti_label_crop}",
            "--size",
            f"{cfg.kitti_size[0]},{cfg.kitti_size[1]}",
        ]
        for m, ckpt in {"T": lay.teacher, **students}.items():
            stages.append(evaluate(f"kitti_{m}", "kitti", lay.kitti, "train", ["--model", str(ckpt)], kitti))
    if cfg.coarse_prior:
        out = lay.work / "coarse" / "with"
        stages.append(
            pseudo(
                "coarse pseudo-label with priors",
                "camvid-coarse",
                lay.camvid,
                "val",
                "camvid-coarse__cityscapes",
                out,
                True,
            )
        )
        stages.append(
            evaluate("coarse_with", "camvid", lay.camvid, "val", ["--pred-dir", str(out)], camvid_eval)
        )
    if cfg.grid_images:
        stages.append(
            pseudo(
                "grid pseudo-label P",
                "camvid",
                lay.grid,
                "val",
                "camvid__cityscapes",
                lay.work / "grid" / "P",
                True,
            )
        )
    return stages


# ---------------------------------------------------------------------------------------------- running


def _fingerprint(stage: Stage) -> str:
    return json.dumps(stage.argv)


class StageLog:
    """``<work>/stages.json``: finished stages with their command line and seconds."""

    def __init__(self, work: Path):
        self.path = work / "stages.json"
        self.done: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.done = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                self.done = {}

    def finished(self, stage: Stage) -> dict | None:
        rec = self.done.get(stage.name)
        if rec and rec.get("argv") == _fingerprint(stage) and stage.output.exists():
            return rec
        return None

    def record(self, stage: Stage, seconds: float) -> None:
        self.done[stage.name] = {"argv": _fingerprint(stage), "seconds": round(seconds, 2)}
        atomic_write_bytes(self.path, (json.dumps(self.done, indent=2) + "\n").encode("utf-8"))


def run_stage(stage: Stage, invoke: Callable[[list[str]], int]) -> None:
    code = invoke(stage.argv)
    if code != 0:
        raise SegunifyError(
            f"demo stage {stage.name!r} failed (exit {code}): segunify {' '.join(stage.argv)}"
        )
    if not stage.output.exists():
        raise SegunifyError(
            f"demo stage {stage.name!r} finished but wrote no {stage.output.name}", stage.output
        )


def _cli(argv: list[str]) -> int:
    from segunify.cli import main

    return main(argv)


# ---------------------------------------------------------------------------------------------- results


def eval_block(result: dict) -> dict:
    """The figures of an ``evaluate --json`` result the report needs."""
    return {
        "miou": result.get("miou"),
        "pixel_acc": result.get("pixel_acc"),
        "mean_acc": result.get("mean_acc"),
        "iou": {
            c["name"]: c["iou"] for c in result["classes"] if c["name"] not in result.get("void_classes", [])
        },
        "images": result.get("images"),
        "absent_classes": result.get("absent_classes", []),
        **({"pred_share_source": result["pred_share_source"]} if "pred_share_source" in result else {}),
    }


def pseudo_block(summary: dict) -> dict:
    """Pseudo-label statistics from a runner's ``summary.json`` (see :mod:`segunify.pseudo.runner`):
    shares of ignored pixels and of pixels the prior changed, overall and per GT class."""
    extra = summary.get("extra_classes") or {}
    return {
        "images": summary.get("images"),
        "pixels": summary.get("pixels"),
        "ignored_share": summary.get("ignored_share"),
        "changed_share": summary.get("changed_share"),
        "mean_confidence": summary.get("mean_confidence"),
        "per_class_changed": {c: v.get("changed_share") for c, v in extra.items()},
        "class_share": summary.get("class_share") or {},
        "settings": summary.get("settings") or {},
    }


def checkpoint_hash(ckpt: Path) -> dict:
    meta = read_json_object(ckpt / "meta.json")
    return {"checkpoint": str(ckpt), "sha256": meta.get("weights_sha256")}


def collect(cfg: DemoConfig, lay: Layout, config_path: Path) -> dict:
    """The results dict of the report (see :mod:`segunify.report`) from the stages' outputs."""
    from segunify.report import COLLAPSE_CLASSES, coarse_groups, miou_over, shared_group_classes
    from segunify.taxonomy import load_taxonomy

    camvid = load_taxonomy("camvid")
    results: dict = {"run": cfg.run, "budget": cfg.budget}
    results["camvid_val"] = {m: eval_block(read_json_object(lay.eval_json(f"camvid_{m}"))) for m in MODELS}
    if lay.kitti is not None:
        results["kitti"] = {m: eval_block(read_json_object(lay.eval_json(f"kitti_{m}"))) for m in MODELS}
    results["collapse"] = {
        "classes": list(COLLAPSE_CLASSES),
        "shares": {
            m: {c: (results["camvid_val"][m].get("pred_share_source") or {}).get(c) for c in COLLAPSE_CLASSES}
            for m in MODELS
        },
    }
    results["pseudo_labels"] = {
        k: pseudo_block(read_json_object(lay.pseudo(k) / "summary.json")) for k in ("P", "R")
    }
    if cfg.coarse_prior:
        groups = coarse_groups(camvid, load_taxonomy("camvid-coarse"))
        shared = shared_group_classes(groups)
        cp: dict = {"groups": groups, "shared_classes": shared}
        for key, name in (("with", "coarse_with"), ("without", "camvid_T")):
            b = eval_block(read_json_object(lay.eval_json(name)))
            b["miou_shared"] = miou_over(b["iou"], shared)
            cp[f"{key}_priors"] = b
        results["coarse_prior"] = cp
    results["models"] = {
        "T": checkpoint_hash(lay.teacher),
        "S_P": checkpoint_hash(lay.student("S_P") / "last"),
        "S_R": checkpoint_hash(lay.student("S_R") / "last"),
    }
    student_meta = read_json_object(lay.student("S_P") / "last" / "meta.json")
    tc = student_meta.get("train_config") or {}
    settings = cfg.model_dump(mode="json")
    settings.update(
        config=str(config_path),
        train_images=len(camvid_names(lay.camvid, "train")),
        val_images=len(camvid_names(lay.camvid, "val")),
        student_model=tc.get("model"),
        student_augmentation=tc.get("augmentation"),
        student_optimizer=tc.get("optimizer"),
        student_schedule=tc.get("schedule"),
        student_batch_size=tc.get("batch_size"),
        student_seed=tc.get("seed"),
        kitti_note=(
            f"KITTI semantics sample (5 frames): the images were cropped by their redistributor, the labels "
            f"were not; labels are cropped at (top, left) = ({cfg.kitti_label_crop}) to match "
            f"(dataset option label_crop). Inference at {cfg.kitti_size[0]}x{cfg.kitti_size[1]} (H x W), "
            "about the Cityscapes 1024x512 scale with KITTI's aspect ratio. Classes absent from both GT and "
            "prediction are left out of the mean."
        ),
    )
    results["settings"] = settings
    return results


def grid_rows(cfg: DemoConfig, lay: Layout) -> list[dict]:
    """Arrays of the picture grid: image, GT, T and S_P predictions, P pseudo-label, per grid image."""
    from segunify.datasets import create_dataset
    from segunify.labels import read_label_raw
    from segunify.models.inference import Predictor

    ds = create_dataset("camvid", lay.grid)
    samples = ds.samples("val")
    student = Predictor.from_checkpoint(lay.student("S_P") / "last", size=cfg.teacher_size)
    rows = []
    for s in samples:
        image, gt = ds.sample(s)
        rows.append(
            {
                "id": Path(s.rel).stem,
                "image": image,
                "gt": gt,
                "T": read_label_raw(lay.val_preds("T") / s.rel),
                "P": read_label_raw(lay.work / "grid" / "P" / s.rel),
                "S_P": student.predict(image)[0],
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------- demo


def prepare(cfg: DemoConfig, config_path: Path, work: Path) -> tuple[Layout, Path]:
    """Check inputs, build the CamVid views; returns the layout and the teacher's weight file."""
    base = config_path.parent
    need = check_inputs(cfg, base)
    src = need["CamVid"]
    train = select_train(camvid_names(src, "train"), cfg.holdout_sequences, cfg.train_limit)
    val = evenly(camvid_names(src, "val"), cfg.val_limit)
    if not train or not val:
        raise SegunifyError("the demo config leaves no CamVid train or val images", config_path)
    work.mkdir(parents=True, exist_ok=True)
    view = camvid_view(src, work / "data" / "camvid", {"train": train, "val": val})
    grid = camvid_view(src, work / "data" / "camvid-grid", {"val": evenly(val, cfg.grid_images)})
    lay = Layout(
        work=work,
        camvid=view,
        grid=grid,
        kitti=need.get("KITTI sample"),
        teacher=work / "teacher",
        student_config=need["student config"],
    )
    return lay, need["teacher weights"]


def run_demo(
    cfg: DemoConfig,
    config_path: str | Path,
    out: str | Path,
    work: str | Path,
    invoke: Callable[[list[str]], int] = _cli,
    say: Callable[[str], None] = print,
) -> dict:
    """Run every stage (skipping those already done with the same command), then write the report.
    Returns the results dict (also in ``<out>/results.json``)."""
    from segunify.report import build_report, load_results

    config_path, out, work = Path(config_path), Path(out), Path(work)
    lay, weights = prepare(cfg, config_path, work)
    stages = plan(cfg, lay, weights)
    log = StageLog(work)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        rec = log.finished(stage)
        if rec is not None:
            say(f"[{i}/{len(stages)}] {stage.name}: already done ({rec['seconds']:.1f} s earlier)")
            timings[stage.name] = rec["seconds"]
            continue
        say(f"[{i}/{len(stages)}] {stage.name}: segunify {' '.join(stage.argv)}")
        t0 = time.perf_counter()
        run_stage(stage, invoke)
        timings[stage.name] = round(time.perf_counter() - t0, 2)
        log.record(stage, timings[stage.name])
        say(f"[{i}/{len(stages)}] {stage.name}: {timings[stage.name]:.1f} s")
    t0 = time.perf_counter()
    results = collect(cfg, lay, config_path)
    rows = grid_rows(cfg, lay) if cfg.grid_images else None
    timings["collect results + grid predictions"] = round(time.perf_counter() - t0, 2)
    results["timings"] = timings
    results["wall_seconds"] = round(time.perf_counter() - t_all, 2)
    page = build_report(results, out, grid_rows=rows)
    say(f"report: {page}")
    return load_results(out / "results.json")


def summary_tables(results: dict) -> list:
    """Rich tables for the terminal: headline figures, goals, stage timings."""
    from rich.table import Table

    def pct(v) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    head = Table(
        title="CamVid val (11 classes, cross-taxonomy) and KITTI sample (19 classes)", title_justify="left"
    )
    for col in ("model", "CamVid mIoU %", "pixel acc %", "KITTI mIoU %", "KITTI pixel acc %"):
        head.add_column(col, justify="left" if col == "model" else "right")
    for m in MODELS:
        a = results.get("camvid_val", {}).get(m, {})
        b = results.get("kitti", {}).get(m, {})
        head.add_row(
            m, pct(a.get("miou")), pct(a.get("pixel_acc")), pct(b.get("miou")), pct(b.get("pixel_acc"))
        )
    goals = Table(title="goals", title_justify="left")
    for col in ("goal", "measured", "target", ""):
        goals.add_column(col)
    for g in results.get("goals", []):
        goals.add_row(
            g["goal"],
            f"{100 * g['value']:+.1f}",
            f">= {100 * g['target']:+.1f}",
            "met" if g["met"] else "MISSED",
        )
    times = Table(title="stage timings", title_justify="left")
    times.add_column("stage")
    times.add_column("seconds", justify="right")
    for k, v in results.get("timings", {}).items():
        times.add_row(k, f"{v:.1f}")
    times.add_row("total", f"{sum(results.get('timings', {}).values()):.1f}")
    return [head, goals, times]


__all__ = [
    "DemoConfig",
    "Layout",
    "Stage",
    "camvid_view",
    "collect",
    "eval_block",
    "evenly",
    "find_config",
    "load_demo_config",
    "plan",
    "pseudo_block",
    "run_demo",
    "select_train",
    "summary_tables",
]
