"""Ground-truth priors as a pure tensor operation (CPU or GPU, no per-pixel Python).

A pixel whose extra-taxonomy ground truth is class ``k`` may only receive a source class from the
allowed set ``A_k`` (a row of the mapping's ``allowed[K, C]`` matrix):

* ``|A_k| == 1``: the label is that class, whatever the teacher says (confidence 1);
* ``|A_k| >= 2``: the teacher's argmax among ``A_k``; confidence is the teacher's probability
  renormalised over ``A_k``;
* ``A_k`` empty (a void class) or GT ``255``: ignore, or with ``fill_void`` the teacher's unconstrained
  argmax (confidence = its unconstrained probability).

``min_allowed_mass`` (beyond the paper) ignores a pixel where the teacher puts less than that probability on
the whole of ``A_k``: the teacher and the ground truth disagree outright there. ``ignore_conflicts`` (p >= 0.5,
beyond the paper) ignores a pixel where the teacher's own top class lies outside ``A_k`` with probability >= p:
the prior would overrule a confident teacher (IDD riders and their motorcycles are coarse *vehicles* regions
where the teacher sees a person: the prior would teach *car* there). A coarse GT class also holds
things with no source class (IDD's roadside objects hold billboards and guard rails), and coarse or
upsampled labels cross object borders (CamVid sky through foliage); forcing such a pixel into ``A_k`` makes
confident noise (a building becomes a fence), while a pixel the teacher merely doubts keeps the prior.

Why not the obvious ``masked_fill(~allowed[gt], -inf).argmax(1)``: it materialises a ``[B, C, H, W]``
mask plus a float copy and reads all ``C`` channels of every pixel, which at 1024x2048 costs too large a
share of a forward pass (``benchmarks/pseudo_label.py`` measures the share). Instead pixels are grouped by GT class (one stable sort) and each
group reads only its ``|A_k|`` channels through one gather; singleton classes read no scores at all.
Scores are touched in place only through that gather, so no full copy is made unless they have to be
resized to the label resolution (one copy) or are not contiguous. Ties go to the lowest class id, as
``argmax`` does, so the result equals the masked argmax exactly (tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from segunify.errors import SegunifyError
from segunify.mapping import Mapping
from segunify.taxonomy import IGNORE

__all__ = [
    "PriorTable",
    "apply_priors",
    "label_probs",
    "plain_argmax",
    "prior_table",
    "score_at",
]


@dataclass(frozen=True)
class PriorTable:
    """The lookup of the priors op on one device: ``table[g]`` is the set of source classes a pixel whose
    ground truth is ``g`` may take (``[256, C]`` bool: rows ``>= K``, ignore included, are empty; with
    ``fill_void`` every empty row, void classes and ignore, allows every class), and ``K`` (ground-truth
    ids ``K..254`` are refused). Made once per run (:func:`prior_table`), not per batch."""

    table: torch.Tensor
    num_extra: int
    fill_void: bool


def prior_table(allowed, *, fill_void: bool = False, device: str | torch.device = "cpu") -> PriorTable:
    """The :class:`PriorTable` of ``allowed``: a :class:`~segunify.mapping.Mapping` (its cached
    ``gt_lookup``), an allowed matrix ``[K, C]`` (numpy or torch), or a :class:`PriorTable` (returned as
    it is when it is on ``device`` and made with the same ``fill_void``)."""
    device = torch.device(device)
    if isinstance(allowed, PriorTable):
        if allowed.fill_void != fill_void:
            raise SegunifyError(
                f"a prior table made with fill_void={allowed.fill_void} used with fill_void={fill_void}"
            )
        if allowed.table.device == device:
            return allowed
        return PriorTable(allowed.table.to(device), allowed.num_extra, fill_void)
    if isinstance(allowed, Mapping):
        num_extra, lookup = allowed.extra.num_classes, torch.tensor(allowed.gt_lookup, device=device)
    else:
        a = allowed if isinstance(allowed, torch.Tensor) else torch.from_numpy(np.array(allowed, dtype=bool))
        if a.ndim != 2:
            raise SegunifyError(f"allowed matrix must be [K, C], got shape {tuple(a.shape)}")
        if a.shape[0] > IGNORE:
            raise SegunifyError(
                f"allowed matrix has {a.shape[0]} extra classes; at most 255 fit uint8 labels"
            )
        num_extra = a.shape[0]
        lookup = torch.zeros(256, a.shape[1], dtype=torch.bool, device=device)
        lookup[:num_extra] = a.to(device=device, dtype=torch.bool)
    if fill_void:
        lookup[~lookup.any(1)] = True
    return PriorTable(lookup, num_extra, fill_void)


def _resize(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores.float(), size=size, mode="bilinear", align_corners=False)


def _check_inputs(scores: torch.Tensor, gt: torch.Tensor) -> None:
    if scores.ndim != 4:
        raise SegunifyError(f"scores must be [B, C, H, W], got shape {tuple(scores.shape)}")
    if gt.ndim != 3 or gt.shape[0] != scores.shape[0]:
        raise SegunifyError(
            f"ground truth must be [B, H, W] with B={scores.shape[0]}, got shape {tuple(gt.shape)}"
        )
    if gt.dtype.is_floating_point or gt.dtype == torch.bool:
        raise SegunifyError(f"ground truth must hold integer train ids, got dtype {gt.dtype}")


def _gt_ids(gt: torch.Tensor, num_extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GT as a flat uint8 tensor plus its 256-bin histogram; ids outside ``0..K-1`` and ``255`` raise.

    Labels read by a dataset adapter were checked where they were decoded; this op is a public function
    on tensors, so it is also where a caller's own tensors enter. The check reads the histogram the
    grouping needs anyway (no extra pass), and without it an id ``K..254`` would silently become ignore
    (or, with ``fill_void``, the teacher's free choice)."""
    if gt.dtype != torch.uint8:
        lo, hi = int(gt.min()) if gt.numel() else 0, int(gt.max()) if gt.numel() else 0
        if lo < 0 or hi > IGNORE:
            bad = lo if lo < 0 else hi
            raise SegunifyError(
                f"ground truth holds id {bad}; valid ids are 0..{num_extra - 1} and 255 (ignore)"
            )
        gt = gt.to(torch.uint8)
    flat = gt.reshape(-1)
    counts = torch.bincount(flat, minlength=256)
    bad = torch.nonzero(counts[num_extra:IGNORE]).flatten()
    if bad.numel():
        ids = (bad + num_extra).tolist()
        raise SegunifyError(
            f"ground truth holds id(s) {ids[:10]} but the mapping has only extra classes 0..{num_extra - 1} "
            "(and 255 = ignore)"
        )
    return flat, counts


def plain_argmax(
    scores: torch.Tensor, *, scores_are_probs: bool = False, size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unconstrained teacher labels (``--no-priors``): ``(argmax uint8 [B, H, W], max probability)``."""
    if scores.ndim != 4:
        raise SegunifyError(f"scores must be [B, C, H, W], got shape {tuple(scores.shape)}")
    if scores.shape[1] > IGNORE:
        raise SegunifyError(f"{scores.shape[1]} classes do not fit uint8 labels")
    if size is not None:
        scores = _resize(scores, size)
    idx, best = _channel_argmax(scores)
    if scores_are_probs:
        conf = best.float()
    else:
        conf = 1.0 / torch.exp(scores.float() - best.unsqueeze(1).float()).sum(1)
    return idx, conf


def _channel_argmax(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``argmax``/``max`` over dim 1 as a loop over channels: each step is a vectorised elementwise op on
    contiguous planes, several times faster on CPU than the strided ``max(dim=1)`` reduction. Strict
    ``>`` keeps the first maximum, as ``argmax`` does."""
    best = scores[:, 0].float().clone()
    idx = torch.zeros(best.shape, dtype=torch.uint8, device=scores.device)
    for ch in range(1, scores.shape[1]):
        plane = scores[:, ch]
        better = torch.gt(plane, best).view(torch.uint8)
        idx += better * (ch - idx)
        torch.maximum(best, plane, out=best)
    return idx, best


def score_at(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores[b, labels[b, h, w], h, w]`` (ignore reads channel 0; mask it yourself)."""
    idx = labels.long().clamp_(max=scores.shape[1] - 1).unsqueeze(1)
    return scores.gather(1, idx).squeeze(1)


def _best_of(
    rows: list[torch.Tensor], chans: list[int], scores_are_probs: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label (uint8) and renormalised confidence of the best of ``rows`` (the allowed channels' scores
    of one GT class's pixels), in running sums so no [N, |set|] block is ever built."""
    best = rows[0].float().clone()
    total = best.clone() if scores_are_probs else None
    lab_k = torch.full(best.shape, chans[0], dtype=torch.uint8, device=best.device)
    for ch, row in zip(chans[1:], rows[1:], strict=True):
        # arithmetic select (lab += better * (ch - lab), mod 256): masked_fill is far slower on CPU
        better = torch.gt(row, best).view(torch.uint8)
        lab_k += better * (ch - lab_k)
        torch.maximum(best, row, out=best)
        if total is not None:
            total += row
    if total is not None:
        return lab_k, best.div_(total.clamp_min_(1e-30))  # no mass on any allowed class -> 0
    total = torch.zeros_like(best)
    for row in rows:
        total += row.float().sub_(best).exp_()
    return lab_k, total.reciprocal_()


def apply_priors(
    scores: torch.Tensor,
    gt: torch.Tensor,
    allowed,
    *,
    fill_void: bool = False,
    min_confidence: float | None = None,
    min_allowed_mass: float | None = None,
    ignore_conflicts: float | None = None,
    scores_are_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher scores constrained by the GT's allowed sets (see the module docstring).

    ``scores`` ``[B, C, H, W]`` logits (or probabilities with ``scores_are_probs``), resized to the GT's
    resolution when they differ; ``gt`` ``[B, H, W]`` extra train ids (255 = ignore); ``allowed``
    ``[K, C]`` bool (numpy or torch), a mapping, or its :class:`PriorTable` (made once per run). Returns ``labels`` uint8 ``[B, H, W]`` (source train ids, 255 =
    ignore) and ``confidence`` float32 ``[B, H, W]`` (0 where ignored). With ``min_confidence`` pixels
    whose confidence is below it become ignore, and with ``min_allowed_mass`` those where the teacher's
    probability of the whole allowed set is below it, and with ``ignore_conflicts`` those whose teacher
    argmax is outside the allowed set with at least that probability (>= 0.5, so that no allowed class can
    be the teacher's equal there). Probabilities that put no mass at all on the allowed set (float
    underflow) give the lowest allowed class with confidence 0.
    """
    prior = _checked_table(scores, gt, allowed, fill_void)
    table = prior.table
    b, c = scores.shape[:2]
    h, w = gt.shape[-2:]
    scores = _resize(scores, (h, w))
    if not scores.is_contiguous():
        scores = scores.contiguous()
    flat_gt, counts = _gt_ids(gt.to(scores.device), prior.num_extra)
    sizes = table.sum(1)  # allowed classes per GT id
    labels, confidence = _one_to_one(table, sizes, flat_gt)
    gate = min_allowed_mass is not None
    mass = _one_to_many(scores, flat_gt, counts, table, sizes, labels, confidence, scores_are_probs, gate)
    if mass is not None:
        _ignore(labels, confidence, mass < float(min_allowed_mass))
    if ignore_conflicts is not None:
        _ignore(labels, confidence, _conflicts(scores, table, flat_gt, ignore_conflicts, scores_are_probs))
    if min_confidence is not None:
        _ignore(labels, confidence, confidence < float(min_confidence))
    return labels.view(b, h, w), confidence.view(b, h, w)


def _conflicts(scores, table, flat_gt, at_least: float, scores_are_probs: bool) -> torch.Tensor:
    """Flat mask of the pixels whose teacher argmax is outside their allowed set with probability >=
    ``at_least`` (one pass over the channels, as ``plain_argmax``)."""
    if not 0.5 <= at_least <= 1.0:
        raise SegunifyError(f"ignore_conflicts must be in [0.5, 1], got {at_least}")
    top, p = plain_argmax(scores, scores_are_probs=scores_are_probs)
    forbidden = ~table[flat_gt.long(), top.reshape(-1).long()]
    return forbidden & (p.reshape(-1) >= at_least)


def _ignore(labels: torch.Tensor, confidence: torch.Tensor, where: torch.Tensor) -> None:
    labels.masked_fill_(where, IGNORE)
    confidence.masked_fill_(where, 0.0)


def _checked_table(scores, gt, allowed, fill_void: bool) -> PriorTable:
    """The prior table on the scores' device, after checking that the inputs fit together (one-line
    errors, not shape errors from deep inside torch)."""
    if not isinstance(scores, torch.Tensor) or not isinstance(gt, torch.Tensor):
        raise SegunifyError("apply_priors expects torch tensors for scores and ground truth")
    _check_inputs(scores, gt)
    table = prior_table(allowed, fill_void=fill_void, device=scores.device)
    c = scores.shape[1]
    if table.table.shape[1] != c:
        raise SegunifyError(
            f"the mapping has {table.table.shape[1]} source classes but the teacher scores have {c} channels"
        )
    if c > IGNORE:
        raise SegunifyError(f"{c} source classes do not fit uint8 labels")
    return table


def _one_to_one(
    table: torch.Tensor, sizes: torch.Tensor, flat_gt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels of the classes with one allowed class (one table lookup, no scores read), confidence 1;
    every other pixel is ignore with confidence 0 until ``_one_to_many`` fills it."""
    singles = torch.nonzero(sizes == 1).flatten()
    lut = torch.full((256,), IGNORE, dtype=torch.uint8, device=table.device)
    lut[singles] = table[singles].to(torch.uint8).argmax(1).to(torch.uint8)
    labels = lut.index_select(0, flat_gt.int())
    return labels, (labels != IGNORE).float()


def _groups(scores, flat_gt, counts, table, groups: list[int]):
    """``(pixels, channels, rows)`` per GT id in ``groups``: the flat indices of its pixels, its allowed
    channels and their scores at those pixels (one gather per channel; one stable sort for all groups)."""
    if not groups:
        return
    b, c, h, w = scores.shape
    hw = h * w
    order = torch.sort(flat_gt, stable=True).indices
    starts = (torch.cumsum(counts, 0) - counts).tolist()
    counts_list = counts.tolist()
    flat_scores = scores.reshape(-1)
    numel = flat_scores.numel()
    for k in groups:
        pix = order[starts[k] : starts[k] + counts_list[k]]
        chans = torch.nonzero(table[k]).flatten().tolist()
        # offset of channel 0 of each pixel; channel c is read from a view shifted by c planes
        base = pix if b == 1 else pix + torch.div(pix, hw, rounding_mode="floor") * ((c - 1) * hw)
        yield pix, chans, [flat_scores.narrow(0, ch * hw, numel - ch * hw).take(base) for ch in chans]


def _one_to_many(
    scores, flat_gt, counts, table, sizes, labels, confidence, scores_are_probs: bool, gate: bool
) -> torch.Tensor | None:
    """Fill the pixels of each class with several allowed classes, in place: each group gathers only its
    allowed channels. With ``gate`` the same gathers (singleton classes' too) also give the teacher's
    probability of each pixel's whole allowed set, returned flat (0 where the set is empty)."""
    groups = torch.nonzero((counts > 0) & (sizes > (0 if gate else 1))).flatten().tolist()
    mass = torch.zeros(flat_gt.shape, dtype=torch.float32, device=scores.device) if gate else None
    log_total = torch.logsumexp(scores.float(), 1).reshape(-1) if gate and not scores_are_probs else None
    for pix, chans, rows in _groups(scores, flat_gt, counts, table, groups):
        if mass is not None:  # before _best_of, which may shift the rows in place
            mass.index_put_((pix,), _set_mass(rows, None if log_total is None else log_total.take(pix)))
        if len(chans) > 1:
            lab_k, conf = _best_of(rows, chans, scores_are_probs)
            labels.index_put_((pix,), lab_k)
            confidence.index_put_((pix,), conf)
    return mass


def _set_mass(rows: list[torch.Tensor], log_total: torch.Tensor | None) -> torch.Tensor:
    """Sum of the allowed channels' probabilities (``log_total``: the logsumexp that turns logits into
    them); the rows are left as they are."""
    total = torch.zeros(rows[0].shape, dtype=torch.float32, device=rows[0].device)
    for row in rows:
        total += row.float() if log_total is None else (row.float() - log_total).exp_()
    return total


def label_probs(
    probs: torch.Tensor,
    gt: torch.Tensor | None,
    allowed,
    *,
    priors: bool = True,
    fill_void: bool = False,
    min_confidence: float | None = None,
    min_allowed_mass: float | None = None,
    ignore_conflicts: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-labels of one batch of teacher probabilities, with the priors or as the plain argmax
    (``gt`` may then be ``None``). Returns labels, confidence and ``changed``: the labelled pixels where
    the prior overruled the teacher (the label's probability is below the maximum; all False without)."""
    if priors:
        if gt is None:
            raise SegunifyError("priors need the ground truth")
        labels, conf = apply_priors(
            probs,
            gt,
            allowed,
            fill_void=fill_void,
            min_confidence=min_confidence,
            min_allowed_mass=min_allowed_mass,
            ignore_conflicts=ignore_conflicts,
            scores_are_probs=True,
        )
        changed = (labels != IGNORE) & (score_at(probs, labels) < probs.amax(1))
        return labels, conf, changed
    labels, conf = plain_argmax(probs, scores_are_probs=True)
    if min_confidence is not None:
        low = conf < min_confidence
        labels.masked_fill_(low, IGNORE)
        conf = conf.masked_fill(low, 0.0)
    return labels, conf, torch.zeros_like(labels, dtype=torch.bool)
