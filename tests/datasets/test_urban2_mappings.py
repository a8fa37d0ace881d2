"""The shipped mappings of ApolloScape, A2D2, nuImages, Waymo and COCO panoptic onto both urban sources."""

from importlib import resources

import pytest

from segunify.mapping import load_mapping

EXTRAS = ["apolloscape", "a2d2", "nuimages", "waymo", "coco-panoptic"]
SOURCES = ["cityscapes", "mapillary-vistas-v1.2"]
PAIRS = [f"{e}__{s}" for e in EXTRAS for s in SOURCES]


@pytest.mark.parametrize("pair", PAIRS)
def test_mapping_validates_and_explains_every_one_to_many_row(pair):
    m = load_mapping(pair)
    assert m.allowed.shape == (m.extra.num_classes, m.source.num_classes)
    lines = (
        (resources.files("segunify") / "mappings" / f"{pair}.csv").read_text(encoding="utf-8").splitlines()
    )
    for i, line in enumerate(lines):
        fields = line.split("#", 1)[0].split(",")
        if len(fields) == 3 and ";" in fields[2]:
            assert lines[i - 1].startswith("#"), (
                f"{pair}.csv:{i + 1}: one-to-many row without a comment above it"
            )


def allowed(pair, extra_class):
    m = load_mapping(pair)
    return {m.source.classes[c] for c in m.allowed_sets[m.extra.index(extra_class)]}


def test_background_of_nuimages_is_the_unannotated_scene():
    bg = allowed("nuimages__cityscapes", "background")
    assert {"building", "vegetation", "sky", "sidewalk", "pole"} <= bg
    assert not bg & {
        "road",
        "person",
        "car",
        "truck",
        "bus",
        "bicycle",
        "motorcycle",
    }  # all annotated in nuImages


@pytest.mark.parametrize(
    ("pair", "extra_class", "expected"),
    [
        ("a2d2__cityscapes", "Truck", {"truck", "bus"}),  # no bus class in A2D2
        ("a2d2__cityscapes", "Ego car", set()),
        ("a2d2__mapillary-vistas-v1.2", "Ego car", {"void--ego-vehicle", "void--car-mount"}),
        ("waymo__cityscapes", "cyclist", {"rider", "bicycle"}),
        ("waymo__cityscapes", "lane_marker", {"road"}),
        (
            "apolloscape__cityscapes",
            "vegetation",
            {"vegetation", "terrain"},
        ),  # no terrain class in ApolloScape
        ("apolloscape__mapillary-vistas-v1.2", "overpass", {"construction--structure--bridge"}),
        ("coco-panoptic__cityscapes", "person", {"person", "rider"}),
        ("coco-panoptic__cityscapes", "dining table", set()),
    ],
)
def test_key_choices(pair, extra_class, expected):
    assert allowed(pair, extra_class) == expected
