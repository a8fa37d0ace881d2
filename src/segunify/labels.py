"""Label codecs: files on disk <-> train-id arrays. All conversions are lookup tables, no pixel loops.

Inside segunify a label map is a ``uint8`` array of train ids with ``255`` = ignore. The codecs here
are the only place where raw ids (uint8 or uint16 PNGs) and colour-coded PNGs are turned into that.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from segunify.errors import SegunifyError
from segunify.taxonomy import IGNORE, Taxonomy

cv2.setNumThreads(1)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS_ENV = "SEGUNIFY_MAX_PIXELS"
# 8192 x 8192: above every dataset segunify reads; decoding costs about 3 bytes a pixel (192 MB here), and
# a small file can declare far more (a 4 MB PNG of 30000 x 30000 zeros decodes to 2.7 GB)
DEFAULT_MAX_PIXELS = 8192 * 8192
_PIL_LOCK = threading.Lock()


def max_pixels() -> int:
    """The most pixels an image or label may declare: :data:`DEFAULT_MAX_PIXELS`, or the environment
    variable ``SEGUNIFY_MAX_PIXELS`` (set by ``--max-pixels``; DataLoader workers inherit it)."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SegunifyError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive whole number of pixels")
    return value


def declared_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's header (PIL reads the header only, no pixels), or
    ``None`` for a format PIL does not know (OpenCV then decides)."""
    from PIL import Image

    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit applies, not PIL's
        try:
            with Image.open(io.BytesIO(memoryview(data))) as img:
                return img.size
        except Exception:  # not an image PIL knows; a corrupt one fails in the decoder with one line
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def check_pixels(data: np.ndarray | bytes, path: str | Path, what: str) -> None:
    """Refuse, before decoding, an image whose header declares more than :func:`max_pixels` pixels
    (every reader of image files calls it on the file's bytes)."""
    size = declared_size(data)
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        w, h = size
        raise SegunifyError(
            f"{what} declares {w}x{h} = {w * h:,} pixels, more than the limit of {limit:,}; not decoded "
            f"(raise the limit with --max-pixels or {MAX_PIXELS_ENV})",
            path,
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``uint8`` RGB ``[H, W, 3]``; a clear error for missing, corrupt or oversized
    files (:func:`max_pixels`, checked on the header before decoding)."""
    path = Path(path)
    if not path.is_file():
        raise SegunifyError("image file not found", path)
    data = _read_bytes(path, "image")
    check_pixels(data, path, "image")
    img = _decode(data, cv2.IMREAD_COLOR, path, "image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label_raw(path: str | Path) -> np.ndarray:
    """Read a label PNG unchanged: ``[H, W]`` uint8/uint16 for index labels, ``[H, W, 3]`` RGB for colour."""
    path = Path(path)
    if not path.is_file():
        raise SegunifyError("label file not found", path)
    data = _read_bytes(path, "label")
    check_pixels(data, path, "label")
    if _is_palette_png(data) and _png_problem(data) is None:
        return _read_palette_indices(path)
    arr = _decode(data, cv2.IMREAD_UNCHANGED, path, "label")
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        arr = np.ascontiguousarray(arr[:, :, ::-1])
    return arr


def _read_bytes(path: Path, what: str) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SegunifyError(f"cannot read {what}: {exc.strerror or exc}", path) from None


def _decode(data: np.ndarray, flags: int, path: Path, what: str) -> np.ndarray:
    """``cv2.imdecode`` that prints nothing of its own, so a bad file gives exactly one line: a damaged PNG is
    refused before libpng sees it (libpng writes ``libpng error: …`` to stderr), OpenCV's own log is off (it
    prints ``[ERROR…] can't read header`` for e.g. a truncated GIF; the failure is our error below)."""
    problem = _png_problem(data) if bytes(data[:8]) == PNG_SIGNATURE else None
    if problem is not None:
        raise SegunifyError(f"cannot decode {what} (corrupt PNG: {problem})", path)
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        img = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:
        img = None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if img is None:
        raise SegunifyError(f"cannot decode {what} (corrupt or not an image)", path)
    return img


def _png_problem(data: np.ndarray) -> str | None:
    """What is wrong with a PNG's chunk structure (a chunk past the end, a CRC mismatch, no IEND), else None.
    zlib's CRC runs in C over the file once: cheap beside the decode itself."""
    buf = memoryview(np.ascontiguousarray(data))
    pos = 8
    while pos + 12 <= len(buf):
        length = int.from_bytes(buf[pos : pos + 4], "big")
        kind = bytes(buf[pos + 4 : pos + 8]).decode("latin-1")
        end = pos + 12 + length
        if end > len(buf):
            return f"truncated in its {kind!r} chunk"
        if zlib.crc32(buf[pos + 4 : end - 4]) != int.from_bytes(buf[end - 4 : end], "big"):
            return f"{kind!r} chunk fails its CRC check"
        if kind == "IEND":
            return None
        pos = end
    return "truncated (no IEND chunk)"


def _is_palette_png(data: np.ndarray) -> bool:
    """PNG colour type 3 (palette): the stored values are the indices, not the palette's colours."""
    return (
        data.size > 26 and bytes(data[1:4]) == b"PNG" and bytes(data[12:16]) == b"IHDR" and int(data[25]) == 3
    )


def _read_palette_indices(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise SegunifyError(f"cannot decode palette label: {exc}", path) from None


def check_train_ids(label: np.ndarray, taxonomy: Taxonomy, path: str | Path) -> np.ndarray:
    """``label`` when it holds only the taxonomy's train ids ``0..K-1`` and ``255`` (ignore); else one
    error naming the ids and the file. Every decoded label passes here once
    (:meth:`segunify.datasets.DatasetAdapter.read_label`), so no reader downstream checks again."""
    k = taxonomy.num_classes
    bad = (label >= k) & (label != IGNORE)
    if label.dtype != np.uint8:
        bad |= label < 0
    if bad.any():
        ids = np.unique(label[bad])
        raise SegunifyError(
            f"label holds id(s) {ids.tolist()[:10]} outside taxonomy {taxonomy.name!r} (classes 0..{k - 1}, "
            "255 = ignore)",
            path,
        )
    return label


class IdCodec:
    """Raw ids (uint8 or uint16) -> train ids through a lookup table. ``ignore``: raw ids read as 255
    whatever the taxonomy says (a copy's own "unlabelled" value, see :mod:`segunify.datasets.spec`)."""

    def __init__(self, taxonomy: Taxonomy, strict: bool = True, ignore: Sequence[int] = ()):
        self.taxonomy = taxonomy
        self.strict = strict
        self.lut = taxonomy.id_lut(size=65536)
        self.known = np.zeros(65536, dtype=bool)
        self.known[taxonomy.known_ids()] = True
        self.lut[list(ignore)] = IGNORE
        self.known[list(ignore)] = True

    def decode(self, raw: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
        if raw.ndim != 2:
            raise SegunifyError(f"expected a single-channel id label, got shape {raw.shape}", path)
        if raw.dtype not in (np.uint8, np.uint16):
            raise SegunifyError(f"expected uint8 or uint16 ids, got {raw.dtype}", path)
        if self.strict:
            present = np.flatnonzero(np.bincount(raw.ravel(), minlength=1))
            unknown = present[~self.known[present]]
            if unknown.size:
                raise SegunifyError(
                    f"unknown label id(s) {unknown.tolist()[:10]} for taxonomy {self.taxonomy.name!r}", path
                )
        return self.lut[raw]


class ColorCodec:
    """RGB colour-coded labels -> train ids by exact colour match (24-bit key + lookup); ``ignore``:
    colours read as 255 whatever the taxonomy says."""

    def __init__(self, taxonomy: Taxonomy, ignore: Sequence[tuple[int, int, int]] = ()):
        self.taxonomy = taxonomy
        table = taxonomy.color_table() | {tuple(c): IGNORE for c in ignore}
        self.keys = np.array([(r << 16) | (g << 8) | b for r, g, b in table], dtype=np.int64)
        self.values = np.array(list(table.values()), dtype=np.uint8)
        order = np.argsort(self.keys)
        self.keys, self.values = self.keys[order], self.values[order]

    def decode(self, rgb: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise SegunifyError(f"expected an RGB colour label, got shape {rgb.shape}", path)
        rgb = rgb.astype(np.int64)
        key = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, inverse = np.unique(key.ravel(), return_inverse=True)
        pos = np.searchsorted(self.keys, uniq).clip(0, len(self.keys) - 1)
        found = self.keys[pos] == uniq
        if not found.all():
            bad = uniq[~found]
            counts = np.bincount(inverse, minlength=len(uniq))[~found]
            desc = ", ".join(
                f"({k >> 16}, {(k >> 8) & 255}, {k & 255}) x{c}"
                for k, c in zip(bad[:5], counts[:5], strict=False)
            )
            raise SegunifyError(
                f"{bad.size} unknown colour(s) for taxonomy {self.taxonomy.name!r}: {desc} (colour x pixels)",
                path,
            )
        return self.values[pos][inverse].reshape(key.shape)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IGNORE",
    "MAX_PIXELS_ENV",
    "ColorCodec",
    "IdCodec",
    "check_pixels",
    "check_train_ids",
    "declared_size",
    "max_pixels",
    "read_image",
    "read_label_raw",
]
