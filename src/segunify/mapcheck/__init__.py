"""Mappings checked against data: co-occurrence of ground truth and a teacher's unconstrained
predictions (:mod:`.cooccurrence`), a data-driven draft (:mod:`.suggest`), an audit of an existing
mapping (:mod:`.audit`), set-by-set differences (:mod:`.diff`) and the paper authors' file layout
(:mod:`.convert`). How to use them together: docs/mappings.md.
"""

from segunify.mapcheck.audit import AuditRow, audit_mapping
from segunify.mapcheck.convert import Conversion, ConvertedRow, convert_authors_layout
from segunify.mapcheck.cooccurrence import (
    CoOccurrence,
    labelled_pairs,
    labelled_samples,
    teacher_pass,
)
from segunify.mapcheck.diff import RowDiff, diff_mappings, jaccard
from segunify.mapcheck.suggest import SuggestedRow, SuggestRule, draft_csv, heatmap_png, suggest_sets

__all__ = [
    "AuditRow",
    "CoOccurrence",
    "Conversion",
    "ConvertedRow",
    "RowDiff",
    "SuggestRule",
    "SuggestedRow",
    "audit_mapping",
    "convert_authors_layout",
    "diff_mappings",
    "draft_csv",
    "heatmap_png",
    "jaccard",
    "labelled_pairs",
    "labelled_samples",
    "suggest_sets",
    "teacher_pass",
]
