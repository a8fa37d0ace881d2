"""Soft pseudo-labels (``pseudo-label --soft``): the top-2 op on hand-built pixels, its agreement with the
hard labels, the soft/ PNGs written and resumed by the runner, and the CLI flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.pseudo_runs import MAPPING, StandInTeacher, make_camvid, run
from segunify.cli import main
from segunify.datasets import create_dataset
from segunify.errors import SegunifyError
from segunify.labels import read_label_raw
from segunify.pseudo import PseudoSettings, label_probs, prior_table, soft_top2

# three extra classes: 0 -> {2} (one-to-one), 1 -> {0, 1, 3} (one-to-many), 2 -> {} (void)
ALLOWED = np.array([[0, 0, 1, 0], [1, 1, 0, 1], [0, 0, 0, 0]], dtype=bool)


def _hand_pixels():
    probs = torch.tensor([[0.1, 0.3, 0.4, 0.2]] * 4).T.reshape(1, 4, 1, 4)  # the same scores at 4 pixels
    gt = torch.tensor([[[0, 1, 2, 255]]], dtype=torch.uint8)
    return probs, gt


def test_top2_of_hand_built_pixels():
    probs, gt = _hand_pixels()
    labels, _, _ = label_probs(probs, gt, ALLOWED)
    soft = soft_top2(probs, gt, ALLOWED, labels)[0, 0].tolist()
    assert soft[0] == [2, 255, 255]  # one-to-one: its class, no second class, p1 = 1
    assert soft[1] == [1, 3, round(255 * 0.3 / 0.5)]  # 0.3 vs 0.2 among {0, 1, 3}: p1 = 0.6 -> 153
    assert soft[2] == [255, 255, 0] and soft[3] == [255, 255, 0]  # void GT and ignore
    plain, _, _ = label_probs(probs, None, ALLOWED, priors=False)
    no_priors = soft_top2(probs, None, ALLOWED, plain)[0, 0].tolist()
    assert no_priors[1] == [2, 1, round(255 * 0.4 / 0.7)]  # every class allowed: 0.4 vs 0.3


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), fill_void=st.booleans())
def test_top2_agrees_with_the_hard_labels(seed, fill_void):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(2, 19, 6, 7, generator=g).softmax(1)
    gt = torch.randint(0, MAPPING.extra.num_classes, (2, 6, 7), generator=g, dtype=torch.uint8)
    gt[0, 0, :3] = 255
    labels, _, _ = label_probs(probs, gt, MAPPING.allowed, fill_void=fill_void)
    soft = soft_top2(probs, gt, MAPPING.allowed, labels, fill_void=fill_void)
    c1, c2, p1 = soft.unbind(-1)
    assert torch.equal(c1, labels)
    has2 = c2 != 255
    assert bool((p1[has2] >= 128).all()) and bool((c1[has2] != c2[has2]).all())
    table = prior_table(MAPPING.allowed, fill_void=fill_void).table  # [256, C]: ignore rows too
    rows = gt[has2].long()
    assert bool(table[rows, c2[has2].long()].all())  # the second class lies in the pixel's allowed set
    q1 = probs.gather(1, c1.long().clamp(max=18)[:, None])[:, 0][has2]
    q2 = probs.gather(1, c2.long().clamp(max=18)[:, None])[:, 0][has2]
    assert torch.allclose(p1[has2].float(), (255 * q1 / (q1 + q2)).round(), atol=1)
    one = (c1 != 255) & ~has2  # one-to-one pixels (or a one-class fill): certain
    assert bool((p1[one] == 255).all())


def test_runner_writes_resumes_and_round_trips_soft_labels(tmp_path):
    root = make_camvid(tmp_path / "camvid", n=4)
    out = tmp_path / "out"
    summary = run(root, out, soft=True)
    assert summary.settings.soft and json.loads((out / "settings.json").read_text())["soft"] is True
    ds = create_dataset("camvid", root)
    teacher = StandInTeacher()
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    for s, rec in zip(ds.samples("train"), records, strict=True):
        image, gt = ds.sample(s)
        probs = teacher.probs(torch.from_numpy(image)[None])
        labels, _, _ = label_probs(probs, torch.from_numpy(gt)[None], MAPPING.allowed)
        expected = soft_top2(probs, torch.from_numpy(gt)[None], MAPPING.allowed, labels)[0].numpy()
        written = read_label_raw(out / "soft" / s.rel)
        assert written.shape == (*gt.shape, 3) and np.array_equal(written, expected)
        assert np.array_equal(written[..., 0], read_label_raw(out / s.rel))
        assert rec["soft"] == f"soft/{s.rel}"
    again = StandInTeacher()
    run(root, out, teacher=again, soft=True)
    assert again.calls == 0  # resumed: everything finished
    first = ds.samples("train")[0]
    kept = (out / "soft" / first.rel).read_bytes()
    (out / "soft" / first.rel).unlink()
    redo = StandInTeacher()
    run(root, out, teacher=redo, soft=True)
    assert redo.calls == 1 and (out / "soft" / first.rel).read_bytes() == kept
    with pytest.raises(SegunifyError, match=r"other settings \(soft\)"):
        run(root, out)


def test_fingerprint_without_soft_is_unchanged():
    """Folders written before the option existed keep their settings fingerprint (no "soft" key)."""
    assert "soft" not in PseudoSettings().fingerprint()
    assert PseudoSettings(soft=True).fingerprint()["soft"] is True


def test_cli_soft_flag(tmp_path, capsys):
    from fixtures.tiny_models import espnet_checkpoint

    root = make_camvid(tmp_path / "camvid", n=2)
    teacher = espnet_checkpoint(tmp_path / "teacher", taxonomy="cityscapes", num_classes=19, varied=True)
    argv = ["pseudo-label", "--teacher", str(teacher), "--dataset", "camvid", "--root", str(root)]
    argv += ["--mapping", "camvid__cityscapes", "--out", str(tmp_path / "out"), "--soft", "--workers", "0"]
    assert main(argv) == 0
    capsys.readouterr()
    s = create_dataset("camvid", root).samples("train")[1]
    soft = read_label_raw(tmp_path / "out" / "soft" / s.rel)
    assert soft.shape[2] == 3 and np.array_equal(soft[..., 0], read_label_raw(tmp_path / "out" / s.rel))
    assert (soft[..., 1] != 255).any()  # CamVid's one-to-many classes got a second class
