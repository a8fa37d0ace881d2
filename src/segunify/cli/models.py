"""Model commands: ``import-weights``, ``export --onnx``, ``predict``, ``models list`` and ``models weights``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from segunify.cli._util import (
    MAX_PIXELS_HELP,
    flag_errors,
    parse_options,
    parse_size,
    progress_bar,
    set_max_pixels,
    table,
)
from segunify.errors import SegunifyError
from segunify.models.backends import DEFAULT_HELP

models_app = typer.Typer(help="The model zoo.", no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """List the registered models."""
    from segunify.cli import console
    from segunify.models import model_entries

    t = table("model", "description")
    for entry in model_entries():
        t.add_row(entry.name, entry.description)
    console.print(t)


@models_app.command("weights")
def list_weights() -> None:
    """List the pretrained weights segunify knows: files for 'segunify import-weights NAME', and hub
    checkpoints to download yourself (nothing downloads at run time) for 'segunify import-weights DIR'."""
    from segunify.cli import console
    from segunify.models.hub import hub_table
    from segunify.models.pretrained import pretrained_table

    t = table("name", "model", "taxonomy", "input H,W", "file", "licence")
    for e in pretrained_table().values():
        opts = ", ".join(f"{k}={v}" for k, v in e.model_kwargs.items())
        t.add_row(
            e.name, f"{e.model} {opts}", e.taxonomy, f"{e.input_size[0]},{e.input_size[1]}", e.file, e.license
        )
    console.print(t)
    lines = ["hub checkpoints: download one yourself, then 'segunify import-weights DIR --out CKPT'"]
    for h in hub_table().values():
        size = f"{h.size_mb:g} MB" if h.size_mb else "size: see the hub"
        lines += [
            f"  {h.id}  ({h.model}, {h.taxonomy}, {size})",
            f"    get it:  {h.command()}",
            f"    licence: {h.license}",
        ]
    lines.append("(notes on each: src/segunify/models/hub.json)")
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _model_options(pairs: list[str] | None, s: float | None) -> dict:
    """``--model-opt key=value`` (values parsed as YAML scalars) plus the older ``--s``."""
    import yaml

    opts = {k: yaml.safe_load(v) for k, v in parse_options(pairs, "--model-opt").items()}
    if s is not None:
        opts["s"] = s
    return opts


def _resolve_entry(name: str | None, pth: str | None, model: str | None, taxonomy: str | None):
    """The table entry for NAME or for a known ``--pth`` file (None for an unknown file), and the file."""
    from segunify.models.pretrained import get_pretrained, identify

    if name is None and pth is None:
        raise typer.BadParameter("give a pretrained NAME (see 'segunify models weights') or --pth FILE")
    src = Path(pth) if pth is not None else get_pretrained(name).locate()  # type: ignore[arg-type]
    if not src.is_file():
        raise SegunifyError("weights file not found", src)
    entry = get_pretrained(name) if name is not None else identify(src)
    if entry is None:
        if model is None or taxonomy is None:
            raise SegunifyError(
                "weights file not in the pretrained table ('segunify models weights'); give --model, "
                "--taxonomy and the model's options (--model-opt key=value)",
                src,
            )
        return None, src
    if name is not None:
        entry.verify(src)
    return entry, src


def import_weights(
    name: str | None = typer.Argument(
        None,
        help="pretrained weights name ('segunify models weights') or a from_pretrained folder "
        "(config.json + model.safetensors) of a SegFormer or Mask2Former",
    ),
    pth: str | None = typer.Option(
        None, "--pth", help="weights file (default: the NAME's file under $SEGUNIFY_DATA/weights)"
    ),
    out: str = typer.Option(..., "--out", help="checkpoint folder to write (new or empty)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a segunify checkpoint at --out"),
    size: str | None = typer.Option(None, "--size", help="inference size H,W (default: the weights' own)"),
    model: str | None = typer.Option(None, "--model", help="unlisted files: registry name ('models list')"),
    taxonomy: str | None = typer.Option(
        None, "--taxonomy", help="taxonomy the head predicts (a folder's id2label is checked against it)"
    ),
    model_opt: list[str] = typer.Option(None, "--model-opt", help="unlisted files: model option key=value"),
    s: float | None = typer.Option(None, "--s", help="unlisted files: ESPNetv2 width (= --model-opt s=...)"),
    mean: str | None = typer.Option(
        None, "--mean", help="normalisation mean R,G,B in 0-1 units (default: the weights' own)"
    ),
    std: str | None = typer.Option(None, "--std", help="normalisation std R,G,B in 0-1 units (with --mean)"),
) -> None:
    """Turn pretrained weights into a segunify checkpoint (safetensors + meta.json).

    Weights listed in the pretrained table need only their NAME (or just --pth: a listed file is
    recognised by its sha256). A from_pretrained folder (e.g. from 'huggingface-cli download') needs
    nothing else when it holds preprocessor_config.json: family and sizes come from config.json, the
    taxonomy from its id2label. --out must be new, empty or (with --overwrite) a segunify checkpoint.
    """
    from segunify.cli._util import parse_triple

    norm = parse_triple(mean, "--mean"), parse_triple(std, "--std")
    if (norm[0] is None) != (norm[1] is None):
        raise typer.BadParameter("give --mean and --std together", param_hint="--mean/--std")
    if name is not None and Path(name).is_dir():
        if pth is not None or model is not None or model_opt or s is not None:
            raise typer.BadParameter("a from_pretrained folder takes no --pth, --model, --model-opt or --s")
        return _import_folder(Path(name), out, taxonomy, norm, parse_size(size), overwrite)
    _refuse_hub_id(name)
    _import_file(name, pth, out, overwrite, size, model, taxonomy, _model_options(model_opt, s), norm)


def _refuse_hub_id(name: str | None) -> None:
    """A hub id given where a local folder is needed: say how to get the folder (nothing downloads)."""
    from segunify.models.hub import hub_table

    entry = hub_table().get(name or "")
    if entry is not None:
        raise SegunifyError(
            f"{name!r} is a hub id: download it first ({entry.command()}), then "
            "'segunify import-weights DIR --out CKPT'"
        )
    if name is not None and "/" in name and not Path(name).exists():
        raise SegunifyError(
            "no such folder; a hub id must be downloaded first (huggingface-cli download ID --local-dir DIR)",
            name,
        )


def _import_file(name, pth, out, overwrite, size, model, taxonomy, opts, norm) -> None:
    """A listed weights file (by NAME or recognised --pth) or an unlisted one with the fallback flags."""
    from segunify.cli import console
    from segunify.models import count_parameters
    from segunify.models.pretrained import import_weights as run_import

    entry, src = _resolve_entry(name, pth, model, taxonomy)
    dest, net, meta = run_import(
        src,
        out,
        entry,
        model=model,
        model_kwargs=opts,
        taxonomy=taxonomy,
        input_size=parse_size(size),
        overwrite=overwrite,
        mean=norm[0],
        std=norm[1],
    )
    note = " (untrained background channel dropped)" if meta.source.head == "sliced" else ""
    what = entry.name if entry else f"{meta.model} {meta.model_kwargs}"
    console.print(
        f"wrote {dest}: {what}, {count_parameters(net):,} parameters, "
        f"{meta.num_classes} classes of {meta.taxonomy!r}{note}",
        markup=False,
        highlight=False,
    )


def _import_folder(folder: Path, out: str, taxonomy, norm, size, overwrite: bool) -> None:
    from segunify.cli import console
    from segunify.models import count_parameters
    from segunify.models.hub import import_hub_folder

    dest, net, meta, prep = import_hub_folder(
        folder, out, taxonomy=taxonomy, mean=norm[0], std=norm[1], size=size, overwrite=overwrite
    )
    hw = f"{prep.input_size[0]}x{prep.input_size[1]}" if prep.input_size else "each image's own size"
    console.print(
        f"wrote {dest}: {meta.model} from {folder} ({count_parameters(net):,} parameters), "
        f"{meta.num_classes} classes of {meta.taxonomy!r} (id2label matched); input {hw}, "
        f"mean {_fmt(meta.mean)} std {_fmt(meta.std)} from {prep.origin}",
        markup=False,
        highlight=False,
    )


def _fmt(values) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def export(
    ckpt: str = typer.Argument(..., help="checkpoint folder"),
    onnx: str = typer.Option(..., "--onnx", help="ONNX file to write"),
    size: str | None = typer.Option(None, "--size", help="input size H,W (default: the checkpoint's)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --onnx file"),
) -> int:
    """Export a checkpoint to ONNX (input 'image' [1,3,H,W] normalised, output 'logits') and check it
    against onnxruntime; fails when the max abs difference exceeds 1e-3."""
    import torch

    from segunify.cli import console
    from segunify.models.checkpoint import load_checkpoint
    from segunify.models.onnx import ONNX_TOLERANCE, check_exportable, export_checked
    from segunify.outputs import check_output_file

    check_output_file(onnx, overwrite, [(ckpt, "the checkpoint")])
    model, meta = load_checkpoint(ckpt)
    check_exportable(model, ckpt)
    hw = parse_size(size) or meta.input_size
    if hw is None:
        raise SegunifyError("checkpoint has no input_size; give --size H,W", ckpt)
    torch.manual_seed(0)
    diff = export_checked(model, onnx, hw, opset)
    console.print(
        f"wrote {onnx}: input [1,3,{hw[0]},{hw[1]}], {meta.num_classes} classes; "
        f"onnxruntime max abs diff {diff:.3g} (<= {ONNX_TOLERANCE:g})"
    )
    return 0


def predict(
    inputs: list[str] = typer.Argument(..., help="image files or folders"),
    model: str = typer.Option(..., "--model", help="checkpoint folder"),
    out: str = typer.Option(
        ..., "--out", help="output folder: new, empty or an earlier predict's (never inside an input folder)"
    ),
    to: str | None = typer.Option(
        None, "--to", help="write the predictions in this taxonomy (through --mapping; sets must partition)"
    ),
    mapping: str | None = typer.Option(
        None, "--mapping", help="mapping CSV or <to>__<model taxonomy> (default: the shipped one for --to)"
    ),
    raw_ids: bool = typer.Option(False, "--raw-ids", help="write raw label ids (e.g. Cityscapes labelIds)"),
    size: str | None = typer.Option(None, "--size", help="inference size H,W (default: the checkpoint's)"),
    mode: str = typer.Option("resize", "--mode", help="resize | slide"),
    flip: bool = typer.Option(False, "--flip", help="average with the horizontally flipped image"),
    device: str = typer.Option("cpu", "--device"),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help=f"torch | onnx (onnxruntime, CPU only, exported per size; {DEFAULT_HELP})",
    ),
    alpha: float = typer.Option(0.5, "--alpha", help="colour weight of the overlay"),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help=MAX_PIXELS_HELP),
) -> None:
    """Segment images: <stem>.png (ids), <stem>_color.png (palette) and <stem>_overlay.png, in the
    checkpoint's taxonomy or, with --to, in another one."""
    from segunify.cli import console
    from segunify.io import write_png
    from segunify.labels import read_image
    from segunify.models.inference import Predictor
    from segunify.models.predict import collect_images, output_spec, prepare_output
    from segunify.outputs import folder_lock
    from segunify.viz import blend

    if not 0.0 <= alpha <= 1.0:
        raise typer.BadParameter(f"expected a weight in [0, 1], got {alpha}", param_hint="--alpha")
    set_max_pixels(max_pixels)
    images = collect_images(inputs)
    opts = {"mode": mode, "flip": flip}
    if size is not None:
        opts["size"] = parse_size(size)
    with flag_errors():
        predictor = Predictor.from_checkpoint(model, device=device, backend=backend, **opts)
        spec = output_spec(predictor.meta, to, mapping, raw_ids, where=model)
    plan = prepare_output(out, images, [*inputs, model])
    t0 = time.perf_counter()
    with folder_lock(out, "predict"), progress_bar(console=console, transient=True) as bar:
        task = bar.add_task("predict", total=len(images), rate="")
        for i, (path, (ids_path, color_path, overlay_path)) in enumerate(plan.items(), start=1):
            img = read_image(path)
            pred = predictor.predict(img)[0]
            color = spec.colors[pred]
            write_png(ids_path, spec.ids[pred])
            write_png(color_path, color)
            write_png(overlay_path, blend(img, color, alpha))
            bar.update(task, advance=1, rate=f"{i / (time.perf_counter() - t0):.2f} img/s")
    kind = "raw ids" if spec.raw_ids else "train ids"
    console.print(
        f"wrote {len(images)} x 3 PNGs ({kind} of {spec.taxonomy!r}) to {out} ({time.perf_counter() - t0:.1f} s)",
        markup=False,
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.command("import-weights")(import_weights)
    app.command("export")(export)
    app.command("predict")(predict)
