"""Hub checkpoints as teachers (issue 23.1): a ``from_pretrained`` folder (tiny random SegFormer and
Mask2Former saved with ``save_pretrained`` and Cityscapes' ``id2label``) imported in one command and run
through predict, pseudo-label, evaluate --model and export --onnx on CamVid frames; every way a folder can
be wrong is one line and exit 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures.tiny_models import hf_folder
from segunify.cli import main
from segunify.errors import SegunifyError
from segunify.models.checkpoint import load_checkpoint, load_meta
from segunify.models.hub import (
    hub_table,
    id2label_names,
    match_taxonomy,
    normalise_name,
    preprocessing,
)
from segunify.taxonomy import load_taxonomy

pytestmark = pytest.mark.usefixtures("one_thread")

CITY = list(load_taxonomy("cityscapes").classes)
# an unusual normalisation and size, so that a default could not pass for them
PRE = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.25, 0.2, 0.3], "size": {"height": 64, "width": 128}}


def err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {
        "segformer": hf_folder(root / "segformer", "segformer", preprocessor=PRE),
        "mask2former": hf_folder(root / "mask2former", "mask2former", preprocessor=PRE),
    }


@pytest.fixture(scope="module")
def imported(folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    out = {}
    for family, folder in folders.items():
        out[family] = root / family
        assert main(["import-weights", str(folder), "--out", str(out[family])]) == 0
    return out


# ------------------------------------------------------------------------------- taxonomy matching


def test_names_match_without_case_underscores_or_spaces():
    assert normalise_name(" Traffic_Light ") == normalise_name("traffic-light") == "traffic light"
    variants = [c.upper().replace(" ", "_") for c in CITY]
    assert match_taxonomy(variants, None, "x").name == "cityscapes"  # not bdd100k/kitti: same 19 names
    assert match_taxonomy(CITY, "cityscapes", "x").name == "cityscapes"


def test_mapillary_readable_names_match_the_shipped_taxonomy():
    """Hub Mapillary models name classes as Mapillary's config "readable" ("Traffic Sign (Back)"); the table
    lists those names for mapillary-vistas-v1.2, whose own names are the long ones."""
    from segunify.models.hub import _table

    readable = _table().label_names["mapillary-vistas-v1.2"]
    tax = load_taxonomy("mapillary-vistas-v1.2")
    assert len(readable) == tax.num_classes == 65 and tax.classes[49] == "object--traffic-sign--back"
    assert (
        readable[49] == "Traffic Sign (Back)" and readable[13] == "Road" and tax.classes[13].endswith("road")
    )
    assert match_taxonomy(readable, None, "x").name == "mapillary-vistas-v1.2"


@pytest.mark.parametrize(
    "labels, taxonomy, message",
    [
        (
            CITY[:3] + [CITY[4], CITY[3]] + CITY[5:],
            None,
            "config.json's 19 classes match no shipped taxonomy: id2label[3] is 'fence', "
            "taxonomy cityscapes has 'wall' at 3",
        ),
        (CITY[:18], None, "id2label has 18 classes, taxonomy cityscapes has 19 (it lacks 'bicycle' at 18)"),
        (
            CITY,
            "camvid",
            "config.json's 19 classes do not match taxonomy 'camvid': id2label[0] is 'road', taxonomy camvid "
            "has 'Sky' at 0",
        ),
    ],
)
def test_a_head_that_does_not_match_names_the_first_disagreeing_index(labels, taxonomy, message):
    with pytest.raises(SegunifyError, match="never re-ordered") as err:
        match_taxonomy(labels, taxonomy, "config.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_id2label_must_number_the_classes():
    assert id2label_names({"id2label": {"1": "b", "0": "a"}}, "x") == ["a", "b"]
    with pytest.raises(SegunifyError, match="lacks index 1"):
        id2label_names({"id2label": {"0": "a", "2": "c"}}, "x")
    with pytest.raises(SegunifyError, match="no id2label"):
        id2label_names({}, "x")


# ---------------------------------------------------------------------------------- preprocessing


def _pre(tmp_path, content: dict | None):
    if content is not None:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(content))
    return tmp_path


@pytest.mark.parametrize(
    "content, mean, std, size",
    [
        # HF rescales by 1/255 then normalises: segunify's units are the same
        ({**PRE, "rescale_factor": 1 / 255}, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3), (64, 128)),
        # no rescale: mean/std in 0-255 units (mmseg style) -> divided by 255
        (
            {"do_rescale": False, "image_mean": [127.5, 102.0, 76.5], "image_std": 51.0, "size": 96},
            (0.5, 0.4, 0.3),
            (0.2, 0.2, 0.2),
            (96, 96),  # SegFormer's processor: an int size is a square
        ),
        ({"do_normalize": False, "do_resize": False}, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None),
    ],
)
def test_preprocessor_config_in_segunify_units(tmp_path, content, mean, std, size):
    prep = preprocessing(_pre(tmp_path, content), "segformer", None, None, None)
    assert np.allclose(prep.mean, mean) and np.allclose(prep.std, std) and prep.input_size == size
    assert prep.origin == "preprocessor_config.json"


def test_nothing_is_guessed(tmp_path):
    with pytest.raises(SegunifyError, match="no preprocessor_config.json: the normalisation is unknown"):
        preprocessing(_pre(tmp_path, None), "segformer", None, None, None)
    prep = preprocessing(tmp_path, "segformer", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), (32, 48))
    assert (
        prep.mean == (0.1, 0.2, 0.3)
        and prep.input_size == (32, 48)
        and prep.origin == "--mean/--std + --size"
    )
    with pytest.raises(SegunifyError, match="no preprocessor_config.json: the input size is unknown"):
        preprocessing(tmp_path, "segformer", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), None)
    keep_ratio = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"shortest_edge": 384}}
    with pytest.raises(
        SegunifyError,
        match=r"no fixed input size \(it resizes the shortest edge keeping the aspect ratio\); give size",
    ):
        preprocessing(_pre(tmp_path, keep_ratio), "mask2former", None, None, None)
    assert preprocessing(tmp_path, "mask2former", None, None, (512, 1024)).input_size == (512, 1024)
    with pytest.raises(SegunifyError, match="has no image_mean/image_std"):
        preprocessing(_pre(tmp_path, {"size": 64}), "segformer", None, None, None)


# ------------------------------------------------------------------------------------ the import


@pytest.mark.parametrize("family", ["segformer", "mask2former"])
def test_import_records_family_taxonomy_and_preprocessing(folders, imported, family):
    meta = load_meta(imported[family])
    assert meta.model == {"segformer": "segformer-b0", "mask2former": "mask2former"}[family]
    assert meta.taxonomy == "cityscapes" and meta.classes == CITY
    assert meta.input_size == (64, 128)
    assert np.allclose(meta.mean, PRE["image_mean"]) and np.allclose(meta.std, PRE["image_std"])
    assert meta.source.head == "full" and meta.source.file == "model.safetensors"
    assert meta.source.preprocessing == "preprocessor_config.json"
    # the checkpoint rebuilds the folder's architecture and holds its weights exactly
    model, _ = load_checkpoint(imported[family])
    cls = {
        "segformer": "SegformerForSemanticSegmentation",
        "mask2former": "Mask2FormerForUniversalSegmentation",
    }
    import transformers

    hf = getattr(transformers, cls[family]).from_pretrained(str(folders[family]), use_safetensors=True).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        if family == "segformer":
            ref = F.interpolate(hf(pixel_values=x).logits, size=(64, 128), mode="bilinear")
        else:
            out = hf(pixel_values=x)
            ref = torch.einsum(
                "bqc,bqhw->bchw",
                out.class_queries_logits.softmax(-1)[..., :-1],
                out.masks_queries_logits.sigmoid(),
            )
            ref = F.interpolate(torch.log(ref.clamp_min(1e-6)), size=(64, 128), mode="bilinear")
        assert torch.allclose(model(x), ref, atol=1e-5)


def test_predictor_uses_the_recorded_normalisation(folders, imported):
    """Parity with the transformers pipeline on a real-looking image at the input size: HF's image
    processor (rescale + normalise) and the model's logits upsampled give the predictor's probabilities."""
    from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

    from segunify.models.inference import Predictor

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    pred = Predictor.from_checkpoint(imported["segformer"])
    assert torch.allclose(pred.mean.flatten(), torch.tensor(PRE["image_mean"]) * 255)
    processor = SegformerImageProcessor.from_pretrained(str(folders["segformer"]))
    pixels = processor(images=img, do_resize=False, return_tensors="pt")["pixel_values"]
    hf = SegformerForSemanticSegmentation.from_pretrained(str(folders["segformer"]), use_safetensors=True)
    with torch.no_grad():
        ref = F.interpolate(hf.eval()(pixel_values=pixels).logits, size=(64, 128), mode="bilinear")
    assert torch.allclose(pred.probs(img), ref.softmax(1), atol=1e-5)


def test_import_then_predict_on_camvid(imported, camvid_root, tmp_path):
    """The issue's acceptance: import-weights <tiny SegFormer folder> --out CK, then predict --model CK."""
    frames = sorted((camvid_root / "val").iterdir())[:2]
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(imported["segformer"]), *map(str, frames), "--out", str(out)]) == 0
    import cv2

    ids = cv2.imread(str(out / frames[0].with_suffix(".png").name), cv2.IMREAD_UNCHANGED)
    assert ids.shape == cv2.imread(str(frames[0])).shape[:2] and ids.max() < 19
    assert len(list(out.glob("*_overlay.png"))) == 2


@pytest.mark.parametrize("family", ["segformer", "mask2former"])
def test_imported_teacher_pseudo_labels_and_evaluates_camvid(imported, family, camvid_root, tmp_path):
    from segunify.pseudo import load_summary

    ck = str(imported[family])
    common = ["--dataset", "camvid", "--root", str(camvid_root), "--mapping", "camvid__cityscapes"]
    args = ["pseudo-label", "--teacher", ck, *common, "--split", "train", "--limit", "3"]
    assert main([*args, "--out", str(tmp_path / "p"), "--workers", "0", "--device", "cpu"]) == 0
    summary = load_summary(tmp_path / "p")
    assert summary.images == 3 and tuple(summary.settings.size) == (64, 128)
    js = tmp_path / "e.json"
    evaluate = ["evaluate", "--model", ck, *common, "--split", "val", "--limit", "2", "--json", str(js)]
    assert main(evaluate) == 0
    result = json.loads(js.read_text())
    assert result["images"] == 2 and result["pixels"] > 0


def test_export_onnx_segformer_and_refuse_mask2former(imported, tmp_path, capsys):
    assert main(["export", str(imported["segformer"]), "--onnx", str(tmp_path / "sf.onnx")]) == 0
    assert (tmp_path / "sf.onnx").stat().st_size > 0
    capsys.readouterr()
    assert main(["export", str(imported["mask2former"]), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "Mask2Former cannot run in ONNX Runtime" in err_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------------------------ refusals


def _refused(capsys, *args) -> str:
    capsys.readouterr()
    code = main(["import-weights", *map(str, args)])
    line = err_line(capsys)
    assert code == 1, line
    return line


def test_permuted_and_short_heads_are_refused_in_one_line(tmp_path, capsys):
    permuted = hf_folder(tmp_path / "perm", labels=CITY[:3] + [CITY[4], CITY[3]] + CITY[5:], preprocessor=PRE)
    line = _refused(capsys, permuted, "--out", tmp_path / "a")
    assert "id2label[3] is 'fence', taxonomy cityscapes has 'wall' at 3" in line
    line = _refused(capsys, permuted, "--out", tmp_path / "a", "--taxonomy", "cityscapes")
    assert "do not match taxonomy 'cityscapes': id2label[3] is 'fence'" in line
    short = hf_folder(tmp_path / "short", labels=CITY[:18], preprocessor=PRE)
    assert "id2label has 18 classes, taxonomy cityscapes has 19" in _refused(
        capsys, short, "--out", tmp_path / "a"
    )
    assert not (tmp_path / "a").exists()


def test_pickle_only_and_incomplete_folders_are_refused(folders, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    pickled = shutil.copytree(folders["segformer"], tmp_path / "bin")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")  # never opened: refused by name
    line = _refused(capsys, pickled, "--out", tmp_path / "a")
    assert (
        "holds only pytorch_model.bin (a pickle, which segunify never loads)" in line and "refs/pr/N" in line
    )
    lacking = shutil.copytree(folders["segformer"], tmp_path / "lacking")
    state = load_file(str(lacking / "model.safetensors"))
    state.pop(next(k for k in state if "encoder" in k))
    save_file(state, str(lacking / "model.safetensors"), metadata={"format": "pt"})
    assert "weights lack 1 tensor(s) of the model" in _refused(capsys, lacking, "--out", tmp_path / "a")
    bare = shutil.copytree(folders["segformer"], tmp_path / "bare")
    (bare / "preprocessor_config.json").unlink()
    assert "no preprocessor_config.json: the normalisation is unknown" in _refused(
        capsys, bare, "--out", tmp_path / "a"
    )
    flags = ["--mean", "0.5,0.4,0.3", "--std", "0.25,0.2,0.3", "--size", "32,64"]
    assert main(["import-weights", str(bare), "--out", str(tmp_path / "ok"), *flags]) == 0
    meta = load_meta(tmp_path / "ok")
    assert meta.input_size == (32, 64) and meta.source.preprocessing == "--mean/--std + --size"
    assert not (tmp_path / "a").exists()


def test_usage_errors_and_hub_ids(folders, tmp_path, capsys):
    assert main(["import-weights", str(folders["segformer"]), "--out", str(tmp_path / "a"), "--s", "2"]) == 2
    assert (
        main(["import-weights", str(folders["segformer"]), "--out", str(tmp_path / "a"), "--mean", "1,2"])
        == 2
    )
    capsys.readouterr()
    hub_id = "nvidia/segformer-b5-finetuned-cityscapes-1024-1024"
    line = _refused(capsys, hub_id, "--out", tmp_path / "a")
    assert (
        "is a hub id: download it first (huggingface-cli download " + hub_id + " --revision refs/pr/3" in line
    )


def test_hub_table_entries_are_buildable(capsys):
    from segunify.models import available_models

    table = hub_table()
    assert "facebook/mask2former-swin-large-cityscapes-semantic" in table
    for entry in table.values():
        assert entry.model in available_models() and load_taxonomy(entry.taxonomy)
        assert entry.command().startswith(f"huggingface-cli download {entry.id}")
    assert main(["models", "weights"]) == 0
    out = capsys.readouterr().out
    assert (
        "huggingface-cli download nvidia/segformer-b0-finetuned-cityscapes-1024-1024 --revision refs/pr/4"
        in out
    )


def test_a_hub_config_of_an_older_transformers_imports_and_names_its_hub_id(tmp_path):
    """config.json as the nvidia hub models have it (transformers 4.12 keys, ``_name_or_path`` = the hub id):
    imported, the id recorded, and the checkpoint rebuilds from the recorded config."""
    folder = hf_folder(tmp_path / "sf", preprocessor=PRE)
    config = json.loads((folder / "config.json").read_text())
    config.pop("dtype", None)
    config |= {
        "_name_or_path": "nvidia/segformer-b0-finetuned-cityscapes-1024-1024",
        "transformers_version": "4.12.0.dev0",
        "torch_dtype": "float32",
        "reshape_last_stage": True,
        "downsampling_rates": [1, 4, 8, 16],
        "image_size": 224,
    }
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["import-weights", str(folder), "--out", str(tmp_path / "ck")]) == 0
    meta = load_meta(tmp_path / "ck")
    assert meta.source.pretrained == "nvidia/segformer-b0-finetuned-cityscapes-1024-1024"
    model, _ = load_checkpoint(tmp_path / "ck")
    assert model(torch.zeros(1, 3, 64, 128)).shape == (1, 19, 64, 128)
