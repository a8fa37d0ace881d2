"""Run benchmarks, keep their JSON lines in benchmarks/results.jsonl and generate docs/benchmarks.md from it:
the one place where performance figures live (never in code comments, docstrings or pyproject.toml).

Each benchmarks/*.py prints one JSON line of figures. ``run`` executes benchmarks and stores each line with its
command, date, machine and load in benchmarks/results.jsonl (a line replaces the earlier one of the same
command, any other is appended), then regenerates the page. The page shows every recorded line, grouped by
script, and names the scripts that have none yet.

    python scripts/bench.py run                  # every CPU benchmark at its defaults (make bench)
    python scripts/bench.py run pseudo_label.py --backends torch,onnx --threads 2   # one, with its arguments
    python scripts/bench.py page [--check]       # regenerate docs/benchmarks.md; --check: exit 1 if stale
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from results_md import cell, table

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = Path("benchmarks")
RECORDS = BENCHMARKS / "results.jsonl"
PAGE = Path("docs/benchmarks.md")
NOT_BY_DEFAULT = {"gpu_check.py"}  # needs a GPU: make gpu-check
LONG_LIST = 80  # characters: a list longer than this is shown by its length


def scripts(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / BENCHMARKS).glob("*.py"))


def summary(root: Path, script: Path) -> str:
    """The first paragraph of a benchmark's docstring, on one line."""
    doc = ast.get_docstring(ast.parse((root / script).read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def read_records(root: Path) -> list[dict]:
    path = root / RECORDS
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"error: {path}:{n}: not a JSON line ({exc.msg})") from None
    return out


def store(root: Path, record: dict) -> None:
    """Replace the line of the same command, or append; one JSON object per line."""
    records = read_records(root)
    at = next((i for i, r in enumerate(records) if r["command"] == record["command"]), None)
    records[at if at is not None else len(records) :] = [record] + ([] if at is None else records[at + 1 :])
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    tmp = root / RECORDS.with_suffix(".jsonl.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, root / RECORDS)


def measure(root: Path, script: str, args: list[str]) -> tuple[dict | None, int]:
    """Run one benchmark; its record (``None`` when it printed no JSON object) and its exit code."""
    from segunify.apps.demo.results import machine

    path = BENCHMARKS / Path(script).name
    command = " ".join([path.as_posix(), *(shlex.quote(a) for a in args)])
    print(f"== {command}", flush=True)
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(root / path), *args], cwd=root, stdout=subprocess.PIPE, text=True
    )
    lines = [x for x in proc.stdout.splitlines() if x.strip()]
    print("\n".join(lines), flush=True)
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        print(f"error: {command} printed no JSON object last", file=sys.stderr)
        return None, proc.returncode or 1
    record = {"command": command, "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine()}
    record |= {"load_avg_before": load, "seconds": round(time.perf_counter() - t0, 1), "result": result}
    return record, proc.returncode


def value(v) -> str:
    text = json.dumps(v, ensure_ascii=False)
    if isinstance(v, list) and len(text) > LONG_LIST:
        return f"{len(v)} values"
    if isinstance(v, str):
        return f"`{v}`"
    return f"`{text}`" if isinstance(v, bool) or v is None else text


def flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [(f"{prefix}{k}", value(v))]
    return out


def section(record: dict) -> list[str]:
    m = record.get("machine") or {}
    where = m.get("description", "machine not recorded")
    load = record.get("load_avg_before")
    where += (
        f", load average {' / '.join(str(x) for x in load)} (1 / 5 / 15 min) at the start" if load else ""
    )
    head = [f"### `python {record['command']}`", "", f"{record['date']}, {where}."]
    head += [f"Source: {record['source']}."] if record.get("source") else []
    rows = [[cell(k), cell(v)] for k, v in flat(record["result"])]
    return [*head, "", *table(["figure", "value"], rows, numeric_from=2)]


INTRO = """\
# Benchmarks

Generated by `python scripts/bench.py page` from `benchmarks/results.jsonl`: every line there is what one
benchmark script printed (one JSON object), with the command, date, machine and load it ran under. Do not
edit this page; run the benchmark (`make bench`, or `python scripts/bench.py run SCRIPT.py [ARGS]` for one)
and commit both files. Figures measured on a shared machine (a load average above its core count) are slower
than the same machine gives idle."""


def page(root: Path) -> str:
    records = read_records(root)
    out = [INTRO]
    missing = []
    for script in scripts(root):
        mine = [r for r in records if r["command"].split()[0] == script.as_posix()]
        if not mine:
            missing.append(script)
            continue
        out += ["", f"## `{script.as_posix()}`", "", summary(root, script)]
        for r in mine:
            out += ["", *section(r)]
    if missing:
        out += [
            "",
            "## Not recorded yet",
            "",
            "These benchmarks have no line in `benchmarks/results.jsonl`:",
            "",
        ]
        out += [f"- `{s.as_posix()}`: {summary(root, s)}" for s in missing]
    return "\n".join(out) + "\n"


def run(root: Path, argv: list[str]) -> int:
    """``argv`` empty: every benchmark but the GPU one at its defaults; else one script and its arguments."""
    todo = (
        [(argv[0], argv[1:])]
        if argv
        else [(s.name, []) for s in scripts(root) if s.name not in NOT_BY_DEFAULT]
    )
    code = 0
    for script, args in todo:
        if not (root / BENCHMARKS / Path(script).name).is_file():
            print(f"error: no benchmark {BENCHMARKS / Path(script).name}", file=sys.stderr)
            return 2
        record, rc = measure(root, script, args)
        if record is not None and record["result"].get("mode") == "dry":
            print("a --dry run (toy sizes): not recorded")
        elif record is not None:
            store(root, record)
        code = code or rc
    write_page(root)
    return code


def write_page(root: Path) -> None:
    (root / PAGE).write_text(page(root), encoding="utf-8")
    print(f"wrote {PAGE}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO, help="the repository (default: this script's)")
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("run", help="run benchmarks and record their lines").add_argument(
        "argv", nargs=argparse.REMAINDER
    )
    sub.add_parser("page", help="regenerate docs/benchmarks.md").add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    if args.what == "run":
        return run(args.root, args.argv)
    if args.check:
        current = (args.root / PAGE).read_text(encoding="utf-8") if (args.root / PAGE).is_file() else ""
        if current != page(args.root):
            print(f"{PAGE} is stale: run python scripts/bench.py page", file=sys.stderr)
            return 1
        return 0
    write_page(args.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
