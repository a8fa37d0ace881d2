"""Audit a mapping against what the teacher sees: which rows look wrong, and why.

Three rules per extra class ``k`` with allowed set ``A`` (shares are of the class's pixels):

* **missing member?** ``outside_confident``: the teacher predicts a class outside ``A`` with confidence
  >= the threshold. A confident teacher that disagrees with the mapping on many pixels is more often a
  sign of a missing member than of a wrong teacher; the top such class is named.
* **superfluous member?** a member of ``A`` whose share is below ``min_member`` (never predicted there)
  only lets the teacher put a wrong class where it hesitates.
* **changed by the prior**: the share where the argmax lies outside ``A``, i.e. where the prior
  overrides the teacher. For a void row every pixel becomes ignore, so it is not scored.

Suspicion = confident-outside share, where a source class that *another* row allows counts half (the
teacher often bleeds a neighbouring object's class into small objects, e.g. building on signs, while a
confidently predicted class that no row allows is one the mapping cannot express anywhere), plus
``0.1 * unused members / members`` (a row whose every member is unused ranks like one with 10 % of its
pixels confidently outside). Void rows, then classes with fewer than ``min_pixels`` pixels, rank last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from segunify.errors import FieldError, SegunifyError
from segunify.mapcheck.cooccurrence import CoOccurrence
from segunify.mapping import Mapping

UNUSED_WEIGHT = 0.1
CLAIMED_WEIGHT = 0.5


@dataclass(frozen=True)
class AuditRow:
    extra_id: int
    name: str
    kind: str
    allowed: tuple[str, ...]
    pixels: int
    outside_confident: float
    top_outside: str  # the source class most often confidently predicted outside the set ("" if none)
    top_outside_share: float
    top_outside_unclaimed: bool  # no row of the mapping allows top_outside
    member_shares: dict[str, float]
    unused: tuple[str, ...]
    changed_by_prior: float
    suspicion: float
    too_few: bool = False

    def flags(self) -> list[str]:
        if self.pixels == 0:
            return ["no pixels in the sample"]
        if self.too_few:
            return [f"too few pixels to judge ({self.pixels:,})"]
        if self.kind == "void":
            return [f"void: all ignored; teacher says {self.top_outside} on {self.top_outside_share:.0%}"]
        out = []
        if self.top_outside:
            orphan = "; no row allows it" if self.top_outside_unclaimed else ""
            out.append(f"missing {self.top_outside}? ({self.top_outside_share:.1%} confident{orphan})")
        if self.unused:
            out.append(f"superfluous {', '.join(self.unused)}?")
        return out

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "allowed": list(self.allowed),
            "unused": list(self.unused),
            "flags": self.flags(),
        }


def audit_mapping(
    cooc: CoOccurrence, mapping: Mapping, min_member: float = 0.005, min_pixels: int = 1000
) -> list[AuditRow]:
    """One row per extra class, most suspicious first."""
    same_extra = tuple(cooc.extra.classes) == tuple(mapping.extra.classes)
    if not same_extra or tuple(cooc.source.classes) != tuple(mapping.source.classes):
        raise SegunifyError(
            "mapping and co-occurrence statistics are of different taxonomies", mapping.path or None
        )
    if not 0.0 <= min_member < 1.0:
        raise FieldError("min_member", f"must be in [0, 1), got {min_member}")
    allowed, shares = mapping.allowed, cooc.shares()
    outside_conf = np.where(allowed, 0, cooc.confident)  # [K, C] confident pixels outside each set
    claimed = allowed.sum(0, keepdims=True) > 0  # [1, C]: some row allows c (never the row itself here)
    weighted = (outside_conf * np.where(claimed, CLAIMED_WEIGHT, 1.0)).sum(1)
    rows = [
        _row(cooc, mapping, k, shares[k], outside_conf[k], weighted[k], claimed[0], min_member, min_pixels)
        for k in range(mapping.extra.num_classes)
    ]
    return sorted(rows, key=lambda r: (-r.suspicion, -r.changed_by_prior, r.extra_id))


def _row(cooc, mapping, k, shares_k, outside_conf_k, weighted_k, claimed, min_member, min_pixels) -> AuditRow:
    names, pixels = cooc.source.classes, int(cooc.pixels[k])
    members = mapping.allowed_sets[k]
    top = int(np.argmax(outside_conf_k if members else shares_k))
    base = {
        "extra_id": k,
        "name": cooc.extra.classes[k],
        "kind": mapping.kind(k),
        "allowed": tuple(names[c] for c in members),
        "pixels": pixels,
        "member_shares": {names[c]: float(shares_k[c]) for c in members},
        "top_outside_unclaimed": bool(members) and not claimed[top],
    }
    if not members:  # void: every pixel becomes ignore; name what the teacher mostly sees there
        return AuditRow(**base, outside_confident=0.0, top_outside=names[top] if pixels else "",
                        top_outside_share=float(shares_k[top]), unused=(), changed_by_prior=float(pixels > 0),
                        suspicion=0.0 if pixels else -1.0)  # fmt: skip
    outside = float(outside_conf_k.sum() / max(pixels, 1))
    unused = tuple(names[c] for c in members if shares_k[c] < min_member) if pixels else ()
    too_few = pixels < min_pixels
    if too_few:
        suspicion = -0.5 if pixels else -1.0
    else:
        suspicion = float(weighted_k / pixels) + UNUSED_WEIGHT * len(unused) / len(members)
    return AuditRow(
        **base,
        outside_confident=outside,
        top_outside=names[top] if outside_conf_k[top] else "",
        top_outside_share=float(outside_conf_k[top] / max(pixels, 1)),
        unused=unused,
        changed_by_prior=float(1.0 - shares_k[list(members)].sum()) if pixels else 0.0,
        suspicion=suspicion,
        too_few=too_few,
    )
