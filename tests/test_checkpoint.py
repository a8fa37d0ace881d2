"""Checkpoints: safetensors + meta.json round trips, taxonomy checks, corrupt files, atomic writes,
and ``segunify import-weights``."""

from __future__ import annotations

import json

import pytest
import torch

from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.models import create_model
from segunify.models.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    load_meta,
    save_checkpoint,
    sha256_file,
)
from segunify.models.pretrained import get_pretrained
from segunify.taxonomy import load_taxonomy, parse_taxonomy

torch.set_num_threads(2)

S1_SHA = "0918c833fed889e32901ce739b1784fdd2b79f95a9aea199a469ca3394dd7a14"  # SOURCE.md


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
    assert not {"selected_metric", "step", "interpolation"} & set(meta)  # only where a command sets them
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
        save_checkpoint(
            path, _randomised(3), {"classes": ["a", "b", "c"], "metrics": {"x": object()}}, overwrite=True
        )
    assert sha256_file(path / "model.safetensors") == first
    assert load_meta(path).classes == ["a", "b", "c"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with pytest.raises(SegunifyError, match="already holds a segunify checkpoint"):
        save_checkpoint(path, model, {"classes": ["a", "b", "c"]})
    assert sha256_file(path / "model.safetensors") == first
    save_checkpoint(path, model, {"classes": ["a", "b", "c"]}, overwrite=True)
    assert sha256_file(path / "model.safetensors") != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or backup folders left
    with pytest.raises(SegunifyError, match="num_classes=3 but 2 class names"):
        save_checkpoint(tmp_path / "x", model, {"classes": ["a", "b"]})


def test_meta_of_an_older_version_still_loads(saved, tmp_path):
    """meta.json written before CheckpointMeta existed (no format, created, sha256, mean/std, files)
    loads with the defaults; unknown keys are kept."""
    import shutil

    model, path = saved
    old = tmp_path / "old"
    shutil.copytree(path, old)
    meta = json.loads((old / "meta.json").read_text())
    for key in ("format", "format_version", "created", "weights_sha256", "mean", "std", "files"):
        meta.pop(key)
    meta |= {"step": 12, "note": "mine"}
    (old / "meta.json").write_text(json.dumps(meta))
    loaded, got = load_checkpoint(old, taxonomy="camvid")
    assert got.mean == (0.485, 0.456, 0.406) and got.format == "segunify-checkpoint"
    assert got.step == 12 and got.model_extra == {"note": "mine"} and got.to_dict()["note"] == "mine"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": 4}, "num_classes=4 but 11 class names"),
        ({"format_version": 9}, "format_version: .*newer"),
        ({"std": [0.2, 0.0, 0.2]}, "std: .*positive"),
        ({"input_size": [96]}, "input_size"),
        ({"format": "other"}, "format"),
    ],
)
def test_bad_meta_is_one_line_naming_meta_json(saved, tmp_path, change, message):
    import shutil

    _, path = saved
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    meta = {**json.loads((bad / "meta.json").read_text()), **change}
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SegunifyError, match=message) as err:
        load_checkpoint(bad)
    assert str(bad / "meta.json") in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_meta_model_round_trip(saved):
    _, path = saved
    meta = load_meta(path)
    assert isinstance(meta, CheckpointMeta) and meta.input_size == (96, 128) and meta.num_classes == 11
    assert CheckpointMeta.model_validate_json(json.dumps(meta.to_dict())) == meta


def _tree(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))


def test_a_folder_of_foreign_files_is_never_replaced(tmp_path):
    """Issue 11.1: import into a folder holding a user's files wiped it; now: refused, nothing touched."""
    out = tmp_path / "thesis"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("three years of work")
    (out / "sub" / "data.csv").write_text("1,2,3")
    before = _tree(out)
    for overwrite in (False, True):
        with pytest.raises(
            SegunifyError, match=r"not empty and not a segunify checkpoint \(holds sub, thesis.txt\)"
        ):
            save_checkpoint(out, _randomised(3), {"classes": ["a", "b", "c"]}, overwrite=overwrite)
    assert _tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    # a checkpoint folder a user put a file into is not segunify's alone either
    ck = save_checkpoint(tmp_path / "ck", _randomised(3), {"classes": ["a", "b", "c"]})
    (ck / "notes.txt").write_text("mine")
    with pytest.raises(SegunifyError, match="not a segunify checkpoint"):
        save_checkpoint(ck, _randomised(3), {"classes": ["a", "b", "c"]}, overwrite=True)
    assert (ck / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SegunifyError, match="not a folder"):
        save_checkpoint(tmp_path / "file", _randomised(3), {"classes": ["a", "b", "c"]})


def test_extra_files_belong_to_the_checkpoint(tmp_path):
    """A writer's extra file (e.g. the trainer's state) is listed in meta.files and may be replaced."""
    model = _randomised(3)
    extra = {"train_state.pt": lambda p: p.write_bytes(b"state")}
    ck = save_checkpoint(tmp_path / "ck", model, {"classes": ["a", "b", "c"]}, extra_files=extra)
    assert load_meta(ck).files == ["meta.json", "model.safetensors", "train_state.pt"]
    assert (ck / "train_state.pt").read_bytes() == b"state"
    save_checkpoint(ck, model, {"classes": ["a", "b", "c"]}, overwrite=True)
    assert sorted(p.name for p in ck.iterdir()) == ["meta.json", "model.safetensors"]


def test_checkpoints_get_the_users_umask(tmp_path):
    """Issue 11.13: mkdtemp made checkpoint folders 0700 whatever the umask; now 0777 & ~umask."""
    import os

    old = os.umask(0o022)
    try:
        ck = save_checkpoint(tmp_path / "ck", _randomised(3), {"classes": ["a", "b", "c"]})
        os.umask(0o027)
        ck2 = save_checkpoint(tmp_path / "ck2", _randomised(3), {"classes": ["a", "b", "c"]})
    finally:
        os.umask(old)
    assert ck.stat().st_mode & 0o777 == 0o755
    assert {(ck / n).stat().st_mode & 0o777 for n in ("meta.json", "model.safetensors")} == {0o644}
    assert ck2.stat().st_mode & 0o777 == 0o750 and (ck2 / "meta.json").stat().st_mode & 0o777 == 0o640


def test_disk_full_while_saving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """Issue 11.7: an OSError (disk full) while writing was a traceback; now one line naming the folder."""
    import errno

    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(SegunifyError, match="cannot write checkpoint: No space left on device") as err:
        save_checkpoint(tmp_path / "ck", _randomised(3), {"classes": ["a", "b", "c"]})
    assert str(tmp_path / "ck") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_malicious_pickle_is_refused_without_unsafe_advice(tmp_path, capsys):
    """Issue 11.12: torch's error for a refused pickle advises weights_only=False (which would run the
    file's code); the one line we print names the blocked object and never gives that advice."""
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    code = main(
        [
            "import-weights",
            "--pth",
            str(evil),
            "--model",
            "espnetv2",
            "--taxonomy",
            "cityscapes",
            "--out",
            str(tmp_path / "ck"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "refused to load weights" in err and "system" in err
    assert "weights_only" not in err and "pwned" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ck").exists()


@pytest.fixture(scope="module")
def imported(weights_dir, tmp_path_factory):
    """espnetv2_s1.0.cityscapes imported by name only, the file found under SEGUNIFY_DATA/weights."""
    out = tmp_path_factory.mktemp("imp") / "teacher"
    assert main(["import-weights", "espnetv2_s1.0.cityscapes", "--out", str(out)]) == 0
    return out


def test_import_by_name_needs_no_model_flags(weights_dir, imported):
    entry = get_pretrained("espnetv2_s1.0.cityscapes")
    model, meta = load_checkpoint(imported, taxonomy="cityscapes")
    assert meta.source.model_dump() == {
        "file": entry.file,
        "sha256": S1_SHA,
        "head": "sliced",
        "pretrained": entry.name,
    }
    assert meta.input_size == (512, 1024) and meta.model_kwargs == {"s": 1.0, "proj": 10}
    assert meta.mean == tuple(entry.mean) and meta.std == tuple(entry.std)
    shipped = torch.load(weights_dir / entry.file, map_location="cpu", weights_only=True)
    for k, v in model.state_dict().items():  # identical tensors, the head cut to 19 channels
        assert torch.equal(v, shipped[k][:19] if model.is_classifier(k) else shipped[k]), k


def test_import_recognises_a_listed_file_and_refuses_clashing_flags(weights_dir, imported, tmp_path, capsys):
    pth = weights_dir / "espnetv2_s1.0_cityscapes_1024x512.pth"
    out = tmp_path / "t"
    assert main(["import-weights", "--pth", str(pth), "--out", str(out), "--size", "256,512"]) == 0
    meta = load_meta(out)
    assert meta.source.pretrained == "espnetv2_s1.0.cityscapes" and meta.input_size == (256, 512)
    assert meta.weights_sha256 == load_meta(imported).weights_sha256
    capsys.readouterr()
    bad = ["import-weights", "--pth", str(pth), "--out", str(tmp_path / "x")]
    assert main([*bad, "--taxonomy", "camvid"]) == 1
    assert "taxonomy camvid (the file needs cityscapes)" in capsys.readouterr().err
    assert main([*bad, "--s", "2.0"]) == 1
    assert "option s 2.0 (the file needs 1.0)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    wrong = ["import-weights", "espnetv2_s2.0.cityscapes", "--pth", str(pth), "--out", str(tmp_path / "x")]
    assert (
        main(wrong) == 1 and "not the published file of 'espnetv2_s2.0.cityscapes'" in capsys.readouterr().err
    )


def test_import_of_an_unlisted_file_uses_the_fallback_flags(weights_dir, tmp_path, capsys):
    sd = torch.load(
        weights_dir / "espnetv2_s1.0_cityscapes_1024x512.pth", map_location="cpu", weights_only=True
    )
    sd["base_net.level1.bn.running_mean"] += 1.0  # another file: not in the table
    pth = tmp_path / "finetuned.pth"
    torch.save(sd, pth)
    assert main(["import-weights", "--pth", str(pth), "--out", str(tmp_path / "a")]) == 1
    assert "not in the pretrained table" in capsys.readouterr().err
    args = ["import-weights", "--pth", str(pth), "--model", "espnetv2", "--model-opt", "s=1.0", "--taxonomy"]
    assert main([*args, "cityscapes", "--out", str(tmp_path / "a")]) == 0
    meta = load_meta(tmp_path / "a")
    assert meta.source.pretrained is None and meta.model_kwargs["s"] == 1.0 and meta.input_size is None
    # a taxonomy whose class count the head cannot serve is refused, not given a random head
    assert main([*args, "camvid", "--out", str(tmp_path / "x")]) == 1
    assert "does not fit taxonomy 'camvid'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_import_refuses_foreign_folders_and_overwrites_only_when_asked(imported, tmp_path, capsys):
    """Issue 11.1 through the CLI: exit 1 and nothing touched; --overwrite swaps a checkpoint."""
    import shutil

    out = tmp_path / "data"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    cmd = ["import-weights", "espnetv2_s1.0.cityscapes", "--out"]
    assert main([*cmd, str(out), "--overwrite"]) == 1
    assert "not empty and not a segunify checkpoint (holds thesis.txt)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["thesis.txt"] and (out / "thesis.txt").read_text() == "keep me"
    ck = tmp_path / "ck"
    shutil.copytree(imported, ck)
    meta_before = (ck / "meta.json").read_bytes()
    assert main([*cmd, str(ck), "--size", "64,128"]) == 1
    assert "replace it with --overwrite" in capsys.readouterr().err
    assert (ck / "meta.json").read_bytes() == meta_before
    assert main([*cmd, str(ck), "--size", "64,128", "--overwrite"]) == 0
    assert load_meta(ck).input_size == (64, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "data"]  # no temp or backup folder left


@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_swaps_with_and_without_renameat2(tmp_path, monkeypatch, exchange):
    """The replacement is one renameat2(RENAME_EXCHANGE) where the kernel has it, two renames elsewhere;
    both leave exactly the new checkpoint and no temp or backup folder."""
    import segunify.models.checkpoint as ck

    if not exchange:
        monkeypatch.setattr(ck, "_exchange", lambda a, b: False)
    path = save_checkpoint(tmp_path / "ck", _randomised(3), {"classes": ["a", "b", "c"], "metrics": {"v": 1}})
    save_checkpoint(path, _randomised(3), {"classes": ["a", "b", "c"], "metrics": {"v": 2}}, overwrite=True)
    assert load_meta(path).metrics == {"v": 2} and [p.name for p in tmp_path.iterdir()] == ["ck"]
    load_checkpoint(path)  # the weights' sha256 matches the new meta
