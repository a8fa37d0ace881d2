"""A dataset spec works wherever a dataset name does: ``pseudo-label``, ``evaluate``, ``mapping suggest|audit``
(``--dataset SPEC.yaml``), ``dataset:`` of train config parts (relative to the config file) and of demo
config parts; outputs carry the spec's name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures.tiny_models import espnet_checkpoint
from fixtures.train_data import base_config, make_camvid, make_pseudo, write_config
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.train.config import TrainConfig
from segunify.train.parts import resolve_eval_parts, resolve_parts

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """\
name: camvid-mine
taxonomy: camvid
images: "{split}/*.png"
label: ["(train|val)/(.*)", "\\\\1annot/\\\\2"]
splits: [train, val]
"""


@pytest.fixture
def camvid(tmp_path):
    return make_camvid(tmp_path / "camvid")


@pytest.fixture
def spec(tmp_path) -> Path:
    (tmp_path / "configs" / "specs").mkdir(parents=True)
    path = tmp_path / "configs" / "specs" / "camvid.yaml"
    path.write_text(SPEC)
    return path


def test_spec_reads_the_camvid_layout_as_the_adapter_does(camvid, spec):
    mine, theirs = create_dataset(spec, camvid), create_dataset("camvid", camvid)
    for split in ("train", "val"):
        a, b = mine.samples(split), theirs.samples(split)
        assert [(f"{split}/{s.id}", s.rel, s.label) for s in a] == [(s.id, s.rel, s.label) for s in b]
        assert all(
            np.array_equal(mine.read_label(x), theirs.read_label(y)) for x, y in zip(a, b, strict=True)
        )


def test_train_parts_take_a_spec_relative_to_the_config(camvid, spec, tmp_path):
    config = tmp_path / "configs" / "train.yaml"
    cfg = base_config(camvid, tmp_path / "run")
    cfg["parts"] = [{"dataset": "specs/camvid.yaml", "root": str(camvid)}]
    cfg["eval"] = {"parts": [{"dataset": "specs/camvid.yaml", "root": str(camvid)}]}
    write_config(config, cfg)
    model = TrainConfig.model_validate(cfg)
    target, (part,) = resolve_parts(model, str(config))
    assert part.name == "camvid-mine/train" and part.source and len(part.samples) == 8
    adapter = create_dataset("camvid", camvid)
    _, label, _ = part.read(3)
    assert np.array_equal(label, adapter.read_label(adapter.samples("train")[3]))
    (evaluated,) = resolve_eval_parts(model, target, str(config))
    assert evaluated.name == "camvid-mine/val" and len(evaluated.samples) == 2
    cfg["parts"][0]["dataset"] = "specs/none.yaml"
    with pytest.raises(SegunifyError, match=r"parts.0.dataset: .*none.yaml: dataset spec not found"):
        resolve_parts(TrainConfig.model_validate(cfg), str(config))


def test_pseudo_parts_of_a_spec_are_checked_against_its_name(camvid, spec, tmp_path):
    config = tmp_path / "configs" / "train.yaml"
    ours = make_pseudo(camvid, tmp_path / "p-ours", dataset="camvid-mine", spec=spec)
    theirs = make_pseudo(camvid, tmp_path / "p-theirs", dataset="camvid")
    part = {"dataset": "specs/camvid.yaml", "root": str(camvid)}
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes", parts=[part | {"labels": str(ours)}])
    _, (resolved,) = resolve_parts(TrainConfig.model_validate(cfg), str(config))
    assert resolved.name == "camvid-mine/train(pseudo)"
    cfg["parts"] = [part | {"labels": str(theirs)}]
    with pytest.raises(SegunifyError, match="holds dataset 'camvid', but the dataset read is 'camvid-mine'"):
        resolve_parts(TrainConfig.model_validate(cfg), str(config))


def test_an_edited_spec_is_never_skipped_as_labelled(camvid, spec, tmp_path, monkeypatch, capsys):
    """The pseudo-label fingerprint holds the spec file's sha256: after an edit (other ignore ids) a rerun
    into the same folder is refused, not skipped as done, and training on the old labels is refused too.
    A dataset by name records no spec: its folders keep their fingerprint."""
    import hashlib

    from segunify.pseudo.store import SETTINGS

    monkeypatch.setenv("SEGUNIFY_NO_PROGRESS", "1")
    teacher = espnet_checkpoint(tmp_path / "teacher", taxonomy="cityscapes", num_classes=19)
    out = tmp_path / "pseudo"
    argv = ["pseudo-label", "--teacher", str(teacher), "--dataset", str(spec), "--root", str(camvid),
            "--mapping", "camvid__cityscapes", "--out", str(out), "--workers", "0"]  # fmt: skip
    assert main(argv) == 0
    recorded = json.loads((out / SETTINGS).read_text())
    assert recorded["spec_sha256"] == hashlib.sha256(spec.read_bytes()).hexdigest()
    assert main(argv) == 0 and "8 skipped" in " ".join(capsys.readouterr().out.split())  # unchanged: resumed
    config = tmp_path / "configs" / "train.yaml"
    part = {"dataset": "specs/camvid.yaml", "root": str(camvid), "labels": str(out)}
    cfg = TrainConfig.model_validate(
        base_config(camvid, tmp_path / "run", taxonomy="cityscapes", parts=[part])
    )
    assert resolve_parts(cfg, str(config))[1][0].name == "camvid-mine/train(pseudo)"
    spec.write_text(SPEC + "ignore_ids: [10]\n")
    assert main(argv) == 1
    assert "made with other settings (spec_sha256)" in capsys.readouterr().err
    with pytest.raises(SegunifyError, match=r"parts.0.dataset: pseudo-labels pseudo were made through another "
                                            r"version of the dataset spec"):  # fmt: skip
        resolve_parts(cfg, str(config))
    plain = make_pseudo(camvid, tmp_path / "plain")
    assert "spec_sha256" not in json.loads((plain / SETTINGS).read_text())


def test_train_cli_on_a_spec_part(camvid, spec, tmp_path):
    config = write_config(
        tmp_path / "configs" / "train.yaml",
        base_config(
            camvid, tmp_path / "run", steps=2, parts=[{"dataset": "specs/camvid.yaml", "root": str(camvid)}]
        ),
    )
    assert main(["train", str(config)]) == 0
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_pseudo_label_evaluate_and_mapping_commands_take_a_spec(camvid, spec, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGUNIFY_NO_PROGRESS", "1")
    teacher = espnet_checkpoint(tmp_path / "teacher", taxonomy="cityscapes", num_classes=19, varied=True)
    data = ["--dataset", str(spec), "--root", str(camvid)]
    out = tmp_path / "pseudo"
    argv = [
        "pseudo-label",
        "--teacher",
        str(teacher),
        *data,
        "--mapping",
        "camvid__cityscapes",
        "--out",
        str(out),
    ]
    assert main([*argv, "--workers", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["dataset"] == "camvid-mine"
        and summary["images"] == 8
        and summary["extra_taxonomy"] == "camvid"
    )
    assert (out / "trainannot" / "0001TP_000000.png").is_file()
    result = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(teacher), *data, "--split", "val", "--mapping", "camvid__cityscapes",
                 "--json", str(result)]) == 0  # fmt: skip
    assert json.loads(result.read_text())["images"] == 2
    draft = tmp_path / "draft.csv"
    assert main(["mapping", "suggest", "--teacher", str(teacher), *data, "--out", str(draft)]) == 0
    assert draft.read_text().startswith("# DRAFT")
    assert main(["mapping", "audit", "camvid__cityscapes", "--teacher", str(teacher), *data]) == 0


def test_demo_parts_take_a_spec_relative_to_the_config(camvid, spec, tmp_path):
    from segunify.apps.demo.config import DemoConfig
    from segunify.apps.demo.plan import plan
    from segunify.apps.demo.run import check_taxonomies

    raw = {
        "run": "spec",
        "budget": "tiny",
        "parts": [
            {"name": "src", "dataset": "cityscapes", "root": str(camvid), "size": [48, 64]},
            {"name": "mine", "dataset": "specs/camvid.yaml", "root": str(camvid), "size": [48, 64],
             "mapping": "camvid__cityscapes"},
        ],
        "eval": {"mine": {"dataset": "specs/camvid.yaml", "root": str(camvid), "size": [48, 64],
                          "mapping": "camvid__cityscapes"}},
    }  # fmt: skip
    cfg = DemoConfig.model_validate(raw)
    base = tmp_path / "configs"
    stages, _ = plan(cfg, base, tmp_path / "work")
    pseudo = next(s for s in stages if s.kind == "pseudo")
    assert pseudo.params.dataset == str(spec) and f"--dataset {spec}" in pseudo.command
    train = next(s for s in stages if s.kind == "train")
    assert train.params.train["parts"][1]["dataset"] == str(spec)
    assert next(s for s in stages if s.kind == "evaluate").params.dataset == str(spec)
    from segunify.apps.demo.config import with_spec_paths

    check_taxonomies(with_spec_paths(cfg, base))
    wrong = raw | {"eval": {"mine": raw["eval"]["mine"] | {"mapping": "idd-lite__cityscapes"}}}
    with pytest.raises(SegunifyError, match="labelled in 'camvid'"):
        check_taxonomies(with_spec_paths(DemoConfig.model_validate(wrong), base))
    assert yaml.safe_load(yaml.safe_dump(train.params.train))["parts"][0]["dataset"] == "cityscapes"


def test_the_walkthrough_config_names_the_shipped_specs():
    """configs/train_rugd_quick.yaml (docs/your-data.md) validates, and its parts' specs, relative to the config,
    are the shipped ones: the source's train split holds 80 frames, RUGD's 18."""
    from segunify.datasets.spec import load_spec
    from segunify.train.config import load_config, resolve_config_path

    path = Path(__file__).resolve().parents[1] / "configs" / "train_rugd_quick.yaml"
    cfg = load_config(path)
    specs = [load_spec(resolve_config_path(p.dataset, path, "dataset")) for p in cfg.parts]
    assert [s.name for s in specs] == ["cityscapes-aachen-half", "rugd-sample"]
    assert cfg.parts[1].mapping == "rugd__cityscapes" and cfg.parts[0].labels == "gt"
