"""The demo application: configs (shipped and bad), the plan (pure), views, stage bookkeeping, the
results' figures on hand-made inputs, ``demo --plan`` from an empty folder, and a toy run end to end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
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
from segunify.apps.demo.config import GoalsConfig
from segunify.apps.demo.params import StageParams, TrainParams, ViewParams
from segunify.apps.demo.plan import Layout, Stage, train_config
from segunify.apps.demo.results import (
    below_teacher,
    goals,
    lacked_classes,
    lowest_ratio,
    mean_std,
    paper_table,
    seed_block,
    seed_tables,
)
from segunify.apps.demo.run import (
    EXECUTORS,
    build_view,
    choose,
    fingerprint,
    replace_stale,
    run_stages,
    train_student,
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
    assert pseudo.params.root == str(tmp_path / "work" / "views" / "camvid")
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
    assert ev["evaluate S_P on cityscapes"].params.mapping is None
    assert "--mapping" not in ev["evaluate T on cityscapes"].command
    assert ev["evaluate S_R on kitti"].params.checkpoint == str(lay.student("S_R") / "last")
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


# sha256 of the toy config's plan (every stage's name, kind, params, output and reads: what its fingerprint and
# its "already done" check read) as it was before student seeds: a one-seed run must keep its stages, or every
# existing run folder is redone
ONE_SEED_PLAN = "c8d1129f4ac4173a681b772c89762a8182dbfa34ccfb759236f99126a76d71b6"


def test_one_seed_plans_as_before_and_more_seeds_add_their_own_students(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGUNIFY_DATA", str(tmp_path / "nowhere"))
    path = write_config(tmp_path, toy_config())
    one, _ = plan(load_demo_config(path), tmp_path, Path("work"))
    rows = [[s.name, s.kind, s.params.to_json(), str(s.output), s.after] for s in one]
    text = json.dumps(rows, sort_keys=True, default=str).replace(str(tmp_path), "<tmp>")
    assert hashlib.sha256(text.encode()).hexdigest() == ONE_SEED_PLAN, "a one-seed run's stages changed"
    three, lay = plan(load_demo_config(path, ["seeds=3"]), tmp_path, Path("work"))
    same = {s.name: s for s in three}
    assert all(same[s.name] == replace(s, note=same[s.name].note) for s in one)  # notes name the seed
    extra = [s.name for s in three if s.name not in {s.name for s in one}]
    students = [f"{m}-seed{k}" for k in (1, 2) for m in ("S_P", "S_R")]
    evals = [f"evaluate {m} on {n}" for n in ("camvid", "cityscapes", "idd-lite", "kitti") for m in students]
    assert extra == [f"train {m}" for m in students] + evals
    base, seeded = same["train S_P"].params, same["train S_P-seed2"].params
    assert seeded.config == str(Path("work/students/S_P-seed2.yaml"))
    assert seeded.train == base.train | {"seed": 2, "out": str(lay.student("S_P-seed2").absolute())}
    assert "seed" not in base.train  # the config sets none: the first seed's file is unchanged
    ev = same["evaluate S_R-seed2 on kitti"]
    assert ev.params.checkpoint == str(lay.trained("S_R-seed2")) and ev.params.overlays == 0
    assert ev.after == ("train S_R-seed2", "view eval-kitti") and ev.output == lay.eval_json(
        "kitti", "S_R-seed2"
    )
    mixed, lay = plan(
        load_demo_config(path, ["seeds=2", "student.seed=5", "interpolate=0.7"]), tmp_path, Path("w")
    )
    by_name = {s.name: s for s in mixed}
    assert by_name["interpolate S_P-seed6"].params.end == str(lay.trained("S_P-seed6"))
    assert by_name["evaluate S_P-seed6 on camvid"].params.checkpoint == str(lay.checkpoint("S_P-seed6"))
    assert by_name["evaluate S_P-seed6 on camvid"].after == ("interpolate S_P-seed6",)
    assert [by_name[f"train {m}"].params.train["seed"] for m in ("S_P", "S_R-seed6")] == [5, 6]


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
    assert main(["demo", "--plan", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "segunify train runs/quick/students/S_R-seed1.yaml" in out and "evaluate S_P-seed1 on kitti" in out
    assert main(["demo", "--plan", "--seeds", "0"]) == 2  # a usage error
    assert "--seeds" in capsys.readouterr().err


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
    from segunify.train.parts import resolve_part

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
    out = tmp_path / "view"
    params = ViewParams(
        dataset="idd-lite",
        root=str(shared / "data" / "IDD_Lite"),
        split="train",
        options={},
        include=(),
        exclude=("train/0/*",),
        limit=None,
        out=str(out),
    )
    build_view(params)
    view = create_dataset("idd-lite", out)
    assert [s.id for s in view.samples("train")] == ["train/472/frame24567"]
    src = create_dataset("idd-lite", shared / "data" / "IDD_Lite")
    a, b = view.sample(view.samples("train")[0]), src.sample(src.samples("train")[1])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    build_view(replace(params, exclude=(), limit=1))  # rebuilt: no stale link
    assert [s.id for s in create_dataset("idd-lite", out).samples("train")] == ["train/0/frame0992"]
    with pytest.raises(SegunifyError, match="no idd-lite train sample is left"):
        build_view(replace(params, include=("train/0/*",), exclude=("*",)))


@dataclass(frozen=True, kw_only=True)
class Fake(StageParams):
    out: str
    n: int


def test_finished_stages_are_skipped_and_changed_ones_rerun(tmp_path, monkeypatch):
    calls: list[Fake] = []
    runtimes: list[dict] = []

    def fake(params: Fake, **runtime) -> None:
        calls.append(params)
        runtimes.append(runtime)
        Path(params.out).write_text("done")

    monkeypatch.setitem(EXECUTORS, "fake", fake)
    lay = Layout(work=tmp_path)
    stages = [
        Stage(f"s{i}", "fake", Fake(out=str(tmp_path / f"o{i}"), n=i), tmp_path / f"o{i}") for i in range(2)
    ]
    lines: list[str] = []
    run_stages(stages, lay, lines.append)
    assert len(calls) == 2 and json.loads((tmp_path / "stages.json").read_text()).keys() == {"s0", "s1"}
    run_stages(stages, lay, lines.append)
    assert len(calls) == 2 and "already done" in lines[-1]
    changed = [stages[0], Stage("s1", "fake", Fake(out=str(tmp_path / "o1"), n=5), tmp_path / "o1")]
    run_stages(changed, lay, lines.append)
    assert [c.n for c in calls] == [0, 1, 5]
    (tmp_path / "o0").unlink()  # an output that went missing is made again
    run_stages(changed, lay, lines.append)
    assert [c.n for c in calls] == [0, 1, 5, 0]
    reader = Stage("s2", "fake", Fake(out=str(tmp_path / "o2"), n=2), tmp_path / "o2", after=("s1",))
    run_stages([*changed, reader], lay, lines.append)
    upstream = Stage("s1", "fake", Fake(out=str(tmp_path / "o1"), n=6), tmp_path / "o1")
    run_stages([stages[0], upstream, reader], lay, lines.append)  # s2 reads s1, which changed: both rerun
    assert [c.n for c in calls] == [0, 1, 5, 0, 2, 6, 2]
    fast = Stage("s3", "fake", Fake(out=str(tmp_path / "o3"), n=3), tmp_path / "o3", runtime={"cache": "c"})
    run_stages([fast], lay, lines.append)  # runtime values come as keywords, apart from the params
    assert calls[-1] == fast.params and runtimes[-1] == {"cache": "c"} and runtimes[0] == {}


def test_a_student_on_remade_pseudo_labels_trains_afresh(tmp_path, monkeypatch):
    """Pseudo-labels remade for other settings keep their paths, so the student's train config is the same
    text: the train stage reran but resumed the finished student at its last step, and the old student was
    reported as trained on the new labels. The stage's fingerprint (its parameters and its inputs') is part
    of what a resumable stage compares: the same stage resumes, a stage on other inputs starts afresh."""
    import segunify.train

    out = tmp_path / "students" / "S_P"
    resumed: list[tuple[bool, bool]] = []

    def fake_train(cfg, path, resume: bool) -> None:
        resumed.append((resume, (out / "last").exists()))
        (out / "last").mkdir(parents=True, exist_ok=True)
        (out / "last" / "train_state.pt").write_bytes(b"step 120")

    monkeypatch.setattr(segunify.train, "train", fake_train)
    monkeypatch.setattr(segunify.train, "load_config", lambda path: path)
    params = TrainParams(config=str(tmp_path / "students" / "S_P.yaml"), train={"out": str(out), "steps": 3})
    train_student(params, fingerprint="labels-a")
    train_student(params, fingerprint="labels-a")  # the same stage (interrupted or rerun): resumes
    train_student(params, fingerprint="labels-b")  # same config, remade labels: the old student is removed
    assert resumed == [(False, False), (True, True), (False, False)]
    assert yaml.safe_load((tmp_path / "students" / "S_P.yaml").read_text()) == params.train  # a comment line

    monkeypatch.setitem(EXECUTORS, "fake", lambda params, **kw: Path(params.out).write_text("done"))
    seen: list[str] = []
    monkeypatch.setitem(
        EXECUTORS,
        "train",
        lambda params, fingerprint: seen.append(fingerprint) or Path(params.out).write_text("done"),
    )
    labels = [Stage("p", "fake", Fake(out=str(tmp_path / "p"), n=n), tmp_path / "p") for n in (1, 2)]
    student = Stage("t", "train", Fake(out=str(tmp_path / "t"), n=0), tmp_path / "t", after=("p",))
    run_stages([labels[0], student], Layout(work=tmp_path), lambda line: None)
    run_stages([labels[1], student], Layout(work=tmp_path), lambda line: None)
    assert len(seen) == 2 and seen[0] != seen[1]  # same train parameters, other inputs: another fingerprint


# ------------------------------------------------------------------------------------------------ results


def test_a_stage_rerun_with_other_parameters_replaces_its_own_folders(tmp_path):
    """A changed pseudo-label or train stage starts afresh (its pseudo-label folder would refuse other
    settings); the same parameters keep the folders so that an interrupted run resumes."""
    record, labels = tmp_path / "pseudo" / "camvid" / "stage.json", tmp_path / "pseudo" / "camvid" / "P"
    assert replace_stale(record, "flip: false", labels) is False and record.read_text() == "flip: false"
    labels.mkdir()
    (labels / "a.png").write_bytes(b"x")
    assert replace_stale(record, "flip: false", labels) is True and (labels / "a.png").is_file()
    assert replace_stale(record, "flip: true", labels) is False and not labels.exists()
    assert record.read_text() == "flip: true"


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
        "a": {"T": {"miou": 0.50, "iou": {"x": 0.5}}, "S_P": {"miou": 0.60, "iou": {"x": 0.3}}},
        "b": {"T": {"miou": 0.40, "iou": {"x": 0.5}}, "S_P": {"miou": 0.38, "iou": {"x": 0.495}}},
    }
    datasets["a"]["S_R"], datasets["b"]["S_R"] = {"miou": 0.55}, {"miou": 0.30}
    table = paper_table(datasets)
    assert table["T"]["mean"] == pytest.approx(0.45) and table["S_P"]["mean"] == pytest.approx(0.49)
    coll = {"a": {"shares": {"T": {"x": 0.01, "y": 0.0005}, "S_P": {"x": 0.004, "y": 0.0}}}}
    assert lowest_ratio(coll, 0.001) == pytest.approx(0.4)  # y is below the 0.1 % floor
    got = {g["goal"]: g for g in goals(GoalsConfig(sp_minus_sr={"b": 0.05}), table, datasets, coll, "b")}
    assert not any("every seed" in k or "below T" in k for k in got)  # one seed; no class goal set
    assert below_teacher(datasets) == [
        {"dataset": "a", "class": "x", "T": 0.5, "S_P": 0.3, "diff": pytest.approx(-0.2)}
    ]
    assert got["S_P beats T on the mean over datasets"]["value"] == pytest.approx(0.04)
    assert got["S_P beats T on the mean over datasets"]["met"] is True
    assert got["S_P beats T on b"]["met"] is False and got["S_P beats T on a"]["met"] is True
    assert (
        got["the priors help: S_P beats S_R on b"]["value"] == pytest.approx(0.08)
        and got["the priors help: S_P beats S_R on b"]["met"]
    )
    assert got["S_P keeps the source: S_P - T on b"]["value"] == pytest.approx(-0.02)
    assert got["S_P keeps the source: S_P - T on b"]["met"] is False  # target -0.01
    assert (
        got["S_P still predicts the source classes an extra dataset lacks (lowest S_P / T share)"]["met"]
        is False
    )
    one = goals(GoalsConfig(sp_minus_t_each=None, sp_minus_t={"a": 0.05}), table, datasets, coll, None)
    assert [
        (g["goal"], g["target"])
        for g in one
        if g["goal"].startswith("S_P beats T on") and "mean" not in g["goal"]
    ] == [("S_P beats T on a", 0.05)]


def _seeds(mious: list[float], iou: dict[str, list], **extra) -> dict:
    """Score blocks of one student's seeds 0, 1, ...: ``iou[class]`` lists each seed's IoU."""
    return {
        str(k): {"miou": m, "iou": {c: v[k] for c, v in iou.items()}}
        | {key: v[k] for key, v in extra.items()}
        for k, m in enumerate(mious)
    }


def test_seed_means_stds_and_classes_below_t_by_hand():
    """Three seeds: means, sample stds (ddof=1), each seed's table row, the classes more than 1 point below
    T on the seed-averaged IoU (exactly 1 point is not below), and the goals on them."""
    assert mean_std([0.5]) == (0.5, None) and mean_std([None]) == (None, None)
    one = {"0": {"miou": 0.5, "iou": {"x": 0.5}}}
    assert seed_block(one) == one["0"]  # one seed: today's block, no std
    iou = {"x": [0.58, 0.60, 0.56], "y": [0.46, 0.56, 0.54], "z": [None, 0.2, 0.4]}
    shares = [{"wall": 0.01}, {"wall": 0.02}, {"wall": 0.06}]
    a_sp = _seeds([0.52, 0.58, 0.55], iou, pixel_acc=[0.90, 0.92, 0.94], pred_share_source=shares)
    datasets = {
        "a": {
            "T": {"miou": 0.50, "iou": {"x": 0.60, "y": 0.40, "z": None}},
            "S_P": seed_block(a_sp),
            "S_R": seed_block(_seeds([0.50, 0.50, 0.53], {"x": [0.5] * 3})),
        },
        "b": {
            "T": {"miou": 0.40, "iou": {"p": 0.50, "q": 0.30}},
            "S_P": seed_block(_seeds([0.39, 0.45, 0.45], {"p": [0.49] * 3, "q": [0.20, 0.25, 0.30]})),
            "S_R": seed_block(_seeds([0.30, 0.30, 0.30], {"p": [0.4] * 3})),
        },
    }
    sp = datasets["a"]["S_P"]
    assert sp["miou"] == pytest.approx(0.55) and sp["miou_std"] == pytest.approx(0.03)
    assert sp["pixel_acc"] == pytest.approx(0.92) and sp["pixel_acc_std"] == pytest.approx(0.02)
    assert sp["iou"]["y"] == pytest.approx(0.52) and sp["iou_std"]["y"] == pytest.approx(0.0028**0.5)
    assert sp["iou"]["z"] == pytest.approx(0.3) and sp["iou_std"]["z"] == pytest.approx(0.02**0.5)  # 2 seeds
    assert sp["pred_share_source"]["wall"] == pytest.approx(0.03)
    assert sp["seeds"]["1"]["iou"]["y"] == 0.56 and list(sp["seeds"]) == ["0", "1", "2"]
    assert datasets["b"]["S_R"]["miou_std"] == 0.0  # three equal seeds: a spread of 0, not None
    table = paper_table(datasets)
    per_seed, std = seed_tables(datasets)
    assert table["S_P"]["mean"] == pytest.approx(0.49) and table["S_P"]["b"] == pytest.approx(0.43)
    assert per_seed["S_P"]["0"] == pytest.approx({"a": 0.52, "b": 0.39, "mean": 0.455})
    assert set(per_seed) == set(std) == {"S_P", "S_R"}
    assert std["S_P"]["b"] == pytest.approx(0.0012**0.5) and std["S_R"]["a"] == pytest.approx(0.0003**0.5)
    assert std["S_P"]["mean"] == pytest.approx(0.000975**0.5)  # the std of the per-seed means
    below = below_teacher(datasets)
    assert [(r["dataset"], r["class"]) for r in below] == [("b", "q"), ("a", "x")]  # not b/p: exactly -1
    assert below[0] == pytest.approx({"dataset": "b", "class": "q", "T": 0.30, "S_P": 0.25, "diff": -0.05})
    got = {g["goal"]: g for g in goals(GoalsConfig(max_classes_below_t=1), table, datasets, {}, None)}
    assert got["S_P beats T on a"]["met"] and got["S_P beats T on b"]["met"]  # on the means
    lowest = got["S_P beats T on every dataset in every seed (the lowest)"]
    assert lowest["value"] == pytest.approx(-0.01) and lowest["strict"] and not lowest["met"]  # b, seed 0
    count = got["no class falls behind T: classes more than 1 point below T (seed-averaged IoU)"]
    assert (count["value"], count["unit"], count["at_most"], count["met"]) == (2, "classes", True, False)
    met = goals(GoalsConfig(max_classes_below_t=2, sp_minus_t_each=None), table, datasets, {}, None)
    assert [g["met"] for g in met if g["unit"] == "classes"] == [True]
    assert not any("every seed" in g["goal"] for g in met)  # the per-seed line belongs to sp_minus_t_each


# ------------------------------------------------------------------------------------------------ toy run


def test_teacher_pass_options_reach_pseudo_label_evaluate_and_both_students(tmp_path):
    """pseudo.flip/scales/ignore_conflicts and teacher.backend become pseudo-label flags and evaluate's
    backend; at their defaults no stage parameter changes (old runs keep their stages). pseudo.soft (soft
    priors) and parts.N.repeat_threshold left the product: a config that names them is refused."""
    path = write_config(tmp_path, toy_config())
    plain, _ = plan(load_demo_config(path), tmp_path, tmp_path / "work")
    sets = ["pseudo.flip=true", "pseudo.scales=[0.75, 1]", "teacher.backend=onnx"]
    sets += ["pseudo.ignore_conflicts=0.6"]
    cfg = load_demo_config(path, sets)
    stages, lay = plan(cfg, tmp_path, tmp_path / "work")
    pseudo = next(s for s in stages if s.kind == "pseudo")
    assert "--flip --scales 0.75,1.0 --ignore-conflicts 0.6 --backend onnx" in pseudo.command
    assert pseudo.params.to_json()["flip"] is True and pseudo.params.to_json()["scales"] == [0.75, 1.0]
    default = next(s for s in plain if s.kind == "pseudo")
    assert not {"flip", "scales", "backend", "ignore_conflicts"} & set(default.params.to_json())
    assert "--flip" not in default.command and "--backend" not in default.command
    with pytest.raises(SegunifyError, match="pseudo.soft"):
        load_demo_config(path, ["pseudo.soft=true"])
    with pytest.raises(SegunifyError, match="repeat_threshold"):  # repeat-factor sampling left too
        load_demo_config(path, ["parts.0.repeat_threshold=0.5"])
    evaluate = next(s for s in stages if s.kind == "evaluate")
    assert evaluate.params.backend == "onnx" and "--backend onnx" in evaluate.command
    assert "backend" not in next(s for s in plain if s.kind == "evaluate").params.to_json()
    assert pseudo.runtime == evaluate.runtime == {"onnx_cache": str(lay.onnx_cache)}  # one export cache
    moved = replace(evaluate, runtime={"onnx_cache": "elsewhere"})
    assert fingerprint(moved, {a: "x" for a in moved.after}) == fingerprint(
        evaluate, {a: "x" for a in moved.after}
    )
    with pytest.raises(SegunifyError, match="backend"):
        load_demo_config(path, ["teacher.backend=tensorrt"])


def _parsed(argv: list[str]) -> dict:
    """The parameters the ``segunify`` command line parses ``argv`` into (nothing runs)."""
    from typer.main import get_command

    from segunify.cli import app

    command = get_command(app).commands[argv[1]]  # type: ignore[attr-defined]
    return command.make_context(argv[1], list(argv[2:])).params


def test_every_parameter_of_a_stage_reaches_its_printed_command(tmp_path, monkeypatch):
    """What runs and what ``--plan`` prints derive from one typed object: each parameter of a stage with a
    command is a flag or argument of it (or says why not), and with every option set the command the
    real command line parses carries each value. Before: the printed pseudo-label command dropped the
    parts' dataset options."""
    import dataclasses

    monkeypatch.setenv("SEGUNIFY_DATA", str(tmp_path / "nowhere"))
    config = toy_config(interpolate=0.5, pseudo={"flip": True, "scales": [0.75, 1.0]})
    config["pseudo"]["min_allowed_mass"] = 0.2
    config["teacher"] |= {"backend": "onnx"}
    for spec in [*config["parts"], *config["eval"].values()]:
        spec["options"] = {"label_crop": "4,18", "mode": "fine"}
    stages, _ = plan(load_demo_config(write_config(tmp_path, config)), tmp_path, tmp_path / "work")
    kinds = set()
    for stage in stages:
        argv = stage.params.argv()
        if argv is None:
            assert stage.kind == "view" and stage.command == ""
            continue
        kinds.add(stage.kind)
        assert stage.command.split(" ")[:2] == ["segunify", argv[1]]
        parsed = _parsed(argv)
        joined = " ".join(argv)
        for f in dataclasses.fields(stage.params):
            value, meta = getattr(stage.params, f.name), f.metadata
            assert meta.get("flag") or meta.get("positional") or meta.get("why"), (stage.kind, f.name)
            if meta.get("why") or value in (None, False):
                continue
            if meta.get("positional"):
                shown = [str(value)]
            elif isinstance(value, dict):
                shown = [f"{meta['flag']} {k}={v}" for k, v in value.items()]
            elif value is True:
                shown = [meta["flag"]]
            else:
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                shown = [f"{meta['flag']} {text}"]
            assert shown and all(part in joined for part in shown), (stage.name, f.name, shown)
        if stage.kind == "pseudo":
            assert parsed["dataset_opt"] == ["label_crop=4,18", "mode=fine"] and parsed["flip"]
            assert (parsed["scales"], parsed["min_allowed_mass"], parsed["backend"]) == (
                "0.75,1.0",
                0.2,
                "onnx",
            )
            assert (
                parsed["out"] == stage.params.out
                and parsed["also_without_priors"] == stage.params.without_priors
            )
        if stage.kind == "evaluate":
            assert parsed["dataset_opt"] == ["label_crop=4,18", "mode=fine"] and parsed["backend"] == "onnx"
            assert parsed["json_out"] == stage.params.out and parsed["size"] == ",".join(
                map(str, stage.params.size)
            )
    assert kinds == {"import", "pseudo", "train", "interpolate", "evaluate"}


def test_interpolate_scores_the_wise_ft_mixes_and_leaves_other_runs_alone(tmp_path):
    """``interpolate: a`` adds one stage per student that mixes T and last/; the students' evaluations
    read the mix (and rerun when it changes); without it no stage changes."""
    from fixtures.tiny_models import espnet_checkpoint

    path = write_config(tmp_path, toy_config())
    plain, plain_lay = plan(load_demo_config(path), tmp_path, tmp_path / "work")
    stages, lay = plan(load_demo_config(path, ["interpolate=0.6"]), tmp_path, tmp_path / "work")
    mix = next(s for s in stages if s.name == "interpolate S_P")
    assert mix.params.to_json() == {
        "start": str(lay.teacher),
        "end": str(lay.trained("S_P")),
        "alpha": 0.6,
        "out": str(lay.student("S_P") / "interpolated"),
    }
    assert mix.after == ("import teacher", "train S_P") and "segunify interpolate" in mix.command
    scored = next(s for s in stages if s.kind == "evaluate" and s.name.startswith("evaluate S_P"))
    assert scored.params.checkpoint == mix.params.out and "interpolate S_P" in scored.after
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


def test_toy_demo_with_two_seeds_reports_their_mean_and_keeps_the_first_seeds_stages(shared, tmp_path):
    """Two student seeds on a smaller toy (one extra part, two evaluation frames, one step): each seed's
    students have their own config, checkpoint and scores, results.json holds their mean and std; the
    same run folder at one seed is the first seed's run (every stage already done)."""
    config = toy_config(seeds=2, overlays=0)
    config["parts"] = [config["parts"][0], config["parts"][2]]
    config["eval"] = {n: config["eval"][n] | {"limit": 1} for n in ("cityscapes", "idd-lite")}
    crop = {"scale": [1.0, 1.0], "crop": [32, 32], "color_jitter": 0.0}
    config["student"] = TOY_STUDENT | {"steps": 1, "batch_size": 1, "augmentation": crop}
    path, work = write_config(tmp_path, config), tmp_path / "work"
    assert main(["demo", "--config", str(path), "--work", str(work)]) == 0
    saved = json.loads((work / "report" / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and set(saved["per_seed"]) == set(saved["table_std"]) == {"S_P", "S_R"}
    assert yaml.safe_load((work / "students" / "S_R-seed1.yaml").read_text())["seed"] == 1
    shas = {m: v["sha256"] for m, v in saved["models"].items()}
    assert (
        shas["S_P"] != shas["S_P-seed1"] and shas["S_R"] != shas["S_R-seed1"]
    )  # the seed changes the student
    for name in ("cityscapes", "idd-lite"):
        for model in ("S_P", "S_R"):
            block = saved["datasets"][name][model]
            runs = [
                json.loads((work / "eval" / name / f"{m}.json").read_text())
                for m in (model, f"{model}-seed1")
            ]
            a, b = (r["miou"] for r in runs)
            assert [block["seeds"][k]["miou"] for k in ("0", "1")] == [a, b]
            assert block["miou"] == pytest.approx((a + b) / 2) and block["miou_std"] == pytest.approx(
                abs(a - b) / 2**0.5
            )
            assert saved["per_seed"][model]["1"][name] == b
    assert any(g["goal"].endswith("in every seed (the lowest)") for g in saved["goals"])
    assert "&plusmn;" in (work / "report" / "index.html").read_text()
    lines: list[str] = []
    from segunify.apps.demo import run_demo

    one = run_demo(load_demo_config(path, ["seeds=1"]), str(path), tmp_path, work, say=lines.append)
    assert sum("already done" in line for line in lines) == 13 and not any("seed1" in line for line in lines)
    assert one["seeds"] == [0] and "table_std" not in one and "per_seed" not in one
    sp = one["datasets"]["idd-lite"]["S_P"]
    assert sp["miou"] == saved["datasets"]["idd-lite"]["S_P"]["seeds"]["0"]["miou"] and "miou_std" not in sp


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
