import io

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import ColorCodec, IdCodec, colorize, read_image, read_label_raw
from segunify.taxonomy import IGNORE, load_taxonomy

CITY = load_taxonomy("cityscapes")
RUGD = load_taxonomy("rugd")


def test_id_codec_matches_python_dict_uint8_and_uint16():
    codec = IdCodec(CITY)
    raw = np.random.default_rng(0).integers(0, 34, size=(37, 53)).astype(np.uint8)
    expected = np.vectorize({lab.id: lab.train_id for lab in CITY.labels}.get)(raw)
    assert np.array_equal(codec.decode(raw), expected)
    assert np.array_equal(codec.decode(raw.astype(np.uint16)), expected)


def test_id_codec_unknown_id_names_file():
    raw = np.array([[7, 40], [41, 7]], dtype=np.uint8)
    with pytest.raises(SegunifyError, match=r"x.png: unknown label id\(s\) \[40, 41\]"):
        IdCodec(CITY).decode(raw, "x.png")
    with pytest.raises(SegunifyError, match="single-channel"):
        IdCodec(CITY).decode(np.zeros((2, 2, 3), np.uint8), "x.png")


@settings(max_examples=30, deadline=None)
@given(
    arrays(
        np.uint8,
        st.tuples(st.integers(1, 20), st.integers(1, 20)),
        elements=st.sampled_from([*range(24), IGNORE]),
    )
)
def test_color_round_trip(train_ids):
    codec = ColorCodec(RUGD)
    assert np.array_equal(codec.decode(codec.encode(train_ids)), train_ids)


def test_color_codec_unknown_colours_are_counted():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, :3] = (1, 2, 3)
    rgb[1, 0] = (9, 9, 9)
    with pytest.raises(SegunifyError) as info:
        ColorCodec(RUGD).decode(rgb, "lab.png")
    text = str(info.value)
    assert (
        text.startswith("lab.png: 2 unknown colour(s)") and "(1, 2, 3) x3" in text and "(9, 9, 9) x1" in text
    )


def test_png_round_trips(tmp_path):
    ids = np.random.default_rng(1).integers(0, 19, (30, 40)).astype(np.uint8)
    write_png(tmp_path / "a" / "ids.png", ids)
    assert np.array_equal(read_label_raw(tmp_path / "a" / "ids.png"), ids)
    ids16 = ids.astype(np.uint16) * 256 + 7
    write_png(tmp_path / "ids16.png", ids16)
    back = read_label_raw(tmp_path / "ids16.png")
    assert back.dtype == np.uint16 and np.array_equal(back, ids16)
    rgb = colorize(ids, CITY)
    write_png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(read_label_raw(tmp_path / "rgb.png"), rgb)
    assert not list(tmp_path.rglob("*.tmp"))


def test_palette_png_reads_as_indices(tmp_path):
    from PIL import Image

    ids = np.arange(12, dtype=np.uint8).reshape(3, 4)
    img = Image.fromarray(ids, mode="P")
    img.putpalette(np.random.default_rng(0).integers(0, 255, 768).astype(np.uint8).tolist())
    img.save(tmp_path / "p.png")
    back = read_label_raw(tmp_path / "p.png")
    assert back.dtype == np.uint8 and np.array_equal(back, ids)
    assert cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED).ndim == 3  # why the palette path exists


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(SegunifyError, match="bad.png: cannot decode image"):
        read_image(bad)
    with pytest.raises(SegunifyError, match="bad.png: cannot decode label"):
        read_label_raw(bad)
    with pytest.raises(SegunifyError, match="nope.png: image file not found"):
        read_image(tmp_path / "nope.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(SegunifyError, match="empty.png: cannot decode"):
        read_label_raw(empty)


def _png_variants() -> dict[str, bytes]:
    """Valid encodings of every kind the readers meet: grey uint8, uint16, RGB, palette PNG and a JPEG."""
    from PIL import Image

    from segunify.io import encode_png

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 19, (24, 32)).astype(np.uint8)
    out = {
        "grey": encode_png(ids),
        "uint16": encode_png(ids.astype(np.uint16) * 300),
        "rgb": encode_png(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)),
        "jpeg": cv2.imencode(".jpg", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))[1].tobytes(),
    }
    buf = io.BytesIO()
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette(rng.integers(0, 256, 768).astype(np.uint8).tolist())
    palette.save(buf, format="PNG")
    out["palette"] = buf.getvalue()
    return out


VARIANTS = _png_variants()


@pytest.mark.parametrize("kind", ["grey", "uint16", "rgb", "palette"])
def test_damaged_png_is_one_error_and_nothing_on_stderr(kind, tmp_path, capfd):
    """Issue 11 #12: a damaged PNG printed ``libpng error: IDAT: incorrect data check`` (and OpenCV's
    ``[ WARN:0@…] … PNG input buffer is incomplete``) on stderr before the one-line error. Now only the error."""
    data = VARIANTS[kind]
    flipped = bytearray(data)
    flipped[-20] ^= 0xFF  # inside the last IDAT chunk: its data and CRC no longer agree
    for name, content in {"crc": bytes(flipped), "truncated": data[: len(data) // 2]}.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(content)
        for reader, what in ((read_label_raw, "label"), (read_image, "image")):
            with pytest.raises(SegunifyError, match=f"{name}.png: cannot decode {what} \\(corrupt PNG: "):
                reader(path)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(VARIANTS)),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=3),
    reader=st.sampled_from([read_label_raw, read_image]),
)
def test_fuzz_truncated_or_flipped_files_give_an_array_or_one_error(
    kind, cut, flips, reader, tmp_path, capfd
):
    """Random truncations and byte flips of valid PNGs/JPEGs: an array, or SegunifyError naming the file;
    never another exception type, and for PNGs nothing printed by libpng/OpenCV."""
    data = bytearray(VARIANTS[kind][: max(len(VARIANTS[kind]) - cut, 0)])
    for pos, value in flips:
        if pos < len(data):
            data[pos] ^= value
    path = tmp_path / "fuzz.png"
    path.write_bytes(bytes(data))
    capfd.readouterr()
    try:
        arr = reader(path)
    except SegunifyError as exc:
        assert exc.path == str(path)
    else:
        assert isinstance(arr, np.ndarray) and arr.size > 0
    if kind != "jpeg":  # libjpeg warns on a damaged JPEG it still decodes (not an error): not checked here
        assert capfd.readouterr().err == ""
