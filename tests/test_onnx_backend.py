"""``--backend onnx`` (issue 14.3): onnxruntime runs the teacher with torch's labels, exports are cached
per (weights, size, opset) and checked, and a run may be resumed with the other backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.pseudo_runs import make_camvid
from fixtures.tiny_models import TINY_MASK2FORMER, espnet_checkpoint
from segunify.cli import main
from segunify.errors import FieldError, SegunifyError
from segunify.models.backends import CACHE_DIR
from segunify.models.inference import Predictor
from segunify.models.onnx import OnnxModel, cached_export

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """ESPNetv2 with random BatchNorm statistics (varied labels), Cityscapes classes, input 64x96."""
    return espnet_checkpoint(
        tmp_path_factory.mktemp("onnx") / "teacher", taxonomy="cityscapes", num_classes=19, varied=True
    )


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n=5, size=(48, 64))


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def _pseudo(teacher, root, out, *extra) -> list[str]:
    return [
        "pseudo-label", "--teacher", str(teacher), "--dataset", "camvid", "--root", str(root),
        "--mapping", "camvid__cityscapes", "--out", str(out), "--device", "cpu", "--workers", "0",
        "--batch-size", "2", "--threads", "1", *extra,
    ]  # fmt: skip


def test_onnx_model_matches_torch_and_exports_once_per_size(teacher, tmp_path):
    torch_pred = Predictor.from_checkpoint(teacher)
    onnx_pred = Predictor.from_checkpoint(teacher, backend="onnx", onnx_cache=tmp_path / "cache")
    assert isinstance(onnx_pred.model, OnnxModel)
    images = np.random.default_rng(1).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    p_torch, p_onnx = torch_pred.probs(images), onnx_pred.probs(images)
    assert p_onnx.shape == p_torch.shape == (3, 19, 40, 50)
    assert (p_onnx - p_torch).abs().max() < 1e-4
    labels = torch_pred.predict(images)
    assert len(np.unique(labels)) >= 3  # not a constant map: agreement below means something
    assert np.array_equal(onnx_pred.predict(images), labels)
    sha = onnx_pred.meta.weights_sha256
    name = f"{sha}-64x96-opset17.onnx"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [name, f"{name}.sha256"]
    # a second size is a second export; a new model reuses the checked files without exporting
    onnx_pred.model(torch.zeros(1, 3, 32, 32))
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 2
    again = Predictor.from_checkpoint(teacher, backend="onnx", onnx_cache=tmp_path / "cache")
    again.model.torch_model = None  # would fail if it exported again
    assert np.array_equal(again.predict(images), labels)


def test_cache_without_folder_is_private_and_removed(teacher):
    pred = Predictor.from_checkpoint(teacher, backend="onnx")
    pred.predict(np.zeros((20, 30, 3), np.uint8))
    folder = pred.model._cache_dir
    assert folder is not None and len(list(folder.glob("*.onnx"))) == 1
    del pred
    import gc

    gc.collect()
    assert not folder.exists()


def test_a_damaged_or_replaced_cache_file_never_produces_a_label(teacher, camvid, tmp_path, capsys):
    """Issue 25 case 5. Before: the cache was trusted by file name: a replaced ``.segunify-onnx/*.onnx``
    (here another model's export) was run and the summary still credited the real teacher; a truncated
    one failed every rerun with a protobuf error and no advice. Now a file runs only when its sha256 is
    the one recorded at export: otherwise it is exported again, and the labels are the teacher's."""
    from segunify.models.onnx import export_onnx

    ref = tmp_path / "torch"
    assert main(_pseudo(teacher, camvid, ref, "--backend", "torch")) == 0
    other = espnet_checkpoint(tmp_path / "other", taxonomy="cityscapes", num_classes=19, seed=5, varied=True)
    for damage in ("another model", "truncated", "record missing"):
        out = tmp_path / damage.replace(" ", "-")
        assert main(_pseudo(teacher, camvid, out, "--backend", "onnx", "--limit", "2")) == 0
        (cached,) = (out / CACHE_DIR).glob("*.onnx")
        if damage == "another model":
            export_onnx(Predictor.from_checkpoint(other).model, cached, (64, 96))
        elif damage == "truncated":
            cached.write_bytes(cached.read_bytes()[:1000])
        else:
            cached.with_name(cached.name + ".sha256").unlink()
        assert main(_pseudo(teacher, camvid, out, "--backend", "onnx")) == 0, capsys.readouterr().err
        assert _pngs(out) == _pngs(ref), damage
    again = Predictor.from_checkpoint(teacher, backend="onnx", onnx_cache=out / CACHE_DIR)
    again.model.torch_model = None  # the re-exported file is trusted again: no export
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    labels = Predictor.from_checkpoint(teacher).predict(images)
    assert np.array_equal(again.predict(images), labels)
    assert not np.array_equal(Predictor.from_checkpoint(other).predict(images), labels)  # a real swap


def test_failed_parity_leaves_nothing_in_the_cache(teacher, tmp_path, monkeypatch):
    import segunify.models.onnx as onnx_mod
    from segunify.models.checkpoint import load_checkpoint

    monkeypatch.setattr(onnx_mod, "onnx_parity", lambda *a, **k: 0.01)
    model, _ = load_checkpoint(teacher)
    with pytest.raises(SegunifyError, match=r"parity check failed: max abs diff 0.01 > 0.001"):
        cached_export(model, tmp_path / "c", "abc", (32, 32))
    assert not list(tmp_path.rglob("*.onnx*"))


def test_pseudo_label_onnx_is_byte_identical_and_resumes_across_backends(teacher, camvid, tmp_path, capsys):
    """Byte-identical PNGs (not merely >= 99.9 % agreement) on this fixture, also when a torch run is
    resumed with onnx: the backend is not part of the settings fingerprint."""
    ref, onx, mixed = tmp_path / "torch", tmp_path / "onnx", tmp_path / "mixed"
    assert main(_pseudo(teacher, camvid, ref, "--backend", "torch")) == 0
    assert main(_pseudo(teacher, camvid, onx, "--backend", "onnx", "--save-confidence")) == 0
    assert not (ref / CACHE_DIR).exists()
    assert len(list((onx / CACHE_DIR).glob("*.onnx"))) == 1
    labels = {k: v for k, v in _pngs(onx).items() if not k.startswith("confidence")}
    assert labels == _pngs(ref) and len(labels) == 5
    assert json.loads((onx / "settings.json").read_text()) == json.loads((ref / "settings.json").read_text())
    assert main(_pseudo(teacher, camvid, mixed, "--backend", "torch", "--limit", "2")) == 0
    assert main(_pseudo(teacher, camvid, mixed, "--backend", "onnx")) == 0
    assert "2 skipped" in " ".join(capsys.readouterr().out.split())
    assert _pngs(mixed) == _pngs(ref)


def test_bad_backend_and_device_are_one_line(teacher, camvid, tmp_path, capsys):
    assert main(_pseudo(teacher, camvid, tmp_path / "o", "--backend", "tensorrt")) == 2  # a usage error
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # rich boxes and wraps it
    assert "Invalid value for --backend: must be one of torch, onnx, got 'tensorrt'" in err
    with pytest.raises(FieldError, match="^backend: 'onnx' runs on the CPU only"):
        Predictor.from_checkpoint(teacher, device="cuda", backend="onnx")


def test_a_family_that_cannot_export_is_one_line(tmp_path, capsys, monkeypatch):
    """Mask2Former exports, but onnxruntime's CPU provider lacks its GridSample: the family says so
    (``onnx_unsupported``) and is refused before any export; without that declaration the failure in
    onnxruntime is still one line, no traceback (which also proves the declaration true)."""
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint
    from segunify.models.mask2former import Mask2FormerSeg

    torch.manual_seed(0)
    model = create_model("mask2former", 3, config=TINY_MASK2FORMER).eval()
    ckpt = save_checkpoint(tmp_path / "m2f", model, {"classes": ["a", "b", "c"], "input_size": [64, 64]})
    img = np.zeros((64, 64, 3), np.uint8)
    write = tmp_path / "in.png"
    from segunify.io import write_png

    write_png(write, img)
    cmd = ["predict", str(write), "--model", str(ckpt), "--out", str(tmp_path / "p"), "--backend", "onnx"]
    for declared, message in (
        (True, "Mask2Former cannot run in ONNX Runtime"),
        (False, "onnxruntime cannot run the exported model: NotImplemented"),
    ):
        if not declared:
            monkeypatch.setattr(Mask2FormerSeg, "onnx_unsupported", None)
        code = main(cmd)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and message in err[0] and "GridSample" in err[0], err
        assert not (tmp_path / "p").exists() or not any((tmp_path / "p").rglob("*.png"))


def test_evaluate_model_onnx_equals_torch(teacher, camvid, tmp_path):
    base = ["evaluate", "--dataset", "camvid", "--root", str(camvid), "--split", "train"]
    base += ["--model", str(teacher), "--mapping", "camvid__cityscapes"]
    assert main([*base, "--json", str(tmp_path / "t.json")]) == 0
    assert main([*base, "--backend", "onnx", "--json", str(tmp_path / "o.json")]) == 0
    t, o = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("t", "o"))
    for result in (t, o):
        result.pop("seconds")
    assert o == t and t["miou"] > 0


def test_default_backend_is_one_constant_and_gpus_keep_torch(teacher, camvid, tmp_path, monkeypatch):
    """Flipping DEFAULT_CPU_BACKEND flips pseudo-label's CPU teacher; a GPU device never gets onnx."""
    import segunify.models.onnx as onnx_mod
    from segunify.pseudo import load_summary

    assert onnx_mod.resolve_backend(None, "cpu") == onnx_mod.DEFAULT_CPU_BACKEND
    monkeypatch.setattr(onnx_mod, "DEFAULT_CPU_BACKEND", "onnx")
    assert onnx_mod.resolve_backend(None, "cuda:0") == "torch"
    assert isinstance(Predictor.from_checkpoint(teacher, backend=None).model, OnnxModel)
    out = tmp_path / "o"
    assert main(_pseudo(teacher, camvid, out, "--limit", "1")) == 0
    assert len(list((out / CACHE_DIR).glob("*.onnx"))) == 1
    assert load_summary(out).settings.backend == "onnx"


def test_predict_onnx_writes_the_same_pngs_as_torch(teacher, camvid, tmp_path):
    images = sorted((camvid / "train").glob("*.png"))[:2]
    for backend in ("torch", "onnx"):
        args = ["predict", *map(str, images), "--model", str(teacher), "--out", str(tmp_path / backend)]
        assert main([*args, "--backend", backend]) == 0
    written = _pngs(tmp_path / "torch")
    assert len(written) == 6 and _pngs(tmp_path / "onnx") == written


def test_two_onnx_shards_equal_one_torch_process(teacher, camvid, tmp_path):
    """Sharding keeps its bytes with onnx: two ranks sharing one export cache write torch's labels."""
    from fixtures.pseudo_runs import FakeState
    from segunify.datasets import create_dataset
    from segunify.mapping import load_mapping
    from segunify.pseudo.runner import PseudoSettings, run_pseudo_label, teacher_from_checkpoint

    ds, mp = create_dataset("camvid", camvid), load_mapping("camvid__cityscapes")

    def one(out: Path, backend: str, state=None):
        settings = PseudoSettings(workers=0, batch_size=2, backend=backend)
        model, info = teacher_from_checkpoint(teacher, "cpu", settings, onnx_cache=out / CACHE_DIR)
        return run_pseudo_label(model, info, ds, "train", mp, out, settings, state=state)

    one(tmp_path / "torch", "torch")
    out = tmp_path / "two"
    summary = one(out, "onnx", FakeState(0, 2, lambda: one(out, "onnx", FakeState(1, 2))))
    assert summary.run.world_size == 2 and summary.images == 5
    assert _pngs(out) == _pngs(tmp_path / "torch")
