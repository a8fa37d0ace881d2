"""``segunify export-dataset``: a config with a source (ground-truth) part and a pseudo-labelled part written
as plain files and as parquet, labels pixel-exact against the trainer's own reading, the dataset card's
figures by hand, the parquet round trip, resume, and the output folder's safety rules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures import cityscapes as city_fx
from fixtures.train_data import TEACHER_SHA256, base_config, make_camvid, make_pseudo, write_config
from segunify.apps.export import export_dataset
from segunify.apps.export import parts as export_parts_module
from segunify.cli import main
from segunify.datasets import check_dataset, create_dataset
from segunify.errors import SegunifyError
from segunify.labels import read_label_raw
from segunify.mapping import load_mapping
from segunify.taxonomy import load_taxonomy

CITY = load_taxonomy("cityscapes")


@pytest.fixture
def setup(tmp_path):
    """A Cityscapes source part (ground truth, 2 frames) and a CamVid pseudo-labelled part (8 frames)."""
    city = city_fx.make(tmp_path / "cityscapes")
    camvid = make_camvid(tmp_path / "camvid")
    pseudo = make_pseudo(camvid, tmp_path / "pseudo")
    cfg = base_config(camvid, tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"] = [
        {"dataset": "cityscapes", "root": str(city), "weight": 2.0},
        {"dataset": "camvid", "root": str(camvid), "labels": str(pseudo), "mapping": "camvid__cityscapes",
         "resize": [24, 32]},
    ]  # fmt: skip
    config = write_config(tmp_path / "train.yaml", cfg)
    return {"city": city, "camvid": camvid, "pseudo": pseudo, "config": config}


def _expected(setup) -> dict[str, dict[str, np.ndarray]]:
    """Labels by hand: Cityscapes label ids through the adapter's codec (already its train ids), CamVid
    pseudo-labels as the folder holds them; keyed by the image path under the dataset root."""
    city = create_dataset("cityscapes", setup["city"])
    camvid = create_dataset("camvid", setup["camvid"])
    return {
        "cityscapes_train": {
            s.image.relative_to(setup["city"]).as_posix(): city.read_label(s) for s in city.samples("train")
        },
        "camvid_train_pseudo": {
            s.image.relative_to(setup["camvid"]).as_posix(): read_label_raw(setup["pseudo"] / s.rel)
            for s in camvid.samples("train")
        },
    }


def test_plain_export_labels_links_splits_and_card(setup, tmp_path):
    out = tmp_path / "export"
    result = export_dataset(setup["config"], out)
    expected = _expected(setup)
    assert result.written == ["cityscapes_train", "camvid_train_pseudo"] and result.warnings == []
    roots = {"cityscapes_train": setup["city"], "camvid_train_pseudo": setup["camvid"]}
    for part, labels in expected.items():
        lines = (out / "splits" / f"{part}.txt").read_text().splitlines()
        assert len(lines) == len(labels)
        for line in lines:
            image, label = (out / p for p in line.split("\t"))
            rel = image.relative_to(out / "images" / part).as_posix()
            assert image.is_symlink() and Path(os.readlink(image)) == (roots[part] / rel).resolve()
            assert label == out / "labels" / part / Path(rel).with_suffix(".png")
            written = read_label_raw(label)
            assert written.dtype == np.uint8 and np.array_equal(
                written, labels[rel]
            )  # original size, no resize
    info = json.loads((out / "dataset_info.json").read_text())
    city, cam = info["parts"]
    assert (city["frames"], cam["frames"], info["frames"]) == (2, 8, 10)
    assert city["labels"] == "ground truth" and city["teacher"] is None and city["weight"] == 2.0
    assert city["mapping"]["name"] == "identity (cityscapes)"
    assert cam["teacher"]["sha256"] == TEACHER_SHA256 and cam["train_resize"] == [24, 32]
    assert cam["mapping"]["sha256"] == load_mapping("camvid__cityscapes").sha256
    for entry, labels in zip((city, cam), expected.values(), strict=True):
        counts = sum(np.bincount(a.ravel(), minlength=256) for a in labels.values())
        assert entry["pixels"] == counts.sum()
        assert entry["ignored_share"] == pytest.approx(counts[255] / counts.sum(), abs=1e-6)
        assert entry["class_share"]["road"] == pytest.approx(counts[0] / counts.sum(), abs=1e-6)
        assert sum(entry["class_share"].values()) + entry["ignored_share"] == pytest.approx(1, abs=1e-5)
    assert "redistribution forbidden" in city["licence"] and city["redistribution"] == "forbidden"
    card = (out / "README.md").read_text()
    assert "| camvid_train_pseudo | camvid | train | 8 | pseudo-labels |" in card and "CC BY-NC 4.0" in card
    tax = load_taxonomy(out / "taxonomy.csv")
    assert tax.classes == CITY.classes and tax.id_lut()[7] == 7 and tax.id_lut()[255] == 255


def test_an_export_reads_back_through_a_dataset_spec(setup, tmp_path):
    """taxonomy.csv + a spec make the export a dataset segunify itself reads: the same labels."""
    out = tmp_path / "export"
    export_dataset(setup["config"], out)
    spec = tmp_path / "export.yaml"
    spec.write_text(
        f'name: exported\ntaxonomy: {out / "taxonomy.csv"}\nimages: "images/*/**/*.png"\n'
        'label: ["images/(.*)", "labels/\\\\1"]\n'
    )
    ds = create_dataset(spec, out)
    assert check_dataset(ds).ok and len(ds.samples("all")) == 10
    expected = _expected(setup)
    for s in ds.samples("all"):
        part, rel = s.id.split("/", 1)
        assert np.array_equal(ds.read_label(s), expected[part][rel + ".png"])


def test_copy_copies_and_warns_about_forbidden_redistribution(setup, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export-dataset", str(setup["config"]), "--out", str(out), "--copy"]) == 0
    err = capsys.readouterr().err
    assert "cityscapes_train: the terms of cityscapes forbid redistribution" in err
    assert "camvid" not in err  # CamVid's licence (CC BY-NC 4.0) lets copies be shared non-commercially
    image = out / "images" / "camvid_train_pseudo" / "train" / "0001TP_000003.png"
    assert (
        not image.is_symlink() and image.read_bytes() == (setup["camvid"] / "train" / image.name).read_bytes()
    )
    assert "**Warning:** part cityscapes_train" in (out / "README.md").read_text()


def test_parquet_round_trip_is_pixel_exact(setup, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "export"
    result = export_dataset(setup["config"], out, layout="parquet")
    assert result.info["images"] == "embedded" and result.warnings[0].startswith("part cityscapes_train")
    table = pq.read_table(sorted((out / "data").glob("*.parquet")))
    rows = table.to_pylist()
    expected = _expected(setup)
    assert sorted(r["part"] for r in rows) == sorted(p for p, v in expected.items() for _ in v)
    roots = {"cityscapes_train": setup["city"], "camvid_train_pseudo": setup["camvid"]}
    for r in rows:
        label = _decode(r["label"]["bytes"])
        assert label.dtype == np.uint8 and np.array_equal(label, expected[r["part"]][r["path"]])
        assert r["image"]["bytes"] == (roots[r["part"]] / r["path"]).read_bytes()
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["label"] == {"_type": "Image"} and features["part"]["_type"] == "Value"


def _decode(png: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def test_parquet_loads_with_hugging_face_datasets(setup, tmp_path):
    datasets = pytest.importorskip("datasets")
    if not hasattr(
        datasets, "load_dataset"
    ):  # tests/datasets (our adapters' tests) shadows a missing package
        pytest.skip("Hugging Face datasets is not installed")
    out = tmp_path / "export"
    export_dataset(setup["config"], out, layout="parquet")
    ds = datasets.load_dataset(
        "parquet", data_files={"train": str(out / "data" / "*.parquet")}, split="train"
    )
    expected = _expected(setup)
    assert len(ds) == 10
    for row in ds:
        assert np.array_equal(np.asarray(row["label"]), expected[row["part"]][row["path"]])
        assert np.asarray(row["image"].convert("RGB")).shape[:2] == expected[row["part"]][row["path"]].shape


def test_rerun_skips_finished_parts_resumes_a_broken_one_and_redoes_changed_inputs(
    setup, tmp_path, monkeypatch
):
    out = tmp_path / "export"
    calls, broken = [], [True]
    real = export_parts_module.ExportPart.label

    def failing(self, j):
        calls.append((self.name, j))
        if self.name == "camvid_train_pseudo" and j == 5 and broken:
            broken.clear()
            raise SegunifyError("disk on fire")
        return real(self, j)

    monkeypatch.setattr(export_parts_module.ExportPart, "label", failing)
    with pytest.raises(SegunifyError, match="disk on fire"):
        export_dataset(setup["config"], out)
    assert not (out / "splits" / "camvid_train_pseudo.txt").exists()
    calls.clear()
    result = export_dataset(setup["config"], out)
    assert result.skipped == ["cityscapes_train"] and result.written == ["camvid_train_pseudo"]
    assert calls == [("camvid_train_pseudo", j) for j in range(5, 8)]  # frames 0-4 read back, not redone
    calls.clear()
    assert export_dataset(setup["config"], out).skipped == ["cityscapes_train", "camvid_train_pseudo"]
    assert calls == []
    label = next((setup["pseudo"] / "trainannot").glob("*.png"))  # a pseudo-label changes: that part again
    os.utime(label, ns=(1, 1))
    assert export_dataset(setup["config"], out).written == ["camvid_train_pseudo"]
    assert len(calls) == 8
    one_part = base_config(setup["camvid"], tmp_path / "run", taxonomy="cityscapes")
    one_part["parts"] = [{"dataset": "cityscapes", "root": str(setup["city"])}]
    result = export_dataset(write_config(tmp_path / "one.yaml", one_part), out)
    assert result.removed == ["camvid_train_pseudo"] and not (out / "images" / "camvid_train_pseudo").exists()
    assert [p["name"] for p in json.loads((out / "dataset_info.json").read_text())["parts"]] == [
        "cityscapes_train"
    ]


def test_switching_link_to_copy_replaces_links_not_their_targets(setup, tmp_path):
    out = tmp_path / "export"
    export_dataset(setup["config"], out)
    source = setup["camvid"] / "train" / "0001TP_000000.png"
    before = source.read_bytes()
    result = export_dataset(setup["config"], out, copy=True)
    assert result.written == ["cityscapes_train", "camvid_train_pseudo"]
    image = out / "images" / "camvid_train_pseudo" / "train" / "0001TP_000000.png"
    assert not image.is_symlink() and source.read_bytes() == before == image.read_bytes()


def test_output_folder_safety(setup, tmp_path, capsys):
    cfg = str(setup["config"])
    inside = setup["camvid"] / "export"
    assert main(["export-dataset", cfg, "--out", str(inside)]) == 1
    assert "output folder lies inside the dataset root" in capsys.readouterr().err and not inside.exists()
    assert main(["export-dataset", cfg, "--out", str(setup["pseudo"] / "x")]) == 1
    assert "lies inside a pseudo-label folder" in capsys.readouterr().err  # an input too
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["export-dataset", cfg, "--out", str(foreign)]) == 1
    assert "not a segunify export" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    out = tmp_path / "export"
    assert main(["export-dataset", cfg, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export-dataset", cfg, "--out", str(out), "--format", "parquet"]) == 1
    assert "holds a plain export, not parquet" in capsys.readouterr().err
    assert main(["export-dataset", cfg, "--out", str(tmp_path / "p"), "--format", "parquet", "--link"]) == 2
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())  # a usage error: rich boxes it
    assert "Invalid value for --link: links are for the plain format" in err
    assert main(["export-dataset", cfg, "--out", str(tmp_path / "p"), "--format", "zip"]) == 1
    assert "unknown export format 'zip'" in capsys.readouterr().err


HOLDER = """
import sys
from segunify.outputs import folder_lock
with folder_lock(sys.argv[1], "export"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_an_export_folder_is_claimed_and_locked_by_the_one_output_policy(setup, tmp_path, capsys):
    """The export's own claim and lock (a twin of segunify.outputs) are gone: its folder carries the
    policy's export marker, other commands refuse it as such, and a second writer fails naming the pid."""
    import subprocess

    from segunify.outputs import claim_folder, folder_kind

    out = tmp_path / "export"
    assert main(["export-dataset", str(setup["config"]), "--out", str(out)]) == 0
    capsys.readouterr()
    assert folder_kind(out) == "export"
    assert json.loads((out / ".segunify-export").read_text()) == {
        "format": "segunify-export",
        "layout": "plain",
    }
    with pytest.raises(SegunifyError, match="is a segunify export folder, not a prediction folder"):
        claim_folder(out, "predict")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["export-dataset", str(setup["config"]), "--out", str(out)]) == 1
        assert f"another export run (pid {holder.pid}) is writing to this folder" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(["export-dataset", str(setup["config"]), "--out", str(out)]) == 0


def test_parquet_without_pyarrow_is_one_line(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
    assert (
        main(["export-dataset", str(setup["config"]), "--out", str(tmp_path / "p"), "--format", "parquet"])
        == 1
    )
    assert (
        capsys.readouterr().err.strip()
        == "error: the parquet format needs pyarrow: pip install 'segunify[datasets]'"
    )
    assert not (tmp_path / "p").exists()


def test_a_config_the_trainer_refuses_is_refused_with_the_same_line(setup, tmp_path, capsys):
    cfg = base_config(setup["camvid"], tmp_path / "run", taxonomy="cityscapes")
    cfg["parts"] = [{"dataset": "camvid", "root": str(setup["camvid"]), "mapping": "camvid__cityscapes"}]
    config = write_config(tmp_path / "bad.yaml", cfg)  # CamVid GT cannot train Cityscapes classes directly
    assert main(["export-dataset", str(config), "--out", str(tmp_path / "o")]) == 1
    export_err = capsys.readouterr().err
    assert main(["train", str(config)]) == 1
    assert capsys.readouterr().err == export_err and "is not one-to-one" in export_err
    assert not (tmp_path / "o").exists()
