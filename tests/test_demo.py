"""The demo application: configs (shipped and bad), the plan (pure), views, stage bookkeeping, the
results' figures on hand-made inputs, ``demo --plan`` from an empty folder, and a toy run end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures import camvid as camvid_fixture
from fixtures import cityscapes as cityscapes_fixture
from fixtures import idd_lite as idd_fixture
from fixtures import kitti as kitti_fixture
from segunify.apps.demo import config_file, load_demo_config, plan, shipped_configs
from segunify.apps.demo.plan import Layout, Stage, train_config
from segunify.apps.demo.results import goals, lacked_classes, lowest_ratio, paper_table
from segunify.apps.demo.run import (
    EXECUTORS,
    build_view,
    choose,
    evenly,
    fingerprint,
    replace_stale,
    run_stages,
)
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.mapping import load_mapping

TOY_STUDENT = {
    "steps": 2,
    "batch_size": 2,
    "augmentation": {"scale": [1.0, 1.0], "crop": [64, 64], "color_jitter": 0.0},
    "schedule": {"warmup": 0},
    "eval": {"every": 0, "size": [64, 128]},
    "num_workers": 0,
    "log": {"tensorboard": False, "progress": False},
}


def toy_config(**over) -> dict:
    """Two extra parts and a source part on the fixtures, tiny sizes, 2 steps."""
    data = {
        "run": "toy",
        "budget": "toy",
        "teacher": {"weights": "weights:teacher.pth", "kwargs": {"s": 1.0}},
        "parts": [
            {"name": "cityscapes", "dataset": "cityscapes", "root": "data:Cityscapes", "size": [64, 128]},
            {
                "name": "camvid",
                "dataset": "camvid",
                "root": "data:CamVid",
                "mapping": "camvid__cityscapes",
                "size": [64, 128],
                "exclude": ["train/0006R0_*"],
            },
            {
                "name": "idd-lite",
                "dataset": "idd-lite",
                "root": "data:IDD_Lite",
                "mapping": "idd-lite__cityscapes",
                "size": [64, 96],
                "limit": 1,
            },
        ],
        "student": TOY_STUDENT,
        "eval": {
            "cityscapes": {"dataset": "cityscapes", "root": "data:Cityscapes", "size": [64, 128]},
            "camvid": {
                "dataset": "camvid",
                "root": "data:CamVid",
                "mapping": "camvid__cityscapes",
                "size": [64, 128],
            },
            "idd-lite": {
                "dataset": "idd-lite",
                "root": "data:IDD_Lite",
                "mapping": "idd-lite__cityscapes",
                "size": [64, 96],
            },
            "kitti": {
                "dataset": "kitti",
                "root": "data:KITTI",
                "split": "train",
                "mapping": "kitti__cityscapes",
                "size": [64, 128],
                "limit": 2,
            },
        },
        "overlays": 1,
    }
    return data | over


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """A data folder with tiny Cityscapes, CamVid, IDD Lite and KITTI, and a tiny ESPNetv2 teacher."""
    from segunify.models import create_model

    root = tmp_path / "shared"
    cityscapes_fixture.make(root / "data" / "Cityscapes")
    camvid_fixture.make(root / "data" / "CamVid")
    idd_fixture.make(root / "data" / "IDD_Lite")
    kitti_fixture.make(root / "data" / "KITTI")
    (root / "weights").mkdir(parents=True)
    torch.save(create_model("espnetv2", 19, s=1.0).state_dict(), root / "weights" / "teacher.pth")
    monkeypatch.setenv("SEGUNIFY_DATA", str(root))
    return root


# ------------------------------------------------------------------------------------------------ configs


def test_shipped_configs_validate_and_name_real_mappings():
    assert {"quick", "full", "camvid", "camvid-full"} <= set(shipped_configs())
    for name in shipped_configs():
        with config_file(name) as path:
            cfg = load_demo_config(path)
        for spec in [*cfg.extra_parts, *(e for e in cfg.eval.values() if e.mapping)]:
            mapping = load_mapping(spec.mapping)
            assert mapping.source.name == cfg.teacher.taxonomy
            assert (
                mapping.extra.name
                == create_dataset.__globals__["get_dataset_class"](spec.dataset).taxonomy_name
            )
    with config_file("quick") as path:
        quick = load_demo_config(path)
    assert [p.name for p in quick.parts] == ["cityscapes", "camvid", "idd-lite"]
    assert quick.parts[0].mapping is None  # the source part trains on its ground truth
    assert set(quick.eval) == {"cityscapes", "camvid", "idd-lite", "kitti"}
    assert all(name == spec.dataset for name, spec in quick.eval.items())  # results keyed by adapter name
    assert quick.goals.sp_minus_sr == {"idd-lite": 0.05}


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = toy_config(stepz=3)
    with pytest.raises(SegunifyError, match="stepz: unknown key") as exc:
        load_demo_config(write_config(tmp_path, bad))
    assert str(tmp_path / "demo.yaml") in str(exc.value)
    owned = toy_config(student={**TOY_STUDENT, "out": "x"})
    with pytest.raises(SegunifyError, match="out are set by the demo"):
        load_demo_config(write_config(tmp_path, owned))
    twice = toy_config()
    twice["parts"][2]["name"] = "camvid"
    with pytest.raises(SegunifyError, match="part names must be unique"):
        load_demo_config(write_config(tmp_path, twice))
    with pytest.raises(SegunifyError, match="student: steps: Input should be greater than 0"):
        load_demo_config(write_config(tmp_path, toy_config()), ["student.steps=0"])
    assert load_demo_config(write_config(tmp_path, toy_config()), ["student.steps=7"]).student["steps"] == 7


def test_config_file_finds_shipped_names_and_refuses_unknown(tmp_path):
    with config_file(None) as path:
        assert path.name == "quick.yaml" and path.is_file()
    with pytest.raises(SegunifyError, match="unknown demo config 'nope'; shipped: .*quick"):
        with config_file("nope"):
            pass
    with pytest.raises(SegunifyError, match="demo config not found"):
        with config_file(str(tmp_path / "missing.yaml")):
            pass


# ------------------------------------------------------------------------------------------------ plan


def test_choose_excludes_by_glob_then_thins_evenly():
    class S:
        def __init__(self, i):
            self.id = i

    samples = [S(f"train/A_{i}") for i in range(6)] + [S(f"train/B_{i}") for i in range(4)]
    assert [s.id for s in choose(samples, [], ["train/A_*"], None)] == [f"train/B_{i}" for i in range(4)]
    assert [s.id for s in choose(samples, [], [], 4)] == ["train/A_0", "train/A_2", "train/A_5", "train/B_1"]
    held_out = choose(samples, ["train/A_*"], ["*_0"], 2)  # the complement, for scoring on held-out data
    assert [s.id for s in held_out] == ["train/A_1", "train/A_3"]
    assert evenly([1, 2, 3], 10) == [1, 2, 3] and evenly([1, 2, 3], None) == [1, 2, 3]


def test_plan_is_pure_and_differs_between_students_only_in_labels(tmp_path):
    cfg = load_demo_config(write_config(tmp_path, toy_config()))
    stages, lay = plan(cfg, tmp_path, tmp_path / "work")
    kinds = [s.kind for s in stages]
    assert (
        kinds == ["view", "view", "view", "import", "pseudo", "pseudo", "train", "train"] + ["evaluate"] * 12
    )
    assert [s.name for s in stages[:3]] == ["view camvid", "view idd-lite", "view eval-kitti"]
    assert not (tmp_path / "work").exists()  # planning writes nothing
    pseudo = next(s for s in stages if s.name == "pseudo-label camvid (P and R)")
    assert pseudo.params["root"] == str(tmp_path / "work" / "views" / "camvid")
    assert "--also-without-priors" in pseudo.command and "--mapping camvid__cityscapes" in pseudo.command
    sp, sr = train_config(cfg, "S_P", lay), train_config(cfg, "S_R", lay)
    assert sp["parts"][0].get("labels") is None and sp["parts"][0]["dataset"] == "cityscapes"
    assert sp["parts"][1]["labels"].endswith("pseudo/camvid/P") and sr["parts"][1]["labels"].endswith(
        "pseudo/camvid/R"
    )
    same = {k: v for k, v in sp.items() if k not in ("parts", "out")}
    assert same == {k: v for k, v in sr.items() if k not in ("parts", "out")}
    assert sp["model"]["weights"] == str(lay.teacher.absolute()) and sp["steps"] == 2
    ev = {s.name: s for s in stages if s.kind == "evaluate"}
    assert ev["evaluate S_P on cityscapes"].params["mapping"] is None
    assert "--mapping" not in ev["evaluate T on cityscapes"].command
    assert ev["evaluate S_R on kitti"].params["checkpoint"] == str(lay.student("S_R") / "last")
    assert ev["evaluate S_R on kitti"].after == ("train S_R", "view eval-kitti")
    assert ev["evaluate T on camvid"].after == ("import teacher",)  # the whole split: no view
    train = next(s for s in stages if s.name == "train S_P")
    assert set(train.after) == {
        "import teacher",
        "pseudo-label camvid (P and R)",
        "pseudo-label idd-lite (P and R)",
        "view camvid",
        "view idd-lite",
    }


def test_plan_from_an_empty_folder_without_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGUNIFY_DATA", str(tmp_path / "nowhere"))
    assert main(["demo", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "$SEGUNIFY_DATA/data/IDD_Lite" in out and "segunify train runs/quick/students/S_P.yaml" in out
    assert "--also-without-priors runs/quick/pseudo/idd-lite/R" in out
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert main(["demo", "--plan", "--config", "camvid"]) == 0
    assert "runs/camvid/" in capsys.readouterr().out


def test_missing_data_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SEGUNIFY_DATA", str(empty))
    code = main(
        ["demo", "--config", str(write_config(tmp_path, toy_config())), "--work", str(tmp_path / "w")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "teacher weights" in err and "part idd-lite" in err and "eval kitti" in err
    assert "segunify fetch --dest DIR" in err and "SEGUNIFY_DATA" in err


def test_taxonomy_mismatch_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEGUNIFY_DATA", str(tmp_path / "nowhere"))
    bad = toy_config()
    bad["parts"][2]["mapping"] = "camvid__cityscapes"  # IDD Lite labels read through CamVid's mapping
    code = main(["demo", "--config", str(write_config(tmp_path, bad)), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert (
        "parts.idd-lite: mapping camvid__cityscapes maps 'camvid'" in err and "labelled in 'idd-lite'" in err
    )
    no_map = toy_config()
    del no_map["eval"]["camvid"]["mapping"]
    assert main(["demo", "--config", str(write_config(tmp_path, no_map)), "--work", str(tmp_path / "w")]) == 1
    assert "eval.camvid: camvid is labelled in taxonomy 'camvid'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_each_part_is_brought_to_its_own_size_before_augmentation(shared):
    """The trainer's per-part resize (the demo trains IDD Lite at another size than Cityscapes)."""
    from segunify.train.config import TrainConfig
    from segunify.train.data import resolve_part

    raw = {"dataset": "idd-lite", "root": str(shared / "data" / "IDD_Lite"), "resize": [40, 56]}
    base = {"model": {"name": "espnetv2"}, "taxonomy": "idd-lite", "steps": 2}
    cfg = TrainConfig.model_validate(base | {"parts": [raw]})
    part = resolve_part(cfg.parts[0], load_mapping("idd-lite__cityscapes").extra, "parts.0", "c.yaml")
    image, label, _ = part.read(0)
    assert image.shape == (40, 56, 3) and label.shape == (40, 56)
    original = part.adapter.sample(part.samples[0])[1]
    assert set(np.unique(label)) <= set(np.unique(original))  # nearest neighbour: no invented ids
    with pytest.raises(ValueError, match="augmentation.resize or a resize per part"):
        TrainConfig.model_validate(
            base | {"parts": [raw], "augmentation": {"resize": [64, 64], "crop": [32, 32]}}
        )


# ------------------------------------------------------------------------------------------------ running


def test_view_is_read_by_the_adapter_as_the_dataset(shared, tmp_path):
    params = {
        "dataset": "idd-lite",
        "root": str(shared / "data" / "IDD_Lite"),
        "split": "train",
        "options": {},
    }
    out = tmp_path / "view"
    build_view(params | {"include": [], "exclude": ["train/0/*"], "limit": None, "out": str(out)})
    view = create_dataset("idd-lite", out)
    assert [s.id for s in view.samples("train")] == ["train/472/frame24567"]
    src = create_dataset("idd-lite", shared / "data" / "IDD_Lite")
    a, b = view.sample(view.samples("train")[0]), src.sample(src.samples("train")[1])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    build_view(params | {"include": [], "exclude": [], "limit": 1, "out": str(out)})  # rebuilt: no stale link
    assert [s.id for s in create_dataset("idd-lite", out).samples("train")] == ["train/0/frame0992"]
    with pytest.raises(SegunifyError, match="no idd-lite train sample is left"):
        build_view(params | {"include": ["train/0/*"], "exclude": ["*"], "limit": None, "out": str(out)})


def test_finished_stages_are_skipped_and_changed_ones_rerun(tmp_path, monkeypatch):
    calls: list[dict] = []
    runtimes: list[dict] = []

    def fake(params: dict, **runtime) -> None:
        calls.append(params)
        runtimes.append(runtime)
        Path(params["out"]).write_text("done")

    monkeypatch.setitem(EXECUTORS, "fake", fake)
    lay = Layout(work=tmp_path)
    stages = [
        Stage(f"s{i}", "fake", {"out": str(tmp_path / f"o{i}"), "n": i}, tmp_path / f"o{i}") for i in range(2)
    ]
    lines: list[str] = []
    run_stages(stages, lay, lines.append)
    assert len(calls) == 2 and json.loads((tmp_path / "stages.json").read_text()).keys() == {"s0", "s1"}
    run_stages(stages, lay, lines.append)
    assert len(calls) == 2 and "already done" in lines[-1]
    changed = [stages[0], Stage("s1", "fake", {"out": str(tmp_path / "o1"), "n": 5}, tmp_path / "o1")]
    run_stages(changed, lay, lines.append)
    assert [c["n"] for c in calls] == [0, 1, 5]
    (tmp_path / "o0").unlink()  # an output that went missing is made again
    run_stages(changed, lay, lines.append)
    assert [c["n"] for c in calls] == [0, 1, 5, 0]
    reader = Stage("s2", "fake", {"out": str(tmp_path / "o2"), "n": 2}, tmp_path / "o2", after=("s1",))
    run_stages([*changed, reader], lay, lines.append)
    upstream = Stage("s1", "fake", {"out": str(tmp_path / "o1"), "n": 6}, tmp_path / "o1")
    run_stages([stages[0], upstream, reader], lay, lines.append)  # s2 reads s1, which changed: both rerun
    assert [c["n"] for c in calls] == [0, 1, 5, 0, 2, 6, 2]
    fast = Stage("s3", "fake", {"out": str(tmp_path / "o3"), "n": 3}, tmp_path / "o3", runtime={"cache": "c"})
    run_stages([fast], lay, lines.append)  # runtime values come as keywords, apart from the params
    assert calls[-1] == fast.params and runtimes[-1] == {"cache": "c"} and runtimes[0] == {}


# ------------------------------------------------------------------------------------------------ results


def test_a_stage_rerun_with_other_parameters_replaces_its_own_folders(tmp_path):
    """A changed pseudo-label or train stage starts afresh (its pseudo-label folder would refuse other
    settings); the same parameters keep the folders so that an interrupted run resumes."""
    record, labels = tmp_path / "pseudo" / "camvid" / "stage.json", tmp_path / "pseudo" / "camvid" / "P"
    assert replace_stale(record, "soft: false", labels) is False and record.read_text() == "soft: false"
    labels.mkdir()
    (labels / "a.png").write_bytes(b"x")
    assert replace_stale(record, "soft: false", labels) is True and (labels / "a.png").is_file()
    assert replace_stale(record, "soft: true", labels) is False and not labels.exists()
    assert record.read_text() == "soft: true"


def test_lacked_classes_are_the_ones_a_dataset_cannot_tell_apart():
    camvid = lacked_classes("camvid__cityscapes")
    assert {"wall", "terrain", "truck", "bus", "train", "traffic light"} <= set(camvid)
    assert not {"sky", "road", "pole", "person", "fence", "sidewalk"} & set(camvid)
    idd = lacked_classes("idd-lite__cityscapes")
    assert {"traffic sign", "pole", "truck", "rider", "terrain", "vegetation"} <= set(idd)
    assert not {"road", "sky"} & set(idd)
    assert lacked_classes("kitti__cityscapes") == []


def test_paper_table_goals_and_collapse_ratio_by_hand():
    datasets = {
        "a": {"T": {"miou": 0.50}, "S_P": {"miou": 0.60}, "S_R": {"miou": 0.55}},
        "b": {"T": {"miou": 0.40}, "S_P": {"miou": 0.38}, "S_R": {"miou": 0.30}},
    }
    table = paper_table(datasets)
    assert table["T"]["mean"] == pytest.approx(0.45) and table["S_P"]["mean"] == pytest.approx(0.49)
    coll = {"a": {"shares": {"T": {"x": 0.01, "y": 0.0005}, "S_P": {"x": 0.004, "y": 0.0}}}}
    assert lowest_ratio(coll, 0.001) == pytest.approx(0.4)  # y is below the 0.1 % floor
    from segunify.apps.demo.config import GoalsConfig

    got = {g["goal"]: g for g in goals(GoalsConfig(sp_minus_sr={"b": 0.05}), table, datasets, coll, "b")}
    assert got["S_P - T, mean over datasets"]["value"] == pytest.approx(0.04)
    assert got["S_P - T, mean over datasets"]["met"] is True
    assert got["S_P - T on b"]["met"] is False and got["S_P - T on a"]["met"] is True
    assert got["S_P - S_R on b"]["value"] == pytest.approx(0.08) and got["S_P - S_R on b"]["met"]
    assert got["source retention: S_P - T on b"]["value"] == pytest.approx(-0.02)
    assert got["source retention: S_P - T on b"]["met"] is False  # target -0.01
    assert got["no collapse: lowest S_P / T share of a lacked class"]["met"] is False
    one = goals(GoalsConfig(sp_minus_t_each=None, sp_minus_t={"a": 0.05}), table, datasets, coll, None)
    assert [(g["goal"], g["target"]) for g in one if g["goal"].startswith("S_P - T on")] == [
        ("S_P - T on a", 0.05)
    ]


# ------------------------------------------------------------------------------------------------ toy run


def test_teacher_pass_options_reach_pseudo_label_evaluate_and_both_students(tmp_path):
    """pseudo.soft/flip/scales and teacher.backend become pseudo-label flags, soft parts of both students
    and evaluate's backend; at their defaults no stage parameter changes (old runs keep their stages)."""
    path = write_config(tmp_path, toy_config())
    plain, _ = plan(load_demo_config(path), tmp_path, tmp_path / "work")
    sets = ["pseudo.soft=true", "pseudo.flip=true", "pseudo.scales=[0.75, 1]", "teacher.backend=onnx"]
    cfg = load_demo_config(path, sets)
    stages, lay = plan(cfg, tmp_path, tmp_path / "work")
    pseudo = next(s for s in stages if s.kind == "pseudo")
    assert "--soft --flip --scales 0.75,1.0 --backend onnx" in pseudo.command
    assert pseudo.params | {"soft": False} != pseudo.params and pseudo.params["scales"] == [0.75, 1.0]
    default = next(s for s in plain if s.kind == "pseudo")
    assert not {"soft", "flip", "scales", "backend"} & set(default.params)
    assert "--soft" not in default.command and "--backend" not in default.command
    for model in ("S_P", "S_R"):
        parts = train_config(cfg, model, lay)["parts"]
        assert [p.get("soft", False) for p in parts] == [p.get("labels") is not None for p in parts]
    evaluate = next(s for s in stages if s.kind == "evaluate")
    assert evaluate.params["backend"] == "onnx" and "--backend onnx" in evaluate.command
    assert "backend" not in next(s for s in plain if s.kind == "evaluate").params
    assert pseudo.runtime == evaluate.runtime == {"onnx_cache": str(lay.onnx_cache)}  # one export cache
    moved = replace(evaluate, runtime={"onnx_cache": "elsewhere"})
    assert fingerprint(moved, {a: "x" for a in moved.after}) == fingerprint(
        evaluate, {a: "x" for a in moved.after}
    )
    with pytest.raises(SegunifyError, match="backend"):
        load_demo_config(path, ["teacher.backend=tensorrt"])


def test_interpolate_scores_the_wise_ft_mixes_and_leaves_other_runs_alone(tmp_path):
    """``interpolate: a`` adds one stage per student that mixes T and last/; the students' evaluations
    read the mix (and rerun when it changes); without it no stage changes."""
    from fixtures.tiny_models import espnet_checkpoint

    path = write_config(tmp_path, toy_config())
    plain, plain_lay = plan(load_demo_config(path), tmp_path, tmp_path / "work")
    stages, lay = plan(load_demo_config(path, ["interpolate=0.6"]), tmp_path, tmp_path / "work")
    mix = next(s for s in stages if s.name == "interpolate S_P")
    assert mix.params == {
        "start": str(lay.teacher),
        "end": str(lay.trained("S_P")),
        "alpha": 0.6,
        "out": str(lay.student("S_P") / "interpolated"),
    }
    assert mix.after == ("import teacher", "train S_P") and "segunify interpolate" in mix.command
    scored = next(s for s in stages if s.kind == "evaluate" and s.name.startswith("evaluate S_P"))
    assert scored.params["checkpoint"] == mix.params["out"] and "interpolate S_P" in scored.after
    assert next(s for s in stages if s.name == "train S_P").output == lay.trained("S_P") / "meta.json"
    assert not any(s.kind == "interpolate" for s in plain)
    same = {s.name: s.params for s in plain}
    assert all(same[s.name] == s.params for s in stages if s.kind != "evaluate" and s.name in same)
    assert plain_lay.checkpoint("S_P") == lay.trained("S_P")
    espnet_checkpoint(lay.teacher, taxonomy="cityscapes", num_classes=19, seed=0)
    espnet_checkpoint(lay.trained("S_P"), taxonomy="cityscapes", num_classes=19, seed=1)
    EXECUTORS["interpolate"](mix.params)
    assert json.loads(mix.output.read_text())["interpolation"]["alpha"] == 0.6
    with pytest.raises(SegunifyError, match="interpolate"):
        load_demo_config(path, ["interpolate=1.5"])


@pytest.mark.slow
def test_toy_demo_end_to_end(shared, tmp_path, monkeypatch):
    """Every stage for real on the fixtures at a toy budget (teacher passes in ONNX Runtime, exported once
    per weights and size into the run's cache), then the report; a rerun skips everything."""
    monkeypatch.setenv("SEGUNIFY_NO_PROGRESS", "1")
    config = toy_config()
    config["teacher"] = config.get("teacher", {}) | {"backend": "onnx"}
    path = write_config(tmp_path, config)
    work = tmp_path / "work"
    assert main(["demo", "--config", str(path), "--work", str(work)]) == 0
    saved = json.loads((work / "report" / "results.json").read_text())
    assert set(saved["datasets"]) == {"cityscapes", "camvid", "idd-lite", "kitti"}
    idd = saved["datasets"]["idd-lite"]
    assert (
        idd["taxonomy"] == "idd-lite" and idd["images"] == 1 and set(idd["T"]["iou"]) >= {"drivable", "sky"}
    )
    assert saved["datasets"]["kitti"]["images"] == 2
    assert set(saved["table"]) == {"T", "S_P", "S_R"} and "mean" in saved["table"]["T"]
    assert set(saved["pseudo_labels"]) == {"camvid", "idd-lite"}
    assert saved["pseudo_labels"]["camvid"]["P"]["images"] == 1  # 0006R0 held out of training
    assert saved["pseudo_labels"]["camvid"]["R"]["changed_share"] == 0.0
    assert set(saved["sampling"]["S_P"]) == {"cityscapes", "camvid", "idd-lite"}
    assert len({v["sha256"] for v in saved["models"].values()}) == 3  # both students moved, differently
    page = (work / "report" / "index.html").read_text()
    assert "idd-lite" in page and (work / "report" / "report.css").is_file()
    assert (work / "report" / "idd-lite-overlays.png").is_file()
    lines: list[str] = []
    from segunify.apps.demo import run_demo

    run_demo(load_demo_config(path), str(path), tmp_path, work, say=lines.append)
    assert sum("already done" in line for line in lines) == 20
    assert len(list((work / "onnx").glob("*.onnx"))) == len(saved["models"]) * 2  # 2 sizes per model


# ------------------------------------------------------------------------------------------------ packaging


def test_wheel_ships_the_demo_and_plans_from_an_empty_folder(tmp_path):
    """Configs, template and stylesheet are package data: an installed wheel (no checkout) plans the demo."""
    import shutil
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy: building in place would leave build/ and egg-info in the checkout
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(repo / name, tmp_path / name)
    shutil.copytree(repo / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", str(tmp_path), "-w", str(tmp_path / "w")]
    subprocess.run(build, check=True, cwd=tmp_path)
    wheel = next((tmp_path / "w").glob("segunify-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("quick.yaml", "full.yaml", "camvid.yaml", "camvid-full.yaml"):
        assert f"segunify/apps/demo/configs/{name}" in names
    assert {"segunify/apps/demo/templates/report.html.j2", "segunify/apps/demo/static/report.css"} <= names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path / "site"),
        "SEGUNIFY_DATA": str(tmp_path / "none"),
    }
    code = "import segunify, sys; from segunify.cli import main; print(segunify.__file__); sys.exit(main(['demo', '--plan']))"
    run = subprocess.run([sys.executable, "-c", code], cwd=empty, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(tmp_path / "site"))  # the installed copy, not the checkout
    assert "segunify train runs/quick/students/S_P.yaml" in run.stdout
    assert list(empty.iterdir()) == []
