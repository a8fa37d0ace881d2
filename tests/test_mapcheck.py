"""mapping suggest / audit / diff: co-occurrence counts, the suggestion rule (a property: a ground truth
that is a known mapping of the teacher's own predictions is recovered exactly), one corrupted row per
audit rule, set-by-set diffs, and the CLI with the shipped teacher on real CamVid."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segunify.cli import main
from segunify.datasets import evenly
from segunify.errors import FieldError, SegunifyError
from segunify.mapcheck import (
    CoOccurrence,
    SuggestRule,
    audit_mapping,
    diff_mappings,
    draft_csv,
    heatmap_png,
    jaccard,
    suggest_sets,
    teacher_pass,
)
from segunify.mapping import load_mapping, parse_mapping
from segunify.taxonomy import IGNORE, load_taxonomy

CAMVID = load_taxonomy("camvid")
CITY = load_taxonomy("cityscapes")
SHIPPED = load_mapping("camvid__cityscapes")


class CodedTeacher:
    """Predicts the source class stored in the red channel, with the confidence stored in green (/255);
    the rest of the probability is spread evenly over the other classes (so the red class is the argmax
    for a confidence above 1/19)."""

    def __init__(self, classes: int = 19):
        self.classes = classes

    def probs(self, images: torch.Tensor) -> torch.Tensor:
        pred = images[..., 0].long()
        conf = images[..., 1].float() / 255
        probs = ((1 - conf) / (self.classes - 1)).unsqueeze(1).repeat(1, self.classes, 1, 1)
        return probs.scatter_(1, pred.unsqueeze(1), conf.unsqueeze(1))


def scene(cells: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """One image row from ``(gt, predicted source class, confidence 0..255, pixels)`` runs."""
    gt = np.concatenate([np.full(n, g, np.uint8) for g, _, _, n in cells])[None]
    red = np.concatenate([np.full(n, p, np.uint8) for _, p, _, n in cells])
    green = np.concatenate([np.full(n, c, np.uint8) for _, _, c, n in cells])
    image = np.stack([red, green, np.zeros_like(red)], -1)[None]
    return image, gt


def cooccurrence(cells, threshold: float = 0.5) -> CoOccurrence:
    return teacher_pass(CodedTeacher(), [scene(cells)], CoOccurrence(CAMVID, CITY, threshold))


def c(name: str) -> int:
    return CITY.index(name)


def k(name: str) -> int:
    return CAMVID.index(name)


# A CamVid world in which the teacher agrees with the shipped mapping (confidence 230/255 = 0.9),
# plus 50 px of each class predicted outside its set with low confidence (0.4: not "confident").
AGREEING = [
    (k("Sky"), c("sky"), 230, 900),
    (k("Building"), c("building"), 230, 800),
    (k("Building"), c("wall"), 230, 100),
    (k("Pole"), c("pole"), 230, 900),
    (k("Road"), c("road"), 230, 900),
    (k("Pavement"), c("sidewalk"), 230, 900),
    (k("Tree"), c("vegetation"), 230, 630),
    (k("Tree"), c("terrain"), 230, 270),
    (k("SignSymbol"), c("traffic sign"), 230, 700),
    (k("SignSymbol"), c("traffic light"), 230, 200),
    (k("Fence"), c("fence"), 230, 900),
    (k("Car"), c("car"), 230, 600),
    (k("Car"), c("truck"), 230, 100),
    (k("Car"), c("bus"), 230, 100),
    (k("Car"), c("train"), 230, 100),
    (k("Pedestrian"), c("person"), 230, 900),
    (k("Bicyclist"), c("rider"), 230, 500),
    (k("Bicyclist"), c("bicycle"), 230, 300),
    (k("Bicyclist"), c("motorcycle"), 230, 100),
] + [(kk, c("sky") if kk != k("Sky") else c("road"), 102, 50) for kk in range(11)]
WORLD = cooccurrence(AGREEING)


def corrupt(**rows: str):
    """The shipped CamVid mapping with some rows replaced (``Pedestrian="car"``)."""
    lines = [
        f"{kk},{name},{rows.get(name) or ';'.join(CITY.classes[x] for x in SHIPPED.allowed_sets[kk])}"
        for kk, name in enumerate(CAMVID.classes)
    ]
    return parse_mapping("\n".join(lines), CAMVID, CITY, path="corrupted.csv")


def test_cooccurrence_counts_by_hand():
    co = cooccurrence([(0, 10, 230, 5), (0, 2, 100, 3), (IGNORE, 10, 230, 7), (4, 1, 255, 2)])
    assert co.counts[0, 10] == 5 and co.counts[0, 2] == 3 and co.counts[4, 1] == 2
    assert co.counts.sum() == 10  # the 7 ignore pixels count nowhere
    assert co.confident[0].tolist() == [0] * 10 + [5] + [0] * 8  # 100/255 < 0.5
    assert co.weighted[0, 2] == pytest.approx(3 * 100 / 255, rel=1e-6)
    assert co.shares()[0, 10] == pytest.approx(5 / 8) and co.shares()[1].sum() == 0
    again = CoOccurrence.from_json(json.loads(json.dumps(co.to_json())), "x.json")
    assert np.array_equal(again.counts, co.counts) and np.array_equal(again.confident, co.confident)


def test_evenly_covers_the_split():
    assert evenly(list(range(10)), 3) == [0, 3, 6]  # not the first three frames of one scene
    assert evenly(list(range(3)), 5) == [0, 1, 2]
    assert evenly([1], 0) == [] and evenly([1, 2], None) == [1, 2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_suggest_recovers_a_known_mapping_of_the_teachers_predictions(data):
    """Ground truth = f(teacher's prediction) for a random many-to-one f: suggest returns f's preimages
    exactly (every member has > 10 % of its class: weights 4..5, at most 6 members), REVIEW where a
    class has no pixels, and the draft parses back to the same sets."""
    used = data.draw(st.lists(st.integers(0, 18), min_size=1, max_size=14, unique=True))
    group = {s: data.draw(st.integers(0, 10)) for s in used}
    sizes = [list(group.values()).count(g) for g in set(group.values())]
    if max(sizes) > 6:
        return
    weights = {s: data.draw(st.integers(4, 5)) for s in used}
    cells = [(group[s], s, data.draw(st.integers(20, 255)), 3 * weights[s]) for s in used]
    co = cooccurrence(cells + [(IGNORE, used[0], 255, 4)])
    rule = SuggestRule(min_pixels=1)
    rows = suggest_sets(co, rule)
    for row in rows:
        expected = tuple(sorted(s for s in used if group[s] == row.extra_id))
        assert row.allowed == (expected or None)
        assert row.review == (not expected)
    text = draft_csv(co, rows, rule, "property test")
    if all(not r.review for r in rows):
        assert parse_mapping(text, CAMVID, CITY).allowed_sets == tuple(r.allowed for r in rows)
    else:
        with pytest.raises(SegunifyError, match="REVIEW"):
            parse_mapping(text, CAMVID, CITY)


def test_suggest_rule_thresholds_and_shares_in_the_draft():
    co = cooccurrence([(0, 10, 230, 880), (0, 2, 230, 100), (0, 8, 230, 20), (1, 2, 230, 5)])
    rows = suggest_sets(co, SuggestRule(coverage=0.9, min_share=0.02, min_pixels=10))
    assert [CITY.classes[x] for x in rows[0].members] == ["sky", "building"]  # 88 % + 10 % >= 90 %
    assert rows[0].covered == pytest.approx(0.98) and rows[1].review  # 5 px < 10
    strict = suggest_sets(co, SuggestRule(coverage=0.99, min_share=0.05, min_pixels=10))
    assert [CITY.classes[x] for x in strict[0].members] == ["sky", "building"]  # 2 % < 5 %: not added
    text = draft_csv(co, strict, SuggestRule(coverage=0.99, min_share=0.05, min_pixels=10), "t")
    assert "0,Sky,building;sky  # covers only 98.0%; 1,000 px: sky 88.0% (88.0%)" in text
    assert "1,Building,REVIEW  # too few pixels to decide (< 10); 5 px: building 100.0%" in text
    png = heatmap_png(co, [r.members for r in rows], "title")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_audit_of_the_agreeing_world_is_quiet():
    rows = audit_mapping(WORLD, SHIPPED, min_pixels=100)
    assert max(r.outside_confident for r in rows) == 0.0  # only the 0.4-confidence disagreement
    assert all(r.changed_by_prior == pytest.approx(50 / 950) for r in rows)
    car = next(r for r in rows if r.name == "Car")
    assert car.member_shares == pytest.approx({"car": 600 / 950, "truck": 100 / 950, "bus": 100 / 950,
                                              "train": 100 / 950})  # fmt: skip
    assert not car.unused and car.suspicion == 0.0


@pytest.mark.parametrize(
    ("rows", "first", "flag"),
    [
        (
            {"Tree": "vegetation"},
            "Tree",
            "missing terrain? (28.4% confident; no row allows it)",
        ),  # rule 1: member missing
        ({"Sky": "sky;car"}, "Sky", "superfluous car?"),  # rule 2: member never predicted there
        (
            {"Pedestrian": "car", "Sky": "road"},
            "Pedestrian",
            "missing person? (94.7% confident; no row allows it)",
        ),  # the issue's
    ],
)
def test_a_corrupted_row_comes_first(rows, first, flag):
    audited = audit_mapping(WORLD, corrupt(**rows), min_pixels=100)
    assert audited[0].name == first and flag in audited[0].flags()
    assert {r.name for r in audited[: len(rows)]} == set(rows)
    assert all(r.suspicion == 0.0 for r in audited[len(rows) :])


def test_audit_changed_by_prior_and_void_rows():
    """Rule 3: the share the prior overrides counts every pixel outside the set, confident or not."""
    audited = {
        r.name: r for r in audit_mapping(WORLD, corrupt(Road="sidewalk", Fence="void"), min_pixels=100)
    }
    road = audited["Road"]
    assert road.changed_by_prior == 1.0 and road.outside_confident == pytest.approx(900 / 950)
    assert road.unused == ("sidewalk",) and road.suspicion == pytest.approx(900 / 950 + 0.1)
    fence = audited["Fence"]
    assert fence.kind == "void" and fence.suspicion == 0.0 and fence.changed_by_prior == 1.0
    assert fence.flags() == ["void: all ignored; teacher says fence on 95%"]
    empty = audit_mapping(cooccurrence([(0, 10, 230, 10)]), SHIPPED)
    assert empty[0].name == "Sky" and empty[0].flags() == ["too few pixels to judge (10)"]
    assert empty[-1].suspicion == -1.0 and empty[-1].flags() == ["no pixels in the sample"]


def test_diff_set_by_set(tmp_path):
    other = corrupt(Car="car;truck;bus", Fence="void", Sky="sky")
    rows = diff_mappings(SHIPPED, other)
    differing = {r.name: r for r in rows if r.differs}
    assert set(differing) == {"Car", "Fence"}
    assert differing["Car"].only_a == ("train",) and differing["Car"].jaccard == 0.75
    assert differing["Fence"].only_a == ("fence",) and differing["Fence"].only_b == ()
    assert jaccard((), ()) == 1.0 and jaccard((1, 2), (2, 3)) == pytest.approx(1 / 3)
    path = tmp_path / "mine.csv"
    path.write_text(other.to_csv())
    out = tmp_path / "diff.json"
    args = ["mapping", "diff", "camvid__cityscapes", str(path), "--extra", "camvid", "--source", "cityscapes"]
    assert main([*args, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"] if r["jaccard"] < 1] == ["Fence", "Car"]
    with pytest.raises(SegunifyError, match="not the same pair"):
        diff_mappings(SHIPPED, load_mapping("kitti__cityscapes"))
    assert main(["mapping", "diff", "camvid__cityscapes", "kitti__cityscapes"]) == 1


# ------------------------------------------------------------------------------------------------
# the CLI with the shipped teacher on real CamVid


@pytest.fixture(scope="module")
def teacher_ckpt(weights_dir, tmp_path_factory):
    from segunify.models import create_model
    from segunify.models.checkpoint import save_checkpoint

    model = create_model("espnetv2", 19, weights=weights_dir / "espnetv2_s1.0_cityscapes_1024x512.pth", s=1.0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "teacher", model, {"taxonomy": "cityscapes"})


def test_cli_suggest_then_audit_a_corrupted_mapping(teacher_ckpt, camvid_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGUNIFY_NO_PROGRESS", "1")
    torch.set_num_threads(1)
    base = ["--teacher", str(teacher_ckpt), "--dataset", "camvid", "--root", str(camvid_root)]
    opts = ["--limit", "5", "--size", "360,480"]  # 5 frames evenly spread: pedestrians in enough of them
    draft, png, stats = tmp_path / "draft.csv", tmp_path / "heat.png", tmp_path / "stats.json"
    assert (
        main(
            ["mapping", "suggest", *base, *opts, "--out", str(draft), "--png", str(png), "--json", str(stats)]
        )
        == 0
    )
    assert draft.read_text().startswith("# DRAFT by `segunify mapping suggest`")
    assert png.read_bytes()[:4] == b"\x89PNG" and json.loads(stats.read_text())["images"] == 5
    before = draft.read_bytes()
    assert main(["mapping", "suggest", *base, *opts, "--out", str(draft)]) == 1  # never replaced silently
    assert draft.read_bytes() == before
    bad = tmp_path / "camvid__cityscapes.csv"
    bad.write_text(corrupt(Pedestrian="car", Sky="road").to_csv())
    report = tmp_path / "audit.json"
    audit_png = tmp_path / "audit.png"
    assert (
        main(
            [
                "mapping",
                "audit",
                str(bad),
                "--stats",
                str(stats),
                "--json",
                str(report),
                "--png",
                str(audit_png),
            ]
        )
        == 0
    )
    assert audit_png.read_bytes()[:4] == b"\x89PNG"
    top = [r["name"] for r in json.loads(report.read_text())["rows"][:2]]
    assert set(top) == {"Sky", "Pedestrian"}
    assert main(["mapping", "audit", str(bad), *base, *opts, "--json", str(report)]) == 1  # exists
    assert main(["mapping", "audit", str(bad), *base, *opts, "--json", str(report), "--overwrite"]) == 0
    assert [r["name"] for r in json.loads(report.read_text())["rows"][:2]] == top
    assert main(["mapping", "audit", "kitti__cityscapes", *base, *opts]) == 1  # wrong pair: bad input


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    root = tmp_path / "camvid"
    root.mkdir()
    base = ["mapping", "suggest", "--teacher", str(tmp_path / "none"), "--dataset", "camvid", "--root"]
    assert main([*base, str(root), "--out", str(tmp_path / "d.csv"), "--coverage", "1.5"]) == 2  # usage
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # rich boxes and wraps it
    assert "Invalid value for --coverage: must be in (0, 1], got 1.5" in err
    with pytest.raises(FieldError, match=r"^min_share: must be in \[0, 1\), got 1.0$"):
        SuggestRule(min_share=1.0)  # the library names its field
    assert main([*base, str(tmp_path / "missing"), "--out", str(tmp_path / "d.csv")]) == 1
    assert "dataset root of 'camvid' not found" in capsys.readouterr().err
    assert main(["mapping", "audit", "camvid__cityscapes"]) == 2  # neither a teacher nor --stats
    stats = tmp_path / "stats.json"
    stats.write_text('{"extra_taxonomy": "camvid"}')
    assert main(["mapping", "audit", "camvid__cityscapes", "--stats", str(stats)]) == 1
    assert f"{stats}: not co-occurrence statistics" in capsys.readouterr().err
    assert not (tmp_path / "d.csv").exists()
