"""The shared JSON reader and encoder hook: one-line errors naming the file, scalars only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segunify.errors import SegunifyError
from segunify.jsonio import read_json_object, to_jsonable


def test_encoder_hook_converts_scalars_paths_and_tuples():
    text = json.dumps(
        {"a": np.float32(1.5), "b": torch.tensor(2), "c": (1, 2), "d": Path("x/y")}, default=to_jsonable
    )
    assert json.loads(text) == {"a": 1.5, "b": 2, "c": [1, 2], "d": "x/y"}


def test_encoder_hook_refuses_arrays_with_a_type_error():
    with pytest.raises(TypeError, match="several values"):
        json.dumps({"a": np.zeros(3)}, default=to_jsonable)


def test_reader_names_the_file_and_the_problem(tmp_path):
    good = tmp_path / "ok.json"
    good.write_text('{"k": 1}', encoding="utf-8")
    assert read_json_object(good) == {"k": 1}
    with pytest.raises(SegunifyError, match="summary not found") as err:
        read_json_object(tmp_path / "missing.json", "summary")
    assert "missing.json" in str(err.value)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SegunifyError, match="corrupt results"):
        read_json_object(bad, "results")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(SegunifyError, match="not a JSON object"):
        read_json_object(listed)
