"""Writing an export: claiming the output folder, the per-part records a rerun resumes from, and the
two layouts (plain files, parquet shards). Every file goes through :mod:`segunify.io` (temp + rename)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from segunify.apps.export.parts import ExportPart
from segunify.errors import SegunifyError
from segunify.io import atomic_copy, atomic_symlink, atomic_write_bytes, atomic_write_json, encode_png
from segunify.jsonio import read_json_object
from segunify.labels import read_label_raw
from segunify.outputs import Inputs, check_apart, claim_folder, marker_name

FORMAT = "segunify-export"
KIND = "export"  # the output policy's marker kind: .segunify-export
RECORDS = ".parts"
SHARD_BYTES = 256 << 20  # parquet shards of about this size (the Hub's viewer wants < 500 MB)
Advance = Callable[[int], None]


def claim_output(out: Path, layout: str, inputs: Inputs) -> None:
    """Make ``out`` an export folder by the one output policy (:mod:`segunify.outputs`: apart from every
    ``input``, marker ``.segunify-export`` first, a foreign folder refused), for one layout: a folder
    holding an export of the other layout is refused. Writers hold ``folder_lock(out, "export")``."""
    check_apart([out], inputs)
    marker = out / marker_name(KIND)
    if marker.is_file():
        have = read_json_object(marker, "export marker").get("layout")
        if have != layout:
            raise SegunifyError(f"this folder holds a {have} export, not {layout}: use another folder", out)
    claim_folder(out, KIND, {"format": FORMAT, "layout": layout})


# ----------------------------------------------------------------------------------------- part records
def read_record(out: Path, name: str) -> dict | None:
    path = out / RECORDS / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return read_json_object(path, "export part record")
    except SegunifyError:
        return None  # a damaged record only means: redo the part


def write_record(out: Path, name: str, record: dict) -> None:
    atomic_write_json(out / RECORDS / f"{name}.json", record, indent=1)


def recorded_parts(out: Path) -> list[str]:
    folder = out / RECORDS
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def clear_part(out: Path, name: str) -> None:
    """Remove what this export wrote for part ``name`` (its folders, split list, shards, record)."""
    for folder in (out / "images" / name, out / "labels" / name):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    for path in [out / "splits" / f"{name}.txt", *sorted((out / "data").glob(f"{name}-*.parquet"))]:
        path.unlink(missing_ok=True)
    (out / RECORDS / f"{name}.json").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ plain
def _image_done(link: Path, source: Path, mode: str) -> bool:
    if mode == "linked":
        return link.is_symlink() and os.readlink(link) == str(source.resolve())
    return link.is_file() and not link.is_symlink() and link.stat().st_size == source.stat().st_size


def write_plain(out: Path, ep: ExportPart, mode: str, resume: bool, advance: Advance) -> np.ndarray:
    """``images/<part>/<rel>`` (a link to the dataset's file, or a copy), ``labels/<part>/<rel>.png`` and
    ``splits/<part>.txt``; returns the label counts [256]. With ``resume``, frames whose files are in
    place (written by an interrupted run of the same inputs) are read back, not redone."""
    counts = np.zeros(256, dtype=np.int64)
    lines = []
    for j, s in enumerate(ep.samples):
        image = out / "images" / ep.name / ep.image_rel(s)
        label_path = out / "labels" / ep.name / ep.label_rel(s)
        if resume and label_path.is_file() and _image_done(image, s.image, mode):
            label = read_label_raw(label_path)
        else:
            label = ep.label(j)
            atomic_write_bytes(label_path, encode_png(label))
            if mode == "linked":
                atomic_symlink(s.image.resolve(), image)
            else:
                atomic_copy(s.image, image)
        counts += np.bincount(label.ravel(), minlength=256)
        lines.append(f"{image.relative_to(out).as_posix()}\t{label_path.relative_to(out).as_posix()}\n")
        advance(1)
    atomic_write_bytes(out / "splits" / f"{ep.name}.txt", "".join(lines).encode("utf-8"))
    return counts


# ---------------------------------------------------------------------------------------------- parquet
def parquet_schema():
    """``image``, ``label`` (Hugging Face ``Image`` features: struct of bytes + path; the label is a PNG of
    train ids), ``part``, ``path``; the schema metadata tells ``datasets`` the features."""
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    string = {"dtype": "string", "_type": "Value"}
    features = {"image": {"_type": "Image"}, "label": {"_type": "Image"}, "part": string, "path": string}
    schema = pa.schema([("image", image), ("label", image), ("part", pa.string()), ("path", pa.string())])
    return schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _write_shard(path: Path, rows: dict[str, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table(rows, schema=parquet_schema()), buffer)
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())


def write_parquet(out: Path, ep: ExportPart, advance: Advance) -> np.ndarray:
    """``data/<part>-NNNNN.parquet`` shards of about :data:`SHARD_BYTES`; returns the label counts."""
    counts = np.zeros(256, dtype=np.int64)
    rows: dict[str, list] = {"image": [], "label": [], "part": [], "path": []}
    size, shard = 0, 0
    for j, s in enumerate(ep.samples):
        label = ep.label(j)
        counts += np.bincount(label.ravel(), minlength=256)
        try:
            image = s.image.read_bytes()
        except OSError as exc:
            raise SegunifyError(f"cannot read image: {exc.strerror or exc}", s.image) from None
        png = encode_png(label)
        rows["image"].append({"bytes": image, "path": ep.image_rel(s)})
        rows["label"].append({"bytes": png, "path": ep.label_rel(s)})
        rows["part"].append(ep.name)
        rows["path"].append(ep.image_rel(s))
        size += len(image) + len(png)
        advance(1)
        if size >= SHARD_BYTES:
            _write_shard(out / "data" / f"{ep.name}-{shard:05d}.parquet", rows)
            rows = {k: [] for k in rows}
            size, shard = 0, shard + 1
    if rows["part"]:
        _write_shard(out / "data" / f"{ep.name}-{shard:05d}.parquet", rows)
    return counts
