"""The off-road source taxonomy and every mapping into it: exact class order, validation, and a comment
above (or beside) every one-to-many row."""

from __future__ import annotations

from importlib import resources

import pytest

from segunify.cli import main
from segunify.datasets import get_dataset_class
from segunify.mapping import available_mappings, load_mapping
from segunify.taxonomy import load_taxonomy

OFFROAD = (
    "asphalt rough_drivable cobble sidewalk building wall fence pole traffic_light traffic_sign tree "
    "non_drivable_veg crops water high_grass low_grass guard_rail sky person rider car truck bus trailer "
    "caravan on_rails motorcycle bicycle road_marking bridge tunnel rock snow animal"
).split()
OFFROAD_DATASETS = (
    "goose",
    "rellis3d",
    "tas500",
    "ycor",
    "freiburg-forest",
    "wildscenes2d",
    "great-outdoors",
    "rugd",
)
EXTRAS = sorted(e for e, s in available_mappings() if s == "offroad")


def test_offroad_taxonomy_is_the_papers_34_classes_in_order():
    tax = load_taxonomy("offroad")
    assert list(tax.classes) == OFFROAD
    assert [lab.id for lab in tax.labels] == [*range(34), 255]  # an index PNG stores the train id itself
    assert tax.labels[-1].ignore and len(set(tax.colors)) == 34


def test_every_offroad_dataset_and_both_urban_sources_have_a_mapping():
    assert set(OFFROAD_DATASETS) | {"cityscapes", "mapillary-vistas-v1.2"} <= set(EXTRAS)


@pytest.mark.parametrize("extra", EXTRAS)
def test_mapping_validates_and_explains_one_to_many(extra):
    m = load_mapping(f"{extra}__offroad")
    assert m.allowed.shape == (load_taxonomy(extra).num_classes, 34)
    text = (resources.files("segunify") / "mappings" / f"{extra}__offroad.csv").read_text(encoding="utf-8")
    previous = ""
    uncommented = []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line:
            continue
        body = line.split("#", 1)[0].strip()
        if body and not body.startswith("extra_id") and ";" in body.split(",")[-1]:
            if not (previous.startswith("#") or "#" in line):
                uncommented.append(line)
        previous = line
    assert uncommented == []


@pytest.mark.parametrize("name", OFFROAD_DATASETS)
def test_dataset_is_offroad_and_listed(name, capsys):
    cls = get_dataset_class(name)
    assert cls.domain == "offroad" and (cls.taxonomy_name, "offroad") in available_mappings()
    assert main(["datasets", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if f" {name} " in line)
    assert "offroad" in row
