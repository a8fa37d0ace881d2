"""Audit a mapping against what the teacher sees: which rows look wrong, and why.

Three rules per extra class ``k`` with allowed set ``A`` (shares are of the class's pixels):

* **missing member?** ``outside_confident``: the teacher predicts a class outside ``A`` with confidence
  >= the threshold. A confident teacher that disagrees with the mapping on many pixels is more often a
  sign of a missing member than of a wrong teacher; the top such class is named.
* **superfluous member?** a member of ``A`` whose share is below ``min_member`` (never predicted there)
  only lets the teacher put a wrong class where it hesitates.
* **changed by the prior**: the share where the argmax lies outside ``A``, i.e. where the prior
  overrides the teacher. For a void row every pixel becomes ignore, so it is not scored.

Suspicion = ``outside_confident + 0.1 * (unused members / members)``: a row whose every member is unused
ranks like one with 10 % of its pixels confidently outside. Void rows and classes without pixels rank last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from segunify.errors import SegunifyError
from segunify.mapcheck.cooccurrence import CoOccurrence
from segunify.mapping import Mapping

UNUSED_WEIGHT = 0.1


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
    member_shares: dict[str, float]
    unused: tuple[str, ...]
    changed_by_prior: float
    suspicion: float

    def flags(self) -> list[str]:
        out = []
        if self.kind != "void" and self.top_outside:
            out.append(f"missing {self.top_outside}? ({self.top_outside_share:.1%} confident)")
        if self.unused:
            out.append(f"superfluous {', '.join(self.unused)}?")
        if self.kind == "void" and self.pixels:
            out.append(f"void: all ignored; teacher says {self.top_outside} on {self.top_outside_share:.0%}")
        if self.pixels == 0:
            out.append("no pixels in the sample")
        return out

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "allowed": list(self.allowed),
            "unused": list(self.unused),
            "flags": self.flags(),
        }


def audit_mapping(cooc: CoOccurrence, mapping: Mapping, min_member: float = 0.005) -> list[AuditRow]:
    """One row per extra class, most suspicious first."""
    same_extra = tuple(cooc.extra.classes) == tuple(mapping.extra.classes)
    if not same_extra or tuple(cooc.source.classes) != tuple(mapping.source.classes):
        raise SegunifyError(
            "mapping and co-occurrence statistics are of different taxonomies", mapping.path or None
        )
    if not 0.0 <= min_member < 1.0:
        raise SegunifyError(f"--min-member must be in [0, 1), got {min_member}")
    allowed, shares = mapping.allowed, cooc.shares()
    outside_conf = np.where(allowed, 0, cooc.confident)  # [K, C] confident pixels outside each set
    rows = [
        _row(cooc, mapping, k, shares[k], outside_conf[k], min_member)
        for k in range(mapping.extra.num_classes)
    ]
    return sorted(rows, key=lambda r: (-r.suspicion, -r.changed_by_prior, r.extra_id))


def _row(cooc, mapping, k: int, shares_k, outside_conf_k, min_member: float) -> AuditRow:
    names, pixels = cooc.source.classes, int(cooc.pixels[k])
    members = mapping.allowed_sets[k]
    base = {
        "extra_id": k,
        "name": cooc.extra.classes[k],
        "kind": mapping.kind(k),
        "allowed": tuple(names[c] for c in members),
        "pixels": pixels,
        "member_shares": {names[c]: float(shares_k[c]) for c in members},
    }
    if pixels == 0:
        return AuditRow(**base, outside_confident=0.0, top_outside="", top_outside_share=0.0, unused=(),
                        changed_by_prior=0.0, suspicion=-1.0)  # fmt: skip
    if not members:  # void: every pixel becomes ignore; name what the teacher mostly sees there
        top = int(np.argmax(shares_k))
        return AuditRow(**base, outside_confident=0.0, top_outside=names[top],
                        top_outside_share=float(shares_k[top]), unused=(), changed_by_prior=1.0,
                        suspicion=0.0)  # fmt: skip
    top = int(np.argmax(outside_conf_k))
    outside = float(outside_conf_k.sum() / pixels)
    unused = tuple(names[c] for c in members if shares_k[c] < min_member)
    return AuditRow(
        **base,
        outside_confident=outside,
        top_outside=names[top] if outside_conf_k[top] else "",
        top_outside_share=float(outside_conf_k[top] / pixels),
        unused=unused,
        changed_by_prior=float(1.0 - shares_k[list(members)].sum()),
        suspicion=outside + UNUSED_WEIGHT * len(unused) / len(members),
    )
