"""Training config: overrides are typed, and every user mistake is one line naming the file and key, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from fixtures.train_data import base_config, make_camvid, make_pseudo, write_config
from segunify.cli import main
from segunify.config import load_yaml_config, resolve_path
from segunify.errors import SegunifyError
from segunify.train.config import load_config, parse_override, resolve_config_path


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("data") / "camvid", n_train=4, n_val=2)


def run_cli(args, capsys) -> tuple[int, list[str]]:
    code = main(args)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def test_overrides_are_typed(camvid, tmp_path):
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run"))
    cfg = load_config(
        path,
        [
            "steps=20",
            "augmentation.hflip=true",
            "parts.0.weight=2.5",
            "augmentation.crop=[32, 48]",
            "grad_clip=1",
        ],
    )
    assert cfg.steps == 20 and cfg.augmentation.hflip is True
    assert cfg.parts[0].weight == 2.5 and cfg.augmentation.crop == (32, 48) and cfg.grad_clip == 1.0
    assert parse_override("a.b=x:y") == (["a", "b"], "x:y")
    assert parse_override("eval.size=null") == (["eval", "size"], None)


@pytest.mark.parametrize(
    ("edit", "sets", "expected"),
    [
        (lambda c: c["parts"][0].update(wieght=1), [], "parts.0.wieght: unknown key"),
        (lambda c: c.update(steps="many"), [], "steps: Input should be a valid integer"),
        (lambda c: None, ["parts.0.weight=-1"], "parts.0.weight: Input should be greater than 0"),
        (lambda c: None, ["optimiser.lr=1"], "optimiser: unknown key (from an override)"),
        (lambda c: c.pop("steps"), [], "steps: required key missing"),
        (lambda c: c["augmentation"].update(scale=[2.0, 0.5]), [], "augmentation.scale: scale range must be"),
        (
            lambda c: c["parts"][0].update(root="/nonexistent/camvid"),
            [],
            "parts.0.root: dataset folder not found",
        ),
        (lambda c: c["parts"][0].update(dataset="nope"), [], "parts.0.dataset: unknown dataset 'nope'"),
        (
            lambda c: c["parts"][0].update(split="tset"),
            [],
            "parts.0.split: dataset 'camvid' has no split 'tset'",
        ),
        (lambda c: c["model"].update(weights="/nonexistent/w.pth"), [], "model.weights: file not found"),
        (lambda c: c["model"].update(name="resnet9000"), [], "model: unknown model 'resnet9000'"),
        (
            lambda c: c.update(taxonomy="cityscapes"),
            [],
            "parts.0.mapping: ground truth is in taxonomy 'camvid'",
        ),
        (
            lambda c: (c.update(taxonomy="cityscapes"), c["parts"][0].update(mapping="camvid__cityscapes")),
            [],
            "parts.0.mapping: mapping mappings/camvid__cityscapes.csv is not one-to-one for 'Building' (building;wall)",
        ),
        (
            lambda c: (c.update(taxonomy="cityscapes"), c["parts"][0].update(mapping="kitti__cityscapes")),
            [],
            "parts.0.mapping: mappings/kitti__cityscapes.csv: mapping's extra taxonomy 'kitti' (19 classes) is not "
            "the taxonomy of dataset 'camvid'",
        ),
        (
            lambda c: c["parts"][0].update(mapping="/nonexistent/m.csv"),
            [],
            "parts.0.mapping: /nonexistent/m.csv",
        ),
    ],
)
def test_config_errors_are_one_line(camvid, tmp_path, capsys, edit, sets, expected):
    cfg = base_config(camvid, tmp_path / "run")
    edit(cfg)
    path = write_config(tmp_path / "bad.yaml", cfg)
    code, lines = run_cli(["train", str(path), *[a for s in sets for a in ("--set", s)]], capsys)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}"), lines[0]
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "run" / "last").exists()


def test_select_names_one_metric_of_an_existing_part(camvid, tmp_path, capsys):
    """``eval.select`` must name a metric that exists: a known part, and mIoU only where it is defined
    (a non-partition mapping has none; before, such a part's allowed-set accuracy was averaged in)."""
    rows = ["extra_id,extra_name,source_classes"] + [f"{k},{n},{n}" for k, n in enumerate(OTHER_MAPPING)]
    rows[2] = "1,Building,Building;Sky"  # Sky allowed by two classes: not a partition
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    part = {"dataset": "camvid", "root": str(camvid), "mapping": str(tmp_path / "m.csv")}
    cases = [
        (
            {"parts": [part]},
            "eval.select: mean_miou needs the mIoU of camvid/val, but its mapping is not a partition",
        ),
        ({"parts": [part], "select": "kitti/val/miou"}, "eval.select: no evaluation part named 'kitti/val'"),
        (
            {"select": "camvid/val/iou"},
            "eval.select: expected mean_miou or <dataset>/<split>/<miou|pixel_acc|mean_acc>",
        ),
    ]
    for evaluation, expected in cases:
        cfg = base_config(camvid, tmp_path / "run")
        cfg["eval"] = evaluation
        path = write_config(tmp_path / "c.yaml", cfg)
        code, lines = run_cli(["train", str(path)], capsys)
        assert code == 1 and len(lines) == 1 and expected in lines[0], lines
    cfg["eval"] = {"parts": [part], "select": "camvid/val/pixel_acc"}
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg)), "--set", "steps=1"]) == 0


def test_unknown_key_names_its_line(camvid, tmp_path):
    text = "\n".join(
        [
            "model: {name: espnetv2}",
            "taxonomy: camvid",
            "steps: 3",
            "parts:",
            f"  - dataset: camvid\n    root: {camvid}\n    labells: gt",
        ]
    )
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(SegunifyError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == f"{tmp_path / 'c.yaml'}:7: parts.0.labells: unknown key"


def test_missing_and_invalid_files(tmp_path, capsys):
    code, lines = run_cli(["train", str(tmp_path / "none.yaml")], capsys)
    assert code == 1 and lines == [f"error: {tmp_path / 'none.yaml'}: config file not found"]
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    code, lines = run_cli(["train", str(tmp_path / "bad.yaml")], capsys)
    assert code == 1 and len(lines) == 1 and "invalid YAML" in lines[0]


def _pseudo_cfg(camvid, tmp_path, patch: dict | None = None, drop: bool = False, **part):
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    if patch is not None:
        summary = json.loads((pseudo / "summary.json").read_text())
        summary.update(patch)
        (pseudo / "summary.json").write_text(json.dumps(summary))
    if drop:
        next((pseudo / "trainannot").glob("*.png")).unlink()
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"][0].update(labels=str(pseudo), **part)
    return write_config(tmp_path / "p.yaml", cfg), pseudo


OTHER_MAPPING = "Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist".split(",")


@pytest.mark.parametrize(
    ("patch", "drop", "part", "expected"),
    [
        (
            {"source_taxonomy": "mapillary-vistas-v1.2"},
            False,
            {},
            "holds source_taxonomy 'mapillary-vistas-v1.2', but the target taxonomy is 'cityscapes'",
        ),
        ({"split": "val"}, False, {}, "holds split 'val', but the split read is 'train'"),
        (
            {"extra_taxonomy": "kitti"},
            False,
            {},
            "made for taxonomy 'kitti', but dataset 'camvid' is in 'camvid'",
        ),
        (
            {"class_pixels": {"road": 1}},
            False,
            {},
            "holds 1 classes, not the 19 classes of the target taxonomy 'cityscapes'",
        ),
        (None, True, {}, "parts.0.labels: pseudo-label file missing:"),
        (
            None,
            False,
            {"teacher": "cd" * 32},
            "parts.0.teacher: pseudo-labels pseudo were made by another teacher",
        ),
        (
            {"mapping": {"path": "other.csv", "sha256": "00" * 32}},
            False,
            {"mapping": "camvid__cityscapes"},
            "parts.0.mapping: pseudo-labels pseudo were made with another mapping ('other.csv')",
        ),
    ],
)
def test_pseudo_dir_errors(camvid, tmp_path, capsys, patch, drop, part, expected):
    """A pseudo-label folder made for another taxonomy, split, class list, teacher or mapping is refused
    before training (one line naming the part). Before: only dataset/split/source taxonomy were compared;
    another teacher or mapping trained silently."""
    path, pseudo = _pseudo_cfg(camvid, tmp_path, patch, drop, **part)
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: parts.0.") and expected in lines[0], lines[0]
    if drop:
        assert str(pseudo / "trainannot") in lines[0]
    assert not (tmp_path / "run" / "last").exists()


def test_pseudo_dir_with_expected_origin_trains(camvid, tmp_path):
    """The same folder with the teacher and mapping it was made with passes the checks."""
    from fixtures.train_data import TEACHER_SHA256

    path, _ = _pseudo_cfg(camvid, tmp_path, teacher=TEACHER_SHA256, mapping="camvid__cityscapes")
    assert main(["train", str(path), "--set", "steps=1"]) == 0


def test_mapping_missing_a_class_names_the_part(camvid, tmp_path, capsys):
    """A mapping that leaves a class of the part's taxonomy out is refused before training, naming the
    part's key and the missing class."""
    rows = ["extra_id,extra_name,source_classes"] + [f"{k},{n},{n}" for k, n in enumerate(OTHER_MAPPING[:-1])]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = base_config(camvid, tmp_path / "run")
    cfg["parts"][0]["mapping"] = str(tmp_path / "m.csv")
    path = write_config(tmp_path / "c.yaml", cfg)
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert "parts.0.mapping: " in lines[0] and "missing row(s) for extra class(es) ['Bicyclist']" in lines[0]


def test_pseudo_dir_must_exist(camvid, tmp_path, capsys):
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"][0]["labels"] = str(tmp_path / "missing")
    path = write_config(tmp_path / "p.yaml", cfg)
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and lines == [
        f"error: {path}: parts.0.labels: pseudo-label directory not found: {tmp_path / 'missing'}"
    ]


def test_resume_errors(camvid, tmp_path, capsys):
    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run", steps=1))
    code, lines = run_cli(["train", str(path), "--resume"], capsys)
    assert code == 1 and len(lines) == 1 and "resume: no previous run in" in lines[0]
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    code, lines = run_cli(["train", str(path)], capsys)
    assert code == 1 and len(lines) == 1 and "already holds a run; add --resume" in lines[0]
    (tmp_path / "run" / "last" / "train_state.pt").write_bytes(b"garbage")
    code, lines = run_cli(["train", str(path), "--resume"], capsys)
    assert code == 1 and len(lines) == 1 and "cannot read training state" in lines[0], lines


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("train_*.yaml"))
)
def test_shipped_train_configs_validate(path):
    cfg = load_config(path, ["steps=20"])
    assert cfg.steps == 20 and cfg.parts and cfg.model.name


class _Demo(BaseModel):
    """A config model unrelated to training: the loader is generic."""

    model_config = ConfigDict(extra="forbid")
    name: str
    size: tuple[int, int] = (1, 1)
    inner: dict[str, int] = {}


def test_generic_loader_validates_any_model_with_overrides(tmp_path):
    path = tmp_path / "d.yaml"
    path.write_text("name: x\nsize: [2, 3]\n", encoding="utf-8")
    cfg = load_yaml_config(path, _Demo, ["inner.a=4", "name=y"])
    assert cfg == _Demo(name="y", size=(2, 3), inner={"a": 4})
    path.write_text("# comment\nname: x\nsize: [2, three]\n", encoding="utf-8")
    with pytest.raises(SegunifyError) as err:
        load_yaml_config(path, _Demo)
    assert str(err.value).startswith(f"{path}:3: size.1: Input should be a valid integer")
    with pytest.raises(SegunifyError) as err:
        load_yaml_config(path, _Demo, ["size=[1, z]"])
    assert str(err.value).startswith(f"{path}: size.1: Input should be a valid integer")
    assert "(from an override)" in str(err.value)


def test_resolve_path_has_one_base_the_config_folder(tmp_path, monkeypatch):
    base = tmp_path / "configs"
    assert resolve_path("runs/a", base, "out") == base / "runs" / "a"
    assert resolve_path("../runs/a", base, "out") == tmp_path / "runs" / "a"
    assert resolve_path(str(tmp_path / "abs"), base, "out") == tmp_path / "abs"
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv("SEGUNIFY_DATA", str(tmp_path / "shared"))
    assert resolve_path("data:CamVid", base, "root") == tmp_path / "shared" / "data" / "CamVid"
    assert resolve_path("weights:w.pth", base, "w") == tmp_path / "shared" / "weights" / "w.pth"
    # the training config resolves against its own folder, not the current directory
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("run", base / "c.yaml", "out") == base / "run"


@pytest.mark.parametrize(
    ("amp", "cpu", "bf16", "expected"),
    [
        (True, False, True, "bf16"),
        (True, False, False, "fp16"),  # e.g. a V100: no bfloat16, fp16 with loss scaling
        ("fp16", False, True, "fp16"),
        ("bf16", False, True, "bf16"),
        (False, False, True, "no"),
        (True, True, False, "no"),  # ignored on the CPU
        ("fp16", True, False, "no"),
    ],
)
def test_amp_key_gives_accelerates_mixed_precision(amp, cpu, bf16, expected):
    from segunify.train.engine import mixed_precision

    assert mixed_precision(amp, cpu, bf16) == expected


def test_amp_key_is_typed(camvid, tmp_path, capsys):
    from segunify.train.engine import mixed_precision

    path = write_config(tmp_path / "c.yaml", base_config(camvid, tmp_path / "run"))
    assert load_config(path, ["amp=fp16"]).amp == "fp16" and load_config(path, ["amp=false"]).amp is False
    assert load_config(path).amp is True
    with pytest.raises(SegunifyError, match="bf16 but this GPU has no bfloat16 support"):
        mixed_precision("bf16", False, False)
    code, lines = run_cli(["train", str(path), "--set", "amp=fp8"], capsys)
    assert (
        code == 1 and len(lines) == 1 and "amp: Input should be True, False, 'bf16' or 'fp16'" in lines[0]
    ), lines
