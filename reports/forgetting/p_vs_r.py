"""Where T's P labels (with priors) differ from its R labels (plain argmax) of the same images, per class.

For each source class: its share of all pixels in R and in P, and the R classes of the pixels P gives it while
R does not (the prior's additions). Reads the label PNGs of a demo run's pseudo/<part>/{P,R} folders.

    .venv/bin/python reports/forgetting/p_vs_r.py runs/quick/pseudo/idd-lite
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from segunify.labels import read_label_raw
from segunify.pseudo import load_summary
from segunify.taxonomy import IGNORE


def pair_counts(part: Path) -> np.ndarray:
    """``[256, 256]`` pixel counts of (P label, R label) over every image of the part."""
    counts = np.zeros(256 * 256, dtype=np.int64)
    for p_png in sorted((part / "P").rglob("*.png")):
        rel = p_png.relative_to(part / "P")
        if rel.parts[0] in ("soft", "confidence"):
            continue
        p, r = read_label_raw(p_png).astype(np.int64), read_label_raw(part / "R" / rel).astype(np.int64)
        counts += np.bincount((p * 256 + r).ravel(), minlength=256 * 256)
    return counts.reshape(256, 256)


def main(part: Path) -> None:
    classes = list(load_summary(part / "P").class_share)
    counts = pair_counts(part)
    total = counts.sum() / 100.0
    print(f"{part}: P ignores {counts[IGNORE].sum() / total:.2f} % of the pixels")
    print(f"{'class':14s} {'R %':>6s} {'P %':>6s}  P's additions by R class (% of all pixels)")
    for c, name in enumerate(classes):
        added = counts[c, : len(classes)].copy()
        added[c] = 0
        top = [f"{classes[j]} {added[j] / total:.2f}" for j in np.argsort(-added)[:3] if added[j]]
        r_share, p_share = counts[:, c].sum() / total, counts[c].sum() / total
        print(f"{name:14s} {r_share:6.2f} {p_share:6.2f}  {', '.join(top)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
