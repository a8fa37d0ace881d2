"""Issue 11 for ``pseudo-label``: never lose a user's data. Each test's docstring says how today's code
(before the fix) failed on the same input."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fixtures.pseudo_runs import FakeState, make_camvid, run, tree_bytes
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.pseudo import load_summary, pseudo_label_path
from segunify.pseudo.store import LOCK, MARKER

REPO = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A randomly initialised ESPNetv2 (s=1.0) checkpoint with the Cityscapes taxonomy: loads in a blink."""
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("espnetv2", 19, s=1.0).eval()
    return save_checkpoint(
        tmp_path_factory.mktemp("tiny") / "teacher", model, {"taxonomy": "cityscapes", "input_size": [24, 32]}
    )


def cli(teacher: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pseudo-label", "--teacher", str(teacher), "--dataset", "camvid", "--root", str(root),
        "--mapping", "camvid__cityscapes", "--out", str(out), "--device", "cpu", "--workers", "0",
        *extra,
    ]  # fmt: skip


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ------------------------------------------------------------------------------------------ item 2


@pytest.mark.parametrize(
    "where",
    ["root", "label folder", "parent of root", "symlink into root", "labels symlinked from elsewhere"],
)
def test_out_inside_or_containing_the_dataset_root_is_refused(tmp_path, where):
    """Item 2. Before: ``--out R`` (or a label folder, or a folder holding the dataset) was accepted and
    the ground truth PNGs were overwritten by pseudo-labels with exit 0."""
    root = make_camvid(tmp_path / "data" / "camvid", n=2)
    (tmp_path / "link").symlink_to(root / "trainannot")
    if where == "labels symlinked from elsewhere":  # root/trainannot -> data/gt, --out data/gt/pseudo
        (root / "trainannot").rename(tmp_path / "data" / "gt")
        (root / "trainannot").symlink_to(tmp_path / "data" / "gt")
    out = {
        "root": root,
        "label folder": root / "trainannot",
        "parent of root": tmp_path / "data",
        "symlink into root": tmp_path / "link" / "pseudo",
        "labels symlinked from elsewhere": tmp_path / "data" / "gt" / "pseudo",
    }[where]
    before = snapshot(tmp_path / "data")
    with pytest.raises(SegunifyError, match="(dataset root|input folder of the dataset)") as err:
        run(root, out)
    assert len(str(err.value).splitlines()) == 1
    assert snapshot(tmp_path / "data") == before
    assert where.startswith("labels") == ("input folder" in str(err.value))


def test_cli_out_equal_to_root_is_one_line(tiny_teacher, tmp_path, capsys):
    """Item 2 through the CLI: one line naming the folder, exit 1, the ground truth untouched."""
    root = make_camvid(tmp_path / "camvid", n=2)
    before = snapshot(root)
    assert main(cli(tiny_teacher, root, root)) == 1
    line = one_line_error(capsys)
    assert str(root) in line and "inside the dataset root" in line
    assert snapshot(root) == before


# ------------------------------------------------------------------------------------------ item 3


def test_a_foreign_non_empty_folder_is_refused_and_untouched(tmp_path):
    """Item 3. Before: ``--out DIR`` on a user's folder deleted every ``.*.tmp`` in it (recursively) and
    mixed pseudo-labels into it."""
    root = make_camvid(tmp_path / "camvid", n=2)
    out = tmp_path / "thesis"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("years of work")
    (out / "sub" / "data.csv").write_text("a,b\n")
    (out / "sub" / ".draft.txt.ab12cd34.tmp").write_text("an editor's autosave")
    before = snapshot(out)
    with pytest.raises(SegunifyError, match=f"not a segunify pseudo-label folder \\(no {MARKER}"):
        run(root, out)
    assert snapshot(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(root, empty).images == 2  # an empty folder is fine
    old = tmp_path / "old"  # a folder of the previous format: no marker, no root in its settings
    (old / ".parts").mkdir(parents=True)
    (old / "settings.json").write_text('{"format": "segunify-pseudo-labels"}')
    with pytest.raises(SegunifyError, match="older segunify"):
        run(root, old)


def test_only_temp_files_of_our_own_outputs_are_removed(tmp_path):
    """Item 3. Before: every ``.*.tmp`` under --out was deleted. Now only the temp names of files this
    tool writes (a killed run's leftovers) go; a user's file that looks like a temp file stays."""
    root = make_camvid(tmp_path / "camvid", n=2)
    out = tmp_path / "out"
    run(root, out)
    ours = out / "trainannot" / ".0001TP_000000.png.k3j_x9q2.tmp"
    ours_summary = out / ".summary.json.abcdefgh.tmp"
    theirs = [
        out / "trainannot" / ".notes.txt.ab12cd34.tmp",
        out / "mine" / ".0001TP_000000.png.ab12cd34.tmp",
    ]
    for p in [ours, ours_summary, *theirs]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    run(root, out)
    assert not ours.exists() and not ours_summary.exists()
    assert all(p.read_bytes() == b"x" for p in theirs)


# ------------------------------------------------------------------------------------------ item 4


@pytest.mark.parametrize("rel", ["../../evil.png", "/tmp/segunify-evil.png", "a/../../evil.png"])
def test_sample_paths_that_leave_out_are_refused(tmp_path, rel):
    """Item 4. Before: a sample whose relative path held ``..`` (or was absolute), e.g. from a crafted
    list file, made the runner write its PNG outside --out."""
    root = make_camvid(tmp_path / "camvid", n=3)
    ds = create_dataset("camvid", root)
    good = ds.samples("train")
    evil = [good[0], dataclasses.replace(good[1], rel=rel), good[2]]
    ds.samples = lambda split: evil
    out = tmp_path / "deep" / "out"
    with pytest.raises(SegunifyError, match=f"sample {good[1].id!r} has output path .*outside") as err:
        run(root, out, dataset=ds)
    assert len(str(err.value).splitlines()) == 1
    assert not out.exists()  # refused before anything is written
    assert not list(tmp_path.rglob("evil.png")) and not Path("/tmp/segunify-evil.png").exists()


# ------------------------------------------------------------------------------------------ item 5


def test_a_changed_root_is_refused(tmp_path):
    """Item 5. Before: rerunning into a finished folder with another --root said "0 processed, N
    skipped" and kept the labels of the other dataset."""
    root = make_camvid(tmp_path / "camvid", n=2)
    out = tmp_path / "out"
    run(root, out)
    other = tmp_path / "camvid2"
    shutil.copytree(root, other)  # same names, sizes and mtimes
    with pytest.raises(SegunifyError, match="dataset root .*camvid'.*not .*camvid2"):
        run(other, out)


def test_a_changed_sample_is_redone(tmp_path):
    """Item 5. Before: after a ground truth or an image changed, a rerun skipped it and kept the stale
    pseudo-label. Now exactly the changed samples are redone and the folder equals a fresh run."""
    root = make_camvid(tmp_path / "camvid", n=7)
    out = tmp_path / "out"
    run(root, out)
    samples = create_dataset("camvid", root).samples("train")
    write_png(samples[2].label, np.full((24, 32), 3, dtype=np.uint8))  # new ground truth
    write_png(samples[5].image, np.full((24, 32, 3), 200, dtype=np.uint8))  # new image
    for s in (samples[2], samples[5]):
        for p in (s.image, s.label):
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    summary = run(root, out)
    assert summary.run.processed == 2 and summary.run.skipped == 5
    run(root, tmp_path / "fresh")
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def test_an_edit_keeping_size_and_mtime_is_redone(tmp_path):
    """Issue 25 case 8. Before: resume compared (size, mtime) only, so a label rewritten with other
    content of the same size and its mtime put back was skipped and its stale pseudo-label kept (exit
    0). Now the signature holds ctime too, which ``os.utime`` itself moves: the sample is redone and the
    folder equals a fresh run."""
    root = make_camvid(tmp_path / "camvid", n=4)
    out = tmp_path / "out"
    run(root, out)
    label = create_dataset("camvid", root).samples("train")[1].label
    st, before = label.stat(), label.read_bytes()
    flipped = np.ascontiguousarray(cv2.imread(str(label), cv2.IMREAD_UNCHANGED)[::-1])
    ok, buf = cv2.imencode(".png", flipped)
    assert ok and len(buf.tobytes()) == len(before) and buf.tobytes() != before  # same size, new content
    label.write_bytes(buf.tobytes())
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (label.stat().st_size, label.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert run(root, out).run.processed == 1
    run(root, tmp_path / "fresh")
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")


def test_records_of_the_older_signature_keep_their_rule(tmp_path):
    """Issue 25 case 8, the documented rule for folders written before ctime was recorded: their records
    (four numbers) are judged by size and mtime, the rule they were made under, so an unchanged folder is
    not redone; a sample whose size or mtime moved is redone and gets a record with ctime."""
    root = make_camvid(tmp_path / "camvid", n=3)
    out = tmp_path / "out"
    run(root, out)
    for path in [out / "manifest.jsonl", *(out / ".parts").glob("manifest-*.jsonl")]:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for r in records:
            r["signature"] = [v for i, v in enumerate(r["signature"]) if i % 3 != 2]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run(root, out).run.processed == 0
    label = create_dataset("camvid", root).samples("train")[0].label
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run(root, out).run.processed == 1
    signatures = [json.loads(line)["signature"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [len(s) for s in signatures] == [6, 4, 4]


def test_a_sample_redone_by_another_rank_count_keeps_the_new_record(tmp_path):
    """Item 5 with a changed process count: sample 2 was done by rank 1 of two, then changed and redone by
    one process. Its stale journal line (in rank 1's file, read last) must not win: the merged manifest
    equals a fresh run, and a further rerun has nothing to do."""
    root = make_camvid(tmp_path / "camvid", n=6)
    out = tmp_path / "out"
    rank1 = lambda: run(root, out, state=FakeState(1, 2), batch_size=2)  # noqa: E731
    run(root, out, state=FakeState(0, 2, rank1), batch_size=2)
    sample = create_dataset("camvid", root).samples("train")[2]  # batch 1 -> rank 1
    write_png(sample.label, np.full((24, 32), 3, dtype=np.uint8))
    st = sample.label.stat()
    os.utime(sample.label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run(root, out, batch_size=2).run.processed == 1
    assert run(root, out, batch_size=2).run.processed == 0
    run(root, tmp_path / "fresh", batch_size=2)
    assert tree_bytes(out) == tree_bytes(tmp_path / "fresh")


# ------------------------------------------------------------------------------------------ item 6

HOLDER = """
import sys, time
from segunify.pseudo.store import PseudoStore
store = PseudoStore(sys.argv[1])
store.claim()
with store.lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_concurrent_run_exits_naming_the_holder(tmp_path):
    """Item 6. Before: two runs on the same --out (no launcher) both did all the work, racing on the same
    files and journals. Now the second fails at once naming the first one's pid; after it ends, a run
    goes through."""
    root = make_camvid(tmp_path / "camvid", n=2)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SegunifyError, match=f"another pseudo-label run \\(pid {holder.pid}\\)"):
            run(root, out)
        assert sorted(p.name for p in out.iterdir()) == sorted([LOCK, MARKER])  # nothing else written
    finally:
        holder.kill()
        holder.wait()
    assert run(root, out).images == 2


# ------------------------------------------------------------------------------------------ item 7


def test_cli_unwritable_out_is_one_line(tiny_teacher, tmp_path, capsys):
    """Item 7. Before: an --out that cannot be created (here: below a file) ended in a
    NotADirectoryError traceback. Now: one line naming the path, exit 1."""
    root = make_camvid(tmp_path / "camvid", n=2)
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "out"
    assert main(cli(tiny_teacher, root, out)) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"error: {out}: cannot create output folder")


# ------------------------------------------------------------------------------------------ item 13


def test_outputs_get_the_users_umask(tmp_path):
    """Item 13. Before: pseudo-labels were 0600 (mkstemp), so a team's shared folder broke. Now every
    file and folder of the output follows the umask (here 007: files 0660, folders 0770)."""
    root = make_camvid(tmp_path / "camvid", n=3)
    out = tmp_path / "out"
    old = os.umask(0o007)
    try:
        run(root, out, save_confidence=True, writers=2)
    finally:
        os.umask(old)
    paths = [out, *out.rglob("*")]
    assert {p.name for p in paths} >= {"manifest.jsonl", "summary.json", LOCK, MARKER, "confidence"}
    for p in paths:
        want = 0o770 if p.is_dir() else 0o660
        assert p.stat().st_mode & 0o777 == want, f"{p}: {oct(p.stat().st_mode & 0o777)}"


# ------------------------------------------------------------------------------------------ fault injection


class DiskFills:
    """``os.fdopen`` (through which segunify.io writes every file) whose files raise ENOSPC on write
    once ``after`` files have been opened: the disk fills up at that point and stays full."""

    def __init__(self, real, after: int | None):
        self.real, self.after, self.opened = real, after, 0

    def __call__(self, fd, *args, **kwargs):
        self.opened += 1
        f = self.real(fd, *args, **kwargs)
        if self.after is not None and self.opened > self.after:
            real_write = f.write

            def write(data):
                real_write(data[: len(data) // 2])  # half of it lands, then the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            f.write = write
        return f


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_disk_full_at_a_random_point_then_rerun_gives_the_same_bytes(tmp_path, monkeypatch, seed):
    """Fault injection (issue 11): writes fail with ENOSPC at a random point of a run; the run stops
    with one line naming the file, leaves no temp file, and a rerun gives the bytes of an uninterrupted
    run."""
    root = make_camvid(tmp_path / "camvid", n=7)
    opts = {"batch_size": 2, "writers": 2, "save_confidence": True}
    counter = DiskFills(os.fdopen, None)
    monkeypatch.setattr(os, "fdopen", counter)
    run(root, tmp_path / "ref", **opts)
    total = counter.opened
    after = random.Random(seed).randrange(total)
    out = tmp_path / "out"
    monkeypatch.setattr(os, "fdopen", DiskFills(counter.real, after))
    with pytest.raises(SegunifyError, match="No space left on device") as err:
        run(root, out, **opts)
    assert len(str(err.value).splitlines()) == 1 and str(out) in str(err.value)
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(os, "fdopen", counter.real)
    summary = run(root, out, **opts)
    assert summary.images == 7 and load_summary(out) == summary
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
    samples = create_dataset("camvid", root).samples("train")
    assert (
        pseudo_label_path(out, samples[0]).read_bytes()
        == pseudo_label_path(tmp_path / "ref", samples[0]).read_bytes()
    )
