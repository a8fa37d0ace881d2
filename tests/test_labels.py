import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segunify.errors import SegunifyError
from segunify.io import write_png
from segunify.labels import ColorCodec, IdCodec, read_image, read_label_raw
from segunify.taxonomy import IGNORE, load_taxonomy

REPO = Path(__file__).resolve().parents[1]

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
    assert np.array_equal(codec.decode(RUGD.palette()[train_ids]), train_ids)  # colours of the palette


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
    rgb = CITY.palette()[ids]
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


# ------------------------------------------------------------------------------------------ issue 25 case 11


def _png(width: int, height: int, level: int = 1) -> bytes:
    """A real 8-bit grey PNG of zeros: 30000x30000 is about 4 MB on disk and 0.9 GB of pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, rows = zlib.compressobj(level), bytes(width + 1) * 1000
    idat = b"".join(comp.compress(rows) for _ in range(height // 1000)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    path.write_bytes(_png(30000, 30000))
    return path


def _limited(code: str, limit_bytes: int | None = 1 << 30) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``code`` in a fresh Python (address space capped at ``limit_bytes``); returns it and its seconds."""
    cap = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes}))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", (cap if limit_bytes else "") + code], env=env, capture_output=True, text=True
    )
    return done, time.perf_counter() - start


def test_a_huge_declared_image_is_refused_from_its_header(huge_png):
    """Issue 25 case 11. Before: a 4 MB PNG declaring 30000x30000 was decoded (38 s and 5.3 GB peak
    here, 6-8.5 GB in pseudo-label, a 10.8 GB allocation traceback in predict). Now its header is read
    first: one line, under 1 GB of address space, in seconds."""
    assert huge_png.stat().st_size < 8 << 20
    code = (
        "from segunify.errors import SegunifyError\nfrom segunify.labels import read_image, read_label_raw\n"
        f"for read in (read_image, read_label_raw):\n    try:\n        read({str(huge_png)!r})\n"
        "    except SegunifyError as exc:\n        print(exc)\n"
    )
    done, seconds = _limited(code)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 2, (done.stdout, done.stderr[-2000:])
    for line, what in zip(lines, ("image", "label"), strict=True):
        assert line.startswith(f"{huge_png}: {what} declares 30000x30000 = 900,000,000 pixels, more than")
        assert "--max-pixels or SEGUNIFY_MAX_PIXELS" in line
    assert seconds < 20


def test_predict_and_pseudo_label_refuse_it_in_one_line(huge_png, tmp_path):
    """Issue 25 case 11 through the commands: exit 1, one stderr line, peak memory under 1 GB."""
    from fixtures.pseudo_runs import make_camvid
    from fixtures.tiny_models import espnet_checkpoint

    ckpt = espnet_checkpoint(tmp_path / "ck", "cityscapes", 19)
    root = make_camvid(tmp_path / "camvid", n=2)
    shutil.copyfile(huge_png, next((root / "train").glob("*.png")))
    runs = {
        "predict": ["predict", "--model", str(ckpt), str(root / "train"), "--out", str(tmp_path / "p")],
        "pseudo-label": ["pseudo-label", "--teacher", str(ckpt), "--dataset", "camvid", "--root", str(root),
                         "--mapping", "camvid__cityscapes", "--out", str(tmp_path / "q"), "--workers", "0"],
    }  # fmt: skip
    for name, argv in runs.items():
        code = (
            "import resource, sys\nimport torch\nfrom segunify.cli import main\n"
            "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\nbefore = peak()\n"
            f"code = main({argv!r})\nprint(before, peak())\nsys.exit(code)\n"
        )
        done, _ = _limited(code, None)  # torch reserves address space: resident peaks are measured
        err = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 1 and len(err) == 1, (name, done.stderr[-2000:])
        assert "declares 30000x30000 = 900,000,000 pixels" in err[0], err
        before, after = map(int, done.stdout.split()[-2:])  # KiB; before = the imports (torch: ~0.7 GB)
        assert after - before < 128 << 10, (name, before, after)  # the refusal itself: < 128 MiB


def test_the_limit_is_documented_and_can_be_moved(tmp_path, monkeypatch, capsys):
    """Issue 25 case 11: the default is 8192x8192; ``SEGUNIFY_MAX_PIXELS`` (or ``--max-pixels``) moves it."""
    from segunify.cli import main
    from segunify.labels import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, max_pixels

    assert max_pixels() == DEFAULT_MAX_PIXELS == 8192 * 8192
    path = tmp_path / "in" / "a.png"
    write_png(path, np.zeros((30, 40, 3), np.uint8))
    monkeypatch.setenv(MAX_PIXELS_ENV, "1199")
    with pytest.raises(SegunifyError, match="declares 40x30 = 1,200 pixels, more than the limit of 1,199"):
        read_image(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1200")
    assert read_image(path).shape == (30, 40, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(SegunifyError, match="SEGUNIFY_MAX_PIXELS='lots': expected a positive whole number"):
        read_image(path)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert main(["predict", "--model", "none", str(path), "--out", "x", "--max-pixels", "0"]) == 2
