"""WiSE-FT weight interpolation: hand-computed mixes, the end points, the metadata record, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from fixtures.tiny_models import espnet_checkpoint
from segunify.cli import app
from segunify.errors import SegunifyError
from segunify.models.checkpoint import load_checkpoint, load_meta, read_safetensors
from segunify.train.interpolate import interpolate_checkpoints, interpolate_state


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("interp")
    return espnet_checkpoint(root / "start", seed=0, varied=True), espnet_checkpoint(
        root / "end", seed=1, varied=True
    )


def test_state_mix_is_hand_computed_and_keeps_integer_buffers():
    start = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    end = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(7)}
    mixed = interpolate_state(start, end, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([1.0, 3.0])) and mixed["n"].item() == 7
    with pytest.raises(SegunifyError, match="differ in"):
        interpolate_state(start, {"w": end["w"]}, 0.5)


def test_checkpoint_mix_end_points_and_meta(pair, tmp_path):
    start, end = pair
    a, b = read_safetensors(start / "model.safetensors"), read_safetensors(end / "model.safetensors")
    out = interpolate_checkpoints(start, end, 0.7, tmp_path / "mix")
    mixed = read_safetensors(out / "model.safetensors")
    key = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k]))
    assert torch.allclose(mixed[key], 0.3 * a[key] + 0.7 * b[key], atol=1e-6)
    meta = load_meta(out)
    assert meta.interpolation.alpha == 0.7 and meta.metrics == {} and meta.step is None
    assert meta.interpolation.end.weights_sha256 == load_meta(end).weights_sha256
    assert meta.interpolation.start.path == str(start) and meta.interpolation.end.path == str(end)
    for alpha, same in ((0.0, a), (1.0, b)):
        got = read_safetensors(
            interpolate_checkpoints(start, end, alpha, tmp_path / f"a{alpha}") / "model.safetensors"
        )
        assert all(torch.equal(got[k], v) for k, v in same.items() if v.is_floating_point())
    model, _ = load_checkpoint(out)  # a checkpoint like any other
    assert model(torch.zeros(1, 3, 64, 96)).shape[1] == 11


def test_refusals_name_the_problem(pair, tmp_path):
    start, end = pair
    other = espnet_checkpoint(tmp_path / "other", taxonomy="cityscapes", num_classes=19)
    with pytest.raises(SegunifyError, match="num_classes differs"):
        interpolate_checkpoints(start, other, 0.5, tmp_path / "x")
    with pytest.raises(SegunifyError, match="alpha must be in"):
        interpolate_checkpoints(start, end, 1.5, tmp_path / "x")
    before = (end / "model.safetensors").read_bytes()
    with pytest.raises(SegunifyError, match="lies inside the END checkpoint"):
        interpolate_checkpoints(start, end, 0.5, end, overwrite=True)
    with pytest.raises(SegunifyError, match="lies inside the START checkpoint"):  # issue 25: inside one
        interpolate_checkpoints(start, end, 0.5, start / "mix")
    assert (end / "model.safetensors").read_bytes() == before and not (start / "mix").exists()
    interpolate_checkpoints(start, end, 0.5, tmp_path / "y")
    with pytest.raises(SegunifyError, match="overwrite"):
        interpolate_checkpoints(start, end, 0.5, tmp_path / "y")


def test_cli_writes_the_mix(pair, tmp_path):
    start, end = pair
    result = CliRunner().invoke(
        app, ["interpolate", str(start), str(end), "--alpha", "0.5", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "meta.json").read_text())["interpolation"]["alpha"] == 0.5
