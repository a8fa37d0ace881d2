"""The urban mapping files: they validate, every one-to-many row carries its explanation, and the key
choices hold (hand-checked against the Cityscapes class definitions and the Vistas configs)."""

import numpy as np
import pytest

from segunify.mapping import load_mapping, mapping_dir

FILES = [
    "mapillary-vistas-v1.2__cityscapes", "mapillary-vistas-v2.0__cityscapes", "mapillary-vistas-v2.0__mapillary-vistas-v1.2",
    "cityscapes__mapillary-vistas-v1.2", "kitti__mapillary-vistas-v1.2", "bdd100k__cityscapes", "bdd100k__mapillary-vistas-v1.2",
    "camvid__mapillary-vistas-v1.2", "camvid32__cityscapes", "camvid32__mapillary-vistas-v1.2", "idd__cityscapes",
    "idd__mapillary-vistas-v1.2", "wilddash2__cityscapes", "wilddash2__mapillary-vistas-v1.2",
]  # fmt: skip


@pytest.mark.parametrize("name", FILES)
def test_validates_and_explains_every_one_to_many_row(name):
    m = load_mapping(name)
    assert m.allowed.shape == (m.extra.num_classes, m.source.num_classes)
    lines = (mapping_dir() / f"{name}.csv").read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("#") and ";" in line:
            assert lines[i - 1].startswith("# "), f"{name}: no comment above {line!r}"


def allowed(name, extra, *sources):
    m = load_mapping(name)
    row = m.allowed[m.extra.index(extra)]
    return {m.source.classes[c] for c in np.flatnonzero(row)} == set(sources)


def test_key_choices():
    mv, mv12 = "mapillary-vistas-v1.2__cityscapes", "cityscapes__mapillary-vistas-v1.2"
    assert allowed(mv, "construction--barrier--curb", "sidewalk")
    assert allowed(mv, "object--vehicle--on-rails", "train")
    assert allowed(mv, "construction--barrier--guard-rail")  # void: ignored in Cityscapes
    assert allowed(mv, "construction--flat--bike-lane", "road", "sidewalk")
    assert allowed(
        mv12, "rider", "human--rider--bicyclist", "human--rider--motorcyclist", "human--rider--other-rider"
    )
    assert allowed(mv12, "truck", "object--vehicle--truck", "object--vehicle--trailer")
    assert allowed("idd__cityscapes", "non-drivable fallback", "terrain")  # anue_labels.py csTrainId 9
    assert allowed("wilddash2__cityscapes", "pickup", "truck") and allowed(
        "wilddash2__cityscapes", "van", "car"
    )
    assert allowed("camvid32__cityscapes", "SUVPickupTruck", "car", "truck")


def test_vistas_v20_refines_v12():
    """Every v1.2 class is reached from v2.0, and each v2.0 class that keeps a v1.2 name maps to itself."""
    m = load_mapping("mapillary-vistas-v2.0__mapillary-vistas-v1.2")
    assert m.allowed.any(axis=0).all()
    for k, name in enumerate(m.extra.classes):
        if name in m.source.classes:
            assert m.allowed_sets[k] == (m.source.index(name),)


def test_cityscapes_rows_partition_vistas_except_shared_surfaces():
    """Reaching a Vistas class from two Cityscapes rows is allowed only for the documented shared ones."""
    m = load_mapping("cityscapes__mapillary-vistas-v1.2")
    shared = {m.source.classes[c] for c in np.flatnonzero(m.allowed.sum(axis=0) > 1)}
    assert shared == {
        "construction--flat--bike-lane", "object--manhole", "object--catch-basin", "construction--barrier--other-barrier"
    }  # fmt: skip
