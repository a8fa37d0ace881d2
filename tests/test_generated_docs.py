"""The figures in docs/results.md, README's results table and docs/benchmarks.md are generated from committed
results files (scripts/results_md.py, scripts/bench.py): the committed pages must equal a fresh generation, a
changed figure must make them stale, and the generators must render what a several-seed run holds.
docs/architecture.md must name every module it describes the layers of."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench  # noqa: E402
import results_md  # noqa: E402

from segunify.apps.demo.report import pct  # noqa: E402


def md_rows(lines: list[str], first: str) -> list[list[str]]:
    """The body rows (cells) of the Markdown table whose header's first cell is ``first``."""
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def fake_repo(tmp_path: Path) -> Path:
    """A copy of what the results generator reads: README.md and the published results files."""
    for rel in (results_md.README, results_md.EXAMPLE, results_md.PUBLISHED):
        src, dst = REPO / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    return tmp_path


def test_committed_results_page_and_readme_table_are_current():
    for path, text in results_md.outputs(REPO).items():
        assert (REPO / path).read_text(encoding="utf-8") == text, f"{path} is stale: run make results"


def test_committed_benchmarks_page_is_current():
    assert (REPO / bench.PAGE).read_text(encoding="utf-8") == bench.page(REPO), "run scripts/bench.py page"


def test_readme_table_is_the_example_runs(tmp_path):
    """README's block holds the example run's table, cell for cell, and README stays within 200 lines with
    the two commands first."""
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert (
        len(readme) <= 200 and "make demo" in "\n".join(readme[:10]) and "make test" in "\n".join(readme[:10])
    )
    r = json.loads((REPO / results_md.EXAMPLE).read_text(encoding="utf-8"))
    block = readme[readme.index(next(x for x in readme if x.startswith(results_md.BEGIN))) :]
    rows = {row[0]: row[1:] for row in md_rows(block, "model")}
    for model, name in results_md.NAMES.items():
        std = r.get("table_std", {}).get(model, {})  # S_P, S_R of a several-seed run: mean ± std
        assert rows[name] == [
            results_md.pm(r["table"][model][c], std.get(c)) for c in [*r["datasets"], "mean"]
        ]


def test_results_generator_is_idempotent_and_flags_a_changed_figure(tmp_path, capsys):
    root = fake_repo(tmp_path)
    assert results_md.main(["--root", str(root)]) == 0
    first = {p: (root / p).read_bytes() for p in (results_md.PAGE, results_md.README)}
    assert first == {p: (REPO / p).read_bytes() for p in first}  # regenerated elsewhere: the committed pages
    assert (
        results_md.main(["--root", str(root)]) == 0 and results_md.main(["--root", str(root), "--check"]) == 0
    )
    assert {p: (root / p).read_bytes() for p in first} == first
    r = json.loads((root / results_md.EXAMPLE).read_text(encoding="utf-8"))
    r["table"]["S_P"]["camvid"] = 0.12345  # 12.3: a figure no other cell holds
    (root / results_md.EXAMPLE).write_text(json.dumps(r), encoding="utf-8")
    capsys.readouterr()
    assert results_md.main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert "docs/results.md is stale" in err and "README.md is stale" in err
    assert {p: (root / p).read_bytes() for p in first} == first  # --check writes nothing
    assert results_md.main(["--root", str(root)]) == 0
    for p in first:
        assert "| 12.3 " in (root / p).read_text(encoding="utf-8")  # "12.3" or "12.3 ± std"


def seeded(tmp_path: Path) -> dict:
    """The report tests' two-seed results with the example run's settings (the recipe section reads them)."""
    from test_report import seeded_results

    r = seeded_results()
    r["settings"] = json.loads((REPO / results_md.EXAMPLE).read_text(encoding="utf-8"))["settings"]
    return r


def test_several_seeds_show_mean_and_std_each_seed_the_claims_and_the_classes_below_t(tmp_path):
    r = seeded(tmp_path)
    lines = results_md.run_section(Path("docs/results/synthetic.json"), r)
    text = "\n".join(lines)
    assert "S_P and S_R: mean ± sample std over 2 student seeds" in text
    table = {row[0]: row[1:] for row in md_rows(lines, "model")}
    std = r["table_std"]["S_P"]
    assert table[results_md.NAMES["S_P"]] == [f"{pct(r['table']['S_P'][c])} ± {pct(std[c])}" for c in std]
    assert table[results_md.NAMES["T"]][0] == pct(r["table"]["T"]["cityscapes"])  # one model: no spread
    seeds = md_rows(lines[lines.index("Each seed:") :], "model")
    assert [(x[0], x[1]) for x in seeds] == [("S_P", "0"), ("S_P", "1"), ("S_R", "0"), ("S_R", "1")]
    assert seeds[3][2:] == [pct(v) for v in r["per_seed"]["S_R"]["1"].values()]
    claims = md_rows(lines, "claim")
    assert claims[-1] == ["classes more than 1 point below T", "5", "≤ 3", "missed by 2"]
    assert claims[0] == ["S_P - T, mean over datasets", "+5.00", "≥ +4.00", "met"]
    below = md_rows(lines, "dataset")
    assert below[0][:2] == ["camvid", "Car&lt;b&gt;"] and len(below) == len(r["below_teacher"])
    assert "Car<b>" not in text  # class names are escaped in every table
    camvid = lines[next(i for i, x in enumerate(lines) if x.startswith("#### camvid")) :]
    sky = next(row for row in md_rows(camvid, "class") if row[0] == "Sky")
    sp = r["datasets"]["camvid"]["S_P"]
    assert sky[2] == f"{pct(sp['iou']['Sky'])} ± {pct(sp['iou_std']['Sky'])}"


def test_a_several_seed_run_names_its_command_and_the_wall_time_of_one_seed():
    r = {"config": "quick", "seeds": [0, 1, 2], "created": "2026-12-05T00:00:00", "wall_seconds": 3000.0}
    r["timings"] = {"pseudo-label camvid (P and R)": 60.0, "train S_P": 400.0, "train S_R": 380.0,
                    "train S_P-seed1": 410.0, "evaluate S_P-seed2 on camvid": 20.0, "evaluate T on camvid": 20.0}  # fmt: skip
    assert results_md.command(r) == "make demo SEEDS=3"
    assert results_md.command(r | {"config": "camvid"}) == "segunify demo --config camvid --seeds 3"
    assert results_md.command(r | {"seeds": [0]}) == "make demo"
    assert results_md.one_seed_seconds(r) == 860.0
    assert "50.0 minutes of wall time (14.3 minutes for the stages of one seed)" in results_md.when(r)
    assert "for the stages of one seed" not in results_md.when(r | {"seeds": [0]})


def test_a_results_file_without_below_teacher_gets_it_computed():
    """A results.json written before the field existed: the classes below T come from its datasets."""
    r = json.loads((REPO / results_md.EXAMPLE).read_text(encoding="utf-8"))
    r.pop("below_teacher", None)
    from segunify.apps.demo.results import below_teacher

    rows = md_rows(results_md.below(r), "dataset")
    assert [(x[0], x[1]) for x in rows] == [(b["dataset"], b["class"]) for b in below_teacher(r["datasets"])]


def test_readme_without_the_markers_is_one_error(tmp_path, capsys):
    root = fake_repo(tmp_path)
    (root / "README.md").write_text("# segunify\n", encoding="utf-8")
    assert results_md.main(["--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: ") and "README.md: no '<!-- results:headline" in err and err.count("\n") == 1
    )


def test_publish_copies_a_run_and_refuses_the_example_run(tmp_path, capsys):
    root = fake_repo(tmp_path)
    r = json.loads((root / results_md.EXAMPLE).read_text(encoding="utf-8"))
    run = root / "runs" / "full" / "report"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(r | {"run": "full", "config": "full"}), encoding="utf-8")
    assert results_md.main(["--root", str(root), "--publish", str(root / "runs" / "full")]) == 0
    assert json.loads((root / "docs/results/full.json").read_text(encoding="utf-8"))["run"] == "full"
    page = (root / results_md.PAGE).read_text(encoding="utf-8").replace("\n", " ")  # wrapped lines joined
    assert (
        f"## `{results_md.command(r | {'config': 'full'})}`:" in page
        and "figures from [`docs/results/full.json`](results/full.json)" in page
    )
    (run / "results.json").write_text(json.dumps(r), encoding="utf-8")  # the example's own run
    capsys.readouterr()
    assert results_md.main(["--root", str(root), "--publish", str(root / "runs" / "full")]) == 1
    assert "publish it with make example-report" in capsys.readouterr().err
    (run / "results.json").write_text(json.dumps({"run": "x"}), encoding="utf-8")
    assert results_md.main(["--root", str(root), "--publish", str(root / "runs" / "full")]) == 1
    assert "not a segunify demo results file" in capsys.readouterr().err


BENCH = '''"""A toy benchmark for the recorder.

More text the page leaves out."""
import json, sys
print("warming up")
print(json.dumps({"benchmark": "toy", "n": int(sys.argv[2]) if "--n" in sys.argv else 0, "name": "a|b",
                  "nested": {"x": 1.5}, "long": list(range(40)), **({"mode": "dry"} if "--dry" in sys.argv else {})}))
'''


def test_bench_records_one_line_per_command_and_the_page_names_the_unrecorded(tmp_path, capsys):
    root = tmp_path
    (root / "benchmarks").mkdir()
    (root / "docs").mkdir()
    (root / "benchmarks" / "toy.py").write_text(BENCH, encoding="utf-8")
    (root / "benchmarks" / "other.py").write_text('"""Never run here."""\n', encoding="utf-8")
    (root / "benchmarks" / "silent.py").write_text(
        '"""Prints no JSON."""\nprint("hello")\n', encoding="utf-8"
    )
    assert bench.main(["--root", str(root), "run", "toy.py", "--n", "1"]) == 0
    assert bench.main(["--root", str(root), "run", "toy.py", "--n", "2"]) == 0
    assert bench.main(["--root", str(root), "run", "toy.py", "--n", "2"]) == 0  # replaces its own line
    assert bench.main(["--root", str(root), "run", "toy.py", "--dry"]) == 0  # a toy run: not recorded
    assert bench.main(["--root", str(root), "run", "silent.py"]) == 1
    lines = (root / bench.RECORDS).read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["command"] for r in records] == ["benchmarks/toy.py --n 1", "benchmarks/toy.py --n 2"]
    assert records[1]["result"]["n"] == 2 and records[1]["machine"]["cpus"] >= 1
    page = (root / bench.PAGE).read_text(encoding="utf-8")
    assert page == bench.page(root) and bench.main(["--root", str(root), "page", "--check"]) == 0
    assert "## `benchmarks/toy.py`\n\nA toy benchmark for the recorder.\n" in page
    assert "### `python benchmarks/toy.py --n 2`" in page and "| nested.x | 1.5 |" in page
    assert "| name | `a\\|b` |" in page and "| long | 40 values |" in page
    assert "- `benchmarks/other.py`: Never run here." in page and "- `benchmarks/silent.py`" in page
    (root / bench.RECORDS).write_text(lines[0] + "\n", encoding="utf-8")
    capsys.readouterr()
    assert bench.main(["--root", str(root), "page", "--check"]) == 1
    assert "docs/benchmarks.md is stale" in capsys.readouterr().err


def test_no_performance_figure_outside_the_benchmarks_page():
    """Figures like '1.55x' or '2.4 images/s' rot where nothing regenerates them: code comments, docstrings,
    pyproject.toml and the Makefile point to the benchmark instead."""
    import re

    figure = re.compile(r"\b\d+(\.\d+)?x\b(?!\d)|\d\s*(images|img)/s|\d\s*s/image")
    files = [REPO / "pyproject.toml", REPO / "Makefile", REPO / "README.md"]
    files += [
        p
        for d in ("src", "benchmarks", "scripts")
        for p in (REPO / d).rglob("*")
        if p.suffix in {".py", ".yaml"}
    ]
    hits = [
        f"{p.relative_to(REPO)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if figure.search(line) and 'f"' not in line
    ]
    assert hits == []


def test_architecture_names_every_module_of_the_layers():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    pkg = REPO / "src" / "segunify"
    modules = [*pkg.glob("*.py"), *(p for d in ("pseudo", "train", "models") for p in (pkg / d).glob("*.py"))]
    subpackages = [p for p in pkg.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    missing = [p.name for p in modules if not p.name.startswith("__") and p.stem not in text]
    missing += [f"{p.name}/" for p in subpackages if f"{p.name}/" not in text]
    assert missing == []


@pytest.mark.parametrize("field", ["description", "cpus", "cpu", "gpu", "torch"])
def test_machine_says_where_a_run_was_made(field):
    from segunify.apps.demo.results import machine

    m = machine()
    assert field in m and m["cpus"] >= 1 and m["description"].startswith(f"{m['cpus']} CPU cores")
