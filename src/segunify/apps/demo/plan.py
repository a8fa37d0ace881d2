"""The demo as a list of stages: pure data, printed by ``segunify demo --plan`` and executed by
:mod:`segunify.apps.demo.run`.

Each stage names a library call (``kind`` + typed ``params``, :mod:`.params`) and the ``segunify``
command that does the same from a shell (derived from the same parameters), so a reader can rerun any
step by hand. Planning reads no data: it only resolves paths
(``data:X`` shows as ``$SEGUNIFY_DATA/data/X`` where no data folder is set), so ``--plan`` works anywhere.

Work folder layout (``runs/<run>/`` by default; ignored by git)::

    views/<name>/            links to the chosen samples of a split (only where a subset is chosen)
    teacher/                 T as a segunify checkpoint
    pseudo/<part>/{P,R}/     T's pseudo-labels of an extra part with / without its priors (one pass)
    students/S_P.yaml        the training config of S_P (and S_R): 'segunify train' runs the same
    students/{S_P,S_R}/      checkpoints (last/) and the sampled share per part; with ``interpolate``
                             also interpolated/: the WiSE-FT mix of T and last/ that is scored
    students/S_P-seed<s>/    with ``seeds`` > 1: the students of the other seeds (student.seed + k), each
                             with its own training config, checkpoints and evaluations
    eval/<dataset>/<model>.json, eval/<dataset>/<model>/   scores, overlay frames' predictions
    stages.json              finished stages (a rerun skips them)
    report/                  index.html, report.css, results.json, charts and overlays
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from segunify.apps.demo.config import DemoConfig, DemoEval, DemoPart, Subset, with_spec_paths
from segunify.apps.demo.params import (
    EvaluateParams,
    ImportParams,
    InterpolateParams,
    PseudoParams,
    StageParams,
    TrainParams,
    ViewParams,
)
from segunify.config import resolve_path
from segunify.errors import SegunifyError

MODELS = ("T", "S_P", "S_R")
LABELS = {"S_P": "P", "S_R": "R"}


@dataclass(frozen=True)
class Student:
    """One trained student: ``model`` (S_P or S_R) names its label set, ``seed`` its ``student.seed``.
    ``name`` keys its folders, stages and evaluations: the first seed's students keep the plain model name
    (a one-seed run's layout), another seed's are ``<model>-seed<seed>``."""

    name: str
    model: str
    seed: int


def base_seed(cfg: DemoConfig) -> int:
    """The student seed of the config (the trainer's default when it sets none)."""
    from segunify.train.config import TrainConfig

    return int(cfg.student.get("seed", TrainConfig.model_fields["seed"].default))


def students(cfg: DemoConfig) -> list[Student]:
    """S_P and S_R of every seed, seed by seed: student seed k trains with ``student.seed + k``."""
    seeds = [base_seed(cfg) + k for k in range(cfg.seeds)]
    return [
        Student(model if k == 0 else f"{model}-seed{seed}", model, seed)
        for k, seed in enumerate(seeds)
        for model in LABELS
    ]


@dataclass(frozen=True)
class Stage:
    """One step: ``kind`` selects the library call, ``params`` are its typed arguments (the fingerprint and
    the equivalent shell command derive from them), ``output`` proves it ran. ``after`` names the stages
    whose outputs it reads: a rerun redoes a stage when its parameters or those of any stage it reads
    changed. ``runtime``: arguments that change how fast a stage runs, not what it writes (the ONNX export
    cache the teacher passes share); they are not part of its fingerprint."""

    name: str
    kind: str
    params: StageParams
    output: Path
    note: str = ""
    after: tuple[str, ...] = ()
    runtime: dict = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The ``segunify`` command that does the same from a shell ("" for the demo's own steps)."""
        return self.params.command()


@dataclass
class Layout:
    work: Path
    roots: dict[str, Path] = field(default_factory=dict)  # part / eval name -> root actually read
    interpolated: bool = False  # the students scored are the WiSE-FT mixes, not last/

    @property
    def onnx_cache(self) -> Path:
        """ONNX exports (per weights, input size and opset) shared by every teacher pass of the run."""
        return self.work / "onnx"

    @property
    def teacher(self) -> Path:
        return self.work / "teacher"

    def pseudo(self, part: str, labels: str) -> Path:
        return self.work / "pseudo" / part / labels

    def student(self, model: str) -> Path:
        return self.work / "students" / model

    def trained(self, model: str) -> Path:
        return self.student(model) / "last"

    def checkpoint(self, model: str) -> Path:
        """The checkpoint scored as ``model``."""
        if model == "T":
            return self.teacher
        return self.student(model) / "interpolated" if self.interpolated else self.trained(model)

    def eval_json(self, dataset: str, model: str) -> Path:
        return self.work / "eval" / dataset / f"{model}.json"

    def overlay_dir(self, dataset: str, model: str) -> Path:
        return self.work / "eval" / dataset / model

    @property
    def report(self) -> Path:
        return self.work / "report"


def shown_path(text: str, base: Path, key: str) -> Path:
    """``resolve_path`` for planning: without a data folder ``data:X`` shows as ``$SEGUNIFY_DATA/data/X``."""
    try:
        return resolve_path(text, base, key)
    except SegunifyError:
        prefix, _, rest = text.partition(":")
        return Path("$SEGUNIFY_DATA") / prefix / rest


def view_stage(name: str, spec: DemoPart | DemoEval, root: Path, lay: Layout) -> Stage | None:
    """A folder of links to the chosen samples, or ``None`` when the whole split is used."""
    subset = Subset(include=spec.include, exclude=spec.exclude, limit=spec.limit)
    if not subset.include and not subset.exclude and subset.limit is None:
        lay.roots[name] = root
        return None
    out = lay.work / "views" / name
    lay.roots[name] = out
    what = f"{spec.limit or 'all'} samples of {spec.dataset} {spec.split} in {root}"
    if spec.include:
        what += f" matching {', '.join(spec.include)}"
    if spec.exclude:
        what += f" without {', '.join(spec.exclude)}"
    params = ViewParams(
        dataset=spec.dataset,
        root=str(root),
        split=spec.split,
        options=spec.options,
        include=tuple(spec.include),
        exclude=tuple(spec.exclude),
        limit=spec.limit,
        out=str(out),
    )
    return Stage(f"view {name}", "view", params, out / ".segunify-view.json", note=f"links to {what}")


def import_stage(cfg: DemoConfig, base: Path, lay: Layout) -> Stage:
    t = cfg.teacher
    params = ImportParams(
        weights=str(shown_path(t.weights, base, "teacher.weights")),
        model=t.model,
        kwargs=t.kwargs,
        taxonomy=t.taxonomy,
        out=str(lay.teacher),
    )
    return Stage("import teacher", "import", params, lay.teacher / "meta.json")


def pseudo_stage(cfg: DemoConfig, part: DemoPart, lay: Layout) -> Stage:
    p, r = lay.pseudo(part.name, "P"), lay.pseudo(part.name, "R")
    params = PseudoParams(
        teacher=str(lay.teacher),
        dataset=part.dataset,
        root=str(lay.roots[part.name]),
        split=part.split,
        mapping=part.mapping,  # type: ignore[arg-type]  # an extra part has one
        options=part.options,
        size=tuple(part.size),
        batch_size=cfg.teacher.batch_size,
        flip=cfg.pseudo.flip,
        scales=tuple(cfg.pseudo.scales),
        min_allowed_mass=cfg.pseudo.min_allowed_mass,
        ignore_conflicts=cfg.pseudo.ignore_conflicts,
        backend=cfg.teacher.backend,
        out=str(p),
        without_priors=str(r),
    )
    from segunify.pseudo.folder import PseudoFolder

    runtime = {"onnx_cache": str(lay.onnx_cache)}
    done = PseudoFolder(r).summary_path  # R's summary is written last
    return Stage(f"pseudo-label {part.name} (P and R)", "pseudo", params, done, runtime=runtime)


def train_config(cfg: DemoConfig, student: Student | str, lay: Layout) -> dict:
    """The ``segunify train`` config of a student (a model name: the first seed's): the demo's recipe on
    the compound set whose extra parts carry the P (S_P) or R (S_R) pseudo-labels, with the student's own
    seed where it is not the config's. Paths are absolute: the file lives in the run folder, and a
    relative path in a config is read from the config's own folder."""
    if isinstance(student, str):
        student = Student(student, student, base_seed(cfg))
    model = student.model
    parts = []
    for part in cfg.parts:
        entry = {"dataset": part.dataset, "root": _abs(lay.roots[part.name]), "split": part.split}
        entry |= {"weight": part.weight, "options": part.options, "resize": list(part.size)}
        if part.mapping is not None:
            entry["labels"] = _abs(lay.pseudo(part.name, LABELS[model]))
        parts.append(entry)
    t = cfg.teacher
    head = {
        "model": {"name": t.model, "kwargs": t.kwargs, "weights": _abs(lay.teacher)}
        | cfg.student.get("model", {})
    }
    recipe = {k: v for k, v in cfg.student.items() if k != "model"}
    if "distill" in recipe.get("loss", {}):  # distillation toward the demo's own teacher
        recipe["loss"] = recipe["loss"] | {
            "distill": recipe["loss"]["distill"] | {"teacher": _abs(lay.teacher)}
        }
    if student.seed != base_seed(cfg):  # only then: the first seed's config stays the one-seed run's
        recipe["seed"] = student.seed
    return {**head, "taxonomy": t.taxonomy, "parts": parts, **recipe, "out": _abs(lay.student(student.name))}


def _abs(path: Path) -> str:
    return str(path if str(path).startswith("$") else path.absolute())


def train_stage(cfg: DemoConfig, student: Student, lay: Layout) -> Stage:
    config = lay.work / "students" / f"{student.name}.yaml"
    params = TrainParams(config=str(config), train=train_config(cfg, student, lay))
    what = "P (with priors)" if student.model == "S_P" else "R (without priors)"
    seed = f", student seed {student.seed}" if cfg.seeds > 1 else ""
    return Stage(
        f"train {student.name}",
        "train",
        params,
        lay.trained(student.name) / "meta.json",
        note=f"the config is written by the demo; extra parts carry pseudo-labels {what}{seed}",
    )


def interpolate_stage(alpha: float, model: str, lay: Layout) -> Stage:
    out = lay.checkpoint(model)
    params = InterpolateParams(start=str(lay.teacher), end=str(lay.trained(model)), alpha=alpha, out=str(out))
    note = f"WiSE-FT: {1 - alpha:g} x T + {alpha:g} x the trained {model}, weight by weight"
    return Stage(f"interpolate {model}", "interpolate", params, out / "meta.json", note)


def eval_stage(
    name: str, spec: DemoEval, model: str, overlays: int, lay: Layout, backend: str | None = None
) -> Stage:
    out = lay.eval_json(name, model)
    params = EvaluateParams(
        checkpoint=str(lay.checkpoint(model)),
        dataset=spec.dataset,
        root=str(lay.roots[f"eval-{name}"]),
        split=spec.split,
        mapping=spec.mapping,
        backend=backend,
        options=spec.options,
        size=tuple(spec.size),
        out=str(out),
        overlays=overlays,
        overlay_dir=str(lay.overlay_dir(name, model)),
    )
    runtime = {"onnx_cache": str(lay.onnx_cache)}
    return Stage(f"evaluate {model} on {name}", "evaluate", params, out, runtime=runtime)


def plan(cfg: DemoConfig, base: Path, work: Path) -> tuple[list[Stage], Layout]:
    """Every stage in order. ``base`` is the folder relative paths of the config are taken from."""
    cfg = with_spec_paths(cfg, base)
    lay = Layout(work=work, interpolated=cfg.interpolate is not None)
    stages: list[Stage] = []
    for part in cfg.parts:
        root = shown_path(part.root, base, f"parts.{part.name}.root")
        stages.append(view_stage(part.name, part, root, lay))
    for name, spec in cfg.eval.items():
        root = shown_path(spec.root, base, f"eval.{name}.root")
        stages.append(view_stage(f"eval-{name}", spec, root, lay))
    views = {s.name for s in stages if s is not None}
    stages.append(import_stage(cfg, base, lay))
    for part in cfg.extra_parts:
        stage = pseudo_stage(cfg, part, lay)
        stages.append(replace(stage, after=_existing(views, "import teacher", f"view {part.name}")))
    reads = _existing(views, "import teacher", *(s.name for s in stages if s and s.kind == "pseudo"))
    reads += _existing(views, *(f"view {p.name}" for p in cfg.parts))
    trained = students(cfg)
    stages += [replace(train_stage(cfg, s, lay), after=reads) for s in trained]
    if cfg.interpolate is not None:
        for s in trained:
            stage = interpolate_stage(cfg.interpolate, s.name, lay)
            stages.append(replace(stage, after=("import teacher", f"train {s.name}")))
    for name, spec in cfg.eval.items():
        for model in ["T", *(s.name for s in trained)]:
            made = f"interpolate {model}" if lay.interpolated else f"train {model}"
            upstream = "import teacher" if model == "T" else made
            after = _existing(views, upstream, f"view eval-{name}")
            overlays = cfg.overlays if model in MODELS else 0  # the report draws the first seed's S_P
            stage = eval_stage(name, spec, model, overlays, lay, cfg.teacher.backend)
            stages.append(replace(stage, after=after))
    return [s for s in stages if s is not None], lay


def _existing(views: set[str], *names: str) -> tuple[str, ...]:
    """``names`` without the view stages that do not exist (a whole split needs no view)."""
    return tuple(n for n in names if not n.startswith("view ") or n in views)


__all__ = [
    "LABELS",
    "MODELS",
    "Layout",
    "Stage",
    "Student",
    "base_seed",
    "plan",
    "shown_path",
    "students",
    "train_config",
]
