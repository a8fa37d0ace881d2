"""Model commands: ``import-weights``, ``export --onnx``, ``predict`` and ``models list``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer

from segunify.cli._util import parse_size, progress_bar, table
from segunify.errors import SegunifyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ONNX_TOLERANCE = 1e-3

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


def import_weights(
    pth: str = typer.Option(..., "--pth", help="weights file (EdgeNets ESPNetv2 .pth state dict)"),
    model: str = typer.Option("espnetv2", "--model", help="registry name (see 'segunify models list')"),
    s: float = typer.Option(2.0, "--s", help="ESPNetv2 width (1.0 or 2.0)"),
    taxonomy: str = typer.Option("cityscapes", "--taxonomy", help="taxonomy the weights predict"),
    out: str = typer.Option(..., "--out", help="checkpoint folder to write"),
    size: str | None = typer.Option("512,1024", "--size", help="inference size H,W stored in the checkpoint"),
) -> None:
    """Turn a pretrained weights file into a segunify checkpoint (safetensors + meta.json)."""
    from segunify.cli import console
    from segunify.models import count_parameters, create_model
    from segunify.models.checkpoint import IMAGENET_MEAN, IMAGENET_STD, save_checkpoint, sha256_file
    from segunify.taxonomy import load_taxonomy

    src = Path(pth)
    if not src.is_file():
        raise SegunifyError("weights file not found", src)
    tax = load_taxonomy(taxonomy)
    kwargs = {"s": s} if model == "espnetv2" else {}
    net = create_model(model, tax.num_classes, weights=src, **kwargs)
    loaded = getattr(net, "weights_loaded", "full")
    if loaded == "encoder-decoder":
        raise SegunifyError(
            f"the weights' classifier does not fit taxonomy {tax.name!r} ({tax.num_classes} classes); "
            "an imported checkpoint must keep its trained head",
            src,
        )
    meta = {
        "taxonomy": tax,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": parse_size(size),
        "source": {"file": src.name, "sha256": sha256_file(src), "head": loaded},
    }
    dest = save_checkpoint(out, net.eval(), meta)
    note = " (untrained background channel dropped)" if loaded == "sliced" else ""
    console.print(
        f"wrote {dest}: {model} {kwargs or ''} {count_parameters(net):,} parameters, "
        f"{tax.num_classes} classes of {tax.name!r}{note}"
    )


def onnx_parity(model, onnx_path: str | Path, size: tuple[int, int], seed: int = 0) -> float:
    """Max abs difference between torch and onnxruntime logits on a seeded random input."""
    import onnxruntime as ort
    import torch

    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 3, *size), dtype=np.float32))
    with torch.inference_mode():
        ref = model(x).float().numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise SegunifyError(f"onnxruntime output shape {got.shape} differs from torch {ref.shape}", onnx_path)
    return float(np.abs(got - ref).max())


def export_onnx(model, out: str | Path, size: tuple[int, int], opset: int = 17) -> None:
    """Export with the TorchScript exporter (fixed input size) into a temp file, renamed when complete."""
    import contextlib
    import io
    import os
    import tempfile
    import warnings

    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, *size),),
                tmp,
                input_names=["image"],
                output_names=["logits"],
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, out)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, SegunifyError):
            raise
        raise SegunifyError(
            f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", out
        ) from None


def export(
    ckpt: str = typer.Argument(..., help="checkpoint folder"),
    onnx: str = typer.Option(..., "--onnx", help="ONNX file to write"),
    size: str | None = typer.Option(None, "--size", help="input size H,W (default: the checkpoint's)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset"),
) -> int:
    """Export a checkpoint to ONNX (input 'image' [1,3,H,W] normalised, output 'logits') and check it
    against onnxruntime; fails when the max abs difference exceeds 1e-3."""
    import torch

    from segunify.cli import console
    from segunify.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(ckpt)
    hw = parse_size(size) or (tuple(meta["input_size"]) if meta.get("input_size") else None)
    if hw is None:
        raise SegunifyError("checkpoint has no input_size; give --size H,W", ckpt)
    torch.manual_seed(0)
    export_onnx(model, onnx, hw, opset)
    diff = onnx_parity(model, onnx, hw)
    ok = diff <= ONNX_TOLERANCE
    console.print(
        f"{'wrote' if ok else 'FAILED'} {onnx}: input [1,3,{hw[0]},{hw[1]}], {meta['num_classes']} classes; "
        f"onnxruntime max abs diff {diff:.3g} ({'<=' if ok else '>'} {ONNX_TOLERANCE:g})"
    )
    if not ok:
        Path(onnx).unlink(missing_ok=True)
        raise SegunifyError(f"ONNX parity check failed: max abs diff {diff:.3g} > {ONNX_TOLERANCE:g}", onnx)
    return 0


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (sorted, not recursive) in named folders."""
    found: list[Path] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise SegunifyError("input not found", path)
    if not found:
        raise SegunifyError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the given input(s)")
    stems: dict[str, Path] = {}
    for p in found:
        if p.stem in stems and stems[p.stem] != p:
            raise SegunifyError(
                f"two inputs share the name {p.stem!r} ({stems[p.stem]}); outputs would collide", p
            )
        stems[p.stem] = p
    return list(dict.fromkeys(found))


def overlay(image: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    return (
        (image.astype(np.float32) * (1 - alpha) + color.astype(np.float32) * alpha).round().astype(np.uint8)
    )


def predict(
    inputs: list[str] = typer.Argument(..., help="image files or folders"),
    model: str = typer.Option(..., "--model", help="checkpoint folder"),
    out: str = typer.Option(..., "--out", help="output folder"),
    size: str | None = typer.Option(None, "--size", help="inference size H,W (default: the checkpoint's)"),
    mode: str = typer.Option("resize", "--mode", help="resize | slide"),
    flip: bool = typer.Option(False, "--flip", help="average with the horizontally flipped image"),
    device: str = typer.Option("cpu", "--device"),
    alpha: float = typer.Option(0.5, "--alpha", help="colour weight of the overlay"),
) -> None:
    """Segment images: <stem>.png (train ids), <stem>_color.png (palette) and <stem>_overlay.png."""
    from segunify.cli import console
    from segunify.io import write_index_png, write_png
    from segunify.labels import read_image
    from segunify.models.inference import Predictor
    from segunify.taxonomy import load_taxonomy

    if not 0.0 <= alpha <= 1.0:
        raise typer.BadParameter(f"expected a weight in [0, 1], got {alpha}", param_hint="--alpha")
    images = collect_images(inputs)
    opts = {"mode": mode, "flip": flip}
    if size is not None:
        opts["size"] = parse_size(size)
    predictor = Predictor.from_checkpoint(model, device=device, **opts)
    meta = predictor.meta
    try:
        palette = load_taxonomy(meta["taxonomy"]).palette() if meta.get("taxonomy") else None
    except SegunifyError:
        palette = None
    if palette is None or len(meta["classes"]) > 255:
        palette = _fallback_palette()
    dest = Path(out)
    t0 = time.perf_counter()
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task("predict", total=len(images), rate="")
        for i, path in enumerate(images, start=1):
            img = read_image(path)
            ids = predictor.predict(img)[0]
            color = palette[ids]
            write_index_png(dest / f"{path.stem}.png", ids)
            write_png(dest / f"{path.stem}_color.png", color)
            write_png(dest / f"{path.stem}_overlay.png", overlay(img, color, alpha))
            bar.update(task, advance=1, rate=f"{i / (time.perf_counter() - t0):.2f} img/s")
    console.print(f"wrote {len(images)} x 3 PNGs to {dest} ({time.perf_counter() - t0:.1f} s)")


def _fallback_palette() -> np.ndarray:
    """Deterministic distinct-ish colours for checkpoints without a shipped taxonomy."""
    rng = np.random.default_rng(0)
    pal = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    pal[255] = 0
    return pal


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
    app.command("import-weights")(import_weights)
    app.command("export")(export)
    app.command("predict")(predict)
