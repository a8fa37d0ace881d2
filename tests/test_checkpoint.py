"""Checkpoints: safetensors + meta.json round trips, taxonomy checks, corrupt files, atomic writes,
and ``segunify import-weights``."""

from __future__ import annotations

import json

import pytest
import torch

from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.models import create_model
from segunify.models.checkpoint import load_checkpoint, read_meta, save_checkpoint, sha256_file
from segunify.taxonomy import load_taxonomy, parse_taxonomy

torch.set_num_threads(2)

S2_SHA = "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"  # SOURCE.md


def _randomised(num_classes: int = 11):
    """A small ESPNetv2 with non-trivial BatchNorm statistics, so a lost buffer would show."""
    torch.manual_seed(0)
    model = create_model("espnetv2", num_classes, s=1.0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(7)
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _randomised()
    path = tmp_path_factory.mktemp("ckpt") / "camvid-student"
    meta = {
        "taxonomy": "camvid",
        "input_size": (96, 128),
        "train_config": {"lr": 0.001, "steps": 10},
        "metrics": {"miou": 0.5},
    }
    save_checkpoint(path, model, meta)
    return model, path


def test_round_trip_gives_identical_logits_and_buffers(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path, taxonomy="camvid")
    assert not loaded.training
    x = torch.randn(2, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b) and a.dtype == b.dtype


def test_meta_records_everything(saved):
    _, path = saved
    meta = json.loads((path / "meta.json").read_text())
    assert meta["model"] == "espnetv2" and meta["model_kwargs"] == {"s": 1.0, "proj": 10}
    assert meta["taxonomy"] == "camvid" and meta["classes"] == list(load_taxonomy("camvid").classes)
    assert meta["num_classes"] == 11 and meta["input_size"] == [96, 128]
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]
    assert meta["train_config"] == {"lr": 0.001, "steps": 10} and meta["metrics"] == {"miou": 0.5}
    assert meta["weights_sha256"] == sha256_file(path / "model.safetensors")
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors"]


def test_weights_are_safetensors_not_pickle(saved):
    from safetensors import safe_open

    _, path = saved
    raw = (path / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_len])["__metadata__"]["format"]
    with safe_open(path / "model.safetensors", "pt") as f:
        assert "bu_dec_l4.merge_layer.3.weight" in set(f.keys())


def test_class_count_mismatch_names_checkpoint_and_counts(saved):
    _, path = saved
    with pytest.raises(SegunifyError) as err:
        load_checkpoint(path, taxonomy="cityscapes")
    text = str(err.value)
    assert str(path) in text and "'camvid'" in text and "'cityscapes'" in text and "11 classes vs 19" in text


def test_class_name_mismatch_lists_differing_names(saved):
    _, path = saved
    rows = ["id,name,train_id,category,color"] + [
        f"{i},{'Tarmac' if name == 'Road' else name},{i},x,{i} 0 0"
        for i, name in enumerate(load_taxonomy("camvid").classes)
    ]
    renamed = parse_taxonomy("\n".join(rows), name="renamed")
    with pytest.raises(SegunifyError, match=r"differ at 3: 'Road' vs 'Tarmac'"):
        load_checkpoint(path, taxonomy=renamed)


def test_corrupt_or_missing_files_give_one_clear_line(saved, tmp_path):
    import shutil

    _, path = saved
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    weights = bad / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(SegunifyError, match="corrupt or changed") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(weights) in str(err.value)

    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    meta = json.loads((bad / "meta.json").read_text())
    del meta["weights_sha256"]  # no checksum: the safetensors parser itself must fail cleanly
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SegunifyError, match="corrupt safetensors file"):
        load_checkpoint(bad)

    (bad / "meta.json").write_text("{ truncated")
    with pytest.raises(SegunifyError, match="corrupt checkpoint metadata"):
        load_checkpoint(bad)
    (bad / "meta.json").unlink()
    with pytest.raises(SegunifyError, match="meta.json missing"):
        load_checkpoint(bad)
    with pytest.raises(SegunifyError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_weights_that_do_not_fit_the_recorded_model(saved, tmp_path):
    import shutil

    _, path = saved
    bad = tmp_path / "wrong-width"
    shutil.copytree(path, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["model_kwargs"]["s"] = 2.0
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SegunifyError, match="do not fit model 'espnetv2'"):
        load_checkpoint(bad)


def test_save_is_atomic_and_replaces(tmp_path):
    model = _randomised(3)
    path = tmp_path / "ck"
    save_checkpoint(path, model, {"classes": ["a", "b", "c"]})
    first = sha256_file(path / "model.safetensors")
    with pytest.raises(TypeError):  # not JSON-serialisable: the old checkpoint must survive intact
        save_checkpoint(path, _randomised(3), {"classes": ["a", "b", "c"], "metrics": {"x": object()}})
    assert sha256_file(path / "model.safetensors") == first
    assert read_meta(path)["classes"] == ["a", "b", "c"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    save_checkpoint(path, model, {"classes": ["a", "b", "c"]})
    assert sha256_file(path / "model.safetensors") != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or backup folders left
    with pytest.raises(SegunifyError, match="num_classes=3 but 2 class names"):
        save_checkpoint(tmp_path / "x", model, {"classes": ["a", "b"]})


def test_import_weights_cli(weights_dir, tmp_path, capsys):
    out = tmp_path / "teacher"
    pth = weights_dir / "espnetv2_s2.0_cityscapes_1024x512.pth"
    assert (
        main(
            ["import-weights", "--pth", str(pth), "--s", "2.0", "--taxonomy", "cityscapes", "--out", str(out)]
        )
        == 0
    )
    assert "untrained background channel dropped" in " ".join(capsys.readouterr().out.split())
    model, meta = load_checkpoint(out, taxonomy="cityscapes")
    assert meta["source"] == {"file": pth.name, "sha256": S2_SHA, "head": "sliced"}
    assert meta["input_size"] == [512, 1024] and meta["model_kwargs"]["s"] == 2.0
    shipped = torch.load(pth, map_location="cpu", weights_only=True)
    for k, v in model.state_dict().items():  # identical tensors, the head cut to 19 channels
        assert torch.equal(v, shipped[k][:19] if k.startswith("bu_dec_l4.merge_layer.3.") else shipped[k]), k
    # a taxonomy whose class count the head cannot serve is refused, not given a random head
    assert (
        main(["import-weights", "--pth", str(pth), "--taxonomy", "camvid", "--out", str(tmp_path / "x")]) == 1
    )
    assert "does not fit taxonomy 'camvid'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
