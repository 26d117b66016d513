"""Reading inspection images and ground-truth masks, finding image files, writing anomaly maps.

Everything the model sees goes through `load_image`, which turns any accepted file or array into
one form: an RGB ``uint8`` array of shape (H, W, 3), C-contiguous.

Conventions (the same for files and arrays):

* Grayscale is repeated into the three channels.
* Alpha is dropped, not composited: the colour channels are kept exactly as stored. Inspection
  images are opaque; an alpha channel in them is an artefact of the exporting tool, and
  compositing would change the pixels the model compares against its memory bank.
* 16-bit data is brought to 8 bits by a fixed scale, never by per-image stretching, so that
  different images of one product stay comparable. If the image's largest value is below 4096 it
  is taken to be 12-bit camera data and divided by 16 (``v >> 4``); otherwise it is divided by
  257 (``round(v / 257)``, which maps 0..65535 onto 0..255 exactly).
* Float data is expected in [0, 1]: values outside are clipped, NaN becomes 0, and
  ``round(v * 255)`` gives the 8-bit value.
* Files are decoded from bytes Python reads (so non-ASCII paths work everywhere), with the EXIF
  orientation applied, so a rotated camera JPEG comes back upright.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iadgpt.atomic import atomic_write_bytes
from iadgpt.errors import ImageLoadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 100_000_000

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)

# Only the plugins for the formats above (the JPEG one also opens multi-picture MPO JPEGs).
# Letting PIL try every plugin would, among others, hand EPS files to Ghostscript.
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM")
_FORMAT_NAMES = "PNG, JPEG, BMP, TIFF, WebP or PGM/PPM/PNM"

_TWELVE_BIT_LIMIT = 4096
_ORIENTATION_TAG = 0x0112

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ACCEPTED_ARRAY_SHAPES = "(H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA"
_ACCEPTED_ARRAY_DTYPES = "uint8, uint16, bool or float (values in [0, 1])"


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_image(
    source: str | os.PathLike[str] | np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Load an image file or convert an array to an RGB ``uint8`` array (H, W, 3), C-contiguous.

    Files: PNG, JPEG, BMP, TIFF, WebP, PGM/PPM/PNM, recognised by content, not by name; any
    mode (grayscale, palette, LA, RGBA, CMYK, 16-bit grayscale or colour); EXIF orientation
    applied. Files with more than `max_pixels` pixels are refused from their header, before any
    pixel is decoded.

    Arrays: (H, W), (H, W, 1), (H, W, 3) taken as RGB, or (H, W, 4) RGBA; dtype uint8, uint16,
    bool or float in [0, 1]. Alpha is dropped (not composited over black). The result never
    shares memory with the input.

    See the module docstring for the 16-bit and float scaling. Raises `ImageLoadError` for
    anything that cannot be used, with a message that names the file, the cause and the fix.
    """
    _check_max_pixels(max_pixels)
    if isinstance(source, np.ndarray):
        # asarray: a subclass (np.matrix stays 2-D and broke the channel repeat with a ValueError)
        # is read as the plain array it views, sharing its memory.
        return _array_to_rgb8(np.asarray(source), _describe_array(source), owned=False)
    if isinstance(source, (str, os.PathLike)):
        path = _as_path(source)
        return _array_to_rgb8(_decode_file(path, max_pixels), str(path), owned=True)
    raise TypeError(
        f"load_image expects a file path or a numpy array, not {type(source).__name__}; "
        "pass a str, a pathlib.Path or an np.ndarray"
    )


def load_mask(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a ground-truth mask image as a bool array (H, W); True marks anomalous pixels.

    A pixel is anomalous when it is above half of the full scale of its type (> 127 for 8-bit,
    > 32767 for 16-bit, > 0.5 for float), looking at the brightest colour channel (a red mask
    counts) and ignoring alpha. Label masks stored as 0/1 (every value 0 or 1) use 1 as
    anomalous, since thresholding them at 127 would silently give an empty mask.
    """
    _check_max_pixels(max_pixels)
    path = _as_path(path)
    data = _decode_file(path, max_pixels)
    if data.ndim == 3:
        if data.shape[2] == 4:
            data = data[:, :, :3]
        data = data.max(axis=2)
    if data.dtype == np.bool_:
        return np.ascontiguousarray(data)
    if np.issubdtype(data.dtype, np.floating):
        return np.nan_to_num(data, nan=0.0) > 0.5
    if int(data.max(initial=0)) <= 1:
        return data > 0
    full_scale = 255 if data.dtype == np.uint8 else 65535
    return data > full_scale // 2


def iter_image_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into the list of image files to inspect.

    Folders are searched recursively and contribute their files whose suffix (any case) is in
    `IMAGE_SUFFIXES`, sorted by path; hidden files and folders (name starting with a dot, or
    the Windows hidden attribute) are skipped and symlinked folders are not followed. Files
    named directly are kept whatever their suffix, so a wrong file the user picked gets a clear
    error from `load_image` instead of vanishing. The order given is kept and every file appears
    once. Raises `ImageLoadError` for a path that does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        # A bare string is iterable too; iterating it would yield single characters.
        paths = [paths]
    found: list[Path] = []
    seen: set[str] = set()

    def add(candidate: Path) -> None:
        key = _identity_key(candidate)
        if key not in seen:
            seen.add(key)
            found.append(candidate)

    for raw in paths:
        path = _as_path(raw)
        if path.is_dir():
            files = _walk_image_files(path)
            if not files:
                logger.info("no image files found in folder %s", path)
            for file in files:
                add(file)
        elif path.exists():
            add(path)
        else:
            cause = "it is a broken symbolic link" if os.path.lexists(path) else "it does not exist"
            raise ImageLoadError(
                f"cannot read image {path}: {cause}; check the path, or whether the drive or "
                "network share holding it is connected"
            )
    return found


def shrink_to_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image scaled down (INTER_AREA) so that its longer side is at most `max_side`; a smaller
    image is returned as it is. For display copies and thumbnails, never for inspection."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def resize_map(anomaly_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """An anomaly map (H, W) as float32 at height x width: averaged over the pixels it shrinks
    (INTER_AREA), interpolated where it grows (INTER_LINEAR)."""
    amap = np.asarray(anomaly_map, np.float32)
    if amap.shape == (height, width):
        return amap
    shrink = height * width <= amap.shape[0] * amap.shape[1]
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def save_anomaly_map_png(path: str | os.PathLike[str], anomaly_map: np.ndarray) -> Path:
    """Write an anomaly map (H, W) with values in [0, 1] as an 8-bit grayscale PNG.

    Values are clipped to [0, 1] (NaN becomes 0) and stored as ``round(v * 255)``. Parent
    folders are created; the file is written under a temporary name and moved into place with
    `os.replace`, so a reader never sees a half-written map. The file is PNG whatever its
    suffix. Raises ValueError for a map that is not a non-empty 2-D real array and OSError
    (naming the file) when it cannot be written. Returns the path written.
    """
    path = _as_path(path)
    if not isinstance(anomaly_map, np.ndarray):
        raise ValueError(
            f"cannot write anomaly map {path}: expected a numpy array, got "
            f"{type(anomaly_map).__name__}; pass the (H, W) float map from the model"
        )
    data = anomaly_map
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim != 2 or data.size == 0:
        raise ValueError(
            f"cannot write anomaly map {path}: its shape is {anomaly_map.shape}, expected a "
            "non-empty (H, W) array; pass a single-channel map"
        )
    if not (np.issubdtype(data.dtype, np.floating) or data.dtype == np.bool_):
        raise ValueError(
            f"cannot write anomaly map {path}: its dtype is {data.dtype}, expected float values "
            "in [0, 1]; convert it with .astype(np.float32) / its maximum first"
        )
    pixels = _float_to_uint8(data)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"cannot write anomaly map {path}: OpenCV could not encode it as PNG")
    if path.suffix.lower() != ".png":
        logger.warning("anomaly map %s is written as PNG although its suffix is not .png", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, encoded.tobytes())
    except OSError as exc:
        # OSError(errno, ...) yields the matching subclass (PermissionError, ...) for callers.
        raise OSError(
            exc.errno,
            f"cannot write anomaly map {path}: {exc.strerror or exc}; check that the folder is "
            "writable and the disk has free space",
        ) from exc
    return path


# --------------------------------------------------------------------------------------------
# File decoding
# --------------------------------------------------------------------------------------------


def _decode_file(path: Path, max_pixels: int) -> np.ndarray:
    """Decode a file into an array in the conventions `_array_to_rgb8` accepts (or a mask's)."""
    _check_readable_file(path)
    try:
        fh = open(path, "rb")
    except PermissionError as exc:
        raise _error(
            path,
            "permission denied",
            "give your user read access to the file, or copy it to a folder you own",
        ) from exc
    except FileNotFoundError as exc:
        raise _error(path, "the file does not exist (it was removed just now)", "check the path") from exc
    except OSError as exc:
        raise _error(
            path, f"the file could not be opened ({exc.strerror or exc})", "check the drive"
        ) from exc
    with fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise _error(path, "the file is empty (0 bytes)", "re-export or re-capture it")
        image = _open_header(path, fh)
        with image:
            width, height = image.size
            _check_size(path, width, height, max_pixels)
            # Decided from the tile list, which load() empties.
            high_depth_colour = _is_high_depth_colour(image)
            _check_decode_budget(path, image, high_depth_colour)
            try:
                image.load()
            except MemoryError:
                raise
            except Exception as exc:
                raise _error(
                    path,
                    f"the image data is truncated or corrupt ({exc})",
                    "it was probably cut short while copying or saving; copy or export it again",
                ) from exc
            if high_depth_colour:
                return _decode_high_depth_colour(path, fh, image)
            _exif_transpose(path, image)
            return _pil_to_array(image)


def _open_header(path: Path, fh: BinaryIO) -> Image.Image:
    """Open the image lazily: PIL reads the header only, no pixels yet."""
    try:
        return Image.open(fh, formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard fires before ours can see the size (it also fires as a warning that
        # the application turned into an error); its message carries the pixel count.
        raise _error(
            path,
            f"PIL refuses it as too large ({exc})",
            "if the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS along with the limit (the app's Settings > "
            "Largest image; max_pixels in the library)",
        ) from exc
    except UnidentifiedImageError as exc:
        raise _error(path, _not_an_image_cause(fh), f"re-export it as {_FORMAT_NAMES}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise _error(
            path,
            f"its header is damaged ({exc})",
            f"copy the file again or re-export it as {_FORMAT_NAMES}",
        ) from exc


def _not_an_image_cause(fh: BinaryIO) -> str:
    fh.seek(0)
    head = fh.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] != b"IHDR":
        return ("it starts like a PNG file, but its header chunk is missing: the file is damaged (overwritten or "
                "cut short)")
    for magic, name in ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"),
                        (b"BM", "BMP")):
        if head.startswith(magic):
            return (f"it starts like a {name} file but does not read as one: the file is damaged, or a variant this "
                    f"reader does not support (for example floating-point or unusual sample formats)")
    kind = f"not {_FORMAT_NAMES} data, whatever its name says"
    if text is not None and "\x00" not in text:
        return f"the file is text, {kind}"
    return f"the file is {kind}, or its header is damaged"


def _check_readable_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        cause = "it is a broken symbolic link" if os.path.lexists(path) else "the file does not exist"
        raise _error(path, cause, "check the path, or whether its drive or share is connected") from exc
    except PermissionError as exc:
        raise _error(path, "permission denied", "give your user access to its folder") from exc
    except OSError as exc:
        raise _error(path, f"the file cannot be reached ({exc.strerror or exc})", "check the path") from exc
    if stat.S_ISDIR(info.st_mode):
        raise _error(
            path, "it is a folder, not an image file", "pick an image inside it, or add the folder as a batch"
        )
    if not stat.S_ISREG(info.st_mode):
        # Opening a FIFO or a device would block or read forever.
        raise _error(path, "it is not a regular file (a device, pipe or socket)", "pick an image file")


DEFAULT_MAX_DECODE_BYTES = 400_000_000  # a 100-megapixel 8-bit RGB image is 300 MB decoded
_MODE_BYTES = {"1": (1, 1), "L": (1, 1), "P": (3, 1), "LA": (2, 1), "PA": (4, 1), "RGB": (3, 1), "RGBA": (4, 1),
               "RGBX": (4, 1), "CMYK": (4, 1), "YCbCr": (3, 1), "LAB": (3, 1), "HSV": (3, 1), "I": (1, 4),
               "F": (1, 4), "I;16": (1, 2), "I;16L": (1, 2), "I;16B": (1, 2), "I;16N": (1, 2)}


def max_decode_bytes() -> int:
    """The decode budget: $IADGPT_MAX_DECODE_BYTES, else DEFAULT_MAX_DECODE_BYTES."""
    try:
        return max(1, int(os.environ.get("IADGPT_MAX_DECODE_BYTES", DEFAULT_MAX_DECODE_BYTES)))
    except ValueError:
        return DEFAULT_MAX_DECODE_BYTES


def _check_decode_budget(path: Path, image: Image.Image, high_depth_colour: bool) -> None:
    """Refuse from the header an image whose decoded pixels (width x height x channels x bytes per
    sample) exceed the budget: a small, valid file can decode to gigabytes (and take a minute)."""
    channels, sample_bytes = _MODE_BYTES.get(image.mode, (4, 4))
    if high_depth_colour:
        channels, sample_bytes = max(channels, 3), 2
    width, height = image.size
    needed = width * height * channels * sample_bytes
    budget = max_decode_bytes()
    if needed > budget:
        raise _error(
            path,
            f"it is {width}x{height} with {channels} channel(s) of {8 * sample_bytes} bits, {needed:,} bytes "
            f"decoded, more than the decode budget of {budget:,} bytes",
            "if the image is genuine, raise the budget with the environment variable "
            "IADGPT_MAX_DECODE_BYTES (bytes), or save it smaller or with 8 bits per channel",
        )


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise _error(
            path,
            f"it is {width}x{height} = {pixels:,} pixels, more than the limit of {max_pixels:,} "
            f"pixels (max_pixels={max_pixels})",
            "if the image is genuine, raise the limit (the app's Settings > Largest image; max_pixels in the "
            "library); otherwise the file may be a decompression bomb",
        )
    if pixels == 0:
        raise _error(path, f"its header says it is {width}x{height} pixels", "re-export or re-capture it")


def _is_high_depth_colour(image: Image.Image) -> bool:
    """True for 16-bit colour files, which PIL would cut to 8 bits by dropping the low byte.

    Call it before `load()`: it reads the not yet decoded tile list.

    That truncation would skip the 12-bit/16-bit scaling rule, so such files go through OpenCV.
    """
    if image.mode not in ("RGB", "RGBA", "LA"):
        return False
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8
    for tile in getattr(image, "tile", None) or []:
        args = tile.args
        if image.format == "PNG" and isinstance(args, str) and ";16" in args:
            return True
        if image.format == "PPM" and isinstance(args, tuple) and len(args) > 1:
            return isinstance(args[1], int) and args[1] > 255  # maxval
    return False


def _decode_high_depth_colour(path: Path, fh: BinaryIO, image: Image.Image) -> np.ndarray:
    # PIL's load() above already proved the data complete; OpenCV keeps the full depth.
    fh.seek(0)
    buffer = np.frombuffer(fh.read(), dtype=np.uint8)
    try:
        data = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise _error(path, f"OpenCV could not decode its 16-bit data ({exc})", "re-export it") from exc
    if data is None:
        raise _error(path, "OpenCV could not decode its 16-bit data", "re-export it as an 8-bit image")
    if data.ndim == 3:
        channels = data.shape[2]
        if channels == 2:
            data = data[:, :, 0]
        elif channels == 3:
            data = data[:, :, ::-1]
        elif channels == 4:
            data = data[:, :, [2, 1, 0, 3]]
    logger.debug("decoded %s as %s %s through OpenCV", path, data.dtype, data.shape)
    return _apply_orientation(data, _exif_orientation(path, image))


def _exif_orientation(path: Path, image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # a damaged EXIF block must not make the pixels unreadable
        logger.warning("ignoring unreadable EXIF data of %s: %s", path, exc)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(data: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an array the way `ImageOps.exif_transpose` does."""
    if orientation == 2:
        return data[:, ::-1]
    if orientation == 3:
        return data[::-1, ::-1]
    if orientation == 4:
        return data[::-1]
    if orientation == 5:
        return data.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(data, -1)
    if orientation == 7:
        return data[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(data, 1)
    return data


def _exif_transpose(path: Path, image: Image.Image) -> None:
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # a damaged EXIF block must not make the pixels unreadable
        logger.warning("ignoring unreadable EXIF orientation of %s: %s", path, exc)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """A decoded PIL image as an array: gray, RGB or RGBA; uint8, uint16, bool or float."""
    mode = image.mode
    if mode in ("1", "L", "RGB", "RGBA"):
        return np.asarray(image)
    if mode in ("LA", "La"):
        return np.asarray(image)[:, :, 0]
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.uint16)
    if mode == "I":
        # 32-bit integer images come from 16-bit PGM files and some TIFFs; clip to 16 bits.
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if mode == "F":
        return np.asarray(image)
    if mode in ("P", "PA", "RGBa", "RGBX"):
        return np.asarray(image.convert("RGBA"))
    # CMYK, YCbCr, LAB, HSV: PIL knows how to reach RGB (and undoes Adobe's inverted CMYK).
    return np.asarray(image.convert("RGB"))


# --------------------------------------------------------------------------------------------
# Array conversion
# --------------------------------------------------------------------------------------------


def _array_to_rgb8(data: np.ndarray, name: str, *, owned: bool) -> np.ndarray:
    """Validate an array and convert it to a fresh, writable, C-contiguous RGB uint8 (H, W, 3).

    `owned` says the array was made here (decoded from a file), so it need not be copied.
    """
    original = data
    shape_ok = data.ndim == 2 or (data.ndim == 3 and data.shape[2] in (1, 3, 4))
    if not shape_ok or data.size == 0:
        raise ImageLoadError(
            f"cannot read image {name}: shape {data.shape} is not an image"
            f"{' (it is empty)' if data.size == 0 else ''}; pass a non-empty array of shape "
            f"{_ACCEPTED_ARRAY_SHAPES}"
        )
    if data.ndim == 3 and data.shape[2] == 4:
        data = data[:, :, :3]
    if not data.dtype.isnative:
        # Big-endian data (from FITS or raw camera dumps) is the same uint16 or float image;
        # `dtype == np.uint16` is false for it, so it would be refused as unsupported.
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.uint8:
        pixels = data
    elif data.dtype == np.uint16:
        pixels = _uint16_to_uint8(data)
    elif data.dtype == np.bool_:
        pixels = data.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(data.dtype, np.floating):
        pixels = _float_to_uint8(data)
    else:
        raise ImageLoadError(
            f"cannot read image {name}: dtype {data.dtype} (shape {data.shape}) is not supported; "
            f"convert it to {_ACCEPTED_ARRAY_DTYPES}"
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        # np.repeat allocates the (H, W, 3) result directly, contiguous.
        return np.repeat(pixels[:, :, None], 3, axis=2)
    result = np.ascontiguousarray(pixels)
    # Never hand back the caller's array or a read-only PIL buffer: callers may write into it.
    if not result.flags.writeable or (not owned and np.may_share_memory(result, original)):
        result = result.copy()
    return result


def _uint16_to_uint8(data: np.ndarray) -> np.ndarray:
    """The fixed 16-bit rule: 12-bit data (max < 4096) >> 4, otherwise round(v / 257)."""
    if int(data.max()) < _TWELVE_BIT_LIMIT:
        return (data >> 4).astype(np.uint8)
    return ((data.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _float_to_uint8(data: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(data.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _describe_array(data: np.ndarray) -> str:
    return f"<array shape={data.shape} dtype={data.dtype}>"


# --------------------------------------------------------------------------------------------
# Folders and writing
# --------------------------------------------------------------------------------------------


def _walk_image_files(root: Path) -> list[Path]:
    root_errors: list[OSError] = []

    def on_error(exc: OSError) -> None:
        if exc.filename is not None and os.fspath(exc.filename) == os.fspath(root):
            root_errors.append(exc)
        else:
            logger.warning("skipping unreadable folder %s: %s", exc.filename, exc.strerror or exc)

    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(root, onerror=on_error):
        base = Path(folder)
        # Pruning in place stops os.walk from descending into hidden folders.
        dirnames[:] = [d for d in dirnames if not _is_hidden(base / d)]
        for name in filenames:
            file = base / name
            if file.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(file):
                files.append(file)
    if root_errors:
        exc = root_errors[0]
        raise ImageLoadError(
            f"cannot read folder {root}: {exc.strerror or exc}; give your user read access to it"
        ) from exc
    return sorted(files)


def _is_hidden(path: Path) -> bool:
    if path.name.startswith("."):
        return True
    try:
        attributes = getattr(path.lstat(), "st_file_attributes", 0)
    except OSError:
        return False
    return bool(attributes & stat.FILE_ATTRIBUTE_HIDDEN)


def _identity_key(path: Path) -> str:
    # resolve() makes "a/x.png", "./a/x.png" and a folder's copy of it one entry; normcase
    # folds case where the file system does (Windows).
    try:
        resolved = path.resolve()
    except OSError:
        resolved = Path(os.path.abspath(path))
    return os.path.normcase(str(resolved))


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_path(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ImageLoadError("cannot read image '': the path is empty; choose an image file")
    return Path(text)


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _error(path: Path, cause: str, fix: str) -> ImageLoadError:
    return ImageLoadError(f"cannot read image {path}: {cause}; {fix}")
