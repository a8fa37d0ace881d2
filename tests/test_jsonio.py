"""The shared JSON reader and encoder hook: one-line errors naming the file, scalars only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from segunify.errors import SegunifyError
from segunify.jsonio import read_json_object, read_text, to_jsonable


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


def test_text_reader_drops_a_bom_and_names_the_file_and_the_problem(tmp_path):
    """Every CSV, YAML and list reader goes through read_text: one line per problem, never a traceback."""
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes("\ufeffa,b\n1,2\n".encode())  # a spreadsheet's BOM
    assert read_text(sheet, "mapping file") == "a,b\n1,2\n"
    with pytest.raises(SegunifyError, match="taxonomy file not found") as err:
        read_text(tmp_path / "gone.csv", "taxonomy file")
    assert "gone.csv" in str(err.value)
    with pytest.raises(SegunifyError, match="taxonomy file not found"):  # a folder is not a file
        read_text(tmp_path, "taxonomy file")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(SegunifyError, match=r"cannot read split list \(val\): 'utf-8' codec") as err:
        read_text(latin, "split list (val)")
    assert str(err.value).count("\n") == 0 and "latin.csv" in str(err.value)
