"""The typed parameters of each kind of demo stage.

One object gives the stage's library call its arguments (:mod:`.run`), the stage its fingerprint
(:meth:`StageParams.to_json`: what the stage writes depends on these, and nothing else) and the reader
the equivalent ``segunify`` command (:meth:`StageParams.argv`), so the printed command cannot drift
from what runs. Each field says how it reaches the command (``flag``, ``positional``) or why it does not
(``why``); ``when_set`` fields are left out of the fingerprint at their default, so that run folders made
before the option existed keep their stages.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar


def flag(name: str, default: Any = dataclasses.MISSING, *, when_set: bool = False, **kw) -> Any:
    """A field passed to the command as ``name`` (a bool as the bare flag, a dict as one ``key=value``
    per item, a list joined by commas, ``None`` left out)."""
    return field(default=default, metadata={"flag": name, "when_set": when_set}, **kw)


def positional() -> Any:
    return field(metadata={"positional": True})


def not_passed(why: str, default: Any = dataclasses.MISSING) -> Any:
    """A field the command has no flag for; ``why`` says what the demo uses it for instead."""
    return field(default=default, metadata={"why": why})


@dataclass(frozen=True, kw_only=True)
class StageParams:
    """Base of the stages' parameters: ``COMMAND`` (``None`` for a stage no command does) and the flags
    every run of it adds (``FIXED``). Sequences are tuples (frozen), lists in the JSON."""

    COMMAND: ClassVar[tuple[str, ...] | None] = None
    FIXED: ClassVar[tuple[str, ...]] = ()

    def _given(self) -> Iterator[tuple[dataclasses.Field, Any]]:
        """Each field and its value, ``when_set`` fields only off their default."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (f.metadata.get("when_set") and value == f.default):
                yield f, value

    def to_json(self) -> dict[str, Any]:
        """The fingerprint's parameters (JSON types)."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f, v in self._given()}

    def argv(self) -> list[str] | None:
        """The equivalent command line, or ``None`` where no command does this stage."""
        if self.COMMAND is None:
            return None
        args: list[str] = [*self.COMMAND]
        for f, value in self._given():
            if f.metadata.get("positional"):
                args.append(str(value))
            elif "flag" in f.metadata:
                args += _flag_args(f.metadata["flag"], value)
        return args + list(self.FIXED)

    def command(self) -> str:
        argv = self.argv()
        return "" if argv is None else " ".join(a if a.startswith("$") else shlex.quote(a) for a in argv)


def _flag_args(name: str, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return [name]
    if isinstance(value, dict):
        return [a for k, v in value.items() for a in (name, f"{k}={v}")]
    if isinstance(value, list | tuple):
        return [name, ",".join(map(str, value))]
    return [name, str(value)]


@dataclass(frozen=True, kw_only=True)
class ViewParams(StageParams):
    """A folder of links to the chosen samples of a split (no command: the demo's own step)."""

    dataset: str
    root: str
    split: str
    options: dict
    include: list
    exclude: list
    limit: int | None
    out: str


@dataclass(frozen=True, kw_only=True)
class ImportParams(StageParams):
    COMMAND = ("segunify", "import-weights")
    FIXED = ("--overwrite",)

    weights: str = flag("--pth")
    model: str = flag("--model")
    kwargs: dict = flag("--model-opt")
    taxonomy: str = flag("--taxonomy")
    out: str = flag("--out")


@dataclass(frozen=True, kw_only=True)
class PseudoParams(StageParams):
    """One teacher pass writing P (``out``, with the priors) and R (``without_priors``)."""

    COMMAND = ("segunify", "pseudo-label")

    teacher: str = flag("--teacher")
    dataset: str = flag("--dataset")
    root: str = flag("--root")
    split: str = flag("--split")
    mapping: str = flag("--mapping")
    options: dict = flag("--dataset-opt")
    size: list = flag("--size")
    batch_size: int = flag("--batch-size")
    flip: bool = flag("--flip", False, when_set=True)
    scales: list = flag("--scales", (1.0,), when_set=True)
    min_allowed_mass: float | None = flag("--min-allowed-mass", None, when_set=True)
    ignore_conflicts: float | None = flag("--ignore-conflicts", None, when_set=True)
    backend: str | None = flag("--backend", None, when_set=True)
    out: str = flag("--out")
    without_priors: str = flag("--also-without-priors")


@dataclass(frozen=True, kw_only=True)
class TrainParams(StageParams):
    COMMAND = ("segunify", "train")

    config: str = positional()
    train: dict = not_passed("the content of the config file, which the demo writes before training")


@dataclass(frozen=True, kw_only=True)
class InterpolateParams(StageParams):
    COMMAND = ("segunify", "interpolate")
    FIXED = ("--overwrite",)

    start: str = positional()
    end: str = positional()
    alpha: float = flag("--alpha")
    out: str = flag("--out")


@dataclass(frozen=True, kw_only=True)
class EvaluateParams(StageParams):
    COMMAND = ("segunify", "evaluate")
    FIXED = ("--overwrite",)

    checkpoint: str = flag("--model")
    dataset: str = flag("--dataset")
    root: str = flag("--root")
    split: str = flag("--split")
    mapping: str | None = flag("--mapping")
    backend: str | None = flag("--backend", None, when_set=True)
    options: dict = flag("--dataset-opt")
    size: list = flag("--size")
    out: str = flag("--json")
    overlays: int = not_passed("the demo keeps the predictions of this many frames for the report")
    overlay_dir: str = not_passed("where the demo keeps those predictions")


__all__ = [
    "EvaluateParams",
    "ImportParams",
    "InterpolateParams",
    "PseudoParams",
    "StageParams",
    "TrainParams",
    "ViewParams",
    "flag",
    "not_passed",
    "positional",
]
