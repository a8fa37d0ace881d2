"""The priors op: hand-computed cases, parity with the dense masked argmax, and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from segunify.errors import SegunifyError
from segunify.mapping import load_mapping
from segunify.pseudo.priors import apply_priors, label_probs, plain_argmax, prior_table

# K=4 extra classes over C=4 source classes: singleton, pair, void (maps to nothing), triple
ALLOWED = np.array(
    [
        [1, 0, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 0],
        [1, 1, 0, 1],
    ],
    dtype=bool,
)


def reference(scores, gt, allowed, fill_void=False, min_confidence=None, probs=False, min_mass=None):
    """The obvious dense implementation: mask disallowed classes, argmax, softmax over the allowed set;
    the allowed mass is the full softmax summed over the mask."""
    table = torch.zeros(256, scores.shape[1], dtype=torch.bool)
    table[: allowed.shape[0]] = torch.from_numpy(np.array(allowed, dtype=bool))
    if fill_void:
        table[~table.any(1)] = True
    mask = table[gt.long()].permute(0, 3, 1, 2)
    logp = scores.double().log() if probs else scores.double()
    masked = logp.masked_fill(~mask, -torch.inf)
    labels = masked.argmax(1)
    conf = torch.softmax(masked, 1).gather(1, labels.unsqueeze(1)).squeeze(1)
    void = ~mask.any(1)
    if min_mass is not None:
        void |= (torch.softmax(logp, 1) * mask).sum(1) < min_mass
    labels[void] = 255
    conf[void] = 0
    if min_confidence is not None:
        low = conf < min_confidence
        labels[low] = 255
        conf[low] = 0
    return labels.to(torch.uint8), conf.float()


def test_hand_made_case():
    # one image 2x3; channel order = source classes 0..3
    scores = torch.tensor(
        [
            [[5.0, 0.0, 0.0], [0.0, 0.0, 1.0]],  # class 0
            [[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]],  # class 1
            [[0.0, 3.0, 0.0], [0.0, 0.0, 0.0]],  # class 2
            [[1.0, 0.0, 9.0], [9.0, 0.0, 0.0]],  # class 3
        ]
    ).unsqueeze(0)
    gt = torch.tensor([[[1, 1, 0], [3, 3, 255]]], dtype=torch.uint8)
    labels, conf = apply_priors(scores, gt, ALLOWED)
    # (0,0) pair {1,2}: 0 vs 0 tie -> lowest id 1; (0,1) pair: 1 vs 3 -> 2; (0,2) singleton 0 although
    # the teacher says 3; (1,0) triple {0,1,3}: 3; (1,1) triple: 1; (1,2) ignore
    assert labels.tolist() == [[[1, 2, 0], [3, 1, 255]]]
    e = np.exp
    expected = [[[0.5, e(3) / (e(1) + e(3)), 1.0], [e(9) / (1 + 1 + e(9)), e(2) / (1 + e(2) + 1), 0.0]]]
    assert np.allclose(conf.numpy(), expected, atol=1e-6)


def test_fill_void_and_min_confidence():
    scores = torch.tensor([[[[0.0, 4.0]]], [[[1.0, 0.0]]], [[[2.0, 0.0]]], [[[0.0, 0.0]]]]).permute(
        1, 0, 2, 3
    )
    gt = torch.tensor([[[2, 255]]], dtype=torch.uint8)  # a void class and ignore
    labels, conf = apply_priors(scores, gt, ALLOWED)
    assert labels.tolist() == [[[255, 255]]] and conf.tolist() == [[[0.0, 0.0]]]
    labels, conf = apply_priors(scores, gt, ALLOWED, fill_void=True)
    assert labels.tolist() == [[[2, 0]]]
    full = torch.softmax(scores[0, :, 0], 0)
    assert np.allclose(conf[0, 0].numpy(), [full[2, 0], full[0, 1]], atol=1e-6)
    labels, _ = apply_priors(scores, gt, ALLOWED, fill_void=True, min_confidence=0.9)
    assert labels.tolist() == [[[255, 0]]]  # 0.66 < 0.9 dropped, 0.95 kept


def four_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """4 pixels (columns) of 4 class probabilities (rows) and their GT ids, for the hand-made cases."""
    probs = torch.tensor(
        [
            [0.70, 0.05, 0.60, 0.10],
            [0.10, 0.05, 0.20, 0.10],
            [0.05, 0.10, 0.10, 0.10],
            [0.15, 0.80, 0.10, 0.70],
        ]
    ).view(1, 4, 1, 4)
    return probs, torch.tensor([[[0, 0, 1, 3]]], dtype=torch.uint8)


def test_min_allowed_mass_hand_made_case():
    """4 pixels (columns) of 4 class probabilities (rows); the gate reads the whole allowed set, singletons
    included."""
    probs, gt = four_pixels()
    # masses: singleton {0}: 0.70, 0.05; pair {1,2}: 0.30; triple {0,1,3}: 0.10 + 0.10 + 0.70 = 0.90
    labels, conf = apply_priors(probs, gt, ALLOWED, min_allowed_mass=0.25, scores_are_probs=True)
    assert labels.tolist() == [[[0, 255, 1, 3]]]
    assert np.allclose(conf.numpy(), [[[1.0, 0.0, 0.20 / 0.30, 0.70 / 0.90]]], atol=1e-6)
    labels, _ = apply_priors(probs.log(), gt, ALLOWED, min_allowed_mass=0.5)
    assert labels.tolist() == [[[0, 255, 255, 3]]]  # the same masses from logits
    labels, _ = apply_priors(probs, gt, ALLOWED, min_allowed_mass=0.0, scores_are_probs=True)
    assert torch.equal(labels, apply_priors(probs, gt, ALLOWED, scores_are_probs=True)[0])


def test_ignore_conflicts_hand_made_case():
    """The same 4 pixels: the teacher's top class and its probability against each pixel's allowed set."""
    probs, gt = four_pixels()
    # top classes 0 (0.70), 3 (0.80), 0 (0.60), 3 (0.70); allowed {0}, {0}, {1, 2}, {0, 1, 3}:
    # pixel 1 conflicts at 0.80, pixel 2 at 0.60; pixels 0 and 3 agree with their sets
    plain, _ = apply_priors(probs, gt, ALLOWED, scores_are_probs=True)
    labels, conf = apply_priors(probs, gt, ALLOWED, ignore_conflicts=0.6, scores_are_probs=True)
    assert labels.tolist() == [[[0, 255, 255, 3]]] and conf[0, 0, 1:3].tolist() == [0.0, 0.0]
    labels, _ = apply_priors(probs.log(), gt, ALLOWED, ignore_conflicts=0.7)
    assert labels.tolist() == [[[0, 255, plain[0, 0, 2].item(), 3]]]  # 0.60 < 0.7: the prior stands
    with pytest.raises(SegunifyError, match=r"ignore_conflicts must be in \[0.5, 1\]"):
        apply_priors(probs, gt, ALLOWED, ignore_conflicts=0.4, scores_are_probs=True)


def test_probabilities_give_the_same_labels_and_confidence():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, 7, generator=g) * 3
    gt = torch.randint(0, 4, (2, 5, 7), generator=g).to(torch.uint8)
    a = apply_priors(logits, gt, ALLOWED)
    b = apply_priors(logits.softmax(1), gt, ALLOWED, scores_are_probs=True)
    assert torch.equal(a[0], b[0])
    assert torch.allclose(a[1], b[1], atol=1e-6)


@pytest.mark.parametrize(
    "gt_value",
    [0, 2, 255],  # all singleton / all void / all ignore: no pixel needs a correction
)
def test_hard_labels_with_nothing_to_correct(gt_value):
    scores = torch.randn(2, 4, 3, 3)
    gt = torch.full((2, 3, 3), gt_value, dtype=torch.uint8)
    labels, conf = apply_priors(scores, gt, ALLOWED)
    want = 0 if gt_value == 0 else 255
    assert (labels == want).all()
    assert (conf == (1.0 if gt_value == 0 else 0.0)).all()


def test_teacher_already_agrees_everywhere():
    """Every argmax already allowed: the op must return the plain argmax (empty correction set)."""
    scores = torch.zeros(1, 4, 2, 2)
    scores[0, 1] = 5.0
    gt = torch.ones(1, 2, 2, dtype=torch.uint8)
    labels, _ = apply_priors(scores, gt, ALLOWED)
    assert torch.equal(labels, plain_argmax(scores)[0])


def test_scores_are_resized_to_the_label_resolution():
    scores = torch.zeros(1, 4, 2, 2)
    scores[0, 1, :, 0] = 5.0  # left half prefers 1, right half prefers 2
    scores[0, 2, :, 1] = 5.0
    gt = torch.ones(1, 4, 8, dtype=torch.uint8)
    labels, _ = apply_priors(scores, gt, ALLOWED)
    assert labels.shape == (1, 4, 8)
    assert (labels[..., :3] == 1).all() and (labels[..., 5:] == 2).all()


def test_real_mapping_singletons_and_sets():
    m = load_mapping("camvid__cityscapes")
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 19, 16, 20, generator=g)
    gt = torch.randint(0, 12, (3, 16, 20), generator=g).to(torch.uint8)
    gt[gt == 11] = 255
    labels, conf = apply_priors(scores, gt, m.allowed)
    ref_labels, ref_conf = reference(scores, gt, m.allowed)
    assert torch.equal(labels, ref_labels)
    assert torch.allclose(conf, ref_conf, atol=1e-5)
    road = gt == m.extra.index("Road")
    assert (labels[road] == m.source.index("road")).all()


def test_a_mapping_or_its_prior_table_gives_the_labels_of_its_matrix():
    """The runner makes the mapping's table once per run and passes it with every batch; the op must give
    exactly what the plain ``[K, C]`` matrix gives, and reuse a table already on the device."""
    m = load_mapping("camvid__cityscapes")
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 19, 12, 10, generator=g)
    gt = torch.randint(0, 12, (2, 12, 10), generator=g).to(torch.uint8)
    gt[gt == 11] = 255
    for fill_void in (False, True):
        table = prior_table(m, fill_void=fill_void)
        assert table.num_extra == 11 and torch.equal(
            table.table, prior_table(m.allowed, fill_void=fill_void).table
        )
        assert prior_table(table, fill_void=fill_void) is table
        want = apply_priors(scores, gt, m.allowed, fill_void=fill_void)
        for allowed in (m, table):
            got = apply_priors(scores, gt, allowed, fill_void=fill_void)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with pytest.raises(SegunifyError, match="made with fill_void=False used with fill_void=True"):
        apply_priors(scores, gt, prior_table(m), fill_void=True)
    with pytest.raises(SegunifyError, match=r"id\(s\) \[11\]"):  # the table keeps K: 11 is no class
        apply_priors(scores, torch.full_like(gt, 11), prior_table(m))


def test_bad_inputs_raise_one_clear_error():
    scores = torch.randn(1, 4, 2, 2)
    with pytest.raises(SegunifyError, match=r"id\(s\) \[7\]"):
        apply_priors(scores, torch.tensor([[[0, 7], [1, 255]]], dtype=torch.uint8), ALLOWED)
    with pytest.raises(SegunifyError, match="id 300"):
        apply_priors(scores, torch.tensor([[[0, 300], [1, 255]]]), ALLOWED)
    with pytest.raises(SegunifyError, match="5 channels"):
        apply_priors(torch.randn(1, 5, 2, 2), torch.zeros(1, 2, 2, dtype=torch.uint8), ALLOWED)
    with pytest.raises(SegunifyError, match=r"\[B, H, W\]"):
        apply_priors(scores, torch.zeros(2, 2, 2, dtype=torch.uint8), ALLOWED)


def test_prior_table_fill_void():
    t = prior_table(ALLOWED).table
    assert (
        t.shape == (256, 4)
        and not t[2].any()
        and not t[255].any()
        and torch.equal(t[:4], torch.tensor(ALLOWED))
    )
    t = prior_table(ALLOWED, fill_void=True).table
    assert t[2].all() and t[255].all() and torch.equal(t[[0, 1, 3]], torch.tensor(ALLOWED[[0, 1, 3]]))


@st.composite
def problems(draw):
    b = draw(st.integers(1, 2))
    c = draw(st.integers(1, 7))
    k = draw(st.integers(1, 6))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    allowed = rng.random((k, c)) < draw(st.sampled_from([0.2, 0.5, 0.9]))
    # small integer scores make ties frequent: the op must break them like argmax (lowest id)
    scores = torch.from_numpy(rng.integers(-3, 4, (b, c, h, w)).astype(np.float32))
    gt = rng.integers(0, k + 1, (b, h, w))
    gt[gt == k] = 255
    return scores, torch.from_numpy(gt.astype(np.uint8)), allowed


@settings(max_examples=100, deadline=None)
@given(problems(), st.booleans())
def test_matches_dense_reference(problem, fill_void):
    scores, gt, allowed = problem
    labels, conf = apply_priors(scores, gt, allowed, fill_void=fill_void)
    ref_labels, ref_conf = reference(scores, gt, allowed, fill_void=fill_void)
    assert torch.equal(labels, ref_labels)
    assert torch.allclose(conf, ref_conf, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(problems())
def test_labels_lie_in_the_allowed_set_and_singletons_follow_the_mapping(problem):
    scores, gt, allowed = problem
    labels, conf = apply_priors(scores, gt, allowed)
    table = prior_table(allowed).table
    lab = labels.long()
    kept = lab != 255
    assert table[gt.long()[kept], lab[kept]].all()
    # ignore exactly where the GT class allows nothing
    assert torch.equal(~kept, ~table[gt.long()].any(-1))
    sizes = table.sum(1)
    single = sizes[gt.long()] == 1
    assert torch.equal(lab[single], table[gt.long()[single]].float().argmax(1))
    assert (conf[single] == 1).all()
    assert ((conf >= 0) & (conf <= 1 + 1e-6)).all()


@settings(max_examples=50, deadline=None)
@given(problems())
def test_no_priors_equals_argmax(problem):
    scores, _, _ = problem
    labels, conf = plain_argmax(scores)
    assert torch.equal(labels.long(), scores.argmax(1))
    assert torch.allclose(conf, torch.softmax(scores, 1).amax(1), atol=1e-6)
    labels_p, conf_p = plain_argmax(scores.softmax(1), scores_are_probs=True)
    assert torch.equal(labels_p, labels) and torch.allclose(conf_p, conf, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(0, 1), st.floats(0, 1), st.booleans())
def test_raising_the_confidence_floor_never_unignores(problem, p, q, fill_void):
    scores, gt, allowed = problem
    lo, hi = min(p, q), max(p, q)
    a, _ = apply_priors(scores, gt, allowed, min_confidence=lo, fill_void=fill_void)
    b, _ = apply_priors(scores, gt, allowed, min_confidence=hi, fill_void=fill_void)
    assert not ((a == 255) & (b != 255)).any()
    assert torch.equal(b[b != 255], a[b != 255])


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(0, 1), st.booleans(), st.booleans())
def test_min_allowed_mass_matches_dense_reference(problem, m, fill_void, as_probs):
    scores, gt, allowed = problem
    scores = scores + torch.rand(scores.shape)  # masses exactly at the threshold would flip on rounding
    given_scores = scores.softmax(1) if as_probs else scores
    labels, conf = apply_priors(
        given_scores, gt, allowed, fill_void=fill_void, min_allowed_mass=m, scores_are_probs=as_probs
    )
    ref_labels, ref_conf = reference(scores, gt, allowed, fill_void=fill_void, min_mass=m)
    near = torch.isclose(
        (
            scores.double().softmax(1)
            * prior_table(allowed, fill_void=fill_void).table[gt.long()].permute(0, 3, 1, 2)
        )
        .sum(1)
        .float(),
        torch.tensor(m),
        atol=1e-5,
    )
    assert torch.equal(labels[~near], ref_labels[~near])
    assert torch.allclose(conf[~near], ref_conf[~near], atol=1e-5)
    # a higher gate only ignores more pixels and leaves the kept ones as they were
    stricter, _ = apply_priors(given_scores, gt, allowed, fill_void=fill_void, min_allowed_mass=(1 + m) / 2,
                               scores_are_probs=as_probs)  # fmt: skip
    assert not ((labels == 255) & (stricter != 255)).any()
    assert torch.equal(stricter[stricter != 255], labels[stricter != 255])


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(0.5, 1), st.booleans(), st.sampled_from([None, 0.05]))
def test_ignore_conflicts_matches_dense_reference(problem, p, fill_void, gate):
    """Ignored exactly where the unconstrained argmax is outside the allowed set with probability >= p;
    every other pixel keeps the plain priors' label (with the same allowed-mass gate)."""
    scores, gt, allowed = problem
    scores = scores + torch.rand(scores.shape)
    labels, _ = apply_priors(
        scores, gt, allowed, fill_void=fill_void, ignore_conflicts=p, min_allowed_mass=gate
    )
    plain, _ = apply_priors(scores, gt, allowed, fill_void=fill_void, min_allowed_mass=gate)
    probs = scores.double().softmax(1)
    top = probs.argmax(1)
    table = prior_table(allowed, fill_void=fill_void).table
    conflict = ~table[gt.long(), top] & (probs.amax(1) >= p)
    near = torch.isclose(probs.amax(1), torch.tensor(p, dtype=torch.float64), atol=1e-5)
    assert torch.equal((labels == 255)[~near], ((plain == 255) | conflict)[~near])
    assert torch.equal(labels[labels != 255], plain[labels != 255])


@settings(max_examples=100, deadline=None)
@given(problems())
def test_fill_void_changes_only_void_pixels(problem):
    scores, gt, allowed = problem
    a, ca = apply_priors(scores, gt, allowed)
    b, cb = apply_priors(scores, gt, allowed, fill_void=True)
    void = ~prior_table(allowed).table[gt.long()].any(-1)
    assert torch.equal(a[~void], b[~void]) and torch.equal(ca[~void], cb[~void])
    assert torch.equal(b[void], plain_argmax(scores)[0][void])


def test_label_probs_marks_where_the_prior_overruled_the_teacher():
    """``changed`` is exactly the labelled pixels whose label differs from the plain argmax (random
    probabilities have no ties); without priors nothing changes and the confidence floor still applies."""
    g = torch.Generator().manual_seed(5)
    probs = torch.rand(2, 4, 6, 7, generator=g).softmax(1)
    gt = torch.randint(0, 4, (2, 6, 7), generator=g, dtype=torch.uint8)
    gt[0, 0, :3] = 255
    labels, conf, changed = label_probs(probs, gt, ALLOWED)
    ref_labels, ref_conf = apply_priors(probs, gt, ALLOWED, scores_are_probs=True)
    assert torch.equal(labels, ref_labels) and torch.equal(conf, ref_conf)
    plain = probs.argmax(1)
    assert torch.equal(changed, (labels != 255) & (labels.long() != plain))
    assert 0 < int(changed.sum()) < int((labels != 255).sum())
    labels, conf, changed = label_probs(probs, None, ALLOWED, priors=False, min_confidence=0.4)
    low = probs.amax(1) < 0.4
    assert torch.equal(labels.long(), plain.masked_fill(low, 255)) and not changed.any()
    assert torch.equal(conf == 0, low)
    with pytest.raises(SegunifyError, match="priors need the ground truth"):
        label_probs(probs, None, ALLOWED)
