"""Prior-constrained pseudo-labelling: :mod:`~segunify.pseudo.priors` (pure tensor op),
:mod:`~segunify.pseudo.runner` (sharding, loader -> teacher -> writer), :mod:`~segunify.pseudo.store`
(the on-disk format below, resume, safety), :mod:`~segunify.pseudo.stats` (figures, typed summary).

A pseudo-label directory (``--out`` of ``segunify pseudo-label``) is a dataset for the training engine:
images come from the same dataset adapter (``create_dataset(summary.dataset, root)``, split
``summary.split``), labels from this folder. Layout::

    <out>/<sample.rel>              uint8 index PNG of source train ids (taxonomy
                                    summary.source_taxonomy), 255 = ignore, same size as the image;
                                    sample.rel is the GT label's path relative to the dataset root
    <out>/confidence/<sample.rel>   optional uint8 PNG, round(confidence * 255) (--save-confidence)
    <out>/manifest.jsonl            one JSON line per image, in the dataset's sample order: id, input,
                                    label, output, confidence, signature (size, mtime_ns and
                                    ctime_ns of image and label), height, width, pixels, ignored, changed,
                                    mean_confidence, class_pixels [C], extra_pixels [K+1], extra_changed [K]
    <out>/summary.json              :class:`~segunify.pseudo.stats.PseudoSummary`: images, pixels,
                                    ignored, changed (+ _share), mean_confidence, class_pixels and
                                    class_share {source class}, extra_classes {extra class: kind, pixels,
                                    changed, changed_share}, void_gt_pixels, settings, teacher, dataset,
                                    split, root, source_taxonomy, extra_taxonomy, mapping, run (timings)
    <out>/settings.json             what determines the outputs (incl. the resolved dataset root); a
                                    restart with other settings or another root refuses
    <out>/.segunify-pseudo          marker: this folder was created by segunify pseudo-label
    <out>/.lock                     advisory lock (pid of the run writing the folder)
    <out>/.segunify-onnx/           --backend onnx: checked exports, each with its sha256 beside it
    <out>/.parts/manifest-*.jsonl   per-rank journals (a line is appended only after its PNGs are in
                                    place); merged into manifest.jsonl at the end, read on restart

"changed" counts labelled pixels where the prior overruled the teacher: the label's probability is
below the teacher's maximum, i.e. it differs from the plain argmax (exact ties aside). Shares of
``changed``/``class_pixels`` are over labelled (non-ignored) pixels; ``extra_pixels`` has K+1 entries,
the last counting void/ignore GT. ``mean_confidence`` is over labelled pixels (singleton classes count 1).

Readers go through :class:`~segunify.pseudo.folder.PseudoFolder`: the typed summary (fields ``dataset``,
``split``, ``source_taxonomy``, ...), the label of each sample (``<out>/<sample.rel>``), and what the
folder was made for: ``train`` checks the dataset, split and taxonomies, the root, mapping and teacher,
and each sample's signature against the manifest. A ``soft/`` folder that older versions wrote beside
the labels (``--soft``, removed) is ignored.

Change detection: a sample is redone on resume (and refused by ``train``) when the size, mtime or ctime
of its image or label differs from its record. ctime is set by the kernel on every change of a file,
including an edit that puts size and mtime back, so no content hash is needed to see one; it also
changes on ``chmod``/``chown`` or a copy (``cp -a``, ``rsync -a``), after which those samples are
redone. A record of a folder written before ctime was recorded (four numbers) is judged by the rule it
was made under, size and mtime, by resume and ``train`` alike; a sample redone gets a record with ctime.
"""

from __future__ import annotations

from segunify.pseudo.folder import PseudoFolder
from segunify.pseudo.priors import (
    PriorTable,
    apply_priors,
    label_probs,
    plain_argmax,
    prior_table,
    score_at,
)
from segunify.pseudo.runner import run_pseudo_label
from segunify.pseudo.settings import PseudoSettings, TeacherInfo
from segunify.pseudo.stats import PseudoSummary
from segunify.pseudo.store import load_summary, pseudo_label_path

__all__ = [
    "PriorTable",
    "PseudoFolder",
    "PseudoSettings",
    "PseudoSummary",
    "TeacherInfo",
    "apply_priors",
    "label_probs",
    "load_summary",
    "plain_argmax",
    "prior_table",
    "pseudo_label_path",
    "run_pseudo_label",
    "score_at",
]
