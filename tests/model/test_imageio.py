"""Tests of iadgpt.imageio: every file is generated under tmp_path."""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from iadgpt import imageio
from iadgpt.errors import ImageLoadError
from iadgpt.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    iter_image_files,
    load_image,
    load_mask,
    save_anomaly_map_png,
)

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_raw_png(
    path: Path,
    samples: np.ndarray | None,
    *,
    size: tuple[int, int] | None = None,
    exif: bytes | None = None,
) -> Path:
    """A minimal PNG encoder: 16-bit gray/LA/RGB/RGBA from `samples`, or a header-only file.

    PIL cannot write 16-bit colour nor attach EXIF to such files, and a header-only PNG
    proves the size check happens before any pixel is decoded.
    """
    if samples is None:
        width, height = size
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        body = b""
    else:
        data = samples if samples.ndim == 3 else samples[:, :, None]
        height, width, channels = data.shape
        colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
        ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
        rows = data.astype(">u2").reshape(height, -1)
        raw = b"".join(b"\x00" + row.tobytes() for row in rows)
        body = (_png_chunk(b"eXIf", exif) if exif else b"") + _png_chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + body + _png_chunk(b"IEND", b""))
    return path


def corner_image(width: int = 40, height: int = 20) -> Image.Image:
    """Blue image with a red block in the top-left corner."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, :] = BLUE
    pixels[:6, :6] = RED
    return Image.fromarray(pixels)


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def assert_rgb8(image: np.ndarray, height: int, width: int) -> None:
    assert image.dtype == np.uint8
    assert image.shape == (height, width, 3)
    assert image.flags.c_contiguous
    assert image.flags.writeable


def assert_error_names(excinfo: pytest.ExceptionInfo[ImageLoadError], path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------


def test_constants() -> None:
    assert DEFAULT_MAX_PIXELS == 100_000_000
    assert isinstance(IMAGE_SUFFIXES, frozenset)
    assert IMAGE_SUFFIXES == {
        ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm",
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# files: formats and modes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".ppm"])
def test_lossless_rgb_roundtrip_keeps_pixels(tmp_path: Path, suffix: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels).save(path)
    image = load_image(path)
    assert_rgb8(image, 17, 23)
    np.testing.assert_array_equal(image, pixels)


def test_lossless_webp_roundtrip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = tmp_path / "img.webp"
    Image.fromarray(pixels).save(path, lossless=True)
    np.testing.assert_array_equal(load_image(path), pixels)


def test_accepts_str_path_and_content_decides_format(tmp_path: Path) -> None:
    pixels = np.full((4, 5, 3), 77, np.uint8)
    path = tmp_path / "really_a_png.jpg"
    Image.fromarray(pixels).save(path, format="PNG")
    np.testing.assert_array_equal(load_image(str(path)), pixels)


def test_jpeg_loads_with_close_colours(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpeg"
    Image.new("RGB", (16, 16), (200, 40, 90)).save(path, quality=95)
    image = load_image(path)
    assert_rgb8(image, 16, 16)
    assert np.abs(image.astype(int) - (200, 40, 90)).max() <= 4


def test_exif_orientation_6_jpeg_comes_back_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    # Stored 40 wide x 20 high with red top-left; orientation 6 = rotate 90 deg clockwise to show.
    corner_image(40, 20).save(path, exif=exif_with_orientation(6), quality=95)
    image = load_image(path)
    assert_rgb8(image, 40, 20)
    top_right = image[1:4, -4:-1].reshape(-1, 3).mean(axis=0)
    top_left = image[1:4, 1:4].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[2] < 60  # red ended up top-right
    assert top_left[2] > 200 and top_left[0] < 60  # blue where red was stored


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_16bit_colour_matches_8bit(tmp_path: Path, orientation: int) -> None:
    # 16-bit colour goes through OpenCV and a numpy re-implementation of exif_transpose;
    # it must orient exactly like PIL does for the same pixels in 8 bits.
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = exif_with_orientation(orientation)
    eight = tmp_path / "eight.png"
    Image.fromarray(pixels).save(eight, exif=exif)
    sixteen = write_raw_png(tmp_path / "sixteen.png", pixels.astype(np.uint16) * 257, exif=exif.tobytes())
    with Image.open(eight) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference))
    if orientation >= 5:
        assert expected.shape == (7, 5, 3)
    np.testing.assert_array_equal(load_image(eight), expected)
    np.testing.assert_array_equal(load_image(sixteen), expected)


def test_16bit_gray_png_full_range_divides_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 257, 257 * 100], [257 * 200, 65535, 300 * 257 // 3]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)  # PIL writes uint16 as 16-bit grayscale PNG
    image = load_image(path)
    assert_rgb8(image, 2, 3)
    np.testing.assert_array_equal(image[:, :, 0], [[0, 1, 100], [200, 255, 100]])
    np.testing.assert_array_equal(image[:, :, 0], image[:, :, 2])


def test_16bit_gray_png_12bit_data_divides_by_16(tmp_path: Path) -> None:
    values = np.array([[0, 16, 1600], [4095, 3200, 15]], np.uint16)
    path = tmp_path / "g12.png"
    Image.fromarray(values).save(path)
    np.testing.assert_array_equal(load_image(path)[:, :, 1], [[0, 1, 100], [255, 200, 0]])


def test_16bit_boundary_4096_uses_257(tmp_path: Path) -> None:
    path = tmp_path / "b.png"
    Image.fromarray(np.array([[4096, 0]], np.uint16)).save(path)
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [16, 0])  # round(4096 / 257)


def test_16bit_rgb_png_keeps_channel_order_and_scale(tmp_path: Path) -> None:
    rgb = np.zeros((3, 4, 3), np.uint16)
    rgb[..., 0] = 65535
    rgb[..., 1] = 4096 + 250  # round(4346 / 257) = 17, where dropping the low byte gives 16
    rgb[..., 2] = 257 * 10
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV takes BGR; ASCII path, test helper only
    image = load_image(path)
    assert_rgb8(image, 3, 4)
    assert (image.reshape(-1, 3) == (255, 17, 10)).all()


def test_16bit_rgb_png_12bit_data(tmp_path: Path) -> None:
    rgb = np.array([[[4095, 1600, 0], [16, 32, 48]]], np.uint16)
    path = write_raw_png(tmp_path / "rgb12.png", rgb)
    np.testing.assert_array_equal(load_image(path), [[[255, 100, 0], [1, 2, 3]]])


def test_16bit_rgba_and_la_png_drop_alpha(tmp_path: Path) -> None:
    rgba = np.array([[[65535, 0, 257 * 7 + 200, 0], [0, 65535, 0, 65535]]], np.uint16)
    la = np.array([[[257 * 50 + 200, 0], [65535, 65535]]], np.uint16)
    np.testing.assert_array_equal(
        load_image(write_raw_png(tmp_path / "rgba16.png", rgba)), [[[255, 0, 8], [0, 255, 0]]]
    )
    np.testing.assert_array_equal(
        load_image(write_raw_png(tmp_path / "la16.png", la)), [[[51] * 3, [255] * 3]]
    )


def test_16bit_rgb_tiff(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[..., 1] = 65535
    rgb[0, 0] = (257 * 3 + 120, 257 * 2, 257)  # 891 / 257 rounds to 3; 891 >> 8 would be 3 too
    rgb[0, 1] = (257 * 3 + 200, 0, 0)  # 971 / 257 rounds to 4, where dropping the low byte gives 3
    path = tmp_path / "rgb16.tif"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    image = load_image(path)
    np.testing.assert_array_equal(image[0, 0], (3, 2, 1))
    np.testing.assert_array_equal(image[0, 1], (4, 0, 0))
    np.testing.assert_array_equal(image[1, 1], (0, 255, 0))


def test_16bit_rgb_ppm(tmp_path: Path) -> None:
    rgb = np.array([[[257 * 3 + 200, 65535, 0]]], np.uint16)
    path = tmp_path / "rgb16.ppm"
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    np.testing.assert_array_equal(load_image(path), [[[4, 255, 0]]])


def test_16bit_gray_tiff_and_pgm(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [257 * 9 + 200, 257 * 90]], np.uint16)
    for name in ("g16.tif", "g16.pgm"):
        path = tmp_path / name
        cv2.imwrite(str(path), values)
        np.testing.assert_array_equal(load_image(path)[:, :, 0], [[0, 255], [10, 90]])


def test_rgba_png_drops_alpha(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 0, 255, 128], [10, 20, 30, 0]]], np.uint8)
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = load_image(path)
    assert_rgb8(image, 2, 2)
    # Dropped, not composited: a fully transparent pixel keeps its stored colour.
    np.testing.assert_array_equal(image, rgba[:, :, :3])


def test_la_png(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    Image.new("LA", (3, 2), (90, 0)).save(path)
    image = load_image(path)
    assert_rgb8(image, 2, 3)
    assert (image == 90).all()


def test_grayscale_png_and_bilevel(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    image = load_image(path)
    assert_rgb8(image, 3, 4)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)
    bilevel = tmp_path / "one.png"
    Image.fromarray(np.array([[True, False]])).save(bilevel)
    np.testing.assert_array_equal(load_image(bilevel), [[[255] * 3, [0] * 3]])


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 2))
    palette_image.putpalette([*RED, *GREEN, *BLUE] + [0, 0, 0] * 253)
    palette_image.putdata([0, 1, 2, 1])
    path = tmp_path / "palette.png"
    palette_image.save(path, transparency=1)
    image = load_image(path)
    assert_rgb8(image, 2, 2)
    np.testing.assert_array_equal(image, [[RED, GREEN], [BLUE, GREEN]])


@pytest.mark.parametrize("name", ["cmyk.jpg", "cmyk.tif"])
def test_cmyk_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta + yellow = red
    cmyk.save(path, **({"quality": 100} if name.endswith(".jpg") else {}))
    assert Image.open(path).mode == "CMYK"
    image = load_image(path)
    assert_rgb8(image, 8, 8)
    assert np.abs(image.astype(int) - RED).max() <= 3


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "prüfung"
    folder.mkdir()
    path = folder / "检查.png"
    pixels = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    path.write_bytes(_png_bytes(pixels))
    np.testing.assert_array_equal(load_image(path), pixels)
    np.testing.assert_array_equal(load_image(str(path)), pixels)


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# files: errors
# ---------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "empty", "0 bytes")


def test_text_renamed_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n", encoding="utf-8")
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "text", "PNG")


def test_random_bytes_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "not")


def test_png_signature_followed_by_garbage_reads_as_damaged(tmp_path: Path) -> None:
    """QA: a file with a PNG signature and garbage after it was called 'a PNG file in a variant this
    reader does not support', which sends the operator looking for an exotic format."""
    path = tmp_path / "overwritten.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "PNG", "damaged")
    assert "variant" not in str(excinfo.value)


def test_the_size_limit_names_the_setting_the_app_shows(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path, max_pixels=1000)
    assert_error_names(excinfo, path, "2,000 pixels", "Largest image")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path: Path, suffix: str) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = tmp_path / f"full{suffix}"
    Image.fromarray(pixels).save(full)
    data = full.read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "truncated")


def test_truncated_16bit_colour_png(tmp_path: Path) -> None:
    rgb = np.random.default_rng(4).integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    full = write_raw_png(tmp_path / "full.png", rgb)
    path = tmp_path / "cut.png"
    path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "truncated")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "does not exist")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "folder")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root and Windows ignore chmod")
def test_permission_denied_chmod(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(_png_bytes(np.zeros((2, 2, 3), np.uint8)))
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError) as excinfo:
            load_image(path)
    finally:
        path.chmod(0o644)
    assert_error_names(excinfo, path, "permission denied")


def test_permission_denied_on_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Works as root too: the module's open() fails the way an unreadable file makes it fail.
    path = tmp_path / "locked.png"
    path.write_bytes(_png_bytes(np.zeros((2, 2, 3), np.uint8)))

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(imageio, "open", refuse, raising=False)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path)
    assert_error_names(excinfo, path, "permission denied")


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(path)
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path, max_pixels=1_000_000)
    assert_error_names(excinfo, path, "1,000,000", "max_pixels", "3000x3000")


def test_size_refused_from_header_alone(tmp_path: Path) -> None:
    # No pixel data at all: decoding would fail as truncated, so the size error proves
    # the refusal happens before any pixel is decoded.
    path = write_raw_png(tmp_path / "header_only.png", None, size=(3000, 3000))
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path, max_pixels=1_000_000)
    assert_error_names(excinfo, path, "1,000,000", "max_pixels")
    assert "truncated" not in str(excinfo.value)


def test_pil_own_bomb_guard_becomes_image_load_error(tmp_path: Path) -> None:
    path = write_raw_png(tmp_path / "huge.png", None, size=(20_000, 20_000))
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(path, max_pixels=10**12)
    assert_error_names(excinfo, path, "too large")


def test_image_within_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.new("L", (1000, 1000), 5).save(path)
    assert load_image(path, max_pixels=1_000_000).shape == (1000, 1000, 3)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_max_pixels(bad: object) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=bad)  # type: ignore[arg-type]


def test_unsupported_source_type() -> None:
    with pytest.raises(TypeError):
        load_image([[0, 1], [2, 3]])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------


def test_array_gray_uint8_shapes() -> None:
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for source in (gray, gray[:, :, None]):
        image = load_image(source)
        assert_rgb8(image, 2, 3)
        for channel in range(3):
            np.testing.assert_array_equal(image[:, :, channel], gray)


def test_array_rgb_uint8_is_copied_and_contiguous() -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = load_image(rgb)
    np.testing.assert_array_equal(image, rgb)
    assert not np.shares_memory(image, rgb)
    flipped = rgb[:, ::-1]
    image = load_image(flipped)
    assert image.flags.c_contiguous
    np.testing.assert_array_equal(image, flipped)


def test_array_rgba_drops_alpha() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0
    image = load_image(rgba)
    assert_rgb8(image, 2, 2)
    assert (image.reshape(-1, 3) == (200, 0, 0)).all()


def test_array_uint16_rule() -> None:
    np.testing.assert_array_equal(load_image(np.array([[0, 257, 65535]], np.uint16))[0, :, 0], [0, 1, 255])
    np.testing.assert_array_equal(load_image(np.array([[0, 16, 4095]], np.uint16))[0, :, 0], [0, 1, 255])
    rgb = np.array([[[65535, 0, 2570]]], np.uint16)
    np.testing.assert_array_equal(load_image(rgb), [[[255, 0, 10]]])


def test_array_bool() -> None:
    image = load_image(np.array([[True, False]]))
    np.testing.assert_array_equal(image, [[[255] * 3, [0] * 3]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_float_scaled_and_clipped(dtype: type) -> None:
    values = np.array([[0.0, 0.5, 1.0, 1.7, -0.3, np.nan]], dtype)
    np.testing.assert_array_equal(load_image(values)[0, :, 0], [0, 128, 255, 255, 0, 0])
    rgb = np.zeros((1, 1, 3), dtype)
    rgb[0, 0] = (1.0, 0.2, 0.0)
    np.testing.assert_array_equal(load_image(rgb), [[[255, 51, 0]]])


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2), (2, 2, 5), (1, 2, 2, 3), (0, 4), (0, 4, 3), (3, 0, 3)])
def test_bad_array_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(np.zeros(shape, np.uint8))
    assert str(shape) in str(excinfo.value)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint32, np.complex64, object])
def test_bad_array_dtypes(dtype: type) -> None:
    with pytest.raises(ImageLoadError) as excinfo:
        load_image(np.zeros((2, 3), dtype))
    assert "(2, 3)" in str(excinfo.value)


# ---------------------------------------------------------------------------------------------
# iter_image_files
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "batch"
    for relative in [
        "b.png",
        "a.JPG",
        "sub/c.tif",
        "sub/deeper/d.WebP",
        "sub/notes.txt",
        "readme.md",
        ".hidden.png",
        ".cache/e.png",
        "sub/.thumbs/f.png",
        "x.pnm",
    ]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / "folder.png").mkdir()  # a folder with an image suffix is not a file
    return root


def test_iter_folder_recursive_sorted_hidden_skipped(tree: Path) -> None:
    expected = sorted(
        [tree / "a.JPG", tree / "b.png", tree / "sub/c.tif", tree / "sub/deeper/d.WebP", tree / "x.pnm"]
    )
    assert iter_image_files([tree]) == expected
    assert all(isinstance(p, Path) for p in iter_image_files([str(tree)]))


def test_iter_keeps_given_order_and_direct_files(tree: Path) -> None:
    notes = tree / "sub/notes.txt"
    hidden = tree / ".hidden.png"
    result = iter_image_files([notes, tree / "sub", hidden, str(tree / "b.png")])
    assert result == [notes, tree / "sub/c.tif", tree / "sub/deeper/d.WebP", hidden, tree / "b.png"]


def test_iter_dedupes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    result = iter_image_files([Path("b.png"), tree, "./b.png", tree / "sub" / ".." / "b.png", tree / "sub"])
    assert result == [
        Path("b.png"),
        tree / "a.JPG",
        tree / "sub/c.tif",
        tree / "sub/deeper/d.WebP",
        tree / "x.pnm",
    ]


def test_iter_single_string_and_empty(tree: Path) -> None:
    assert iter_image_files(str(tree / "b.png")) == [tree / "b.png"]  # type: ignore[arg-type]
    assert iter_image_files([]) == []
    empty = tree / "empty"
    empty.mkdir()
    assert iter_image_files([empty]) == []


def test_iter_missing_path(tree: Path) -> None:
    missing = tree / "gone"
    with pytest.raises(ImageLoadError) as excinfo:
        iter_image_files([tree, missing])
    assert_error_names(excinfo, missing, "does not exist")


def test_iter_hidden_root_given_explicitly_is_searched(tmp_path: Path) -> None:
    root = tmp_path / ".captures"
    root.mkdir()
    (root / "a.png").write_bytes(b"x")
    assert iter_image_files([root]) == [root / "a.png"]


def test_iter_suffixes_case_insensitive(tmp_path: Path) -> None:
    for suffix in IMAGE_SUFFIXES:
        (tmp_path / f"img{suffix.upper()}").write_bytes(b"x")
    assert len(iter_image_files([tmp_path])) == len(IMAGE_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# save_anomaly_map_png and load_mask
# ---------------------------------------------------------------------------------------------


def test_save_anomaly_map_roundtrip_non_ascii(tmp_path: Path) -> None:
    anomaly_map = np.array([[0.0, 0.5, 1.0], [1.5, -0.2, np.nan], [0.25, 0.75, 0.1]], np.float32)
    path = tmp_path / "结果" / "prüfung" / "map.png"
    written = save_anomaly_map_png(path, anomaly_map)
    assert written == path
    with Image.open(io.BytesIO(path.read_bytes())) as saved:
        assert saved.format == "PNG"
        assert saved.mode == "L"
        values = np.asarray(saved)
    np.testing.assert_array_equal(values, [[0, 128, 255], [255, 0, 0], [64, 191, 26]])
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.png"]  # no temp file left


def test_save_anomaly_map_overwrites_and_accepts_str(tmp_path: Path) -> None:
    path = tmp_path / "map.png"
    save_anomaly_map_png(str(path), np.zeros((4, 4)))
    save_anomaly_map_png(str(path), np.ones((4, 4, 1)))
    assert (load_image(path) == 255).all()
    assert load_mask(path).all()


def test_save_anomaly_map_on_a_full_disk_names_the_file_and_keeps_the_old_map(tmp_path: Path,
                                                                             disk_fills_midway) -> None:
    path = tmp_path / "maps" / "map.png"
    path.parent.mkdir()
    path.write_bytes(b"the previous map")
    with pytest.raises(OSError, match=rf"cannot write anomaly map {re.escape(str(path))}: No space left on "
                                      "device; check that the folder is writable and the disk has free space"):
        save_anomaly_map_png(path, np.ones((64, 64), np.float32))
    assert path.read_bytes() == b"the previous map"
    assert sorted(p.name for p in path.parent.iterdir()) == ["map.png"]  # no temp file left


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_saved_anomaly_map_is_readable_by_other_users(tmp_path: Path, umask) -> None:
    umask(0o022)
    path = save_anomaly_map_png(tmp_path / "map.png", np.zeros((4, 4)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # as a plain write gives, not mkstemp's 0o600


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 2, 3)), np.zeros((4,)), np.zeros((0, 3)), np.zeros((2, 2), np.int32)]
)
def test_save_anomaly_map_rejects_bad_maps(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        save_anomaly_map_png(tmp_path / "map.png", bad)
    assert not (tmp_path / "map.png").exists()


def test_load_mask_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 127, 128, 255]], np.uint8)
    path = tmp_path / "mask.png"
    Image.fromarray(values).save(path)
    mask = load_mask(path)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, [[False, False, True, True]])


def test_load_mask_zero_one_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.png"
    Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8)).save(path)
    np.testing.assert_array_equal(load_mask(path), [[False, True], [True, False]])


def test_load_mask_16bit_colour_and_bilevel(tmp_path: Path) -> None:
    sixteen = tmp_path / "m16.png"
    Image.fromarray(np.array([[0, 30000, 40000, 65535]], np.uint16)).save(sixteen)
    np.testing.assert_array_equal(load_mask(sixteen), [[False, False, True, True]])
    red = tmp_path / "red.png"
    Image.fromarray(np.array([[RED, (0, 0, 0)]], np.uint8)).save(red)
    np.testing.assert_array_equal(load_mask(red), [[True, False]])
    bilevel = tmp_path / "one.png"
    Image.fromarray(np.array([[True, False]])).save(bilevel)
    np.testing.assert_array_equal(load_mask(bilevel), [[True, False]])


def test_load_mask_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    with pytest.raises(ImageLoadError) as excinfo:
        load_mask(path)
    assert_error_names(excinfo, path, "does not exist")


def test_shrink_to_side_keeps_the_aspect_and_leaves_small_images_alone():
    from iadgpt.imageio import shrink_to_side

    wide = np.zeros((1000, 3000, 3), np.uint8)
    assert shrink_to_side(wide, 1024).shape == (341, 1024, 3)
    small = np.zeros((40, 60, 3), np.uint8)
    assert shrink_to_side(small, 1024) is small
