import sys

import cv2
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from fixtures import waymo as fx  # noqa: E402
from fixtures.urban2_util import assert_clean, assert_reported  # noqa: E402
from segunify.datasets import create_dataset  # noqa: E402
from segunify.errors import SegunifyError  # noqa: E402
from segunify.io import encode_png  # noqa: E402

CTX = "10017090168044687777_6380_000_6400_000"
SEG = f"training/camera_segmentation/{CTX}.parquet"
IMG = f"training/camera_image/{CTX}.parquet"
PANOPTIC = "[CameraSegmentationLabelComponent].panoptic_label"


@pytest.fixture
def root(tmp_path):
    return fx.make(tmp_path / "waymo")


def set_row(path, column, row, value):
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = value
    pq.write_table(
        table.set_column(
            table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
        ),
        path,
    )


def test_fixture_passes_check(root, capsys):
    assert_clean("waymo", root, fx.COUNTS, capsys)


def test_samples_are_the_labelled_frames(root):
    ds = create_dataset("waymo", root)
    ids = [s.id for s in ds.samples("train")]
    assert ids == [
        f"{CTX}/1550083467346370/FRONT",
        f"{CTX}/1550083467346370/FRONT_LEFT",
        f"{CTX}/1550083468346370/FRONT",
        "10023947602400723454_1120_000_1140_000/1552440195362591/SIDE_RIGHT",
    ]
    assert ds.samples("train")[1].rel == f"training/{CTX}/1550083467346370_FRONT_LEFT.png"


def test_panoptic_labels_decode_to_semantic_classes(root):
    ds = create_dataset("waymo", root)
    label = ds.read_label(ds.samples("val")[0])
    names = ds.taxonomy.classes
    assert label[0, 0] == 255  # TYPE_UNDEFINED
    assert [names[v] for v in label[0, 1:4]] == ["ego_vehicle", "car", "truck"]  # 1000, 2007, 3007: divided
    assert (
        names[label[1, 9]] == "pedestrian"
        and names[label[1, 20]] == "road"
        and names[label[0, 28]] == "static"
    )
    assert np.array_equal(label[0, 1:], np.arange(28))


def test_image_is_the_jpeg_of_the_matching_row(root):
    ds = create_dataset("waymo", root)
    s = ds.samples("train")[1]  # FRONT_LEFT of the first frame
    table = pq.read_table(root / IMG).to_pydict()
    row = next(
        i
        for i, (ts, cam) in enumerate(
            zip(table["key.frame_timestamp_micros"], table["key.camera_name"], strict=True)
        )
        if ts == 1550083467346370 and cam == 2
    )
    expected = cv2.imdecode(
        np.frombuffer(table["[CameraImageComponent].image"][row], np.uint8), cv2.IMREAD_COLOR
    )
    assert np.array_equal(ds.read_image(s), expected[:, :, ::-1])


def test_missing_label_is_reported(root, capsys):
    set_row(root / SEG, PANOPTIC, 1, b"")
    assert_reported(
        "waymo",
        root,
        capsys,
        f"{CTX}.parquet[frame 1550083467346370, camera FRONT_LEFT]",
        "panoptic_label is missing",
    )


def test_unknown_semantic_id_is_reported(root, capsys):
    panoptic = fx.panoptic()
    panoptic[0, 0] = 40 * fx.DIVISOR + 1
    set_row(root / SEG, PANOPTIC, 2, encode_png(panoptic))
    assert_reported("waymo", root, capsys, "camera FRONT]", "unknown label id(s) [40]")


def test_wrong_size_is_reported(root, capsys):
    set_row(root / SEG, PANOPTIC, 0, encode_png(np.zeros((fx.H, fx.W + 3), np.uint16)))
    assert_reported(
        "waymo",
        root,
        capsys,
        "[frame 1550083467346370, camera FRONT]",
        "label size 32x2 differs from image size 29x2",
    )


def test_missing_image_row_is_reported(root, capsys):
    table = pq.read_table(root / IMG)
    keep = [
        not (ts == 1550083468346370 and cam == 1)
        for ts, cam in zip(
            table.column("key.frame_timestamp_micros").to_pylist(),
            table.column("key.camera_name").to_pylist(),
            strict=True,
        )
    ]
    pq.write_table(table.filter(pa.array(keep)), root / IMG)
    assert_reported("waymo", root, capsys, "camera_image", "no image row for this frame and camera")


def test_missing_column_is_reported(root):
    table = pq.read_table(root / SEG)
    pq.write_table(table.drop_columns(["key.camera_name"]), root / SEG)
    with pytest.raises(
        SegunifyError, match=r"camera_segmentation/.*parquet: missing column\(s\) \['key.camera_name'\]"
    ):
        create_dataset("waymo", root).samples("train")


def test_without_pyarrow_the_error_says_what_to_install(root, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(SegunifyError, match="pip install pyarrow"):
        create_dataset("waymo", root).samples("val")


def test_any_reading_order_gives_the_same_pairs(root):
    """The per-context cache is keyed by file: jumping between contexts must not mix rows up."""
    forward = create_dataset("waymo", root)
    samples = forward.samples("train") + forward.samples("val")
    pairs = {s.id: forward.sample(s) for s in samples}
    backward = create_dataset("waymo", root)
    shuffled = backward.samples("val") + backward.samples("train")[::-1]
    for s in shuffled:
        image, label = backward.sample(s)
        assert np.array_equal(image, pairs[s.id][0]) and np.array_equal(label, pairs[s.id][1])
    assert len({pairs[s.id][0].tobytes() for s in samples}) == len(samples)  # every row has its own image
