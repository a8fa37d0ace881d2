"""The pseudo-label runner: outputs equal the priors op, resume, shards, bad inputs, and the CLI under
kill -9 and two processes with the shipped teacher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fixtures.pseudo_runs import INFO, MAPPING, FakeState, StandInTeacher, make_camvid, run, tree_bytes
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import FieldError, SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping
from segunify.pseudo import PseudoSettings, apply_priors, load_summary, pseudo_label_path, run_pseudo_label
from segunify.pseudo.settings import TeacherInfo
from segunify.pseudo.store import PARTS

REPO = Path(__file__).resolve().parents[1]


def test_outputs_equal_the_priors_op_and_stats_add_up(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    out = tmp_path / "out"
    summary = run(root, out, save_confidence=True)
    ds = create_dataset("camvid", root)
    samples = ds.samples("train")
    teacher = StandInTeacher()
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in manifest] == [s.id for s in samples]
    for s, rec in zip(samples, manifest, strict=True):
        image, gt = ds.sample(s)
        probs = teacher.probs(torch.from_numpy(image)[None])
        labels, conf = apply_priors(probs, torch.from_numpy(gt)[None], MAPPING.allowed, scores_are_probs=True)
        written = read_label_raw(pseudo_label_path(out, s))
        assert np.array_equal(written, labels[0].numpy())
        assert rec["output"] == s.rel and written.shape == gt.shape
        conf_png = read_label_raw(out / "confidence" / s.rel)
        assert np.array_equal(conf_png, (conf[0] * 255).round().to(torch.uint8).numpy())
        assert rec["ignored"] == int((labels == 255).sum()) == int((gt == 255).sum())
        plain = probs.argmax(1)[0]
        assert rec["changed"] == int(((labels[0] != 255) & (labels[0].long() != plain)).sum())
        assert rec["class_pixels"] == np.bincount(written.ravel(), minlength=256)[:19].tolist()
        kept = labels != 255
        assert rec["mean_confidence"] == pytest.approx(float(conf[kept].double().mean()), abs=1e-6)
    assert summary.images == len(samples)
    assert summary.pixels == sum(r["pixels"] for r in manifest)
    assert summary.changed == sum(r["changed"] for r in manifest)
    assert sum(summary.class_pixels.values()) == summary.pixels - summary.ignored
    car = summary.extra_classes["Car"]
    assert car.pixels == sum(r["extra_pixels"][8] for r in manifest)
    assert car.changed_share == pytest.approx(car.changed / car.pixels, abs=1e-6)
    assert summary.extra_classes["Road"].kind == "one-to-one"
    assert summary.extra_classes["Road"].changed > 0  # singleton: the prior overrules the teacher
    assert summary.dataset == "camvid" and summary.split == "train"
    assert summary.source_taxonomy == "cityscapes" and load_summary(out) == summary


def test_a_channels_last_teachers_probabilities_reach_the_priors_in_class_planes(tmp_path, monkeypatch):
    """ESPNetv2 runs channels_last on a CPU: the runner copies its probabilities into class planes once
    (the same values, the same labels) instead of each target's priors op copying them again."""
    import segunify.pseudo.runner as runner

    class ChannelsLast(StandInTeacher):
        def probs(self, images):
            return super().probs(images).contiguous(memory_format=torch.channels_last)

    seen, label_probs = [], runner.label_probs
    monkeypatch.setattr(
        runner, "label_probs", lambda p, *a, **k: seen.append(p.is_contiguous()) or label_probs(p, *a, **k)
    )
    root = make_camvid(tmp_path / "camvid", n=3)
    run(root, tmp_path / "last", teacher=ChannelsLast(), also_without_priors=tmp_path / "last_r")
    assert seen and all(seen)
    run(root, tmp_path / "planes", also_without_priors=tmp_path / "planes_r")
    for a, b in (("last", "planes"), ("last_r", "planes_r")):
        assert tree_bytes(tmp_path / a / "trainannot") == tree_bytes(tmp_path / b / "trainannot")


def test_no_priors_fill_void_and_confidence_floor(tmp_path):
    root = make_camvid(tmp_path / "camvid", n=3)
    plain = run(root, tmp_path / "plain", priors=False)
    assert plain.changed == 0 and plain.ignored == 0
    filled = run(root, tmp_path / "filled", fill_void=True)
    assert filled.ignored == 0 and filled.void_gt_pixels > 0
    strict = run(root, tmp_path / "strict", min_confidence=0.9)
    base = run(root, tmp_path / "base")
    assert strict.ignored > base.ignored


def test_resume_recomputes_only_missing_or_broken_outputs(tmp_path):
    root = make_camvid(tmp_path / "camvid")
    ref = tmp_path / "ref"
    run(root, ref, batch_size=2)
    out = tmp_path / "out"
    run(root, out, batch_size=2)
    samples = create_dataset("camvid", root).samples("train")
    pseudo_label_path(out, samples[0]).unlink()
    pseudo_label_path(out, samples[4]).write_bytes(b"\x89PNG broken")
    with open(out / PARTS / "manifest-00000.jsonl", "a") as f:
        f.write('{"id": "torn li')  # a line cut by kill -9
    (out / "manifest.jsonl").unlink()
    teacher = StandInTeacher()
    summary = run(root, out, teacher=teacher, batch_size=2)
    assert summary.run.processed == 2 and summary.run.skipped == 5
    assert teacher.calls == 2  # batches {0,1} and {4,5}; the others are skipped whole
    assert tree_bytes(out) == tree_bytes(ref)


def test_two_shards_equal_one_process(tmp_path):
    root = make_camvid(tmp_path / "camvid", n=8)
    run(root, tmp_path / "one", batch_size=2)
    out = tmp_path / "two"
    rank1 = []
    summary = run(
        root,
        out,
        state=FakeState(0, 2, lambda: rank1.append(run(root, out, state=FakeState(1, 2), batch_size=2))),
        batch_size=2,
    )
    assert rank1 == [None]
    journal = [json.loads(x)["id"] for x in (out / PARTS / "manifest-00001.jsonl").read_text().splitlines()]
    ids = [s.id for s in create_dataset("camvid", root).samples("train")]
    assert sorted(journal) == ids[2:4] + ids[6:8]  # rank 1 takes global batches 1 and 3 (any order)
    assert summary.run.world_size == 2 and summary.images == 8
    assert tree_bytes(out) == tree_bytes(tmp_path / "one")


def test_one_pass_writes_both_label_sets_equal_to_two_runs(tmp_path):
    """Issue 12: ``also_without_priors`` (CLI ``--also-without-priors R``): P and R come from one teacher
    pass, each a complete folder with its own settings, byte-equal to two separate runs; each resumes."""
    root = make_camvid(tmp_path / "camvid", n=7)
    opts = {"batch_size": 2, "save_confidence": True, "min_confidence": 0.2}
    p1, r1, p, r = (tmp_path / n for n in ("p1", "r1", "p", "r"))
    run(root, p1, **opts)
    run(root, r1, priors=False, **opts)
    teacher = StandInTeacher()
    summary = run(root, p, teacher=teacher, also_without_priors=r, **opts)
    assert teacher.calls == 4  # one pass over the 4 batches, not two
    assert tree_bytes(p) == tree_bytes(p1) and tree_bytes(r) == tree_bytes(r1)
    assert tree_bytes(p) != tree_bytes(r)
    for a, b in ((p, p1), (r, r1)):
        assert (a / "settings.json").read_bytes() == (b / "settings.json").read_bytes()
        assert load_summary(a).model_dump(exclude={"run"}) == load_summary(b).model_dump(exclude={"run"})
    assert summary.settings.priors and not load_summary(r).settings.priors and load_summary(r).changed == 0
    # a lost R label: only its batch runs again, and only R is rewritten
    samples = create_dataset("camvid", root).samples("train")
    pseudo_label_path(r, samples[3]).unlink()
    teacher = StandInTeacher()
    again = run(root, p, teacher=teacher, also_without_priors=r, **opts)
    assert teacher.calls == 1 and again.run.processed == 0 and load_summary(r).run.processed == 1
    assert tree_bytes(r) == tree_bytes(r1) and tree_bytes(p) == tree_bytes(p1)


def p_is_the_priors_op_and_r_as_without(tmp_path: Path, **option) -> Path:
    """Pseudo-labels of a generated CamVid with one teacher-pass option (``name=value``): P ignores more pixels
    than without it and equals the priors op with it, R equals the plain run's R, and a folder made without it
    records nothing of it. Returns the dataset root."""
    (name,) = option
    root = make_camvid(tmp_path / "camvid", n=3)
    gated = run(root, tmp_path / "p", **option, also_without_priors=tmp_path / "r")
    base = run(root, tmp_path / "base", also_without_priors=tmp_path / "plain")
    assert gated.ignored > base.ignored
    assert tree_bytes(tmp_path / "r") == tree_bytes(tmp_path / "plain")
    ds = create_dataset("camvid", root)
    for s in ds.samples("train"):
        image, gt = ds.sample(s)
        probs = StandInTeacher().probs(torch.from_numpy(image)[None])
        labels, _ = apply_priors(
            probs, torch.from_numpy(gt)[None], MAPPING.allowed, **option, scores_are_probs=True
        )
        assert np.array_equal(read_label_raw(pseudo_label_path(tmp_path / "p", s)), labels[0].numpy())
    assert name not in json.loads((tmp_path / "base" / "settings.json").read_text())
    return root


def test_min_allowed_mass_gate_reaches_the_labels_and_leaves_r_alone(tmp_path):
    """``--min-allowed-mass``: P equals the priors op with the gate; R (no priors) is the plain argmax as
    without it; the gate is part of P's settings (another gate in the same folder is refused) and a run
    without it keeps the settings file of folders written before the option existed."""
    root = p_is_the_priors_op_and_r_as_without(tmp_path, min_allowed_mass=0.5)
    with pytest.raises(SegunifyError, match="other settings.*min_allowed_mass"):
        run(root, tmp_path / "p", min_allowed_mass=0.2)


def test_ignore_conflicts_reaches_the_labels_and_leaves_r_alone(tmp_path):
    """``--ignore-conflicts``: P equals the priors op with it; R is the plain argmax as without it; it is
    part of P's settings and absent from folders made without it."""
    p_is_the_priors_op_and_r_as_without(tmp_path, ignore_conflicts=0.5)
    assert json.loads((tmp_path / "p" / "settings.json").read_text())["ignore_conflicts"] == 0.5


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    root = make_camvid(tmp_path / "camvid", n=2)
    run(root, tmp_path / "out")
    with pytest.raises(SegunifyError, match="other settings.*priors"):
        run(root, tmp_path / "out", priors=False)


def test_runner_bad_inputs(tmp_path):
    root = make_camvid(tmp_path / "camvid", n=2)
    ds = create_dataset("camvid", root)
    other = TeacherInfo(classes=tuple(f"c{i}" for i in range(19)), taxonomy="other")
    with pytest.raises(SegunifyError, match="does not match the classes of the teacher"):
        run_pseudo_label(StandInTeacher(), other, ds, "train", MAPPING, tmp_path / "o", PseudoSettings())
    kitti = load_mapping("kitti__cityscapes")
    with pytest.raises(SegunifyError, match="not the taxonomy of dataset 'camvid'"):
        run_pseudo_label(StandInTeacher(), INFO, ds, "train", kitti, tmp_path / "o", PseudoSettings())
    with pytest.raises(SegunifyError, match="scores but the mapping"):
        run(root, tmp_path / "o2", teacher=StandInTeacher(classes=11))
    with pytest.raises(SegunifyError, match="needs a run with priors"):
        run(root, tmp_path / "o3", priors=False, also_without_priors=tmp_path / "r3")
    out = tmp_path / "x" / "p"
    for second in (out, out / "r", tmp_path / "x"):
        with pytest.raises(SegunifyError, match="two output folders must be apart"):
            run(root, out, also_without_priors=second)
    with pytest.raises(FieldError, match="^batch_size: must be >= 1, got 0$") as err:
        PseudoSettings(batch_size=0)
    assert (err.value.field, err.value.problem) == ("batch_size", "must be >= 1, got 0")


# ------------------------------------------------------------------------------------------------
# the CLI with the shipped teacher (real data)


@pytest.fixture(scope="module")
def teacher_ckpt(weights_dir, tmp_path_factory):
    """The shipped ESPNetv2 s=1.0 Cityscapes weights as a segunify checkpoint (small and fast)."""
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint

    pth = weights_dir / "espnetv2_s1.0_cityscapes_1024x512.pth"
    model = create_model("espnetv2", 19, weights=pth, s=1.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "teacher", model, {"taxonomy": "cityscapes"})


def cli_args(ckpt, root, out, *extra):
    return [
        "pseudo-label", "--teacher", str(ckpt), "--dataset", "camvid", "--root", str(root),
        "--mapping", "camvid__cityscapes", "--out", str(out), "--device", "cpu", "--threads", "1",
        *extra,
    ]  # fmt: skip


def cli_env():
    return {
        **os.environ,
        "SEGUNIFY_NO_PROGRESS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }


def test_cli_min_allowed_mass_reaches_the_settings_and_the_summary_line(
    teacher_ckpt, camvid_root, tmp_path, capsys
):
    opts = ["--limit", "2", "--size", "176,240", "--batch-size", "1", "--workers", "0"]
    assert main(cli_args(teacher_ckpt, camvid_root, tmp_path / "plain", *opts)) == 0
    assert (
        main(cli_args(teacher_ckpt, camvid_root, tmp_path / "gated", *opts, "--min-allowed-mass", "0.5")) == 0
    )
    plain, gated = load_summary(tmp_path / "plain"), load_summary(tmp_path / "gated")
    assert gated.settings.min_allowed_mass == 0.5 and plain.settings.min_allowed_mass is None
    assert gated.void_gt_pixels == plain.void_gt_pixels and gated.ignored > plain.ignored
    void = f"void or unlabelled GT {plain.void_gt_pixels / plain.pixels:.2%}"
    assert " ".join(capsys.readouterr().out.split()).count(void) == 2  # rich may wrap the line


def test_cli_flags_that_do_not_go_together_are_a_usage_error(tmp_path, capsys):
    """Exit 2 with click's one-line message, not a traceback, and nothing written."""
    args = cli_args(tmp_path / "teacher", tmp_path / "camvid", tmp_path / "out")
    assert main([*args, "--device", "tpu"]) == 2  # the last --device wins
    assert main([*args, "--no-priors", "--also-without-priors", str(tmp_path / "r")]) == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # rich boxes and wraps it
    assert "expected cpu or cuda, got 'tpu'" in err and "needs the priors (drop --no-priors)" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists() and not (tmp_path / "r").exists()


def test_cli_kill9_then_resume_equals_an_uninterrupted_run(teacher_ckpt, camvid_root, tmp_path):
    """With the ONNX backend: its resumed bytes equal an uninterrupted run's as torch's do."""
    opts = ["--limit", "14", "--size", "352,480", "--batch-size", "1", "--workers", "1", "--save-confidence"]
    opts += ["--backend", "onnx"]
    ref = tmp_path / "ref"
    assert main(cli_args(teacher_ckpt, camvid_root, ref, *opts)) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "segunify.cli", *cli_args(teacher_ckpt, camvid_root, out, *opts)]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal = out / PARTS / "manifest-00000.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = journal.read_text().count("\n")
    assert 3 <= done_before < 14
    for png in out.rglob("*.png"):  # whatever was on disk at the kill decodes
        assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None
    assert not (out / "summary.json").exists()
    assert main(cli_args(teacher_ckpt, camvid_root, out, *opts)) == 0
    summary = load_summary(out)
    assert summary.run.skipped >= done_before - 1 and summary.run.processed <= 14 - done_before + 1
    assert summary.settings.backend == "onnx"
    assert tree_bytes(out) == tree_bytes(ref)
    assert not list(out.rglob("*.tmp"))


def _without_device(args: list[str]) -> list[str]:
    i = args.index("--device")
    return args[:i] + args[i + 2 :]


def test_cli_two_processes_equal_one(teacher_ckpt, camvid_root, tmp_path):
    """Issue 11 item 10 (and issue 12 through the CLI): ``torchrun --nproc_per_node 2`` WITHOUT --device on
    a CPU machine used to run each rank as world size 1, each labelling everything. Now the two ranks
    shard, their union equals one process byte for byte, and --also-without-priors writes R from the
    same pass, equal to a separate --no-priors run."""
    opts = ["--limit", "6", "--size", "256,320", "--batch-size", "2", "--workers", "0"]
    one, one_r = tmp_path / "one", tmp_path / "one_r"
    assert main(cli_args(teacher_ckpt, camvid_root, one, *opts)) == 0
    assert main(cli_args(teacher_ckpt, camvid_root, one_r, *opts, "--no-priors")) == 0
    two, two_r = tmp_path / "two", tmp_path / "two_r"
    args = cli_args(teacher_ckpt, camvid_root, two, *opts, "--also-without-priors", str(two_r))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "segunify.cli", *_without_device(args),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    for out in (two, two_r):
        parts = sorted(p.name for p in (out / PARTS).glob("manifest-*.jsonl"))
        assert parts == ["manifest-00000.jsonl", "manifest-00001.jsonl"]
        summary = load_summary(out)
        assert summary.run.world_size == 2 and summary.run.processed == 6
    assert tree_bytes(two) == tree_bytes(one) and len(tree_bytes(one)) == 7
    assert tree_bytes(two_r) == tree_bytes(one_r) and tree_bytes(one_r) != tree_bytes(one)


@pytest.mark.slow
def test_cli_accelerate_launch_cpu_shards(teacher_ckpt, camvid_root, tmp_path):
    """Issue 11 item 10: ``accelerate launch --num_processes 2 --cpu`` starts ONE process; it used to
    label everything as world size 1. Now it starts two ranks that shard (like ``train``)."""
    opts = ["--limit", "4", "--size", "128,160", "--batch-size", "1", "--workers", "0"]
    out = tmp_path / "acc"
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher), "launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
        "-m", "segunify", *_without_device(cli_args(teacher_ckpt, camvid_root, out, *opts)),
    ]  # fmt: skip
    res = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = load_summary(out)
    assert summary.run.world_size == 2 and [r.images for r in summary.run.ranks] == [2, 2]


def test_cli_bad_inputs_fail_with_one_line(teacher_ckpt, tmp_path, capsys):
    root = make_camvid(tmp_path / "camvid", n=2, size=(32, 32))
    args = ["--size", "32,32", "--workers", "0"]
    # mapping whose source taxonomy is not the teacher's
    bad_map = cli_args(teacher_ckpt, root, tmp_path / "o1", *args)
    bad_map[bad_map.index("camvid__cityscapes")] = "camvid__mapillary-vistas-v1.2"
    assert main(bad_map) == 1
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "mapillary" in err
        and "does not match the classes of the teacher" in err
    )
    # GT with an id the CamVid taxonomy / mapping lacks
    write_png(root / "trainannot" / "0001TP_000001.png", np.full((32, 32), 40, dtype=np.uint8))
    assert main(cli_args(teacher_ckpt, root, tmp_path / "o2", *args)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0001TP_000001.png" in err and "40" in err
    # unreadable image
    write_png(root / "trainannot" / "0001TP_000001.png", np.zeros((32, 32), dtype=np.uint8))
    (root / "train" / "0001TP_000000.png").write_bytes(b"not a png")
    assert main(cli_args(teacher_ckpt, root, tmp_path / "o3", *args)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0001TP_000000.png" in err and "decode" in err
    # dataset options reach the adapter (the demo's printed command passes a part's options so)
    assert main(cli_args(teacher_ckpt, root, tmp_path / "o4", *args, "--dataset-opt", "nope=1")) == 1
    assert "dataset 'camvid' does not accept option(s) ['nope']" in capsys.readouterr().err
    assert main(cli_args(teacher_ckpt, root, tmp_path / "o4", *args, "--dataset-opt", "nope")) == 2


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The CLI sets torch's thread count (--threads); give the rest of the session its own back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_launched_gpu_ranks_join_with_gloo_and_share_gpus(monkeypatch):
    """Two ranks on one GPU (issue 23): NCCL refuses them, so the ranks of a launched GPU run, whose only
    collective is a barrier, join with gloo, and rank r takes GPU r % count. Checked on the CPU with a
    stand-in for accelerate's PartialState."""
    import accelerate

    from segunify.cli import pseudo as cli_pseudo

    seen: dict = {}

    class State:
        def __init__(self, cpu=False, **kwargs):
            seen.update(cpu=cpu, **kwargs)
            self.device, self.local_process_index = None, 3

    monkeypatch.setattr(accelerate, "PartialState", State)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    _, device = cli_pseudo._state_and_device("cuda")
    assert seen == {"cpu": False, "backend": "gloo"} and device == torch.device("cuda", 1)
    seen.clear()
    assert cli_pseudo._state_and_device("cpu")[1] == torch.device("cpu") and seen == {"cpu": True}
    seen.clear()
    monkeypatch.delenv("LOCAL_RANK")  # one process: accelerate's own default (no process group)
    cli_pseudo._state_and_device("cuda")
    assert seen == {"cpu": False}


def test_a_preempted_two_process_run_resumes_with_one(tmp_path):
    """docs/scale.md: a job preempted after rank 0's shard (rank 1 never ran) is finished by a rerun with
    another number of processes; the folder equals an uninterrupted run, and only rank 1's images are
    computed again."""
    root = make_camvid(tmp_path / "camvid", n=8)
    run(root, tmp_path / "one", batch_size=2)
    out = tmp_path / "out"
    with pytest.raises(SegunifyError, match="4 image"):
        run(root, out, state=FakeState(0, 2), batch_size=2)
    assert not (out / "summary.json").exists()
    summary = run(root, out, batch_size=2)
    assert summary.run.world_size == 1 and (summary.run.skipped, summary.run.processed) == (4, 4)
    assert tree_bytes(out) == tree_bytes(tmp_path / "one")
