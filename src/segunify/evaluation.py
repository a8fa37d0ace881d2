"""Evaluation: a dataset split + a source of predictions -> confusion matrix -> one typed result.

Shared by ``segunify evaluate``, the training engine's periodic evaluation and the demo:

* :class:`Evaluator` accumulates a confusion matrix from ``(gt, pred)`` arrays or tensors (any device)
  in the dataset's own taxonomy, or across taxonomies through a mapping (predictions in the source
  taxonomy, GT in the extra one), and turns it into an :class:`EvalResult` (its ``to_json()`` is the
  results file). Under data-parallel training, sum ``evaluator.confusion`` across ranks (e.g.
  ``accelerator.reduce(..., "sum")``) before :meth:`Evaluator.result`.
* :func:`evaluate_dataset` runs it over a split, with predictions from a folder of index PNGs
  (:class:`PredDir`) or from a model (:class:`ModelPredictions` around a ``predict_fn(image) -> ids``);
  every bad file becomes a one-line :class:`SegunifyError` naming it.
* :func:`result_table` renders a result as a rich table.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, model_serializer

from segunify.datasets.base import DatasetAdapter, Sample
from segunify.errors import SegunifyError
from segunify.io import atomic_write_bytes
from segunify.jsonio import read_json_object, validate_object
from segunify.labels import read_label_raw
from segunify.mapping import Mapping
from segunify.metrics import (
    as_numpy,
    confusion_matrix_rect,
    cross_taxonomy_scores,
    predicted_share,
    scores,
)
from segunify.taxonomy import IGNORE, Taxonomy

PredictFn = Callable[[np.ndarray], np.ndarray]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassScore(_Frozen):
    """One GT class's figures; ``acc`` is the allowed-set accuracy in cross-taxonomy results."""

    name: str
    iou: float | None
    acc: float | None
    gt_pixels: int
    gt_share: float | None
    pred_share: float | None


class ImageScore(_Frozen):
    """One image's figures (``--per-image``)."""

    id: str
    miou: float | None
    pixel_acc: float | None


# keys a results file holds only where they apply (cross-taxonomy, per image, where it was run)
_ONLY_WHEN_SET = frozenset(
    {"pred_share_source", "allowed_breakdown", "per_image", "dataset", "root", "split", "predictions"}
    | {"seconds", "overlays"}
)


class EvalResult(_Frozen):
    """Scores of predictions against ground truth, in the GT's taxonomy (``mode`` ``same``) or through a
    mapping (``cross``: predictions in ``pred_taxonomy``). Fields are in the results file's key order;
    ``to_json()`` is that file's object, :meth:`from_json` reads one back (also an older one)."""

    mode: Literal["same", "cross"]
    taxonomy: str
    pred_taxonomy: str
    mapping: str | None
    images: int
    pixels: int
    partition: bool
    void_classes: list[str]
    pixel_acc_allowed: float | None
    pred_share_source: dict[str, float | None] | None = None  # cross: share of each source class
    allowed_breakdown: dict[str, dict[str, float]] | None = None  # cross: one-to-many classes
    classes: list[ClassScore]
    miou: float | None
    pixel_acc: float | None
    mean_acc: float | None
    absent_classes: list[str]
    note: str
    confusion: list[list[int]]
    per_image: list[ImageScore] | None = None
    dataset: str | None = None
    root: str | None = None
    split: str | None = None
    predictions: str | None = None
    seconds: float | None = None  # segunify evaluate: wall time
    overlays: list[str] | None = None  # the demo: ids whose predictions it kept

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None or k not in _ONLY_WHEN_SET}

    def to_json(self) -> dict[str, Any]:
        """The results file's JSON object (keys that do not apply are left out, not null)."""
        return self.model_dump()

    @classmethod
    def from_json(cls, data: dict, where: str | Path | None = None) -> EvalResult:
        """A result from its JSON object, or one line naming the first bad field."""
        return validate_object(cls, data, "evaluation result", where)

    @classmethod
    def read(cls, path: str | Path) -> EvalResult:
        return cls.from_json(read_json_object(path, "evaluation result"), path)

    def write(self, path: str | Path) -> None:
        """The results file, atomically."""
        atomic_write_bytes(path, (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8"))

    def class_iou(self) -> dict[str, float | None]:
        """IoU by class name, void classes (mapped to no source class) left out."""
        void = set(self.void_classes)
        return {c.name: c.iou for c in self.classes if c.name not in void}


class Evaluator:
    """Confusion-matrix accumulator for one taxonomy, or two joined by a mapping.

    ``Evaluator(taxonomy)`` scores predictions in the GT's own taxonomy; ``Evaluator(mapping=m)``
    scores source-taxonomy predictions against extra-taxonomy GT (a pixel is correct when the
    predicted class is in the GT class's allowed set).
    """

    def __init__(self, taxonomy: Taxonomy | None = None, mapping: Mapping | None = None):
        if mapping is not None:
            if taxonomy is not None:
                mapping.check_compatible(taxonomy, mapping.source.classes, "the ground truth")
            taxonomy = mapping.extra
        if taxonomy is None:
            raise ValueError("give a taxonomy or a mapping")
        self.taxonomy = taxonomy
        self.mapping = mapping
        self.pred_taxonomy = mapping.source if mapping is not None else taxonomy
        self.shape = (taxonomy.num_classes, self.pred_taxonomy.num_classes)
        self.confusion: np.ndarray | torch.Tensor = np.zeros(self.shape, dtype=np.int64)
        self.images = 0

    def update(self, gt, pred):
        """Add one label map or a batch (same shapes; numpy or torch) and return its own confusion
        matrix. Raises ``ValueError`` for a shape mismatch or predicted ids outside the prediction
        taxonomy on valid pixels."""
        cm = confusion_matrix_rect(gt, pred, *self.shape, ignore_index=IGNORE)
        if isinstance(cm, torch.Tensor) and cm.device.type != "cpu":
            if isinstance(self.confusion, np.ndarray):
                self.confusion = torch.from_numpy(self.confusion).to(cm.device)
            self.confusion = self.confusion + cm
        else:
            self.confusion = self.confusion + as_numpy(cm)
        self.images += 1 if gt.ndim <= 2 else int(gt.shape[0])
        return cm

    def image_score(self, cm, image_id: str) -> ImageScore:
        """``miou`` and ``pixel_acc`` of one confusion matrix of this evaluator's shape (e.g. one image's,
        as returned by :meth:`update`); cross-taxonomy uses the allowed-set rule."""
        cm = as_numpy(cm)
        if self.mapping is None:
            s = scores(cm)
            return ImageScore(id=image_id, miou=_num(s.miou), pixel_acc=_num(s.pixel_acc))
        cross = cross_taxonomy_scores(cm, self.mapping.allowed)
        s = cross.get("scores")
        miou = _num(s.miou) if s is not None else None
        return ImageScore(id=image_id, miou=miou, pixel_acc=_num(cross["pixel_acc_allowed"]))

    def result(self) -> EvalResult:
        """The scores so far. Classes absent from both GT and predictions are excluded from mIoU and
        listed in ``absent_classes``; ``note`` says so in words."""
        cm = as_numpy(self.confusion)
        out: dict = {
            "mode": "cross" if self.mapping is not None else "same",
            "taxonomy": self.taxonomy.name,
            "pred_taxonomy": self.pred_taxonomy.name,
            "mapping": (self.mapping.path or None) if self.mapping is not None else None,
            "images": self.images,
        }
        s, per_class_acc, share = (
            self._same_scores(cm, out) if self.mapping is None else self._cross_scores(cm, out)
        )
        gt_pixels = cm.sum(axis=1)
        if self.mapping is not None:
            gt_pixels = gt_pixels * np.array([bool(a) for a in self.mapping.allowed_sets])
        total = gt_pixels.sum()
        out["classes"] = [
            ClassScore(
                name=name,
                iou=_num(s.iou[i]) if s is not None else None,
                acc=_num(per_class_acc[i]),
                gt_pixels=int(gt_pixels[i]),
                gt_share=float(gt_pixels[i] / total) if total else None,
                pred_share=_num(share[i]) if share is not None else None,
            )
            for i, name in enumerate(self.taxonomy.classes)
        ]
        out.update(self._summary(s, per_class_acc, gt_pixels, out))
        out["note"] = _note(out)
        out["confusion"] = cm.tolist()
        return EvalResult(**out)

    @staticmethod
    def _same_scores(cm: np.ndarray, out: dict):
        """Same taxonomy: the plain scores; adds the pixel count etc. to ``out``."""
        s = scores(cm)
        out.update(pixels=s.pixels, partition=True, void_classes=[], pixel_acc_allowed=None)
        return s, s.acc, predicted_share(cm)

    def _cross_scores(self, cm: np.ndarray, out: dict):
        """Predictions in another taxonomy, scored through the mapping; adds its figures to ``out``.
        ``scores`` is None when the mapping is no partition (no mIoU, only allowed-set accuracy)."""
        gt_names, pred_names = list(self.taxonomy.classes), list(self.pred_taxonomy.classes)
        cross = cross_taxonomy_scores(cm, self.mapping.allowed)
        s = cross.get("scores")
        out.update(
            pixels=cross["pixels"],
            partition=cross["partition"],
            void_classes=[gt_names[i] for i in cross["void_classes"]],
            pixel_acc_allowed=_num(cross["pixel_acc_allowed"]),
            pred_share_source={n: _num(v) for n, v in zip(pred_names, cross["pred_share"], strict=True)},
            allowed_breakdown=_breakdown(cm, self.mapping),
        )
        share = None
        if s is not None and cross["pixels"]:
            share = cross["extra_confusion"].sum(axis=0) / cross["pixels"]
        return s, cross["acc_allowed"], share

    def _summary(self, s, per_class_acc: np.ndarray, gt_pixels: np.ndarray, out: dict) -> dict:
        if s is not None:
            return {
                "miou": _num(s.miou),
                "pixel_acc": _num(s.pixel_acc),
                "mean_acc": _num(s.mean_acc),
                "absent_classes": [self.taxonomy.classes[i] for i in s.absent],
            }
        accs = per_class_acc[~np.isnan(per_class_acc)]
        absent = [
            n
            for i, n in enumerate(self.taxonomy.classes)
            if gt_pixels[i] == 0 and n not in out["void_classes"]
        ]
        return {
            "miou": None,
            "pixel_acc": out["pixel_acc_allowed"],
            "mean_acc": float(accs.mean()) if accs.size else None,
            "absent_classes": absent,
        }


def _breakdown(cm: np.ndarray, mapping: Mapping) -> dict:
    """For each one-to-many extra class: the share of its GT pixels predicted as each allowed source
    class (what the teacher chose inside the allowed set, e.g. CamVid Car -> car / truck / bus)."""
    out = {}
    for k, allowed in enumerate(mapping.allowed_sets):
        total = cm[k].sum()
        if len(allowed) > 1 and total:
            out[mapping.extra.classes[k]] = {
                mapping.source.classes[c]: float(cm[k, c] / total) for c in allowed
            }
    return out


def _note(fields: dict) -> str:
    """The result's note in words, from its fields (being assembled)."""
    parts = []
    absent = fields["absent_classes"]
    if fields["mode"] == "cross" and not fields["partition"]:
        parts.append(
            "the mapping is not a partition, so per-class IoU is undefined; acc is the allowed-set accuracy"
        )
        what = "without ground-truth pixels"
    else:
        what = "absent from both ground truth and prediction"
    parts.append(
        f"{len(absent)} class(es) {what}, excluded from the means: {', '.join(absent)}"
        if absent
        else "no class absent: every class is in the means"
    )
    if fields["void_classes"]:
        parts.append(f"mapped to void and ignored: {', '.join(fields['void_classes'])}")
    return "; ".join(parts)


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float | np.floating) and math.isnan(v)) else float(v)


class PredDir:
    """Predictions stored as uint8 index PNGs named like the labels: ``<pred_dir>/<sample.rel>``."""

    needs_image = False

    def __init__(self, pred_dir: str | Path):
        self.root = Path(pred_dir)
        if not self.root.is_dir():
            raise SegunifyError("prediction folder not found", self.root)

    def describe(self) -> str:
        return f"pred-dir {self.root}"

    def path(self, sample: Sample) -> Path:
        return self.root / sample.rel

    def __call__(self, sample: Sample, image: np.ndarray | None) -> np.ndarray:
        path = self.path(sample)
        if not path.is_file():
            raise SegunifyError(f"prediction file not found (for sample {sample.id!r})", path)
        raw = read_label_raw(path)
        if raw.ndim != 2:
            raise SegunifyError(f"prediction must be a single-channel index PNG, got shape {raw.shape}", path)
        if raw.dtype != np.uint8:
            if raw.max(initial=0) > 255:
                raise SegunifyError(f"prediction ids up to {int(raw.max())} do not fit uint8", path)
            raw = raw.astype(np.uint8)
        return raw


class ModelPredictions:
    """Predictions from a callable ``predict_fn(image RGB uint8 [H, W, 3]) -> uint8 ids [H, W]``."""

    needs_image = True

    def __init__(self, predict_fn: PredictFn, name: str = "model"):
        self.predict_fn = predict_fn
        self.name = name

    @classmethod
    def from_predictor(cls, predictor, name: str = "model") -> ModelPredictions:
        """Wrap a :class:`segunify.models.inference.Predictor` (or anything whose ``predict(images)``
        returns ``[B, H, W]`` ids), e.g. for evaluation during training."""
        return cls(lambda image: predictor.predict(image)[0], name=name)

    def describe(self) -> str:
        return self.name

    def __call__(self, sample: Sample, image: np.ndarray | None) -> np.ndarray:
        ids = self.predict_fn(image)
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        return np.asarray(ids)


def _load(dataset: DatasetAdapter, sample: Sample, needs_image: bool):
    if needs_image:
        image, label = dataset.sample(sample)
        return sample, image, label
    return sample, None, dataset.read_label(sample)


def _prefetch(dataset: DatasetAdapter, samples: list[Sample], needs_image: bool, depth: int = 4) -> Iterator:
    """Read samples in a background thread, at most ``depth`` ahead (PNG decoding releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: deque = deque()
        it = iter(samples)
        for s in it:
            queue.append(pool.submit(_load, dataset, s, needs_image))
            if len(queue) >= depth:
                break
        while queue:
            yield queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(_load, dataset, nxt, needs_image))


def evaluate_dataset(
    dataset: DatasetAdapter,
    split: str,
    predictions: PredDir | ModelPredictions,
    mapping: Mapping | None = None,
    limit: int | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    per_image: bool = False,
    on_pair: Callable[[Sample, np.ndarray | None, np.ndarray, np.ndarray], None] | None = None,
) -> EvalResult:
    """Score ``predictions`` on every sample of ``dataset``'s ``split`` (or the first ``limit``).

    Without ``mapping`` predictions are in the dataset's own taxonomy; with it, in ``mapping.source``.
    Raises :class:`SegunifyError` naming the file for a missing prediction, a size mismatch or
    prediction ids outside the prediction taxonomy. ``per_image`` adds ``per_image`` (id, mIoU, pixel
    accuracy of each sample) to the result; ``on_pair(sample, image or None, label, pred)`` sees every
    scored pair (e.g. to draw pictures of a few).
    """
    evaluator = Evaluator(dataset.taxonomy, mapping)
    samples = dataset.samples(split)
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise SegunifyError(f"dataset {dataset.name!r} has no samples in split {split!r}", dataset.root)
    images = score_samples(
        dataset, samples, predictions, evaluator, on_sample=on_sample, per_image=per_image, on_pair=on_pair
    )
    where = {"dataset": dataset.name, "root": str(dataset.root), "split": split}
    where |= {"predictions": predictions.describe()}
    return evaluator.result().model_copy(update={"per_image": images if per_image else None} | where)


def score_samples(
    dataset: DatasetAdapter,
    samples: list[Sample],
    predictions: PredDir | ModelPredictions,
    evaluator: Evaluator,
    on_sample: Callable[[Sample], None] | None = None,
    per_image: bool = False,
    on_pair: Callable[[Sample, np.ndarray | None, np.ndarray, np.ndarray], None] | None = None,
) -> list[ImageScore]:
    """Add every sample's (label, prediction) pair to ``evaluator``; the one scoring loop of
    :func:`evaluate_dataset` and of evaluation during training (which gives each rank its own
    ``samples`` and sums the confusion matrices). Returns per-image summaries when ``per_image``."""
    images: list[ImageScore] = []
    for sample, image, label in _prefetch(dataset, samples, predictions.needs_image):
        pred = predictions(sample, image)
        where = predictions.path(sample) if isinstance(predictions, PredDir) else sample.image
        if pred.shape != label.shape:
            raise SegunifyError(
                f"prediction size {_wh(pred.shape)} differs from label size {_wh(label.shape)} ({sample.label})",
                where,
            )
        try:
            cm = evaluator.update(label, pred)
        except ValueError as exc:
            raise SegunifyError(
                f"{exc} (prediction taxonomy {evaluator.pred_taxonomy.name!r})", where
            ) from None
        if per_image:
            images.append(evaluator.image_score(cm, sample.id))
        if on_pair is not None:
            on_pair(sample, image, label, pred)
        if on_sample is not None:
            on_sample(sample)
    return images


def _wh(shape) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else str(tuple(shape))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def result_table(result: EvalResult, title: str | None = None):
    """A rich table of a result: per-class IoU, accuracy, GT and predicted pixel share."""
    from rich.table import Table

    cross = result.mode == "cross"
    table = Table(title=title, show_footer=True)
    table.add_column("class", footer="mean")
    table.add_column("IoU %", justify="right", footer=_pct(result.miou))
    table.add_column("allowed acc %" if cross else "acc %", justify="right", footer=_pct(result.mean_acc))
    table.add_column("GT share %", justify="right", footer="100.00" if result.pixels else "-")
    table.add_column("pred share %", justify="right")
    for c in result.classes:
        if c.name in result.void_classes:
            table.add_row(c.name, "void", "", "", "", style="dim")
            continue
        style = "dim" if c.name in result.absent_classes else None
        table.add_row(c.name, _pct(c.iou), _pct(c.acc), _pct(c.gt_share), _pct(c.pred_share), style=style)
    return table


def source_share_table(result: EvalResult):
    """Rich table: how often each source class was predicted (cross-taxonomy results)."""
    from rich.table import Table

    table = Table(title=f"predicted {result.pred_taxonomy} classes (share of evaluated pixels)")
    table.add_column("source class")
    table.add_column("pred share %", justify="right")
    for name, share in (result.pred_share_source or {}).items():
        table.add_row(name, _pct(share))
    return table


def summary_line(result: EvalResult) -> str:
    """One line: mIoU, pixel and mean accuracy, image and pixel counts."""
    miou = "n/a" if result.miou is None else f"{100 * result.miou:.2f}"
    return (
        f"mIoU {miou}  pixel acc {_pct(result.pixel_acc)} %  mean acc {_pct(result.mean_acc)} %  "
        f"({result.images} images, {result.pixels:,} pixels)"
    )
