"""Text and JSON files the toolkit reads (configs, CSVs, lists; checkpoint metadata, summaries, results).

One reader of each so that every such file fails the same way: one line naming the file, never a traceback
from the json module; one encoder hook for the numpy / pydantic / path values that results carry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from segunify.errors import SegunifyError

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


def read_text(path: str | Path, what: str) -> str:
    """The text of the UTF-8 file ``path``, a leading BOM dropped (spreadsheets save one); ``what`` names
    the file in the error."""
    path = Path(path)
    if not path.is_file():
        raise SegunifyError(f"{what} not found", path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SegunifyError(f"cannot read {what}: {exc}", path) from None


def read_json_object(path: str | Path, what: str = "JSON file") -> dict:
    """The JSON object stored at ``path``; ``what`` names the file in the error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SegunifyError(f"{what} not found", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SegunifyError(f"corrupt {what}: {exc}", path) from None
    if not isinstance(data, dict):
        raise SegunifyError(f"corrupt {what}: not a JSON object", path)
    return data


def validate_object(model: type[M], data: dict, what: str, path: str | Path | None = None) -> M:
    """``data`` (read from the file ``path``) as the pydantic ``model``, or one line naming the file and
    the first bad field (``corrupt <what>: <field>: <problem>``)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise SegunifyError(f"corrupt {what}: {field}: {err['msg']}", path) from None


def to_jsonable(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: paths, tuples/sets, numpy and torch scalars, pydantic models."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "item"):
        try:
            return obj.item()
        except ValueError:  # an array of several values: not a scalar, no silent conversion
            raise TypeError(f"not JSON serialisable: {type(obj).__name__} of several values") from None
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
