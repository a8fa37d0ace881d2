"""The dataset card of an export: ``dataset_info.json`` (every figure, machine-readable), ``README.md`` (the
same for people: what each part is, how its labels were made, its class shares and its terms) and
``taxonomy.csv`` (the train ids the labels store)."""

from __future__ import annotations

import numpy as np

from segunify import __version__
from segunify.apps.export.parts import ExportPart
from segunify.taxonomy import IGNORE, Taxonomy
from segunify.train.parts import GTPart, PseudoPart

REDISTRIBUTION = {True: "allowed", False: "forbidden", None: "unknown"}


def taxonomy_csv(target: Taxonomy) -> str:
    """The target taxonomy as the labels store it: ``id`` = train id, 255 ignore (a segunify taxonomy
    file, so a dataset spec with ``encoding: id`` reads an export back)."""
    rows = [
        f"# {target.name}: the train ids the label PNGs of this export store (255 = ignore)",
        "id,name,train_id,category,color",
    ]
    for i, (name, cat, color) in enumerate(
        zip(target.classes, target.categories, target.colors, strict=True)
    ):
        rows.append(f"{i},{name},{i},{cat},{color[0]} {color[1]} {color[2]}")
    rows.append(f"{IGNORE},ignore,{IGNORE},void,0 0 0")
    return "\n".join(rows) + "\n"


def part_entry(ep: ExportPart, counts: np.ndarray, target: Taxonomy) -> dict:
    """One part of ``dataset_info.json``: where it comes from, how its labels were made, its shares."""
    adapter, part = ep.part.adapter, ep.part
    pixels = int(counts.sum())
    share = counts / max(pixels, 1)
    entry = {
        "name": ep.name,
        "dataset": adapter.name,
        "spec": str(getattr(adapter, "spec_path", "")) or None,
        "root": str(adapter.root),
        "split": ep.cfg.split,
        "frames": len(ep.samples),
        "weight": ep.cfg.weight,
        "labels": "pseudo-labels" if ep.pseudo else "ground truth",
        "pixels": pixels,
        "ignored_share": round(float(share[IGNORE]), 6),
        "class_share": {c: round(float(share[i]), 6) for i, c in enumerate(target.classes)},
        "licence": adapter.licence or f"not recorded by segunify; see {adapter.homepage or 'the publisher'}",
        "redistribution": REDISTRIBUTION[adapter.redistribution],
        "train_resize": list(ep.cfg.resize) if ep.cfg.resize else None,
    }
    if isinstance(part, GTPart):
        mapping = part.mapping  # identity_mapping's path is "<identity>"
        name = (
            mapping.path if mapping.path and not mapping.path.startswith("<") else f"identity ({target.name})"
        )
        entry["mapping"] = {"name": name, "sha256": mapping.sha256}
        entry |= {"teacher": None, "pseudo_labels": None}
    elif isinstance(part, PseudoPart):
        summary = part.folder.summary
        entry["mapping"] = {"name": summary.mapping.path, "sha256": summary.mapping.sha256}
        entry["teacher"] = {"path": summary.teacher.path, "sha256": summary.teacher.sha256}
        settings = summary.settings.model_dump(mode="json", exclude={"workers", "writers", "batch_size"})
        entry["pseudo_labels"] = {"folder": str(part.folder.path), "settings": settings}
    return entry


def dataset_info(target: Taxonomy, entries: list[dict], layout: str, images: str, config: dict) -> dict:
    return {
        "format": "segunify-export",
        "format_version": 1,
        "created_by": f"segunify {__version__}",
        "layout": layout,
        "images": images,  # linked | copied | embedded (parquet)
        "config": config,
        "taxonomy": {"name": target.name, "classes": list(target.classes), "ignore": IGNORE},
        "frames": sum(e["frames"] for e in entries),
        "parts": entries,
    }


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def readme(info: dict, warnings: list[str]) -> str:
    """The dataset card for people: the same facts as ``dataset_info.json``."""
    parts, tax = info["parts"], info["taxonomy"]
    lines = [
        f"# Compound segmentation dataset ({tax['name']} train ids)",
        "",
        f"Written by `segunify export-dataset` ({info['created_by']}) from the train config "
        f"`{info['config']['path']}` (sha256 `{info['config']['sha256'][:12]}…`): {info['frames']} frames in "
        f"{len(parts)} part(s), every label a PNG of {tax['name']} train ids ({len(tax['classes'])} classes, "
        f"`taxonomy.csv`), 255 = ignore. Ground-truth parts went through their dataset's codec and a one-to-one "
        "mapping; pseudo-labelled parts hold the labels of their pseudo-label folder, unchanged.",
        "",
        *_layout_section(info),
        "## Parts",
        "",
        "| part | dataset | split | frames | labels | mapping (sha256) | teacher weights (sha256) | ignored % |",
        "|---|---|---|---:|---|---|---|---:|",
    ]
    for p in parts:
        teacher = f"`{p['teacher']['sha256'][:12]}…`" if p["teacher"] else "-"
        mapping = f"{p['mapping']['name']} (`{(p['mapping']['sha256'] or '')[:12]}…`)"
        lines.append(
            f"| {p['name']} | {p['dataset']} | {p['split']} | {p['frames']} | {p['labels']} | {mapping} | "
            f"{teacher} | {_pct(p['ignored_share'])} |"
        )
    lines += ["", "Pseudo-label settings (as recorded in each folder's `summary.json`):", ""]
    for p in parts:
        if p["pseudo_labels"]:
            s = p["pseudo_labels"]["settings"]
            shown = ", ".join(f"{k}={v}" for k, v in s.items() if v not in (None, False))
            lines.append(f"- {p['name']}: teacher `{p['teacher']['path']}`; {shown}")
    lines += ["", "## Label shares (% of all pixels)", ""]
    lines += ["| class | " + " | ".join(p["name"] for p in parts) + " |", "|---|" + "---:|" * len(parts)]
    for c in tax["classes"]:
        lines.append(f"| {c} | " + " | ".join(_pct(p["class_share"][c]) for p in parts) + " |")
    lines.append("| ignore (255) | " + " | ".join(_pct(p["ignored_share"]) for p in parts) + " |")
    lines += ["", "## Terms", ""]
    lines += [
        "Each part keeps the terms of the dataset it comes from; most segmentation datasets are licensed for "
        "non-commercial research only. Labels made from a dataset (its converted ground truth, pseudo-labels of "
        "its images) are derived from it. Check every part's terms before sharing this folder.",
        "",
    ]
    lines += [
        f"- {p['name']} ({p['dataset']}): {p['licence']}; redistribution {p['redistribution']}" for p in parts
    ]
    lines += ["", *[f"**Warning:** {w}" for w in warnings]] if warnings else []
    return "\n".join(lines).rstrip() + "\n"


def _layout_section(info: dict) -> list[str]:
    if info["layout"] == "parquet":
        return [
            "## Layout",
            "",
            "`data/<part>-NNNNN.parquet`: columns `image` and `label` (Hugging Face `Image` features: the image "
            "file's bytes; the label as PNG bytes), `part`, `path` (the image's path in its dataset).",
            "",
            "```python",
            "from datasets import load_dataset",
            'ds = load_dataset("parquet", data_files={"train": "data/*.parquet"}, split="train")',
            "```",
            "",
        ]
    how = {"linked": "symbolic links to the dataset's files", "copied": "copies of the dataset's files"}
    return [
        "## Layout",
        "",
        f"`images/<part>/<path in the dataset>` ({how[info['images']]}), `labels/<part>/<same path>.png`, and "
        "`splits/<part>.txt`: one `image<TAB>label` line per frame, paths relative to this folder.",
        "",
    ]
