"""A draft mapping from data: each extra class's allowed set proposed from the co-occurrence matrix.

The rule (simple on purpose, so a person can check it on the heatmap): take the source classes the
teacher predicts on a class's pixels in order of decreasing share, until they cover at least
``coverage`` of the pixels; never take one below ``min_share``. A class with fewer than ``min_pixels``
pixels gets ``REVIEW`` instead of a guess (``mapping check`` refuses the draft until a person decides).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segunify.errors import FieldError
from segunify.mapcheck.cooccurrence import CoOccurrence
from segunify.mapping import HEADER, REVIEW, quote_field


@dataclass(frozen=True)
class SuggestRule:
    coverage: float = 0.9
    min_share: float = 0.02
    min_pixels: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage <= 1.0:
            raise FieldError("coverage", f"must be in (0, 1], got {self.coverage}")
        if not 0.0 <= self.min_share < 1.0:
            raise FieldError("min_share", f"must be in [0, 1), got {self.min_share}")
        if self.min_pixels < 1:
            raise FieldError("min_pixels", f"must be >= 1, got {self.min_pixels}")

    def describe(self) -> str:
        return (
            f"smallest set of source classes covering >= {self.coverage:.0%} of a class's pixels, "
            f"each member >= {self.min_share:.0%}; fewer than {self.min_pixels} pixels -> {REVIEW}"
        )


@dataclass(frozen=True)
class SuggestedRow:
    extra_id: int
    name: str
    members: tuple[int, ...]  # source train ids in order of decreasing share; empty when review
    pixels: int
    covered: float  # share of the class's pixels the members cover
    review: bool

    @property
    def allowed(self) -> tuple[int, ...] | None:
        """Sorted source train ids, or None for a row left to review."""
        return None if self.review else tuple(sorted(self.members))


def suggest_sets(cooc: CoOccurrence, rule: SuggestRule) -> list[SuggestedRow]:
    shares, pixels = cooc.shares(), cooc.pixels
    rows = []
    for k, name in enumerate(cooc.extra.classes):
        if pixels[k] < rule.min_pixels:
            rows.append(SuggestedRow(k, name, (), int(pixels[k]), 0.0, True))
            continue
        order = np.argsort(-shares[k], kind="stable")
        reached = np.cumsum(shares[k, order]) >= rule.coverage - 1e-9
        prefix = order[: int(np.argmax(reached)) + 1]
        members = tuple(int(c) for c in prefix if shares[k, c] >= rule.min_share)
        covered = float(shares[k, list(members)].sum()) if members else 0.0
        rows.append(SuggestedRow(k, name, members, int(pixels[k]), covered, not members))
    return rows


def _share_note(cooc: CoOccurrence, k: int, top: int = 6, floor: float = 0.005) -> str:
    """``sky 97.1% (98.0), building 1.5% (1.0)``: pixel share (confidence-weighted share)."""
    shares, weighted = cooc.shares()[k], cooc.weighted_shares()[k]
    order = [int(c) for c in np.argsort(-shares, kind="stable")[:top] if shares[c] >= floor]
    return (
        ", ".join(f"{cooc.source.classes[c]} {shares[c]:.1%} ({weighted[c]:.1%})" for c in order) or "nothing"
    )


def draft_csv(cooc: CoOccurrence, rows: list[SuggestedRow], rule: SuggestRule, provenance: str) -> str:
    """The draft in the project's mapping format; every row carries the shares it was decided from."""
    out = io.StringIO()
    out.write(f"# DRAFT by `segunify mapping suggest`: {provenance}\n")
    out.write(f"# rule: {rule.describe()}\n")
    out.write(
        "# each row: pixels, then the teacher's unconstrained prediction on them: share (confidence-weighted share)\n"
    )
    out.write(",".join(HEADER) + "\n")
    for row in rows:
        note = f"{row.pixels:,} px: {_share_note(cooc, row.extra_id)}"
        if row.review:
            text = REVIEW
            note = f"too few pixels to decide (< {rule.min_pixels}); {note}"
        else:
            text = ";".join(cooc.source.classes[c] for c in sorted(row.members))
            if row.covered < rule.coverage:
                note = f"covers only {row.covered:.1%}; {note}"
        out.write(f"{row.extra_id},{quote_field(row.name)},{quote_field(text)}  # {note}\n")
    return out.getvalue()


def heatmap_png(cooc: CoOccurrence, sets: Sequence[Sequence[int]] | None = None, title: str = "") -> bytes:
    """Extra classes x source classes, row-normalised shares annotated in percent; ``sets[k]`` (the
    suggested or a mapping's allowed set of extra class k) is outlined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    shares, pixels = cooc.shares(), cooc.pixels
    k_n, c_n = shares.shape
    fig = Figure(figsize=(2.5 + 0.42 * c_n, 1.6 + 0.36 * k_n), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for k, c in zip(*np.nonzero(shares >= 0.01), strict=True):
        ax.text(c, k, f"{100 * shares[k, c]:.0f}", ha="center", va="center", fontsize=7,
                color="white" if shares[k, c] > 0.55 else "black")  # fmt: skip
    for k, members in enumerate(sets or []):
        for c in members:
            ax.add_patch(Rectangle((c - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    ax.set_xticks(range(c_n), cooc.source.classes, rotation=90, fontsize=8)
    labels = [f"{name} ({pixels[k]:,} px)" for k, name in enumerate(cooc.extra.classes)]
    ax.set_yticks(range(k_n), labels, fontsize=8)
    ax.set_xlabel(f"teacher prediction ({cooc.source.name}), no priors")
    ax.set_ylabel(f"ground truth ({cooc.extra.name})")
    legend = "pixel share of each ground-truth class (%); red = allowed set"
    ax.set_title(f"{title}\n{legend}" if title else legend, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
