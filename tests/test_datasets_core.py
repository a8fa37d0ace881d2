"""The adapter contract on the real bundled data, and `segunify datasets check|list|stats`."""

import shutil

import numpy as np
import pytest

from segunify.cli import main
from segunify.datasets import available_datasets, check_dataset, create_dataset
from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import read_label_raw


def test_camvid_real_counts_and_order(camvid_root):
    ds = create_dataset("camvid", camvid_root)
    train, val = ds.samples("train"), ds.samples("val")
    assert (len(train), len(val)) == (367, 101)
    assert [s.id for s in train] == sorted(s.id for s in train)
    first = train[0]
    assert first.id == "train/0001TP_006690" and first.rel == "trainannot/0001TP_006690.png"
    image, label = ds.sample(first)
    assert image.shape == (360, 480, 3) and label.shape == (360, 480)
    # SOURCE.md: trainannot/0001TP_006690.png holds {0,1,2,3,4,5,6,8,9,11}; 11 (void) -> 255
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4, 5, 6, 8, 9, 255}


def test_kitti_size_mismatch_is_reported_not_resized(kitti_root):
    ds = create_dataset("kitti", kitti_root)
    report = check_dataset(ds, ["train"])
    assert report.counts["train"] == 5 and len(report.problems) == 5
    assert all("label size 1242x375 differs from image size 1224x370" in msg for _, msg in report.problems)
    with pytest.raises(SegunifyError, match="differs from image size"):
        ds.sample(ds.samples("train")[0])
    cropped = create_dataset("kitti", kitti_root, label_crop="4,18")
    image, label = cropped.sample(cropped.samples("train")[0])
    assert image.shape[:2] == label.shape == (370, 1224)
    raw = read_label_raw(cropped.samples("train")[0].label)
    assert np.array_equal(label, cropped.taxonomy.id_lut()[raw[4:374, 18:1242]])


def test_rugd_real_sample(rugd_root):
    ds = create_dataset("rugd", rugd_root)
    report = check_dataset(ds, ["all"])
    assert report.ok and report.counts["all"] == 26
    label = ds.read_label(ds.samples("all")[0])
    assert label.dtype == np.uint8 and set(np.unique(label).tolist()) <= set(range(24)) | {255}


def test_cli_check_camvid_and_kitti(camvid_root, kitti_root, capsys):
    assert main(["datasets", "check", "camvid", "--root", str(camvid_root)]) == 0
    out = capsys.readouterr().out
    assert "367" in out and "101" in out and "no problems" in out
    assert main(["datasets", "check", "kitti", "--root", str(kitti_root)]) == 1
    out = capsys.readouterr().out
    assert out.count("differs from image size") == 5 and "5 problem(s) found" in out
    assert main(["datasets", "check", "kitti", "--root", str(kitti_root), "--opt", "label_crop=4,18"]) == 0


@pytest.fixture
def small_camvid(tmp_path, camvid_root):
    """Three real CamVid pairs copied into a temp root that tests may break."""
    root = tmp_path / "CamVid"
    for sub in ("train", "trainannot"):
        (root / sub).mkdir(parents=True)
    for s in create_dataset("camvid", camvid_root).samples("train")[:3]:
        shutil.copy(s.image, root / "train" / s.image.name)
        shutil.copy(s.label, root / "trainannot" / s.label.name)
    return root


def test_check_lists_every_problem_with_its_file(small_camvid, capsys):
    names = sorted(p.name for p in (small_camvid / "train").iterdir())
    (small_camvid / "trainannot" / names[0]).unlink()
    label = read_label_raw(small_camvid / "trainannot" / names[1])
    label[0, 0] = 77
    write_png(small_camvid / "trainannot" / names[1], label)
    (small_camvid / "train" / names[2]).write_bytes(b"garbage")
    assert main(["datasets", "check", "camvid", "--root", str(small_camvid), "--split", "train"]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert f"{names[0]}: label file missing" in out
    assert f"{names[1]}: unknown label id(s) [77]" in out
    assert f"{names[2]}: cannot decode image" in out
    assert "3 problem(s) found" in out


def test_wrong_size_label(small_camvid):
    ds = create_dataset("camvid", small_camvid)
    s = ds.samples("train")[0]
    write_png(s.label, read_label_raw(s.label)[:100])
    report = check_dataset(ds, ["train"])
    assert (
        len(report.problems) == 1
        and "label size 480x100 differs from image size 480x360" in report.problems[0][1]
    )


def test_cli_errors(tmp_path, capsys):
    assert main(["datasets", "check", "nope", "--root", str(tmp_path)]) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert main(["datasets", "check", "camvid", "--root", str(tmp_path / "missing")]) == 1
    assert "dataset root of 'camvid' not found" in capsys.readouterr().err
    assert main(["datasets", "check", "camvid", "--root", str(tmp_path), "--split", "bogus"]) == 1
    assert "no split 'bogus'" in capsys.readouterr().err
    assert main(["datasets", "check", "camvid"]) == 2
    assert main(["datasets", "check", "kitti", "--root", str(tmp_path), "--opt", "label_crop"]) == 2  # usage
    assert "--opt expects key=value" in capsys.readouterr().err


def test_list_and_stats(rugd_root, capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in available_datasets():
        assert name in out
    assert (
        main(["datasets", "stats", "rugd", "--root", str(rugd_root), "--split", "all", "--limit", "0"]) == 0
    )
    out = capsys.readouterr().out
    # SOURCE.md: tree 39.63 % and grass 19.28 % of all pixels of the 26 annotations
    assert "39.63" in out and "19.28" in out


def test_ground_truth_ids_are_checked_once_where_labels_are_decoded(tmp_path):
    """An adapter that decodes an id outside its taxonomy (here 40; CamVid has 0..10 and 255) is refused
    by read_label, naming the file; the pseudo-label run and the co-occurrence pass read through it and
    no longer check again."""
    from fixtures import camvid as fx
    from segunify.datasets.camvid import CamVid
    from segunify.mapcheck.cooccurrence import labelled_pairs

    class Shifted(CamVid):
        def decode_label(self, raw, path):
            label = super().decode_label(raw, path).copy()
            label[0, 0] = 40
            return label

    ds = Shifted(fx.make(tmp_path / "camvid"))
    s = ds.samples("train")[0]
    for read in (
        ds.read_label,
        lambda sample: ds.sample(sample)[1],
        lambda sample: next(labelled_pairs(ds, [sample])),
    ):
        with pytest.raises(SegunifyError, match=r"id\(s\) \[40\] outside taxonomy 'camvid'") as err:
            read(s)
        assert err.value.path == str(s.label)
    assert set(np.unique(CamVid(ds.root).read_label(s)).tolist()) <= set(range(11)) | {255}
