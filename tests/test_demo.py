"""The demo's orchestration: the plan of commands, the CamVid views, missing data, and a run whose
commands are faked (fast) or real at a toy budget (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fixtures import camvid as camvid_fixture
from fixtures import kitti as kitti_fixture
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.demo import (
    DemoConfig,
    camvid_view,
    evenly,
    load_demo_config,
    plan,
    prepare,
    run_demo,
    select_train,
)
from segunify.errors import SegunifyError
from segunify.evaluation import Evaluator
from segunify.io import write_index_png
from segunify.mapping import load_mapping
from segunify.taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[1]
RESULT_KEYS = {
    "run",
    "budget",
    "camvid_val",
    "kitti",
    "collapse",
    "pseudo_labels",
    "coarse_prior",
    "models",
    "settings",
    "timings",
    "goals",
    "grid",
    "created",
    "wall_seconds",
}


def _shared(tmp_path: Path) -> Path:
    """A fake shared folder: tiny CamVid and KITTI in the publishers' layouts, a placeholder weight file."""
    shared = tmp_path / "shared"
    camvid_fixture.make(shared / "data" / "CamVid")
    # a second train frame of sequence 0001TP and a second val frame, so hold-out and limits have work to do
    ds = shared / "data" / "CamVid"
    for split, src, dst in (
        ("train", "0001TP_006690", "0001TP_006720"),
        ("val", "0016E5_07959", "0016E5_07961"),
    ):
        for sub in (split, f"{split}annot"):
            (ds / sub / f"{dst}.png").write_bytes((ds / sub / f"{src}.png").read_bytes())
    kitti_fixture.make(shared / "data" / "KITTI_semantics_sample", crop=(2, 3))
    (shared / "weights").mkdir(parents=True)
    (shared / "weights" / "espnetv2_s2.0_cityscapes_1024x512.pth").write_bytes(b"placeholder")
    return shared


def _config(tmp_path: Path, **over) -> Path:
    data = {
        "run": "toy",
        "budget": "toy",
        "steps": 2,
        "teacher_size": [32, 64],
        "kitti_size": [32, 64],
        "kitti_label_crop": "2,3",
        "student_config": str(REPO / "configs" / "demo_student.yaml"),
        "grid_images": 2,
        **over,
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    root = _shared(tmp_path)
    monkeypatch.setenv("SEGUNIFY_DATA", str(root))
    return root


def test_shipped_configs_validate():
    for name in ("demo_quick.yaml", "demo_full.yaml"):
        cfg = load_demo_config(REPO / "configs" / name)
        assert cfg.teacher_size == (512, 1024) and cfg.kitti_label_crop == "4,18"
        assert (REPO / "configs" / cfg.student_config).is_file()
    full = load_demo_config(REPO / "configs" / "demo_full.yaml")
    assert full.goals.sp_minus_t == pytest.approx(0.12)
    assert load_demo_config(REPO / "configs" / "demo_quick.yaml", steps=7).steps == 7


def test_config_errors_name_the_key(tmp_path):
    path = _config(tmp_path, stepz=3)
    with pytest.raises(SegunifyError, match="stepz: unknown key") as exc:
        load_demo_config(path)
    assert str(path) in str(exc.value)
    with pytest.raises(SegunifyError, match="steps"):
        load_demo_config(_config(tmp_path, steps=0))


def test_select_train_holds_out_sequences_and_thins_evenly():
    names = [f"A_{i:03d}.png" for i in range(6)] + [f"B_{i:03d}.png" for i in range(4)]
    assert select_train(names, ["A"], None) == [f"B_{i:03d}.png" for i in range(4)]
    assert select_train(names, [], 5) == ["A_000.png", "A_002.png", "A_004.png", "B_000.png", "B_002.png"]
    assert evenly([1, 2, 3], 10) == [1, 2, 3]


def test_camvid_view_is_read_by_the_adapter(shared, tmp_path):
    src = shared / "data" / "CamVid"
    view = camvid_view(src, tmp_path / "view", {"train": ["0006R0_f00930.png"], "val": ["0016E5_07961.png"]})
    ds = create_dataset("camvid", view)
    assert [s.id for s in ds.samples("train")] == ["train/0006R0_f00930"]
    img, lab = ds.sample(ds.samples("val")[0])
    ref = create_dataset("camvid", src)
    ref_img, ref_lab = ref.sample(ref.samples("val")[1])
    assert np.array_equal(img, ref_img) and np.array_equal(lab, ref_lab)
    # rebuilding drops stale links
    camvid_view(src, tmp_path / "view", {"train": ["0001TP_006690.png"]})
    assert [s.id for s in create_dataset("camvid", tmp_path / "view").samples("train")] == [
        "train/0001TP_006690"
    ]


def test_plan_runs_the_same_student_recipe_on_p_and_r(shared, tmp_path):
    cfg = load_demo_config(_config(tmp_path, holdout_sequences=["0001TP"], student_set=["batch_size=2"]))
    lay, weights = prepare(cfg, tmp_path / "demo.yaml", tmp_path / "work")
    stages = {s.name: s for s in plan(cfg, lay, weights)}
    assert list(stages)[0] == "import teacher"
    assert stages["import teacher"].argv[:3] == ["import-weights", "--pth", str(weights)]
    p, r = stages["pseudo-label P"].argv, stages["pseudo-label R"].argv
    assert "--no-priors" not in p and r == [
        *[a if a != str(lay.pseudo("P")) else str(lay.pseudo("R")) for a in p],
        "--no-priors",
    ]
    assert p[p.index("--mapping") + 1] == "camvid__cityscapes" and p[p.index("--size") + 1] == "32,64"
    sp, sr = stages["train S_P"].argv, stages["train S_R"].argv
    diff = [(a, b) for a, b in zip(sp, sr, strict=True) if a != b]
    assert diff == [
        (f"parts.0.labels={lay.pseudo('P')}", f"parts.0.labels={lay.pseudo('R')}"),
        (f"out={lay.student('S_P')}", f"out={lay.student('S_R')}"),
    ]
    assert f"model.weights={lay.teacher}" in sp and "steps=2" in sp and sp[-1] == "batch_size=2"
    kitti = stages["evaluate kitti_S_P"].argv
    assert kitti[kitti.index("--dataset-opt") + 1] == "label_crop=2,3"
    assert "--mapping" not in kitti
    cam = stages["evaluate camvid_S_R"].argv
    assert cam[cam.index("--mapping") + 1] == "camvid__cityscapes" and cam[cam.index("--size") + 1] == "32,64"
    teacher = stages["T predictions CamVid val"].argv
    assert "--no-priors" in teacher and teacher[teacher.index("--split") + 1] == "val"
    t_eval = stages["evaluate camvid_T"].argv
    assert t_eval[t_eval.index("--pred-dir") + 1] == teacher[teacher.index("--out") + 1]
    coarse = stages["coarse pseudo-label with priors"].argv
    assert coarse[coarse.index("--dataset") + 1] == "camvid-coarse"
    assert coarse[coarse.index("--mapping") + 1] == "camvid-coarse__cityscapes"
    assert "--no-priors" not in coarse
    ev = stages["evaluate coarse_with"].argv
    assert ev[ev.index("--dataset") + 1] == "camvid" and "--pred-dir" in ev
    # the hold-out sequence never reaches training
    train = [s.id for s in create_dataset("camvid", lay.camvid).samples("train")]
    assert train == ["train/0006R0_f00930"]
    assert len(create_dataset("camvid", lay.grid).samples("val")) == 2


def test_missing_data_is_one_line_with_the_fix(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SEGUNIFY_DATA", str(empty))
    code = main(["demo", "--config", str(_config(tmp_path)), "--work", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert "CamVid" in err and "teacher weights" in err and "KITTI" in err
    assert "segunify fetch --dest DIR" in err and "SEGUNIFY_DATA" in err


# ---------------------------------------------------------------------------------------- faked commands


class FakeCommands:
    """Stands in for the other areas' CLI: writes the files each command would, with known figures."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> int:
        from segunify.models import create_model
        from segunify.models.checkpoint import save_checkpoint

        self.calls.append(argv)
        opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
        cmd = argv[0]
        if cmd == "import-weights" or cmd == "train":
            out = Path(opt["--out"]) if cmd == "import-weights" else None
            if cmd == "train":
                sets = dict(s.split("=", 1) for s in argv[3::2] if "=" in s)
                out = Path(sets["out"]) / "last"
            model = create_model("espnetv2", 19, s=1.0)
            save_checkpoint(
                out, model, {"taxonomy": "cityscapes", "input_size": [32, 64], "train_config": {}}
            )
        elif cmd == "pseudo-label":
            ds = create_dataset(opt["--dataset"], opt["--root"])
            out = Path(opt["--out"])
            for s in ds.samples(opt["--split"]):
                write_index_png(out / s.rel, np.full(ds.read_label(s).shape, 13, np.uint8))
            changed = 0 if "--no-priors" in argv else 25
            summary = {
                "images": 2,
                "pixels": 100,
                "ignored_share": 0.05,
                "changed_share": changed / 100,
                "mean_confidence": 0.9,
                "class_share": {"car": 1.0},
                "extra_classes": {"Tree": {"changed_share": changed / 100}, "Car": {"changed_share": 0.0}},
            }
            (out / "summary.json").write_text(json.dumps(summary))
        elif cmd == "evaluate":
            ds = create_dataset(
                opt["--dataset"],
                opt["--root"],
                **dict([opt["--dataset-opt"].split("=")]) if "--dataset-opt" in opt else {},
            )
            mapping = load_mapping(opt["--mapping"]) if "--mapping" in opt else None
            ev = Evaluator(ds.taxonomy, mapping)
            rng = np.random.default_rng(len(self.calls))
            for s in ds.samples(opt["--split"]):
                gt = ds.read_label(s)
                ev.update(gt, rng.integers(0, 19, gt.shape).astype(np.uint8))
            result = ev.result()
            Path(opt["--json"]).parent.mkdir(parents=True, exist_ok=True)
            Path(opt["--json"]).write_text(json.dumps(result))
        else:
            return 2
        return 0


def test_run_demo_with_faked_commands_writes_every_key_and_resumes(shared, tmp_path):
    path = _config(tmp_path)
    cfg = load_demo_config(path)
    fake = FakeCommands()
    lines: list[str] = []
    results = run_demo(cfg, path, tmp_path / "report", tmp_path / "work", invoke=fake, say=lines.append)
    assert [c[0] for c in fake.calls].count("evaluate") == 3 + 3 + 1
    assert [c[0] for c in fake.calls].count("pseudo-label") == 2 + 1 + 1 + 1
    assert RESULT_KEYS <= set(results)
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert RESULT_KEYS <= set(saved)
    assert set(saved["camvid_val"]) == {"T", "S_P", "S_R"} and set(saved["kitti"]) == {"T", "S_P", "S_R"}
    assert set(saved["camvid_val"]["T"]["iou"]) == set(load_taxonomy("camvid").classes)
    assert set(saved["kitti"]["T"]["iou"]) == set(load_taxonomy("cityscapes").classes)
    assert set(saved["collapse"]["shares"]["S_P"]) == {
        "wall",
        "terrain",
        "truck",
        "bus",
        "train",
        "motorcycle",
    }
    assert saved["pseudo_labels"]["P"]["changed_share"] == pytest.approx(0.25)
    assert saved["pseudo_labels"]["P"]["per_class_changed"] == {"Tree": 0.25, "Car": 0.0}
    assert saved["pseudo_labels"]["R"]["ignored_share"] == pytest.approx(0.05)
    cp = saved["coarse_prior"]
    assert sorted(cp["shared_classes"]) == sorted(
        ["Road", "Pavement", "Building", "Fence", "Pole", "SignSymbol", "Pedestrian", "Bicyclist"]
    )
    assert cp["with_priors"]["miou_shared"] is not None
    assert all(len(v["sha256"]) == 64 for v in saved["models"].values())
    assert saved["settings"]["train_images"] == 3 and saved["settings"]["val_images"] == 2
    assert len(saved["grid"]) == 2 and (tmp_path / "report" / "grid.png").is_file()
    assert {g["goal"] for g in saved["goals"]} >= {"S_P - T, mIoU-11 on CamVid val"}
    assert "pseudo-label P" in saved["timings"] and "train S_R" in saved["timings"]
    assert any(line.startswith("report: ") for line in lines)

    again = FakeCommands()
    run_demo(cfg, path, tmp_path / "report", tmp_path / "work", invoke=again, say=lines.append)
    assert again.calls == []
    more = load_demo_config(path, steps=3)
    run_demo(more, path, tmp_path / "report", tmp_path / "work", invoke=again, say=lines.append)
    assert [c[0] for c in again.calls][:2] == ["train", "train"]


def test_failed_stage_names_the_command(shared, tmp_path):
    path = _config(tmp_path)
    with pytest.raises(
        SegunifyError, match="demo stage 'import teacher' failed \\(exit 1\\): segunify import-weights"
    ):
        run_demo(
            load_demo_config(path), path, tmp_path / "r", tmp_path / "w", invoke=lambda argv: 1, say=print
        )


def test_config_is_a_dataclass_of_the_issue_defaults():
    cfg = DemoConfig(run="x", budget="quick", steps=1)
    assert cfg.kitti_label_crop == "4,18" and cfg.coarse_prior and cfg.grid_images == 8


# ---------------------------------------------------------------------------------------- real commands


@pytest.mark.slow
def test_toy_demo_end_to_end_on_real_data(camvid_root, kitti_root, weights_dir, tmp_path):
    """Every real command at a toy budget: 4 CamVid train and 2 val images, 64x128 input, 2 steps."""
    sets = [
        "batch_size=2",
        "schedule.warmup=0",
        "augmentation.resize=[64,128]",
        "augmentation.crop=[64,64]",
        "eval.size=[64,128]",
        "num_workers=0",
        "log.progress=false",
    ]
    path = _config(
        tmp_path,
        teacher_size=[64, 128],
        kitti_size=[64, 208],
        kitti_label_crop="4,18",
        train_limit=4,
        val_limit=2,
        student_set=sets,
    )
    code = main(
        ["demo", "--config", str(path), "--out", str(tmp_path / "report"), "--work", str(tmp_path / "work")]
    )
    assert code == 0
    saved = json.loads((tmp_path / "report" / "results.json").read_text())
    assert RESULT_KEYS <= set(saved)
    assert saved["settings"]["train_images"] == 4 and saved["camvid_val"]["T"]["images"] == 2
    for m in ("T", "S_P", "S_R"):
        assert 0 <= saved["camvid_val"][m]["miou"] <= 1 and 0 <= saved["kitti"][m]["pixel_acc"] <= 1
    # the shipped teacher at a toy 64x128 input still beats the ~9 % of random Cityscapes classes
    assert saved["camvid_val"]["T"]["pixel_acc"] > 0.2
    hashes = {m: v["sha256"] for m, v in saved["models"].items()}
    assert len(set(hashes.values())) == 3  # both students moved away from the teacher, differently
    assert (tmp_path / "report" / "index.html").stat().st_size > 5000
