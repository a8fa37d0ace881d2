"""The demo report from a hand-made results dict: files, the paper table's cells (read back with an HTML
parser), goals, escaping, the JSON round trip, overlay pictures."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import pytest

from segunify.apps.demo.report import overlay_picture, pct, points, render_html, write_report
from segunify.errors import SegunifyError
from segunify.labels import read_image
from segunify.mapping import load_mapping
from segunify.taxonomy import load_taxonomy

MODELS = ("T", "S_P", "S_R")


def _block(taxonomy: str, base: float, mapping: str | None) -> dict:
    classes = list(load_taxonomy(taxonomy).classes)
    block = {"dataset": taxonomy, "taxonomy": taxonomy, "split": "val", "images": 3, "mapping": mapping}
    block |= {"size": [64, 128], "overlays": ["val/a"], "note": ""}
    for i, m in enumerate(MODELS):
        iou = {c: round(base + 0.05 * i + 0.01 * k, 4) for k, c in enumerate(classes)}
        block[m] = {"miou": float(np.mean(list(iou.values()))), "pixel_acc": 0.9, "iou": iou}
    return block


def synthetic_results() -> dict:
    datasets = {
        "cityscapes": _block("cityscapes", 0.5, None),
        "camvid": _block("camvid", 0.6, "camvid__cityscapes"),
    }
    datasets["camvid"]["S_P"]["miou"] = 0.99  # S_P best on camvid, S_R on cityscapes: the bold cell moves
    table = {m: {n: d[m]["miou"] for n, d in datasets.items()} for m in MODELS}
    for row in table.values():
        row["mean"] = float(np.mean(list(row.values())))
    shares = {m: {"wall": 0.01 * (i + 1), "truck": 0.002} for i, m in enumerate(MODELS)}
    pseudo = {"images": 4, "ignored_share": 0.01, "changed_share": 0.2, "mean_confidence": 0.9}
    pseudo |= {"changed_per_class": {"Tree": 0.3, "Car<b>": 0.1}, "class_share": {}}
    return {
        "run": "synthetic",
        "budget": "toy",
        "description": "",
        "config": "toy.yaml",
        "created": "2026-01-01T00:00:00Z",
        "datasets": datasets,
        "table": table,
        "collapse": {"camvid": {"classes": ["wall", "truck"], "shares": shares}},
        "pseudo_labels": {"camvid": {"P": pseudo, "R": pseudo | {"changed_share": 0.0}}},
        "sampling": {"S_P": {"cityscapes": 0.5, "camvid": 0.5}, "S_R": {"cityscapes": 0.25, "camvid": 0.75}},
        "models": {m: {"checkpoint": f"work/{m}", "sha256": "ab" * 32} for m in MODELS},
        "goals": [
            {"goal": "S_P - T, mean over datasets", "value": 0.05, "target": 0.04, "met": True},
            {"goal": "no collapse", "value": 0.25, "target": 0.5, "met": False, "unit": "ratio"},
            {"goal": "S_P - T on camvid", "value": -0.02, "target": 0.0, "met": False, "strict": True},
        ],
        "settings": {
            "teacher": {"taxonomy": "cityscapes"},
            "parts": [
                {"name": "cityscapes", "mapping": None, "weight": 1.0},
                {"name": "camvid", "mapping": "m", "weight": 3.0},
            ],
        },
        "timings": {"train S_P": 12.5},
        "wall_seconds": 60.0,
    }


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts, plus the class attribute of each cell."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[tuple[str, str]]]] = []
        self.cell: list[str] | None = None
        self.cls = ""

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell, self.cls = [], dict(attrs).get("class") or ""
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.tables[-1][-1].append((" ".join("".join(self.cell).split()), self.cls))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def parse(page: str) -> list:
    p = Tables()
    p.feed(page)
    return p.tables


def test_formatting_of_fractions():
    assert pct(0.6393) == "63.9" and pct(None) == "-" and pct(0.001234, 2) == "0.12"
    assert points(0.075) == "+7.5" and points(-0.02) == "-2.0" and points(None) == "-"


def test_page_leads_with_the_paper_table(tmp_path):
    results = synthetic_results()
    page = write_report(results, tmp_path)
    tables = parse(page.read_text())
    head, *rows = tables[0]
    assert [c for c, _ in head][1:] == [
        "cityscapes val cityscapes, 19 classes, 3 images",
        "camvid val camvid, 11 classes, 3 images",
        "mean",
    ]
    by_model = {r[0][0]: r[1:] for r in rows}
    assert [c for c, _ in by_model["T"]] == [
        pct(results["table"]["T"][k]) for k in ("cityscapes", "camvid", "mean")
    ]
    assert [m for m in MODELS if "best" in by_model[m][0][1]] == ["S_R"]  # cityscapes column
    assert [m for m in MODELS if "best" in by_model[m][1][1]] == ["S_P"]  # camvid column
    gap = results["table"]["S_P"]["mean"] - results["table"]["T"]["mean"]
    assert by_model["S_P − T"][2][0] == points(gap)
    goals = next(t for t in tables if t[0][0][0] == "claim")
    assert goals[1][3][0] == "met" and goals[3][3][0] == "missed by 2.0" and goals[3][2][0] == "> +0.0"
    assert [c for c, _ in goals[2]] == ["no collapse", "0.25", "≥ 0.50", "missed by 0.25"]


def test_every_section_renders_and_text_is_escaped(tmp_path):
    page = write_report(synthetic_results(), tmp_path).read_text()
    assert "WiSE-FT" not in page and "1.0 minutes." in page
    mixed = synthetic_results()
    mixed["settings"] = mixed["settings"] | {"interpolate": 0.7}
    mixed["stage_seconds"] = 1200.0  # a rerun that skipped finished stages says both times
    assert (
        "WiSE-FT mixes, 0.3 x T +\n0.7 x the trained student"
        in write_report(mixed, tmp_path / "w").read_text()
    )
    assert "Car&lt;b&gt;" in page and "Car<b>" not in page
    tables = parse(page)
    collapse = next(t for t in tables if t[0][-1][0] == "S_P / T")
    assert [c for c, _ in collapse[1]] == ["wall", "1.00", "2.00", "3.00", "2.00"]
    sampling = next(t for t in tables if t[0][1][0] == "weight")
    assert [c for c, _ in sampling[2]] == ["camvid (pseudo-labels)", "3 (75.0 %)", "50.0", "75.0"]
    for name in ("results.json", "report.css", "cityscapes-iou.png", "camvid-iou.png"):
        assert (tmp_path / name).stat().st_size > 100
    assert read_image(tmp_path / "camvid-iou.png").shape[2] == 3
    assert json.loads((tmp_path / "results.json").read_text()) == synthetic_results()


def test_non_finite_figure_is_one_error_and_no_page(tmp_path):
    results = synthetic_results()
    results["table"]["T"]["mean"] = math.nan
    with pytest.raises(SegunifyError, match="non-finite"):
        write_report(results, tmp_path)
    assert not (tmp_path / "index.html").exists()


def test_render_needs_no_files():
    pictures = {"cityscapes": {"chart": "c.png"}, "camvid": {"chart": "v.png"}}
    html = render_html(synthetic_results(), pictures, {"source": [], "cityscapes": [], "camvid": []})
    assert '<img src="c.png"' in html and "Examples" not in html  # no overlay pictures given: no section


def test_overlay_picture_rows_and_colours():
    mapping = load_mapping("camvid__cityscapes")
    h, w = 40, 60
    gt = np.full((h, w), 3, np.uint8)  # Road
    t = np.zeros((h, w), np.uint8)  # road
    row = {"id": "a", "image": np.full((h, w, 3), 50, np.uint8), "gt": gt, "T": t, "S_P": t + 1}
    pic = overlay_picture([row, row], mapping.extra, mapping.source, mapping.allowed)
    assert pic.dtype == np.uint8 and pic.shape[2] == 3
    assert pic.shape[0] > 2 * 160  # two rows of 160-pixel tiles plus titles
    colours = {tuple(c) for c in pic.reshape(-1, 3)}
    assert tuple(mapping.extra.colors[3]) in colours and tuple(mapping.source.colors[1]) in colours


def seeded_results() -> dict:
    """synthetic_results with two student seeds: S_P and S_R as means +- std (the results module's own
    functions), each seed's row, the classes below T and a goal on their count."""
    from segunify.apps.demo.results import below_teacher, paper_table, seed_block, seed_tables

    results = synthetic_results()
    camvid = results["datasets"]["camvid"]
    for m in MODELS:  # a class name to escape
        camvid[m]["iou"] = {("Car<b>" if c == "Car" else c): v for c, v in camvid[m]["iou"].items()}
    camvid["T"]["iou"]["Car<b>"] = 0.9  # far above S_P: a class below T
    for block in results["datasets"].values():
        for m in ("S_P", "S_R"):
            other = {"miou": block[m]["miou"] + 0.02, "pixel_acc": 0.9}
            other["iou"] = {c: v + 0.02 * (k % 3) for k, (c, v) in enumerate(block[m]["iou"].items())}
            block[m] = seed_block({"0": block[m], "1": other})
    results["table"] = paper_table(results["datasets"])
    results["per_seed"], results["table_std"] = seed_tables(results["datasets"])
    results["seeds"] = [0, 1]
    results["below_teacher"] = below_teacher(results["datasets"])
    count = {"goal": "classes more than 1 point below T", "value": 5.0, "target": 3.0, "met": False}
    results["goals"].append(count | {"unit": "classes", "at_most": True})
    return results


def test_seeds_render_as_mean_and_std_with_each_seed_and_the_classes_below_t(tmp_path):
    results = seeded_results()
    page = write_report(results, tmp_path).read_text()
    assert "mean &plusmn; sample standard deviation over 2 student\nseeds (0, 1" in page
    tables = parse(page)
    by_model = {r[0][0]: [c for c, _ in r[1:]] for r in tables[0][1:]}
    std = results["table_std"]
    assert by_model["T"][0] == pct(results["table"]["T"]["cityscapes"])  # one model: no spread
    assert by_model["S_P"] == [
        f"{pct(results['table']['S_P'][k])} ± {pct(std['S_P'][k])}" for k in ("cityscapes", "camvid", "mean")
    ]
    seeds = next(t for t in tables if [c for c, _ in t[0][:2]] == ["model", "seed"])
    rows = {(r[0][0], r[1][0]): [c for c, _ in r[2:]] for r in seeds[1:]}
    assert set(rows) == {("S_P", "0"), ("S_P", "1"), ("S_R", "0"), ("S_R", "1")}
    assert rows[("S_R", "1")] == [pct(v) for v in results["per_seed"]["S_R"]["1"].values()]
    below = next(t for t in tables if t[0][0][0] == "dataset")
    assert [c for c, _ in below[1]][:2] == ["camvid", "Car<b>"] and len(below) == 1 + len(
        results["below_teacher"]
    )
    assert "Car&lt;b&gt;" in page and "Car<b>" not in page
    goals = next(t for t in tables if t[0][0][0] == "claim")
    assert [c for c, _ in goals[-1]] == ["classes more than 1 point below T", "5", "≤ 3", "missed by 2"]
    camvid = next(t for t in tables if t[1][0][0] == "Sky")  # per class: mean ± std of both students
    sp = results["datasets"]["camvid"]["S_P"]
    assert camvid[1][2][0] == f"{pct(sp['iou']['Sky'])} ± {pct(sp['iou_std']['Sky'])}"
    assert read_image(tmp_path / "camvid-iou.png").shape[2] == 3  # with error bars


def test_terminal_summary_shows_mean_and_std(tmp_path):
    from rich.console import Console

    from segunify.cli.demo import summary_tables

    console = Console(record=True, width=200)
    for table in summary_tables(seeded_results()):
        console.print(table)
    text = console.export_text()
    std = seeded_results()["table_std"]["S_R"]["mean"]
    assert "mean +- std over 2 seeds" in text and f"+- {100 * std:.1f}" in text
    row = next(line for line in text.splitlines() if "classes more than 1 point below T" in line)
    assert [c.strip() for c in row.split("│")[2:5]] == ["5", "<= 3", "MISSED"]
    for table in summary_tables(synthetic_results()):
        console.print(table)
    assert "+-" not in console.export_text()  # one seed: no spread shown
