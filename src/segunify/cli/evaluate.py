"""``segunify evaluate``: score predictions (a folder of index PNGs, or a model checkpoint) on a dataset split."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from segunify.cli._util import (
    MAX_PIXELS_HELP,
    flag_errors,
    make_dataset,
    parse_options,
    parse_scales,
    parse_size,
    progress_bar,
    set_max_pixels,
)
from segunify.errors import SegunifyError
from segunify.mapping import resolve_mapping
from segunify.models.backends import DEFAULT_HELP

if TYPE_CHECKING:
    from segunify.evaluation import EvalResult


def _model_predictions(ckpt: str, opts: dict, device: str, mapping, dataset_taxonomy, backend=None):
    """A :class:`ModelPredictions` for a checkpoint folder, after checking its taxonomy."""
    from segunify.evaluation import ModelPredictions
    from segunify.models.checkpoint import META, load_meta
    from segunify.models.inference import Predictor

    path = Path(ckpt)
    meta = load_meta(path)
    classes = tuple(meta.classes)
    if mapping is not None:
        what = f"the checkpoint {path / META} (taxonomy {meta.taxonomy!r})"
        mapping.check_compatible(dataset_taxonomy, classes, "the dataset", what)
    elif classes != tuple(dataset_taxonomy.classes):
        raise SegunifyError(
            f"checkpoint predicts taxonomy {meta.taxonomy!r} ({len(classes)} classes) but the dataset's "
            f"taxonomy is {dataset_taxonomy.name!r}; give --mapping {dataset_taxonomy.name}__{meta.taxonomy}",
            path / META,
        )
    opts = {k: v for k, v in opts.items() if v is not None}
    predictor = Predictor.from_checkpoint(path, device=device, backend=backend, **opts)
    return ModelPredictions.from_predictor(predictor, name=f"model {path}")


def _mapping(mapping: str, ds, ckpt: str | None):
    """``--mapping`` by the one rule (:func:`segunify.mapping.resolve_mapping`): a file not named
    ``<extra>__<source>`` leads from the dataset's taxonomy to the one the checkpoint names."""
    from segunify.models.checkpoint import load_meta

    source = load_meta(Path(ckpt)).taxonomy if ckpt is not None else None
    mp = resolve_mapping(mapping, ds.taxonomy, source)
    mp.check_compatible(ds.taxonomy, mp.source.classes, f"dataset {ds.name!r}")
    return mp


def _vis_writer(out: Path, ds, mapping, samples, count: int):
    """An ``on_pair`` callback drawing image | GT | prediction | errors for ``count`` evenly spaced samples."""
    from segunify import viz
    from segunify.datasets import evenly

    picks = {s.id for s in evenly(samples, count)}
    pred_tax = mapping.source if mapping is not None else ds.taxonomy
    allowed = mapping.allowed if mapping is not None else None

    def draw(sample, image, label, pred) -> None:
        if sample.id not in picks:
            return
        image = image if image is not None else ds.read_image(sample)
        picture = viz.comparison(
            image, label, [pred], ds.taxonomy, pred_tax, names=["prediction"], allowed=allowed
        )
        viz.save(out / f"{sample.id.replace('/', '_')}.png", picture)

    return draw


Opt = typer.Option


def _model_options(size, flip, mode, stride, scales, pred_dir, model) -> dict:
    """The Predictor options of ``--model`` (refused with ``--pred-dir``)."""
    if (pred_dir is None) == (model is None):
        raise typer.BadParameter(
            "give exactly one of --pred-dir DIR or --model CKPT", param_hint="--pred-dir / --model"
        )
    size_hw = parse_size(size)
    if mode not in ("resize", "slide"):
        raise typer.BadParameter(f"expected resize or slide, got {mode!r}", param_hint="--mode")
    if pred_dir is not None and (size_hw or flip or mode != "resize" or stride or scales):
        raise typer.BadParameter(
            "--size, --flip, --mode, --stride and --scales apply to --model only", param_hint="--pred-dir"
        )
    return {
        "size": size_hw,
        "flip": flip,
        "mode": mode,
        "stride": parse_size(stride, "--stride"),
        "scales": parse_scales(scales),
    }


def _score(ds, split: str, total: int, source, mp, limit, per_image: bool, on_pair, console) -> EvalResult:
    """Run :func:`evaluate_dataset` under a progress bar (``total`` samples); adds the wall time."""
    from segunify.evaluation import evaluate_dataset

    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task(f"evaluating {ds.name} {split}", total=total, rate="")
        start = time.perf_counter()

        def step(_sample) -> None:
            bar.advance(task, 1)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.perf_counter() - start, 1e-9):.1f} img/s")

        result = evaluate_dataset(
            ds, split, source, mapping=mp, limit=limit, on_sample=step, per_image=per_image, on_pair=on_pair
        )
    return result.model_copy(update={"seconds": round(time.perf_counter() - start, 3)})


def _show(result: EvalResult, title: str, mp, show_sources: bool, per_image: bool, console) -> None:
    """The table, the summary line, the note and (``--per-image``) the three worst images."""
    from segunify.evaluation import result_table, source_share_table, summary_line

    console.print(result_table(result, title=title))
    if mp is not None and show_sources:
        console.print(source_share_table(result))
    console.print(summary_line(result), highlight=False)
    if result.note:
        console.print(f"note: {result.note}", markup=False, highlight=False, soft_wrap=True)
    if per_image:
        ranked = sorted(result.per_image or [], key=lambda r: -1 if r.pixel_acc is None else r.pixel_acc)
        worst = ", ".join(
            f"{r.id} ({100 * r.pixel_acc:.1f} %)" for r in ranked[:3] if r.pixel_acc is not None
        )
        console.print(f"lowest pixel accuracy: {worst}", markup=False, highlight=False, soft_wrap=True)


def _write_charts(vis: Path, result: EvalResult, title: str, ds, mp, console) -> None:
    from segunify import viz

    viz.iou_bar_chart(result, vis / "iou.png", title=title)
    viz.save(vis / "legend.png", viz.legend(ds.taxonomy, cols=2))
    if mp is not None:
        viz.save(vis / "legend_source.png", viz.legend(mp.source, cols=2))
    console.print(f"wrote pictures to {vis}", markup=False, highlight=False)


def evaluate(
    dataset: str = Opt(
        ..., "--dataset", help="dataset name (segunify datasets list) or a dataset spec .yaml"
    ),
    root: str = Opt(..., "--root", help="dataset root in the publisher's layout"),
    split: str = Opt(..., "--split", help="split to evaluate"),
    pred_dir: str | None = Opt(
        None, "--pred-dir", help="folder of uint8 index PNGs named like the labels (<pred-dir>/<label path>)"
    ),
    model: str | None = Opt(None, "--model", help="checkpoint folder (model.safetensors + meta.json)"),
    mapping: str | None = Opt(
        None,
        "--mapping",
        help="mapping CSV or shipped <extra>__<source> name: predictions are in the source taxonomy, "
        "the dataset's taxonomy is the extra one (cross-taxonomy evaluation)",
    ),
    json_out: str | None = Opt(
        None, "--json", help="write the full result as JSON here (atomic; never inside the dataset root)"
    ),
    overwrite: bool = Opt(False, "--overwrite", help="replace an existing --json file"),
    size: str | None = Opt(None, "--size", help="--model: inference size H,W (default: the checkpoint's)"),
    flip: bool = Opt(False, "--flip", help="--model: average with the horizontally flipped image"),
    mode: str = Opt(
        "resize", "--mode", help="--model: 'resize' (whole image at --size) or 'slide' (windows of --size)"
    ),
    stride: str | None = Opt(None, "--stride", help="--model --mode slide: window stride H,W (default 2/3)"),
    scales: str | None = Opt(
        None, "--scales", help="--model: test-time scales, e.g. 0.75,1,1.25 (probabilities averaged)"
    ),
    device: str = Opt("cpu", "--device", help="--model: torch device (cpu, cuda, cuda:1, ...)"),
    backend: str | None = Opt(
        None,
        "--backend",
        help=f"--model: torch or onnx (onnxruntime, CPU only, exported per size; {DEFAULT_HELP})",
    ),
    dataset_opt: list[str] = Opt(
        None,
        "--dataset-opt",
        help="dataset option key=value (e.g. label_crop=4,18 for the KITTI sample); repeatable",
    ),
    limit: int | None = Opt(None, "--limit", min=1, help="evaluate only the first N samples"),
    per_image: bool = Opt(
        False, "--per-image", help="add each image's mIoU and pixel accuracy to the JSON and list the worst"
    ),
    vis: str | None = Opt(
        None,
        "--vis",
        help="write pictures here: image|GT|prediction|errors for a few samples, IoU chart, legends",
    ),
    vis_count: int = Opt(4, "--vis-count", min=1, help="--vis: samples to draw (evenly spaced)"),
    show_sources: bool = Opt(
        True,
        "--source-shares/--no-source-shares",
        help="cross-taxonomy: also list how often each source class was predicted",
    ),
    max_pixels: int | None = Opt(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Per-class IoU / accuracy / pixel shares and mIoU of predictions on a dataset split (classes absent
    from both ground truth and prediction are excluded from the means and listed)."""
    from segunify.cli import console
    from segunify.evaluation import PredDir

    set_max_pixels(max_pixels)
    model_opts = _model_options(size, flip, mode, stride, scales, pred_dir, model)
    ds = make_dataset(dataset, root, parse_options(dataset_opt, "--dataset-opt"))
    samples = ds.samples(split)[:limit] if limit else ds.samples(split)
    _check_outputs(json_out, vis, overwrite, ds, samples, pred_dir or model, mapping)  # before scoring
    mp = _mapping(mapping, ds, model) if mapping else None
    if pred_dir is not None:
        source = PredDir(pred_dir)
    else:
        with flag_errors():
            source = _model_predictions(model, model_opts, device, mp, ds.taxonomy, backend)  # type: ignore[arg-type]
    on_pair = _vis_writer(Path(vis), ds, mp, samples, vis_count) if vis else None
    result = _score(ds, split, len(samples), source, mp, limit, per_image, on_pair, console)
    title = f"{ds.name} {split}: {source.describe()}" + (f" via {mp.path}" if mp is not None else "")
    _show(result, title, mp, show_sources, per_image, console)
    if vis:
        _write_charts(Path(vis), result, title, ds, mp, console)
    if json_out:
        result.write(json_out)
        console.print(f"wrote {json_out}", markup=False, highlight=False)


def _check_outputs(json_out, vis, overwrite: bool, ds, samples, predictions: str, mapping) -> None:
    """``--json`` and ``--vis`` by the one output policy: apart from everything read (dataset root and
    sample folders, the predictions or checkpoint, a mapping file); an existing JSON only with
    ``--overwrite``; the picture folder claimed with its marker."""
    from segunify.outputs import check_apart, check_output_file, claim_folder, sample_inputs

    inputs = [*sample_inputs(ds.root, samples), (predictions, "the predictions read")]
    if mapping is not None and Path(mapping).is_file():
        inputs.append((mapping, "the mapping file"))
    if json_out:
        check_output_file(json_out, overwrite, inputs)
    if vis:
        check_apart([vis], inputs)
        claim_folder(vis, "vis")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
