"""The one reader of a pseudo-label folder: where each label is, reading it, and what the folder was made
for (taxonomies, dataset and split; root, dataset taxonomy, mapping and teacher; each sample's inputs)."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from fixtures.train_data import TEACHER_SHA256, make_camvid, make_pseudo
from segunify.datasets import create_dataset
from segunify.errors import FieldError, SegunifyError
from segunify.mapping import load_mapping, parse_mapping
from segunify.pseudo.folder import PseudoFolder
from segunify.taxonomy import load_taxonomy


@pytest.fixture
def made(tmp_path):
    root = make_camvid(tmp_path / "camvid", n_train=2, n_val=0)
    return create_dataset("camvid", root), PseudoFolder.open(make_pseudo(root, tmp_path / "pseudo"))


def test_labels_are_found_read_and_checked(made, tmp_path):
    ds, folder = made
    samples = ds.samples("train")
    s = samples[0]
    assert folder.label_path(s) == folder.path / s.rel
    first = [sets[0] if sets else 255 for sets in load_mapping("camvid__cityscapes").allowed_sets]
    want = np.array(first + [255] * (256 - len(first)), dtype=np.uint8)[
        ds.read_label(s)
    ]  # the fixture's rule
    assert np.array_equal(folder.read_label(s, ds.read_image(s).shape), want)
    with pytest.raises(SegunifyError, match="pseudo-label size 64x48 differs from image size 3x2"):
        folder.read_label(s, (2, 3))
    assert folder.missing(samples) is None and folder.stale(samples) is None
    os.utime(s.label, ns=(1, 1))  # the ground truth changed since it was labelled
    assert f"sample {s.id!r} changed since its pseudo-label was made" in folder.stale(samples)
    with pytest.raises(SegunifyError, match="pseudo-label directory not found"):
        PseudoFolder.open(tmp_path / "nowhere")
    (folder.path / s.rel).unlink()
    with pytest.raises(SegunifyError, match=f"pseudo-label of sample '{s.id}' not found"):
        folder.read_label(s)
    assert folder.missing(samples) == folder.label_path(s)


def test_a_folder_of_an_older_version_with_soft_labels_stays_readable(made):
    """Soft priors (``pseudo-label --soft``) left the product: a summary that records the flag still loads,
    and a ``soft/`` folder beside the labels is ignored."""
    ds, folder = made
    path = folder.summary_path
    data = json.loads(path.read_text(encoding="utf-8"))
    data["settings"]["soft"] = True
    path.write_text(json.dumps(data), encoding="utf-8")
    s = ds.samples("train")[0]
    (folder.path / "soft" / s.rel).parent.mkdir(parents=True)
    (folder.path / "soft" / s.rel).write_bytes(b"")
    again = PseudoFolder.open(folder.path)
    assert "soft" not in again.summary.settings.model_dump()
    assert again.read_label(s).ndim == 2 and again.missing(ds.samples("train")) is None


def test_what_the_folder_was_made_for(made, tmp_path):
    ds, folder = made
    city, mapping = load_taxonomy("cityscapes"), load_mapping("camvid__cityscapes")
    folder.check_holds("camvid", "train", city)
    folder.check_origin(ds, mapping, TEACHER_SHA256)
    folder.check_origin(ds)  # no mapping or teacher known: not compared
    with pytest.raises(
        SegunifyError, match="holds source_taxonomy 'cityscapes', but the target taxonomy is 'camvid'"
    ):
        folder.check_holds("camvid", "train", load_taxonomy("camvid"))
    with pytest.raises(SegunifyError, match="holds split 'train', but the split read is 'val'"):
        folder.check_holds("camvid", "val", city)
    other_root = create_dataset("camvid", make_camvid(tmp_path / "b", n_train=1, n_val=0))
    other_mapping = parse_mapping("# another\n" + mapping.to_csv(), mapping.extra, mapping.source, "mine.csv")
    cases = [
        ((other_root,), "root", "were made from dataset root"),
        (
            (ds, other_mapping),
            "mapping",
            "another mapping ('mappings/camvid__cityscapes.csv'), not the mapping given",
        ),
        ((ds, mapping, "cd" * 32), "teacher", "another teacher ('teacher', weights sha256 abababababab...)"),
    ]
    for args, field, words in cases:
        with pytest.raises(FieldError, match=re.escape(words)) as err:
            folder.check_origin(*args)
        assert err.value.field == field and err.value.problem.startswith("pseudo-labels pseudo were made")
