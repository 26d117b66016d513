"""Images and masks as files under the data folder, named by content hash.

The database holds only the relative paths (always with forward slashes) and the hashes, so a data
folder can be moved or copied to another machine as a whole.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from iadgpt.atomic import atomic_write_bytes
from iadgpt_desktop.storage.errors import NotFoundError, StorageError, translate

IMAGES = "images"
MASKS = "masks"


class FileStore:
    """Content-addressed files under `root`: `images/ab/<sha256><suffix>` and `masks/ab/<sha256>.png`.

    Stateless apart from `root`, so one instance may be used from any thread.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ---- writing -----------------------------------------------------------------------------------

    def store_image(self, src: str | os.PathLike[str] | np.ndarray) -> tuple[str, str]:
        """Keep an image; returns (relative path, sha256 of the stored bytes).

        A file is copied byte for byte (its suffix kept, lower-cased); an array (an RGB camera frame,
        (H, W, 3) uint8, or (H, W) grey) is encoded as PNG. Identical content is stored once.
        """
        if isinstance(src, np.ndarray):
            data, suffix = _encode_png(_rgb_to_bgr(src), "camera frame"), ".png"
        else:
            path = Path(src)
            try:
                data = path.read_bytes()
            except FileNotFoundError as exc:
                raise NotFoundError(f"image {path} does not exist; it may have been moved or deleted "
                                    f"before it could be kept") from exc
            except OSError as exc:
                raise StorageError(f"could not read image {path}: {exc}") from exc
            suffix = path.suffix.lower() or ".bin"
        return self._store(IMAGES, data, suffix)

    def store_mask(self, anomaly_map: np.ndarray) -> str:
        """Keep an anomaly map ((H, W) float in [0, 1]) as an 8-bit PNG; returns its relative path."""
        amap = np.asarray(anomaly_map)
        if amap.ndim != 2:
            raise ValueError(f"an anomaly map must be (H, W), got shape {amap.shape}")
        amap = np.nan_to_num(amap.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
        grey = np.rint(np.clip(amap, 0.0, 1.0) * 255.0).astype(np.uint8)
        rel, _ = self._store(MASKS, _encode_png(grey, "anomaly map"), ".png")
        return rel

    # ---- reading -----------------------------------------------------------------------------------

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses paths that would leave the store."""
        rel = PurePosixPath(relative.replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"'{relative}' is not a path inside the file store {self.root}")
        return self.root.joinpath(*rel.parts)

    def read_bytes(self, relative: str) -> bytes:
        path = self.path(relative)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"stored file {path} is missing; the data folder may have been moved or "
                                f"cleaned up by hand") from exc

    def read_image(self, relative: str) -> np.ndarray:
        """A stored image as (H, W, 3) uint8 RGB."""
        bgr = cv2.imdecode(np.frombuffer(self.read_bytes(relative), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise StorageError(f"stored image {self.path(relative)} could not be decoded; the file is damaged")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def read_mask(self, relative: str) -> np.ndarray:
        """A stored anomaly map as (H, W) float32 in [0, 1] (8-bit precision)."""
        grey = cv2.imdecode(np.frombuffer(self.read_bytes(relative), np.uint8), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise StorageError(f"stored mask {self.path(relative)} could not be decoded; the file is damaged")
        return grey.astype(np.float32) / 255.0

    # ---- internals ---------------------------------------------------------------------------------

    def _store(self, kind: str, data: bytes, suffix: str) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{kind}/{digest[:2]}/{digest}{suffix}"
        target = self.path(rel)
        if target.exists() and target.stat().st_size == len(data):
            return rel, digest
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Atomic, so a crash never leaves a half-written file under the hash name (which would
            # otherwise be trusted as a duplicate later).
            atomic_write_bytes(target, data)
        except OSError as exc:
            error = translate(exc, f"the data folder {self.root}")
            raise (error or StorageError(f"could not write {target}: {exc}")) from exc
        return rel, digest


def _rgb_to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    raise ValueError(f"a camera frame must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")


def _encode_png(image: np.ndarray, what: str) -> bytes:
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"a {what} must be uint8 or uint16 to be kept as PNG, got {image.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise StorageError(f"could not encode the {what} ({image.shape}, {image.dtype}) as PNG")
    return buf.tobytes()
