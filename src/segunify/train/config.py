"""The training configuration: one YAML file, validated by pydantic, overridable with ``--set a.b=c``.

Every problem becomes one :class:`SegunifyError` line naming the YAML file and the dotted key
(``parts.0.weight``), never a pydantic dump. Relative paths are resolved against the current
directory; ``data:NAME`` and ``weights:NAME`` name entries of the shared data folder
(:mod:`segunify.paths`), so shipped configs work on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segunify.errors import SegunifyError

Pair = tuple[int, int]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class PartConfig(_Strict):
    """One part of the compound dataset. ``labels`` is ``gt`` (the dataset's ground truth, through
    ``mapping`` when its taxonomy is not the target) or a pseudo-label directory."""

    dataset: str
    root: str
    split: str = "train"
    labels: str = "gt"
    mapping: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    options: dict[str, Any] = Field(default_factory=dict)


class AugmentationConfig(_Strict):
    resize: Pair | None = None  # (H, W) applied before the random scale, e.g. to bring datasets to one size
    scale: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.5, 2.0)
    crop: Pair = (512, 1024)  # (H, W); padded with ignore where the scaled image is smaller
    hflip: bool = True
    color_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2  # brightness/contrast/saturation strength
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.0
    jitter_p: Annotated[float, Field(ge=0, le=1)] = 0.8

    @field_validator("scale")
    @classmethod
    def _ordered(cls, v):
        if v[0] > v[1]:
            raise ValueError(f"scale range must be (low, high) with low <= high, got {list(v)}")
        return v

    @field_validator("crop", "resize")
    @classmethod
    def _positive(cls, v):
        if v is not None and min(v) <= 0:
            raise ValueError(f"sizes must be positive (H, W), got {list(v)}")
        return v


class OptimizerConfig(_Strict):
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(_Strict):
    """Linear warm-up from ``warmup_factor * lr`` over ``warmup`` steps, then poly decay to 0."""

    warmup: Annotated[int, Field(ge=0)] = 0
    warmup_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    power: Annotated[float, Field(ge=0)] = 0.9


class EvalPartConfig(_Strict):
    dataset: str
    root: str
    split: str = "val"
    mapping: str | None = None  # GT taxonomy -> target taxonomy; identity when they are equal
    options: dict[str, Any] = Field(default_factory=dict)
    max_samples: Annotated[int, Field(gt=0)] | None = None


class EvalConfig(_Strict):
    every: Annotated[int, Field(ge=0)] = 0  # 0: only at the end
    parts: list[EvalPartConfig] = Field(default_factory=list)
    size: Pair | None = None  # (H, W) the image is resized to; logits go back to the label size


class LogConfig(_Strict):
    tensorboard: bool = True
    every: Annotated[int, Field(gt=0)] = 10
    progress: bool = True
    rank_record: bool = False  # each rank writes <out>/ranks/rank<r>.json: its draws and final weights hash


class TrainConfig(_Strict):
    model: ModelConfig
    taxonomy: str
    parts: Annotated[list[PartConfig], Field(min_length=1)]
    augmentation: AugmentationConfig = AugmentationConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    steps: Annotated[int, Field(gt=0)]
    batch_size: Annotated[int, Field(gt=0)] = 8  # per process
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    amp: bool = True  # bf16/fp16 autocast on GPU; ignored on CPU
    sync_bn: bool = False  # SyncBatchNorm on multi-GPU runs
    eval: EvalConfig = EvalConfig()
    out: str = "runs/train"
    checkpoint_every: Annotated[int, Field(ge=0)] = 0  # 0: at every evaluation and at the end
    seed: int = 0
    num_workers: Annotated[int, Field(ge=0)] = 2
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.schedule.warmup >= self.steps:
            raise ValueError(
                f"schedule.warmup ({self.schedule.warmup}) must be smaller than steps ({self.steps})"
            )
        return self

    def to_json_dict(self) -> dict:
        return json.loads(self.model_dump_json())


def resolve_path(text: str, path_for_errors: str, key: str) -> Path:
    """``data:X`` / ``weights:X`` -> the shared folder; other relative paths -> against the cwd."""
    from segunify.paths import shared_root

    for prefix in ("data", "weights"):
        if text.startswith(prefix + ":"):
            root = shared_root(required=False)
            if root is None:
                raise SegunifyError(
                    f"{key}: {text!r} needs the shared data folder; set SEGUNIFY_DATA", path_for_errors
                )
            return (root / prefix / text[len(prefix) + 1 :]).resolve()
    return Path(text).expanduser().resolve()


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], YAML-typed value: ``20`` int, ``true`` bool, ``[1,2]`` list)."""
    if "=" not in item:
        raise SegunifyError(f"--set {item!r}: expected key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SegunifyError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.split("."), value


def apply_override(data: dict, keys: list[str], value: Any) -> None:
    node: Any = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not k.lstrip("-").isdigit() or not -len(node) <= int(k) < len(node):
                raise SegunifyError(
                    f"--set {'.'.join(keys)}: {where!r} is not an index of a {len(node)}-item list"
                )
            k = int(k)
            if last:
                node[k] = value
            else:
                node = node[k]
        elif isinstance(node, dict):
            if last:
                node[k] = value
            else:
                if node.get(k) is None:
                    node[k] = {}
                node = node[k]
        else:
            raise SegunifyError(f"--set {'.'.join(keys)}: {'.'.join(keys[:i])!r} is a value, not a section")


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _line_of(text: str, loc: tuple) -> int | None:
    """Line of a dotted key in the YAML text (for errors), found through the node tree."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _first_error(exc: ValidationError) -> tuple[tuple, str]:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return loc, "unknown key"
    if err["type"] == "missing":
        return loc, "required key missing"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] not in ("value_error", "assertion_error") and "input" in err:
        given = err["input"]
        if not isinstance(given, dict | list):
            msg = f"{msg} (got {given!r})"
    return loc, msg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override and validate a training config; one clear :class:`SegunifyError` for any problem."""
    path = Path(path)
    if not path.is_file():
        raise SegunifyError("config file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SegunifyError(f"cannot read config: {exc}", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SegunifyError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SegunifyError("config must be a mapping of keys to values", path)
    overridden: set[str] = set()
    for item in overrides:
        keys, value = parse_override(item)
        apply_override(data, keys, value)
        overridden.add(".".join(keys))
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        key = _loc(loc) or "<top level>"
        related = any(key == o or key.startswith(o + ".") or o.startswith(key + ".") for o in overridden)
        origin = " (from --set)" if related else ""
        line = None if origin else _line_of(text, loc)
        raise SegunifyError(f"{key}: {msg}{origin}", path, line) from None
