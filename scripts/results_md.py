"""Generate docs/results.md and README's headline table from the published results.json files, so that no
figure of a run is typed by hand and none can drift from its run.

Inputs (committed):
  docs/example-report/results.json   the quick demo, published with its report by `make example-report`
  docs/results/<run>.json            other published runs: `make publish-results RUN=<folder under runs/>`
  docs/results/handwritten.md        optional: dated figures of runs whose results.json was not kept,
                                     appended as they are
Outputs: docs/results.md, and README.md between the markers `<!-- results:headline ... -->` and
`<!-- /results -->` (the quick demo's table).

    python scripts/results_md.py                      # regenerate both (make results)
    python scripts/results_md.py --check              # exit 1 naming each stale file, write nothing
    python scripts/results_md.py --publish runs/full  # copy runs/full/report/results.json in, regenerate
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from pathlib import Path

from segunify.apps.demo.plan import MODELS
from segunify.apps.demo.report import pct, points
from segunify.apps.demo.results import below_teacher
from segunify.errors import SegunifyError
from segunify.jsonio import read_json_object, read_text

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path("docs/example-report/results.json")
PUBLISHED = Path("docs/results")
HANDWRITTEN = PUBLISHED / "handwritten.md"
PAGE = Path("docs/results.md")
README = Path("README.md")
BEGIN, END = "<!-- results:headline", "<!-- /results -->"
NAMES = {
    "T": "T (teacher)",
    "S_P": "S_P (student, pseudo-labels with priors)",
    "S_R": "S_R (student, plain pseudo-labels)",
}
COMMANDS = {"quick": "make demo", "full": "make reproduce"}  # any other config: segunify demo --config X


def para(text: str) -> list[str]:
    """A paragraph wrapped as the repository's Markdown is (110 columns)."""
    return textwrap.wrap(text, 110, break_long_words=False, break_on_hyphens=False)


def cell(text) -> str:
    """Text safe inside a Markdown table cell (a class name may hold '|' or '<')."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> list[str]:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    return [f"| {' | '.join(r)} |" for r in [header, align, *rows]]


def pm(value, std) -> str:
    """A fraction as percent, with its std over the seeds where there is one."""
    return pct(value) + ("" if std is None else f" ± {pct(std)}")


def diff(a, b):
    return None if a is None or b is None else a - b


def command(r: dict) -> str:
    n = len(seeds(r))
    if r["config"] in COMMANDS:
        return COMMANDS[r["config"]] + (f" SEEDS={n}" if n > 1 else "")
    return f"segunify demo --config {r['config']}" + (f" --seeds {n}" if n > 1 else "")


def one_seed_seconds(r: dict) -> float | None:
    """The stages a one-seed run does (T, the pseudo-labels, seed 0's students and their scores): the
    wall time ``make demo`` takes, read from a run with several seeds."""
    timings = r.get("timings") or {}
    return sum(v for k, v in timings.items() if "-seed" not in k) if timings else None


def seeds(r: dict) -> list:
    """The student seeds (a results.json written before ``seeds`` existed had one, student.seed)."""
    return r.get("seeds") or [r["settings"].get("student", {}).get("seed", 0)]


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes"


def when(r: dict) -> str:
    """Date, wall time and machine of a run, as far as its results.json records them."""
    out = f"made {r['created'][:10]}"
    if r.get("wall_seconds") is not None:
        out += f", {minutes(r['wall_seconds'])} of wall time"
        if r.get("stage_seconds", 0) > r["wall_seconds"] + 60:
            out += f" ({minutes(r['stage_seconds'])} with the stages an earlier run finished)"
        one = one_seed_seconds(r) if len(seeds(r)) > 1 else None
        out += f" ({minutes(one)} for the stages of one seed)" if one is not None else ""
    machine = r.get("machine")
    return out + (f" on {machine['description']}" if machine else "")


def columns(r: dict) -> list[str]:
    return [*r["datasets"], "mean"]


def column_title(r: dict, name: str) -> str:
    if name == "mean":
        return "mean"
    d = r["datasets"][name]
    return cell(f"{name} {d['split']} ({d['images']} img., {len(d['T']['iou'])} cl.)")


def paper_table(r: dict) -> list[str]:
    """mIoU % of T, S_P and S_R per dataset and the mean (S_P, S_R: mean ± std over the seeds), and the
    differences of the means."""
    std = r.get("table_std", {})
    rows = [[NAMES[m], *(pm(r["table"][m][c], std.get(m, {}).get(c)) for c in columns(r))] for m in MODELS]
    for a, b in (("S_P", "T"), ("S_P", "S_R")):
        rows.append([f"{a} − {b}", *(points(diff(r["table"][a][c], r["table"][b][c])) for c in columns(r))])
    return table(["model", *(column_title(r, c) for c in columns(r))], rows)


def seed_rows(r: dict) -> list[str]:
    if not r.get("per_seed"):
        return []
    rows = [
        [m, str(s), *(pct(row.get(c)) for c in columns(r))]
        for m, runs in r["per_seed"].items()
        for s, row in runs.items()
    ]
    return ["", "Each seed:", "", *table(["model", "seed", *columns(r)], rows)]


def claim_figure(g: dict, value: float) -> str:
    unit = g.get("unit", "points")
    return points(value, 2) if unit == "points" else f"{value:.2f}" if unit == "ratio" else f"{value:.0f}"


def claims(r: dict) -> list[str]:
    """The claims a run checks (the paper's: S_P beats T, the priors help; and that S_P keeps what T knew),
    with its config's targets (``goals``) and its figures."""
    rows = []
    for g in r.get("goals", []):
        op = ">" if g.get("strict") else "≤" if g.get("at_most") else "≥"
        gap = g["value"] - g["target"] if g.get("at_most") else g["target"] - g["value"]
        shown = pct(gap, 2) if g.get("unit", "points") == "points" else claim_figure(g, gap).lstrip("+")
        status = "met" if g["met"] else f"missed by {shown}"
        rows.append(
            [cell(g["goal"]), claim_figure(g, g["value"]), f"{op} {claim_figure(g, g['target'])}", status]
        )
    if not rows:
        return ["No claim was measured in this run."]
    met = sum(g["met"] for g in r["goals"])
    return [f"{met} of {len(rows)} met.", "", *table(["claim", "measured", "needs", ""], rows)]


def below(r: dict) -> list[str]:
    rows = r.get("below_teacher")
    rows = below_teacher(r["datasets"]) if rows is None else rows  # written before the field existed
    if not rows:
        return ["None: no class of any dataset is more than 1 point below T."]
    lost = sum(b["diff"] for b in rows)
    head = f"{len(rows)} classes, {pct(-lost)} points in all (S_P's IoU"
    head += ", the mean over the seeds" if len(seeds(r)) > 1 else ""
    body = [[b["dataset"], cell(b["class"]), pct(b["T"]), pct(b["S_P"]), points(b["diff"])] for b in rows]
    return [
        *para(head + ", against T's; the largest loss first):"),
        "",
        *table(["dataset", "class", "T", "S_P", "S_P − T"], body, numeric_from=2),
    ]


def per_class(r: dict, name: str) -> list[str]:
    """IoU % of every class of one dataset, in its own taxonomy."""
    d = r["datasets"][name]
    rows = []
    for c, t in d["T"]["iou"].items():
        sp, sr = d["S_P"]["iou"].get(c), d["S_R"]["iou"].get(c)
        ious = [pm(d[m]["iou"].get(c), d[m].get("iou_std", {}).get(c)) for m in MODELS]
        rows.append([cell(c), *ious, points(diff(sp, t)), points(diff(sp, sr))])
    mious = [f"**{pm(d[m]['miou'], d[m].get('miou_std'))}**" for m in MODELS]
    rows.append(
        [
            "**mIoU**",
            *mious,
            points(diff(d["S_P"]["miou"], d["T"]["miou"])),
            points(diff(d["S_P"]["miou"], d["S_R"]["miou"])),
        ]
    )
    how = f"through the mapping `{d['mapping']}`" if d.get("mapping") else "in the source taxonomy itself"
    head = (
        f"#### {name} {d['split']}: {d['images']} images, {d['taxonomy']} ({len(d['T']['iou'])} classes)",
        "",
        *para(f"Scored {how}, inference at {d['size'][0]}x{d['size'][1]} (H x W). {d.get('note', '')}"),
        "",
    )
    return [*head, *table(["class", *MODELS, "S_P − T", "S_P − S_R"], rows)]


def collapse(r: dict, name: str) -> list[str]:
    """Share of the pixels predicted as each source class the dataset's ground truth cannot tell apart."""
    c = r.get("collapse", {}).get(name)
    if not c or not c["classes"]:
        return []
    rows = []
    for k in c["classes"]:
        t = c["shares"]["T"].get(k)
        ratio = f"{c['shares']['S_P'][k] / t:.2f}" if t else "-"
        rows.append([cell(k), *(pct(c["shares"][m].get(k), 2) for m in MODELS), ratio])
    return [
        "",
        *para(
            f"Source classes the {name} ground truth cannot tell apart (merged with others or absent), "
            "% of the pixels predicted as each:"
        ),
        "",
        *table(["class", *MODELS, "S_P / T"], rows),
    ]


def pseudo_labels(r: dict) -> list[str]:
    parts = r.get("pseudo_labels", {})
    rows = [
        [part, f"{k} ({'with priors' if k == 'P' else 'no priors'})", str(s["images"]), pct(s["ignored_share"], 2),
         pct(s["changed_share"], 2), f"{s['mean_confidence']:.3f}"]
        for part, sets in parts.items() for k, s in sets.items()
    ]  # fmt: skip
    out = table(
        ["part", "labels", "images", "ignored %", "changed by the priors %", "mean confidence"], rows, 2
    )
    shares = {(part, k): s.get("class_share") for part, sets in parts.items() for k, s in sets.items()}
    shares = {key: v for key, v in shares.items() if v}
    if shares:
        classes = list(next(iter(shares.values())))
        head = ["source class", *(f"{part} {k}" for part, k in shares)]
        body = [[cell(c), *(pct(v.get(c), 2) for v in shares.values())] for c in classes]
        out += ["", "% of the labelled pixels of each source class:", "", *table(head, body)]
    return out


def sampling(r: dict) -> list[str]:
    parts = r["settings"]["parts"]
    total = sum(p["weight"] for p in parts)
    rows = [
        [f"{p['name']} ({'ground truth' if p.get('mapping') is None else 'pseudo-labels'})",
         f"{p['weight']:g} ({pct(p['weight'] / total)} %)",
         *(pct(shares.get(p["name"])) for shares in r["sampling"].values())]
        for p in parts
    ]  # fmt: skip
    return table(["part", "weight", *(f"{m} %" for m in r["sampling"])], rows)


def timings(r: dict) -> list[str]:
    if not r.get("timings"):
        return ["Not recorded."]
    rows = [[cell(k), f"{v:.1f}"] for k, v in r["timings"].items()]
    rows.append(["**total**", f"**{sum(r['timings'].values()):.1f}**"])
    return table(["stage", "seconds"], rows)


def flat(d: dict, prefix: str = "") -> list[str]:
    """``key.sub=value`` pairs, as ``--set`` takes them."""
    out = []
    for k, v in d.items():
        out += flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}={json.dumps(v)}"]
    return out


def recipe(r: dict) -> list[str]:
    """The settings the run was made with (results.json ``settings``: the demo config after defaults)."""
    s = r["settings"]
    t = s["teacher"]
    out = [
        f"- teacher: `{t['model']}` `{json.dumps(t.get('kwargs', {}))}` in {t['taxonomy']}, `{t['weights']}`"
    ]
    out.append(f"- pseudo-labels: `{' '.join(flat(s.get('pseudo') or {}))}`")
    out.append(f"- students (`segunify train` keys): `{' '.join(flat(s.get('student') or {}))}`")
    if s.get("interpolate"):
        a = s["interpolate"]
        out.append(f"- scored: the WiSE-FT mix {1 - a:g} x T + {a:g} x the trained student, weight by weight")
    out.append(f"- student seeds: {', '.join(str(x) for x in seeds(r))}")
    rows = []
    for p in s["parts"]:
        known = r.get("pseudo_labels", {}).get(p["name"], {}).get("P", {}).get("images")
        frames = str(known if known is not None else p.get("limit") or "all")
        subset = [f"{k}: {', '.join(p[k])}" for k in ("include", "exclude") if p.get(k)]
        frames += f" ({'; '.join(subset)})" if subset else ""
        labels = "ground truth" if p.get("mapping") is None else f"P or R (`{p['mapping']}`)"
        size = "x".join(str(v) for v in p["size"]) if p.get("size") else "-"
        rows.append(
            [p["name"], p["dataset"], f"`{p['root']}`", p["split"], frames, size, labels, f"{p['weight']:g}"]
        )
    head = ["part", "dataset", "root", "split", "frames", "size", "labels", "weight"]
    return [*out, "", "The compound training set, one per label set:", "", *table(head, rows, 7)]


def run_section(source: Path, r: dict) -> list[str]:
    link = source.relative_to(PAGE.parent).as_posix() if source.is_relative_to(PAGE.parent) else source
    report = (
        " Its report: [example-report/index.html](example-report/index.html)." if source == EXAMPLE else ""
    )
    n = len(seeds(r))
    out = [
        f"## `{command(r)}`: {r['budget']}",
        "",
        *para(
            f"Run `{r['run']}` (config `{r['config']}`), {when(r)}; figures from [`{source}`]({link}).{report}"
        ),
    ]
    out += ["", *para(r["description"])] if r.get("description") else []
    out += ["", "### mIoU % per dataset, each in its own taxonomy", "", *paper_table(r)]
    if n > 1:
        out += [
            "",
            f"S_P and S_R: mean ± sample std over {n} student seeds (T is one model); the differences",
        ]
        out[-1] += " are those of the means."
    out += seed_rows(r)
    out += ["", "### Claims checked", "", *claims(r)]
    out += ["", "### Classes more than 1 point below T", "", *below(r)]
    out += ["", "### Per class (IoU %)"]
    for name in r["datasets"]:
        out += ["", *per_class(r, name), *collapse(r, name)]
    out += ["", "### Pseudo-labels", "", *pseudo_labels(r)]
    out += ["", "### Share of the training samples drawn from each part", "", *sampling(r)]
    out += ["", "### Recipe", "", *recipe(r)]
    out += ["", "### Stage timings", "", *timings(r)]
    return out


INTRO = """\
# Results

Every figure on this page is generated by `make results` (`scripts/results_md.py`) from the results files of
published runs; edit the script or publish a new run, never this page. `make example-report` publishes the
last `make demo` run (with its report, `docs/example-report/`), `make publish-results RUN=<folder under runs/>`
any other run (`docs/results/<run>.json`).

T is the teacher, trained on the source dataset (Cityscapes). P and R are T's pseudo-labels of the extra
datasets' training frames with and without each dataset's priors (a pixel may only take a source class its
ground-truth class allows); S_P and S_R are students fine-tuned from T on one compound set each: the source
ground truth plus every extra dataset's P (or R) labels. Every model is scored on each dataset in that
dataset's own taxonomy (through the dataset's mapping where it is not the source taxonomy); the frames scored
were never trained on nor used to choose a setting. IoU and mIoU are in %, differences in points.

`segunify demo --plan` prints every stage of a run and its equivalent command. `--seeds N` (= `--set seeds=N`)
trains N students per label set, with student seeds `student.seed + 0..N-1` on the same T and pseudo-labels;
S_P and S_R are then the mean ± sample std over the seeds, per dataset and per class, with each seed's row,
and the classes below T are those whose seed-averaged S_P IoU is more than 1 point below T's. The first
seed's stages are those of a one-seed run, so an existing run folder only adds the other seeds."""


def published(root: Path) -> list[tuple[Path, dict]]:
    """(path relative to the repository, results) of every published run, the quick demo first."""
    files = [EXAMPLE, *sorted(p.relative_to(root) for p in (root / PUBLISHED).glob("*.json"))]
    return [(f, read_json_object(root / f, "results file")) for f in files if (root / f).is_file()]


def results_page(root: Path) -> str:
    runs = published(root)
    handwritten = (
        read_text(root / HANDWRITTEN, "hand-written results") if (root / HANDWRITTEN).is_file() else ""
    )
    titles = [f"`{command(r)}`: {r['budget']}" for _, r in runs]
    titles += [x[3:] for x in handwritten.splitlines() if x.startswith("## ")]
    out = [INTRO, "", *(f"- [{t}](#{anchor(t)})" for t in titles)]
    for source, r in runs:
        out += ["", *run_section(source, r)]
    out += ["", handwritten.rstrip()] if handwritten else []
    return "\n".join(out) + "\n"


def anchor(title: str) -> str:
    """GitHub's anchor of the heading ``## title``."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def headline(root: Path) -> str:
    """README's block: the quick demo's table with what it was made of and where everything else is."""
    r = read_json_object(root / EXAMPLE, "results file")
    n = len(seeds(r))
    spread = f" (S_P, S_R: mean ± std over {n} student seeds)" if n > 1 else ""
    met = sum(g["met"] for g in r.get("goals", []))
    lines = [
        f"{BEGIN}: generated by `make results` from {EXAMPLE}; do not edit -->",
        *para(
            f"`{command(r)}` ({r['budget']}; {n} student seed{'s' if n > 1 else ''}), {when(r)}. mIoU % of each "
            f"model on each dataset, in that dataset's own taxonomy{spread}:"
        ),
        "",
        *paper_table(r),
        "",
        *para(
            f"Claims checked on this run: {met} of {len(r.get('goals', []))} met. Every table (per "
            "class, per seed, the claims, the pseudo-labels, the recipe, timings, the larger runs): "
            "[docs/results.md](docs/results.md); the run's report: "
            "[docs/example-report/index.html](docs/example-report/index.html)."
        ),
        END,
    ]
    return "\n".join(lines)


def readme(root: Path) -> str:
    text = read_text(root / README, "README")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SegunifyError(f"no '{BEGIN} ... -->' ... '{END}' block for the headline table", root / README)
    return text[:start] + headline(root) + text[end + len(END) :]


def current(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def outputs(root: Path) -> dict[Path, str]:
    """Each generated file (relative to the repository) and its content."""
    return {PAGE: results_page(root), README: readme(root)}


def publish(root: Path, run: Path) -> Path:
    """Copy a finished run's results.json to docs/results/<run>.json (the quick demo: make example-report)."""
    source = run / "report" / "results.json"
    r = read_json_object(source, "results file")
    if not {"run", "config", "datasets", "table", "settings"} <= set(r):
        raise SegunifyError("not a segunify demo results file", source)
    example = read_json_object(root / EXAMPLE, "results file") if (root / EXAMPLE).is_file() else {}
    if r["run"] == example.get("run"):
        raise SegunifyError(
            f"run {r['run']!r} is the example report's: publish it with make example-report", source
        )
    dest = root / PUBLISHED / f"{r['run']}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO, help="the repository (default: this script's)")
    ap.add_argument("--check", action="store_true", help="exit 1 naming each stale file; write nothing")
    ap.add_argument(
        "--publish", type=Path, help="a run folder (runs/<run>) whose results.json to publish first"
    )
    args = ap.parse_args(argv)
    try:
        if args.publish is not None:
            print(f"published {publish(args.root, args.publish)}")
        stale = [p for p, text in outputs(args.root).items() if current(args.root / p) != text]
        if args.check:
            for p in stale:
                print(f"{p} is stale: run make results", file=sys.stderr)
            return 1 if stale else 0
        for p, text in outputs(args.root).items():
            (args.root / p).write_text(text, encoding="utf-8")
        print(f"wrote {', '.join(str(p) for p in stale) or 'nothing: every page is current'}")
    except SegunifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
