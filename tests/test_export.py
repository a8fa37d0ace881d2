"""``segunify export --onnx``: parity with onnxruntime, failure paths; ``segunify models list``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.tiny_models import espnet_checkpoint
from segunify.cli import main
from segunify.models import create_model
from segunify.models.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return espnet_checkpoint(tmp_path_factory.mktemp("export") / "ck")


def _text(capsys) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def test_onnx_export_matches_torch(ckpt, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    # 96x160 is not a multiple of the pyramid pools' bin counts: exercises the export-safe pooling
    assert main(["export", str(ckpt), "--onnx", str(out), "--size", "96,160"]) == 0
    text = _text(capsys)
    assert "max abs diff" in text and "input [1,3,96,160]" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = np.random.default_rng(3).standard_normal((1, 3, 96, 160), dtype=np.float32)
    got = session.run(None, {"image": x})[0]
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert got.shape == (1, 11, 96, 160)
    assert np.abs(got - ref).max() < 1e-3


def test_export_fails_on_parity_and_leaves_no_file(ckpt, tmp_path, capsys, monkeypatch):
    import segunify.models.onnx as onnx_mod

    monkeypatch.setattr(onnx_mod, "onnx_parity", lambda *a, **k: 0.5)
    out = tmp_path / "bad.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--size", "32,32"]) == 1
    assert "parity check failed: max abs diff 0.5 > 0.001" in _text(capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_needs_a_size_and_a_checkpoint(tmp_path, capsys):
    model = create_model("espnetv2", 2, s=1.0)
    save_checkpoint(tmp_path / "nosize", model, {"classes": ["a", "b"]})
    assert main(["export", str(tmp_path / "nosize"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert "give --size H,W" in _text(capsys)
    assert main(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "x.onnx")]) == 1
    assert "checkpoint folder not found" in _text(capsys)
    assert main(["export", str(tmp_path / "nosize"), "--onnx", str(tmp_path / "x.onnx"), "--size", "12"]) == 2
    assert "expected H,W" in _text(capsys)


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    text = _text(capsys)
    for name in ("espnetv2", "segformer-b0", "segformer-b5", "mask2former"):
        assert name in text


def test_export_unwritable_output_is_one_line_and_files_get_the_umask(ckpt, tmp_path, capsys, monkeypatch):
    """Issue 11.7 / 11.13: a full disk while exporting was a traceback (mkstemp outside the error
    handling), and the ONNX file was 0600 whatever the umask."""
    import errno
    import os
    import tempfile

    old = os.umask(0o022)
    try:
        assert main(["export", str(ckpt), "--onnx", str(tmp_path / "ok.onnx"), "--size", "32,32"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "ok.onnx").stat().st_mode & 0o777 == 0o644
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    out = tmp_path / "sub" / "m.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--size", "32,32"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and str(out) in err  # the probe of the output's folder
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_models_weights_lists_the_table(capsys):
    assert main(["models", "weights"]) == 0
    text = _text(capsys)
    assert "espnetv2_s2.0.cityscapes" in text and "espnetv2_s1.0.cityscapes" in text and "512,1024" in text
