"""Where two mappings of the same extra/source pair disagree, set by set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from segunify.errors import SegunifyError
from segunify.mapping import Mapping


@dataclass(frozen=True)
class RowDiff:
    extra_id: int
    name: str
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    both: tuple[str, ...]

    @property
    def differs(self) -> bool:
        return bool(self.only_a or self.only_b)

    @property
    def jaccard(self) -> float:
        """|A & B| / |A | B|; two void rows agree (1.0)."""
        union = len(self.both) + len(self.only_a) + len(self.only_b)
        return len(self.both) / union if union else 1.0

    def to_json(self) -> dict:
        return {
            "extra_id": self.extra_id,
            "name": self.name,
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "both": list(self.both),
            "jaccard": self.jaccard,
        }


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """Jaccard index of two allowed sets; two empty (void) sets agree."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def diff_mappings(a: Mapping, b: Mapping) -> list[RowDiff]:
    """Every row of the two mappings (``differs`` tells the disagreeing ones); both must map the same
    extra taxonomy to the same source taxonomy (compared by class names, in order)."""
    if tuple(a.source.classes) != tuple(b.source.classes):
        raise SegunifyError(
            f"not the same pair: source taxonomy {b.source.name!r} differs from {a.source.name!r} of {a.path}",
            b.path or None,
        )
    if tuple(a.extra.classes) != tuple(b.extra.classes):
        raise SegunifyError(
            f"not the same pair: extra taxonomy {b.extra.name!r} differs from {a.extra.name!r} of {a.path}",
            b.path or None,
        )
    names = a.source.classes
    rows = []
    for k, (sa, sb) in enumerate(zip(a.allowed_sets, b.allowed_sets, strict=True)):
        rows.append(
            RowDiff(
                extra_id=k,
                name=a.extra.classes[k],
                only_a=tuple(names[c] for c in sa if c not in sb),
                only_b=tuple(names[c] for c in sb if c not in sa),
                both=tuple(names[c] for c in sa if c in sb),
            )
        )
    return rows
