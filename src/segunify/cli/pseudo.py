"""``segunify pseudo-label``: a teacher + ground-truth priors -> a pseudo-label directory.

Runs as one process or under ``torchrun`` / ``accelerate launch`` (each rank takes a disjoint shard,
on CPU too: ``accelerate launch --cpu`` starts one process, so we start the N ranks ourselves, as
``train`` does); restarting with the same ``--out`` resumes. ``--also-without-priors R`` writes the
plain-argmax labels of the same forward pass into a second folder. Layout: :mod:`segunify.pseudo`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from segunify.cli._util import MAX_PIXELS_HELP
from segunify.errors import SegunifyError
from segunify.models.backends import CACHE_DIR as ONNX_CACHE
from segunify.models.backends import DEFAULT_HELP

pseudo_app = typer.Typer(help="Pseudo-label folders.", no_args_is_help=True)


@pseudo_app.command("check")
def check(
    out: str = typer.Argument(..., help="pseudo-label folder (--out of segunify pseudo-label)"),
    json_out: str | None = typer.Option(None, "--json", help="write every missing/stale id as JSON here"),
) -> None:
    """Is the folder complete? Every sample of the run (dataset, root and split from its settings.json)
    has a label PNG made from its current inputs; exit 1 with one line when not (then rerun the same
    pseudo-label command: it resumes)."""
    from segunify.cli import console
    from segunify.io import atomic_write_json
    from segunify.pseudo.check import check_folder

    result = check_folder(out)
    if json_out:
        atomic_write_json(json_out, result.to_dict(), indent=2)
    if not result.complete:
        raise SegunifyError(result.line(), out)
    console.print(f"{out}: {result.line()}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(pseudo_app, name="pseudo")
    app.command("pseudo-label")(pseudo_label)


def pseudo_label(
    teacher: str = typer.Option(
        ..., "--teacher", help="Teacher checkpoint folder (model.safetensors + meta.json)."
    ),
    dataset: str = typer.Option(
        ..., "--dataset", help="Dataset name (segunify datasets list) or a dataset spec .yaml."
    ),
    root: str = typer.Option(..., "--root", help="Dataset root folder."),
    dataset_opt: list[str] = typer.Option(
        None, "--dataset-opt", help="Dataset option key=value (e.g. label_crop=4,18); repeatable."
    ),
    mapping: str = typer.Option(..., "--mapping", help="Mapping CSV or shipped name extra__source."),
    out: str = typer.Option(..., "--out", help="Output folder (resumes when it exists)."),
    also_without_priors: str | None = typer.Option(
        None,
        "--also-without-priors",
        help="Second output folder for the plain teacher argmax, from the same forward pass.",
    ),
    split: str = typer.Option("train", "--split", help="Dataset split."),
    no_priors: bool = typer.Option(False, "--no-priors", help="Plain teacher argmax (ablation)."),
    fill_void: bool = typer.Option(False, "--fill-void", help="Void GT gets the unconstrained argmax."),
    min_confidence: float | None = typer.Option(
        None, "--min-confidence", help="Ignore pixels whose renormalised probability is below P."
    ),
    min_allowed_mass: float | None = typer.Option(
        None,
        "--min-allowed-mass",
        help="Ignore pixels whose GT class's allowed set gets probability < M.",
    ),
    ignore_conflicts: float | None = typer.Option(
        None,
        "--ignore-conflicts",
        help="Ignore pixels where the teacher's top class, with probability >= P (0.5..1), is one the "
        "GT class does not allow.",
    ),
    save_confidence: bool = typer.Option(False, "--save-confidence", help="Also write confidence PNGs."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per teacher batch."),
    size: str | None = typer.Option(None, "--size", help="Teacher input H,W (default: the checkpoint's)."),
    flip: bool = typer.Option(False, "--flip", help="Horizontal-flip test-time augmentation."),
    scales: str = typer.Option("1", "--scales", help="Multi-scale TTA, e.g. 0.75,1,1.25."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision on a GPU."),
    backend: str = typer.Option(
        None,
        "--backend",
        help=f"Teacher runtime: torch or onnx (onnxruntime, CPU only; exported once per size into "
        f"<out>/{ONNX_CACHE}); {DEFAULT_HELP}.",
    ),
    workers: int = typer.Option(2, "--workers", help="DataLoader decoding workers per process."),
    writers: int = typer.Option(2, "--writers", help="PNG writer threads per process."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N samples of the split."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads per process."),
    device: str | None = typer.Option(
        None, "--device", help="cpu or cuda (default: the launcher's / cuda if available)."
    ),
) -> int:
    """Pseudo-label a dataset split with a teacher constrained by ground-truth priors."""
    from segunify.cli._util import (
        accelerate_cpu_processes,
        flag_errors,
        parse_options,
        parse_scales,
        parse_size,
        relaunch,
        set_max_pixels,
    )
    from segunify.pseudo.settings import PseudoSettings

    _check_flags(device, also_without_priors, no_priors)
    options = parse_options(dataset_opt, "--dataset-opt")
    set_max_pixels(max_pixels)
    with flag_errors():
        settings = PseudoSettings(
            priors=not no_priors,
            fill_void=fill_void,
            min_confidence=min_confidence,
            min_allowed_mass=min_allowed_mass,
            ignore_conflicts=ignore_conflicts,
            save_confidence=save_confidence,
            size=parse_size(size),
            flip=flip,
            scales=parse_scales(scales),
            amp=amp,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            writers=writers,
            limit=limit,
        )
    n = accelerate_cpu_processes()
    if n > 1:
        return relaunch(n)
    data = (dataset, root, options, split)
    with flag_errors():  # the backend is checked against the device there
        _execute(teacher, data, mapping, out, settings, also_without_priors, threads, device)
    return 0


def _check_flags(device: str | None, also_without_priors: str | None, no_priors: bool) -> None:
    """Flags that are wrong on their own or together, refused before any work starts."""
    if device not in (None, "cpu", "cuda"):
        raise typer.BadParameter(f"expected cpu or cuda, got {device!r}", param_hint="--device")
    if also_without_priors is not None and no_priors:
        raise typer.BadParameter("needs the priors (drop --no-priors)", param_hint="--also-without-priors")


def _state_and_device(device: str | None):
    """The launcher's ranks on every device: accelerate needs ``cpu=True`` to see them without CUDA.

    The ranks' only collective is a barrier, so a launched GPU run joins them with gloo, not NCCL: NCCL
    refuses two ranks on one GPU (``--num_processes`` above the GPU count, e.g. to keep a GPU busy
    while other ranks decode and write). Rank r uses GPU ``r % device count``."""
    import torch
    from accelerate import PartialState

    if device == "cuda" and not torch.cuda.is_available():
        raise SegunifyError("--device cuda but no CUDA device is available")
    use_cpu = (
        device == "cpu"
        or (device is None and not torch.cuda.is_available())
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    )
    launched = int(os.environ.get("LOCAL_RANK", "-1")) != -1
    state = PartialState(cpu=use_cpu, **({"backend": "gloo"} if launched and not use_cpu else {}))
    if device == "cpu" or (device is None and use_cpu):
        return state, torch.device("cpu")
    if state.device is not None and state.device.type == "cuda":
        return state, state.device
    return state, torch.device("cuda", state.local_process_index % torch.cuda.device_count())


def _progress(state, name: str):
    """A rich progress bar on rank 0 (``None`` elsewhere or with SEGUNIFY_NO_PROGRESS)."""
    if not state.is_main_process or os.environ.get("SEGUNIFY_NO_PROGRESS") is not None:
        return None, None
    from segunify.cli import console
    from segunify.cli._util import progress_bar

    bar = progress_bar(console=console, transient=False)

    def factory(total: int, skipped: int):
        label = name + (f" rank 0/{state.num_processes}" if state.num_processes > 1 else "")
        task = bar.add_task(label, total=total, rate="")
        bar.start()
        t0 = time.perf_counter()

        def advance(n: int) -> None:
            done = bar.tasks[task].completed + n
            rate = done / max(time.perf_counter() - t0, 1e-9)
            bar.update(task, advance=n, rate=f"{rate:.2f} img/s")

        if skipped:
            console.print(f"resuming: {skipped} finished image(s) of this shard checked and skipped")
        return advance

    return bar, factory


def _execute(teacher, data, mapping, out, settings, also, threads, device) -> None:
    """``data``: dataset name or spec, root, options and split."""
    import torch

    from segunify.cli import console
    from segunify.cli._util import make_dataset
    from segunify.mapping import resolve_mapping
    from segunify.pseudo.runner import run_pseudo_label, teacher_from_checkpoint

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    dataset, root, options, split = data
    state, run_device = _state_and_device(device)
    ds = make_dataset(dataset, root, options)
    model, info = teacher_from_checkpoint(teacher, run_device, settings, onnx_cache=Path(out) / ONNX_CACHE)
    mp = resolve_mapping(mapping, ds.taxonomy, info.taxonomy)
    bar, factory = _progress(state, f"pseudo-label {ds.name}/{split}")
    try:
        summary = run_pseudo_label(
            model, info, ds, split, mp, out, settings,
            also_without_priors=also, device=run_device, state=state, progress=factory,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.stop()
    if summary is not None:
        run = summary.run
        rate = run.processed / run.seconds if run.seconds else 0.0
        also_note = f" (and without priors -> {also})" if also is not None else ""
        void = summary.void_gt_pixels / summary.pixels if summary.pixels else 0.0
        console.print(
            f"{summary.images} images -> {out}{also_note}: ignored {summary.ignored_share:.2%} "
            f"(void or unlabelled GT {void:.2%}), "
            f"changed by prior {summary.changed_share:.2%}, mean confidence {summary.mean_confidence:.3f}; "
            f"this run {run.processed} processed, {run.skipped} skipped, {run.seconds:.1f} s "
            f"({rate:.2f} img/s, {run.world_size} process(es))",
            highlight=False,
        )
