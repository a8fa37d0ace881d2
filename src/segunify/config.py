"""One YAML config loader and one path resolver for every segunify config (training, demo, ...).

:func:`load_yaml_config` reads a YAML file, applies ``--set key.sub=value`` overrides (values are YAML:
``20`` is an int, ``true`` a bool, ``[1, 2]`` a list) and validates the result with a pydantic model.
Every problem is one :class:`SegunifyError` line naming the file, the line and the dotted key
(``parts.0.weight``), never a pydantic dump.

:func:`resolve_path` has ONE base: a relative path in a config is taken from the folder of the config
file itself (so a config and the files next to it can be moved together, and the result does not depend
on the directory the command runs from). Values given with ``--set`` are read as if written in the file.
``data:NAME`` and ``weights:NAME`` name entries of the shared data folder (``$SEGUNIFY_DATA/data/NAME``,
``$SEGUNIFY_DATA/weights/NAME``, see :mod:`segunify.paths`), so shipped configs work on any machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from segunify.errors import SegunifyError
from segunify.jsonio import read_text

Model = TypeVar("Model", bound=BaseModel)
SHARED_PREFIXES = ("data", "weights")


class StrictConfig(BaseModel):
    """The base of every config file's models (training, demo): an unknown key is an error (a typo must
    not be ignored) and a loaded config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_path(text: str, base: str | Path, key: str, where: str | Path | None = None) -> Path:
    """The absolute path a config value names: ``data:X`` / ``weights:X`` under the shared folder,
    ``~`` expanded, other relative paths joined to ``base`` (the config file's folder).

    ``key`` (the dotted config key) and ``where`` (the config file) name the value in errors."""
    from segunify.paths import ENV, shared_root

    for prefix in SHARED_PREFIXES:
        if text.startswith(prefix + ":"):
            root = shared_root(required=False)
            if root is None:
                raise SegunifyError(f"{key}: {text!r} needs the shared data folder; set {ENV}", where)
            return (root / prefix / text[len(prefix) + 1 :]).resolve()
    path = Path(text).expanduser()
    return (path if path.is_absolute() else Path(base) / path).resolve()


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], YAML-typed value: ``20`` int, ``true`` bool, ``[1,2]`` list)."""
    if "=" not in item:
        raise SegunifyError(f"override {item!r}: expected key=value")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise SegunifyError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.split("."), value


def apply_override(data: dict, keys: list[str], value: Any) -> None:
    """Set ``data[k0][k1]...`` = ``value``; list items by index, missing sections created."""
    node: Any = data
    for i, k in enumerate(keys):
        last = i == len(keys) - 1
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            if not k.lstrip("-").isdigit() or not -len(node) <= int(k) < len(node):
                raise SegunifyError(
                    f"override {'.'.join(keys)}: {where!r} is not an index of a {len(node)}-item list"
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
            raise SegunifyError(
                f"override {'.'.join(keys)}: {'.'.join(keys[:i])!r} is a value, not a section"
            )


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


def _read_yaml(path: Path, what: str = "config file") -> tuple[str, dict]:
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SegunifyError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SegunifyError(f"{what} must be a mapping of keys to values", path)
    return text, data


def load_yaml_config(
    path: str | Path,
    model_cls: type[Model],
    overrides: Sequence[str] = (),
    what: str = "config file",
    context: dict | None = None,
) -> Model:
    """Read ``path``, apply the ``overrides`` (``key=value``, the CLI's ``--set``) in order, validate with ``model_cls`` (``context``
    goes to its validators, e.g. the folder relative paths are taken from; ``what`` names the file).

    A validation error becomes one :class:`SegunifyError` naming the file, the line of the offending key
    (or ``(from an override)`` when an override set it) and the dotted key."""
    path = Path(path)
    text, data = _read_yaml(path, what)
    overridden: set[str] = set()
    for item in overrides:
        keys, value = parse_override(item)
        apply_override(data, keys, value)
        overridden.add(".".join(keys))
    try:
        return model_cls.model_validate(data, context=context)
    except ValidationError as exc:
        loc, msg = _first_error(exc)
        key = _loc(loc) or "<top level>"
        related = any(key == o or key.startswith(o + ".") or o.startswith(key + ".") for o in overridden)
        origin = " (from an override)" if related else ""
        line = None if origin else _line_of(text, loc)
        raise SegunifyError(f"{key}: {msg}{origin}", path, line) from None
