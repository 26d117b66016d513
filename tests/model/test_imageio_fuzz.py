"""Fuzzing `load_image` with malformed input: it returns an RGB uint8 image or raises ImageLoadError.

Inputs: random bytes (some behind a real format's magic number), truncations and byte flips of
valid PNG/JPEG/BMP/TIFF/WebP/PNM files, headers that claim huge sizes over a tiny payload
(decompression bombs), and arrays of random dtype, shape and byte order. Any other exception, or a
call that hangs (interrupted after ALARM_SECONDS), fails the test; how long a call takes is not asserted
(that would fail on a busy machine); the decode budget in pixels and bytes bounds the work instead.
The default run is sized to a few seconds; the `slow`
variant tries many more examples.
"""

from __future__ import annotations

import faulthandler
import io
import signal
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst
from PIL import Image

from iadgpt.errors import ImageLoadError
from iadgpt.imageio import DEFAULT_MAX_PIXELS, load_image

# Malformed files make PIL warn (corrupt EXIF, tag data larger than file, possible bomb); expected here.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

ALARM_SECONDS = 30  # a Python-level hang is interrupted here, so the test fails instead of hanging
WATCHDOG_SECONDS = 60  # a hang inside C code: dump every stack and end the process

# ---- seeds: small valid files of every accepted format ------------------------------------------


def _cv2_file(ext: str, image: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buf.tobytes()


def _pil_file(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = (rng.random((7, 9, 3)) * 255).astype(np.uint8)
    gray = rgb[:, :, 0].copy()
    rgb16 = (rng.random((6, 5, 3)) * 65535).astype(np.uint16)
    gray12 = (rng.random((6, 5)) * 4095).astype(np.uint16)
    rgba = np.dstack([rgb, gray])
    pil = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated camera JPEG
    return {
        "png-rgb": _cv2_file(".png", rgb),
        "png-gray": _cv2_file(".png", gray),
        "png-rgba": _cv2_file(".png", rgba),
        "png-16-rgb": _cv2_file(".png", rgb16),
        "png-12-gray": _cv2_file(".png", gray12),
        "png-palette": _pil_file(pil.convert("P"), "PNG"),
        "png-la": _pil_file(pil.convert("LA"), "PNG"),
        "png-1bit": _pil_file(pil.convert("1"), "PNG"),
        "png-interlaced": _pil_file(Image.fromarray((rng.random((33, 40, 3)) * 255).astype(np.uint8)), "PNG",
                                    optimize=False),
        "jpeg": _cv2_file(".jpg", rgb, (cv2.IMWRITE_JPEG_QUALITY, 80)),
        "jpeg-gray": _cv2_file(".jpg", gray),
        "jpeg-progressive-exif": _pil_file(pil, "JPEG", progressive=True, exif=exif),
        "jpeg-cmyk": _pil_file(pil.convert("CMYK"), "JPEG"),
        "bmp-rgb": _cv2_file(".bmp", rgb),
        "bmp-gray": _cv2_file(".bmp", gray),
        "bmp-rle": _pil_file(pil.convert("P"), "BMP"),
        "tiff-rgb": _pil_file(pil, "TIFF"),
        "tiff-lzw": _pil_file(pil, "TIFF", compression="tiff_lzw"),
        "tiff-deflate-16": _cv2_file(".tiff", rgb16),
        "tiff-float": _pil_file(Image.fromarray(rng.random((5, 6)).astype(np.float32)), "TIFF"),
        "tiff-16-gray": _pil_file(Image.fromarray(gray12), "TIFF"),
        "webp": _pil_file(pil, "WEBP", quality=70),
        "ppm": _cv2_file(".ppm", rgb),
        "pgm-16": _cv2_file(".pgm", gray12),
    }


SEEDS = _seed_files()
MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"BM", b"II*\x00", b"MM\x00*",
         b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P5\n", b"P6\n", b"P2\n"]

# ---- malformed files -----------------------------------------------------------------------------

seeds = st.sampled_from(sorted(SEEDS)).map(SEEDS.__getitem__)
random_bytes = st.one_of(
    st.binary(max_size=1024),
    st.tuples(st.sampled_from(MAGIC), st.binary(max_size=1024)).map(b"".join),
)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    data = draw(seeds)
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def flipped(draw: st.DrawFn) -> bytes:
    """A valid file with a few bytes changed, removed or inserted (mostly in the header)."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, 8))):
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 64)
        pos = draw(st.integers(0, max(limit, 0)))
        action = draw(st.sampled_from(["set", "xor", "delete", "insert"]))
        if action == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif action == "xor" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


# ---- headers claiming huge sizes -----------------------------------------------------------------

dimensions = st.one_of(st.just(60000), st.integers(1, 70000), st.integers(1, 2**31 - 1))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@st.composite
def png_bombs(draw: st.DrawFn) -> bytes:
    """A PNG with a valid header claiming width x height and a tiny (or highly compressed) IDAT."""
    width, height = draw(dimensions), draw(dimensions)
    depth, colour = draw(st.sampled_from([(8, 2), (8, 0), (16, 2), (8, 6), (1, 0), (8, 3), (16, 6)]))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, draw(st.integers(0, 1)))
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if colour == 3:
        chunks.append(_png_chunk(b"PLTE", bytes(range(12))))
    zeros = draw(st.sampled_from([16, 4096, 1 << 20]))  # 1 MiB of zeros compresses to ~1 kB
    chunks += [_png_chunk(b"IDAT", zlib.compress(b"\x00" * zeros, 9)), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@st.composite
def bmp_bombs(draw: st.DrawFn) -> bytes:
    width, height = draw(dimensions), draw(dimensions)
    height = -height if draw(st.booleans()) else height  # negative: top-down rows
    bits = draw(st.sampled_from([1, 8, 24, 32]))
    pixels = bytes(draw(st.integers(0, 64)))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, len(pixels), 2835, 2835, 0, 0)
    palette = bytes(4 * (1 << bits)) if bits <= 8 else b""
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


@st.composite
def tiff_bombs(draw: st.DrawFn) -> bytes:
    """A little-endian baseline TIFF: one strip of a few bytes for a huge grayscale or RGB image."""
    width, height = draw(dimensions), draw(dimensions)
    samples, bits = draw(st.sampled_from([(1, 8), (3, 8), (1, 16), (1, 1)]))
    strip = bytes(draw(st.integers(1, 64)))
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, 2 if samples == 3 else 1), (273, 4, 1, 0), (277, 3, 1, samples),
               (278, 4, 1, height), (279, 4, 1, len(strip))]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = strip_offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


@st.composite
def jpeg_bombs(draw: st.DrawFn) -> bytes:
    """A valid JPEG whose start-of-frame claims another height and width (up to 65535 x 65535)."""
    data = bytearray(SEEDS["jpeg"])
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    struct.pack_into(">HH", data, sof + 5, draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    return bytes(data)


bombs = st.one_of(png_bombs(), bmp_bombs(), tiff_bombs(), jpeg_bombs())

# ---- arrays --------------------------------------------------------------------------------------

dtypes = st.one_of(
    npst.scalar_dtypes(),
    npst.integer_dtypes(endianness="?"),
    npst.unsigned_integer_dtypes(endianness="?"),
    npst.floating_dtypes(endianness="?"),
    npst.byte_string_dtypes(max_len=4),
    npst.unicode_string_dtypes(max_len=4),
)
shapes = npst.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    array = draw(npst.arrays(draw(dtypes), draw(shapes)))
    if array.ndim >= 1 and draw(st.booleans()):
        array = array[::-1] if draw(st.booleans()) else array[::2]  # not C-contiguous
    if draw(st.booleans()):
        array.flags.writeable = False
    return array


def _matrix(plain: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # np.matrix is discouraged, but callers may still pass one
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(plain)


odd_arrays = st.sampled_from([
    np.array([[None, 1], [2, 3]], dtype=object),
    np.zeros((4, 4, 3), dtype=object),
    np.zeros((4, 4), dtype=[("r", "u1"), ("g", "u1")]),
    np.zeros((2, 3, 2), dtype=np.uint8),
    np.zeros((3, 3, 5), dtype=np.float32),
    np.full((4, 4, 3), np.inf, dtype=np.float16),
    np.ma.masked_array(np.zeros((4, 4), np.uint8), mask=np.eye(4, dtype=bool)),
    _matrix(np.zeros((4, 4), np.uint8)),
    np.zeros((3, 3), dtype=[("a", "u1")]).view(np.recarray),
])

# Bombs are loaded with a lower pixel limit: a header claiming 60000 x 60000 must be refused before
# decoding whatever the limit, but a JPEG claiming 10000 x 9900 over 1 kB of data is within the
# default limit and libjpeg decodes (gray-fills) it like a genuine 99-megapixel image, which takes
# seconds on a slow CPU. The lower limit keeps the 2 s bound about hangs, not about big images.
BOMB_MAX_PIXELS = 16_000_000

KINDS = {  # name: (strategy, examples in the default run, max_pixels)
    "random-bytes": (random_bytes, 150, DEFAULT_MAX_PIXELS),
    "truncated": (truncated(), 150, DEFAULT_MAX_PIXELS),
    "flipped": (flipped(), 250, DEFAULT_MAX_PIXELS),
    "bombs": (bombs, 150, BOMB_MAX_PIXELS),
    "arrays": (st.one_of(arrays(), odd_arrays), 250, DEFAULT_MAX_PIXELS),
}
SLOW_FACTOR = 20

# ---- the property --------------------------------------------------------------------------------


@contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def interrupt(_signum: int, _frame: object) -> None:
        raise TimeoutError(f"load_image ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _check_load(case: bytes | np.ndarray, folder: Path, max_pixels: int) -> None:
    if isinstance(case, np.ndarray):
        source: np.ndarray | Path = case
    else:
        source = folder / "case.img"
        source.write_bytes(case)
    with _time_limit(ALARM_SECONDS):
        try:
            image = load_image(source, max_pixels=max_pixels)
        except ImageLoadError as exc:
            assert str(exc).startswith("cannot read image"), exc
            image = None
    if image is not None:
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0
        assert image.flags.c_contiguous and image.flags.writeable
        if isinstance(case, np.ndarray):
            assert not np.may_share_memory(image, case)


def _fuzz(kind: str, folder: Path, factor: int = 1) -> None:
    strategy, examples, max_pixels = KINDS[kind]

    # database=None: no .hypothesis folder in the checkout; a failure prints its example instead.
    @settings(max_examples=examples * factor, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(case: bytes | np.ndarray) -> None:
        _check_load(case, folder, max_pixels)

    run()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_seeds_are_valid_images(folder: Path) -> None:
    for name, data in SEEDS.items():
        path = folder / f"seed-{name}"
        path.write_bytes(data)
        image = load_image(path)
        assert image.dtype == np.uint8 and image.ndim == 3, name


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_load_image_refuses_malformed_input_cleanly(kind: str, folder: Path) -> None:
    _fuzz(kind, folder)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_load_image_refuses_malformed_input_cleanly_many(kind: str, folder: Path) -> None:
    _fuzz(kind, folder, factor=SLOW_FACTOR)


@pytest.mark.parametrize("plain", [
    np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000,
    np.linspace(0, 1, 18, dtype=np.float32).reshape(2, 3, 3),
    np.arange(12, dtype=np.uint8).reshape(3, 4),
])
def test_array_subclasses_and_byte_orders_load_like_plain_arrays(plain: np.ndarray) -> None:
    expected = load_image(plain)
    swapped = plain.astype(plain.dtype.newbyteorder(">" if plain.dtype.byteorder != ">" else "<"))
    for variant in (swapped, _matrix(plain) if plain.ndim == 2 else plain, plain.view(np.ndarray)[::1]):
        image = load_image(variant)
        assert type(image) is np.ndarray
        np.testing.assert_array_equal(image, expected)
