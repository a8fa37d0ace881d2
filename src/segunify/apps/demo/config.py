"""The demo's configuration: one YAML file, validated by pydantic, read with the one config loader.

A config names the teacher, the parts of the students' compound training set (the source part with its
ground truth, extra parts with a mapping whose priors make their pseudo-labels), the student recipe (keys
of a ``segunify train`` config) and the datasets every model is scored on. The shipped configs live in
this package (``configs/*.yaml``) and are found by name through :mod:`importlib.resources`, so an
installed wheel runs ``segunify demo`` without a checkout; ``--config FILE`` reads your own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from segunify.config import StrictConfig, load_yaml_config
from segunify.errors import SegunifyError

Size = tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]  # (H, W)
CONFIG_PACKAGE = "segunify.apps.demo"
DEFAULT_CONFIG = "quick"


class TeacherConfig(StrictConfig):
    """The teacher T: a pretrained weights file imported as a segunify checkpoint."""

    weights: str = "weights:espnetv2_s2.0_cityscapes_1024x512.pth"
    model: str = "espnetv2"
    kwargs: dict[str, Any] = Field(default_factory=lambda: {"s": 2.0})
    taxonomy: str = "cityscapes"
    batch_size: Annotated[int, Field(gt=0)] = 1  # images per teacher pass (1 is fastest on a CPU)
    backend: Literal["torch", "onnx"] | None = None  # None: the device's default (torch)


class PseudoConfig(StrictConfig):
    """How T labels the extra parts. ``flip``/``scales``: test-time augmentation of the teacher pass
    (probabilities averaged).
    ``min_allowed_mass``: P ignores pixels where T gives the GT class's allowed set less probability.
    ``ignore_conflicts``: P ignores pixels where T's top class, at least this probable, is not allowed."""

    min_allowed_mass: Annotated[float, Field(ge=0, le=1)] | None = None
    ignore_conflicts: Annotated[float, Field(ge=0.5, le=1)] | None = None
    flip: bool = False
    scales: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [1.0]
    )


class Subset(StrictConfig):
    """Which samples of a split are used: ``include`` keeps only ids matching one of its globs (when
    given), ``exclude`` drops ids matching any of its globs (held-out sequences, e.g. ``train/0006R0_*``),
    then ``limit`` keeps that many, evenly spaced (neighbouring frames of a video are near duplicates, so
    even spacing keeps the most variety)."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    limit: Annotated[int, Field(gt=0)] | None = None


class DemoPart(Subset):
    """A part of the compound training set. ``mapping`` absent: the source part, trained on its ground
    truth through the identity. ``mapping`` given: an extra part, trained on the teacher's pseudo-labels
    with (S_P) or without (S_R) that mapping's priors. ``size`` (H, W) is the teacher's input when it
    labels this part and the size its images are brought to for training."""

    name: str
    dataset: str
    root: str
    split: str = "train"
    mapping: str | None = None
    size: Size
    weight: Annotated[float, Field(gt=0)] = 1.0
    options: dict[str, Any] = Field(default_factory=dict)


class DemoEval(Subset):
    """A dataset every model is scored on, in its own taxonomy: through ``mapping`` (source-taxonomy
    predictions against extra-taxonomy ground truth) or directly when it is the source taxonomy."""

    dataset: str
    root: str
    split: str = "val"
    mapping: str | None = None
    size: Size
    options: dict[str, Any] = Field(default_factory=dict)
    note: str = ""


class GoalsConfig(StrictConfig):
    """Targets of the claims a run checks, in mIoU points (fractions: 0.04 = 4 points); ``None`` =
    not checked in this run."""

    sp_minus_t_mean: float | None = 0.04
    sp_minus_t_each: float | None = 0.0
    sp_minus_t: dict[str, float] = Field(default_factory=dict)  # per dataset, e.g. {camvid: 0.12}
    sp_minus_sr_mean: float | None = 0.03
    sp_minus_sr: dict[str, float] = Field(default_factory=dict)  # per dataset, e.g. {idd-lite: 0.05}
    source_retention: float | None = -0.01  # S_P - T on the source taxonomy's dataset
    collapse_ratio: float | None = 0.5  # S_P's share of a class the extra data lacks >= ratio x T's
    collapse_min_share: float = 0.001  # ... where T predicts it on at least this share of pixels
    # at most this many classes (over every evaluation dataset) whose seed-averaged S_P IoU is more than
    # 1 point below T's
    max_classes_below_t: Annotated[int, Field(ge=0)] | None = None


class DemoConfig(StrictConfig):
    run: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    budget: str
    description: str = ""
    teacher: TeacherConfig = TeacherConfig()
    pseudo: PseudoConfig = PseudoConfig()
    parts: Annotated[list[DemoPart], Field(min_length=1)]
    # keys of a segunify train config (steps, optimizer, loss, model.freeze_bn, ...); the demo sets the model's
    # name, options and initial weights (the teacher's), the taxonomy, the parts (each resized to its size),
    # out, and the teacher of loss.distill
    student: dict[str, Any] = Field(default_factory=dict)
    # WiSE-FT: the students scored are (1 - a) * T + a * the trained student, weight by weight
    # (segunify.train.interpolate); None scores the trained students as they are
    interpolate: Annotated[float, Field(gt=0, lt=1)] | None = None
    # students per label set: seed k (0 .. seeds-1) trains with student.seed + k; T and the pseudo-labels
    # are made once, the figures of S_P and S_R become the mean over the seeds with their spread
    seeds: Annotated[int, Field(ge=1)] = 1
    eval: dict[str, DemoEval] = Field(min_length=1)  # keyed by the name used in results.json
    overlays: Annotated[int, Field(ge=0)] = 3  # frames per dataset drawn as GT | T | S_P
    goals: GoalsConfig = GoalsConfig()

    @field_validator("student")
    @classmethod
    def _demo_owned_keys(cls, v: dict) -> dict:
        owned = sorted({"taxonomy", "parts", "out"} & set(v))
        owned += sorted({"name", "kwargs", "weights"} & set(v.get("model") or {}))
        owned += ["loss.distill.teacher"] if "teacher" in ((v.get("loss") or {}).get("distill") or {}) else []
        if owned:
            raise ValueError(f"{', '.join(owned)} are set by the demo (from teacher and parts), not here")
        from segunify.train.config import TrainConfig

        student = dict(v) | {"model": {"name": "-"} | (v.get("model") or {})}
        if "distill" in (v.get("loss") or {}):
            student["loss"] = v["loss"] | {"distill": {"teacher": "-"} | (v["loss"]["distill"] or {})}
        placeholders = {"taxonomy": "-", "parts": [{"dataset": "-", "root": "-"}]}
        try:
            TrainConfig.model_validate(placeholders | student)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: {msg}" if where else msg) from None
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> DemoConfig:
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names must be unique, got {names}")
        if not any(p.mapping for p in self.parts):
            raise ValueError("no extra part (a part with a mapping): there is nothing to pseudo-label")
        return self

    @property
    def extra_parts(self) -> list[DemoPart]:
        return [p for p in self.parts if p.mapping is not None]


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``segunify demo --config NAME``)."""
    folder = resources.files(CONFIG_PACKAGE) / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


@contextlib.contextmanager
def config_file(name_or_path: str | Path | None) -> Iterator[Path]:
    """A real path for ``--config``: an existing file as given, else a shipped config by name."""
    text = str(name_or_path or DEFAULT_CONFIG)
    path = Path(text).expanduser()
    if path.is_file():
        yield path
        return
    if "/" in text or text.endswith((".yaml", ".yml")):
        raise SegunifyError("demo config not found", path)
    item = resources.files(CONFIG_PACKAGE) / "configs" / f"{text}.yaml"
    if not item.is_file():
        raise SegunifyError(
            f"unknown demo config {text!r}; shipped: {', '.join(shipped_configs())} (or give a YAML file)"
        )
    with resources.as_file(item) as real:
        yield real


def with_spec_paths(cfg: DemoConfig, base: Path) -> DemoConfig:
    """The config with every dataset spec file (``dataset: my.yaml`` of a part or an evaluation entry)
    made absolute, from ``base`` (the config file's folder), as every other path of the config is."""
    from segunify.config import resolve_path
    from segunify.datasets.spec import is_spec_path

    def absolute(item, key: str):
        if not is_spec_path(item.dataset):
            return item
        return item.model_copy(update={"dataset": str(resolve_path(item.dataset, base, key))})

    parts = [absolute(p, f"parts.{p.name}.dataset") for p in cfg.parts]
    evals = {n: absolute(e, f"eval.{n}.dataset") for n, e in cfg.eval.items()}
    return cfg.model_copy(update={"parts": parts, "eval": evals})


def load_demo_config(path: str | Path, overrides: Sequence[str] = ()) -> DemoConfig:
    """Read and validate a demo config; ``--set`` overrides as in every segunify config."""
    return load_yaml_config(path, DemoConfig, overrides)


__all__ = [
    "DemoConfig",
    "with_spec_paths",
    "DemoEval",
    "DemoPart",
    "GoalsConfig",
    "PseudoConfig",
    "Subset",
    "TeacherConfig",
    "config_file",
    "load_demo_config",
    "shipped_configs",
]
