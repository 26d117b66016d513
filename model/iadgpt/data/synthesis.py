"""Anomaly synthesis on normal images: NSA (Natural Synthetic Anomalies), CutPaste and drawn marks.

IAD-GPT, like AnomalyGPT, trains on normal images only: it makes "abnormal" samples by pasting
patches of another normal image of the same class with Poisson blending (NSA, Schlüter et al.,
"Natural Synthetic Anomalies for Self-Supervised Anomaly Detection and Localization", ECCV 2022).
CutPaste (Li et al., CVPR 2021) pastes a rectangle of the same image without blending.
Drawn marks (`draw`) darken or brighten thin strokes, small spots and soft stains: on a uniform
texture (magnetic tiles) a pasted patch of another normal image is nearly invisible, while real
defects there are cracks, blowholes and uneven patches.

Every function takes RGB ``uint8`` images (H, W, 3) (grayscale repeated in three channels works;
other arrays are converted with `load_image`), returns a new image and a bool mask (H, W) of the
anomalous pixels, and draws all its randomness from the `np.random.Generator` passed in, so a
given seed always gives the same sample.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from iadgpt.errors import ConfigError, DatasetError
from iadgpt.imageio import load_image

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
Method = Literal["nsa", "cutpaste", "mix", "draw", "all"]
METHODS = ("nsa", "cutpaste", "mix", "draw", "all")  # mix: NSA or CutPaste; all: NSA, CutPaste or draw

MAX_ATTEMPTS = 10
CHANGE_THRESHOLD = 4.0  # grey levels: NSA labels a pasted pixel only when it changed by more (after a blur)
_MIN_PATCH = 8  # pixels per side; smaller patches leave no interior for the Poisson solve
_MIN_CONTRAST = 12.0  # grey levels between object and border colour below which there is no background
_SCALE_RANGE = (0.7, 1.3)
_MAX_ASPECT = 3.0


# --------------------------------------------------------------------------------------------
# Foreground of object classes
# --------------------------------------------------------------------------------------------


def foreground_mask(images: Sequence[np.ndarray]) -> np.ndarray:
    """Estimate where the object is, from normal images of an object class (True = object).

    Heuristic: take the pixel-wise median of the images (all resized to the first one's size),
    take the median colour of its border band as the background colour, and split the distance
    of every pixel to that colour with Otsu's threshold. Opening and closing remove specks and
    gaps, holes are filled, and components under 1 % of the image are dropped.

    Made for objects on a plain background (MVTec bottle, screw...). When the median image shows
    no distinct background (its largest distance to the border colour is under 12 grey levels),
    or the split leaves almost nothing on either side, everything is foreground. Textures should
    not use it: a texture's vignetting can be split into a meaningless "object".
    """
    if not images:
        raise DatasetError("foreground_mask got no images: it needs the normal images of one class; "
                           "pass at least one")
    first = _as_rgb(images[0])
    height, width = first.shape[:2]
    stack = [first] + [_resized(_as_rgb(img), height, width) for img in images[1:]]
    median = np.median(np.stack(stack).astype(np.float32), axis=0)
    band = max(1, round(0.02 * min(height, width)))
    border = np.concatenate([median[:band].reshape(-1, 3), median[-band:].reshape(-1, 3),
                             median[:, :band].reshape(-1, 3), median[:, -band:].reshape(-1, 3)])
    distance = np.linalg.norm(median - np.median(border, axis=0), axis=2)
    everything = np.ones((height, width), dtype=bool)
    if float(distance.max()) < _MIN_CONTRAST:
        logger.debug("foreground_mask: no distinct background (max distance %.1f)", distance.max())
        return everything
    scaled = np.round(distance / distance.max() * 255).astype(np.uint8)
    _, binary = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    side = max(3, (round(0.02 * min(height, width)) // 2) * 2 + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
    foreground = _fill_holes(binary > 0)
    foreground = _drop_small_components(foreground, 0.01 * height * width)
    fraction = float(foreground.mean())
    if not 0.01 <= fraction <= 0.99:
        logger.debug("foreground_mask: split left %.1f %% foreground; using the whole image", 100 * fraction)
        return everything
    return foreground


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background components that do not touch the border become foreground."""
    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, edge[edge > 0])
    return ~outside


def _drop_small_components(mask: np.ndarray, min_area: float) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return np.isin(labels, keep)


# --------------------------------------------------------------------------------------------
# NSA
# --------------------------------------------------------------------------------------------


def nsa(target: np.ndarray, source: np.ndarray, rng: np.random.Generator, *,
        n_patches: tuple[int, int] = (1, 4), min_frac: float = 0.05, max_frac: float = 0.3,
        foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """NSA: paste 1..n Poisson-blended patches of `source` into `target`; returns (image, mask).

    See `nsa_with_boxes`, which also returns where the patches went.
    """
    image, mask, _ = nsa_with_boxes(target, source, rng, n_patches=n_patches, min_frac=min_frac,
                                    max_frac=max_frac, foreground=foreground)
    return image, mask


def nsa_with_boxes(target: np.ndarray, source: np.ndarray, rng: np.random.Generator, *,
                   n_patches: tuple[int, int] = (1, 4), min_frac: float = 0.05, max_frac: float = 0.3,
                   foreground: np.ndarray | None = None,
                   scale_range: tuple[float, float] | None = _SCALE_RANGE,
                   ) -> tuple[np.ndarray, np.ndarray, list[Box]]:
    """NSA with the boxes (x, y, w, h) of the pasted patches in the target.

    For each of n patches (n drawn from the inclusive range `n_patches`): its height and width
    are fractions of the target's in [min_frac, max_frac] (aspect ratio at most 3:1); it is cut
    from `source` (another normal image of the class, any size) at a random place, resized by a
    random factor in `scale_range` (None: not resized), and Poisson-blended
    (`cv2.seamlessClone`, NORMAL_CLONE) into the target at a random place where it fits, with
    its centre inside `foreground` when that is given (resized to the target if needed; anywhere
    when no foreground centre fits).

    The mask marks the pasted pixels that really changed: the patches' footprint AND a blurred
    mean absolute difference to `target` above `CHANGE_THRESHOLD` (closed 5x5, so a changed area
    is not labelled as speckles). A patch that matches what it
    covers therefore yields a small or empty mask; when the whole mask is empty, everything is
    drawn again (at most `MAX_ATTEMPTS` times, then `DatasetError`).
    """
    target = _as_rgb(target)
    source = _as_rgb(source)
    _check_fractions(min_frac, max_frac)
    low, high = _check_count("n_patches", n_patches)
    fg = _target_foreground(foreground, target.shape[:2])
    for attempt in range(MAX_ATTEMPTS):
        image = target.copy()
        footprint = np.zeros(target.shape[:2], dtype=bool)
        boxes: list[Box] = []
        for _ in range(int(rng.integers(low, high + 1))):
            box = _paste_nsa_patch(image, source, rng, min_frac, max_frac, fg, scale_range)
            x, y, w, h = box
            footprint[y + 1:y + h - 1, x + 1:x + w - 1] = True
            boxes.append(box)
        if _is_gray(target) and _is_gray(source):
            image[:] = image[:, :, :1]  # Poisson blending per channel keeps gray gray; make it exact
        mask = footprint & _closed(changed_pixels(target, image))
        if mask.any():
            return image, mask, boxes
        logger.debug("nsa attempt %d changed no pixel; drawing again", attempt + 1)
    raise DatasetError(f"NSA could not synthesise an anomaly: after {MAX_ATTEMPTS} attempts no pasted patch "
                       "changed the target image (target and source are probably uniform or identical); "
                       "use another source image or method 'cutpaste'")


def _paste_nsa_patch(image: np.ndarray, source: np.ndarray, rng: np.random.Generator, min_frac: float,
                     max_frac: float, foreground: np.ndarray | None,
                     scale_range: tuple[float, float] | None) -> Box:
    """Blend one patch into `image` in place; returns its box in `image`."""
    height, width = image.shape[:2]
    ph, pw = _patch_size(rng, height, width, min_frac, max_frac)
    scale = float(rng.uniform(*scale_range)) if scale_range is not None else 1.0
    sh = int(np.clip(round(ph / scale), 2, source.shape[0]))
    sw = int(np.clip(round(pw / scale), 2, source.shape[1]))
    sy = int(rng.integers(0, source.shape[0] - sh + 1))
    sx = int(rng.integers(0, source.shape[1] - sw + 1))
    patch = source[sy:sy + sh, sx:sx + sw]
    if (sh, sw) != (ph, pw):
        patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
    cy, cx = _choose_centre(rng, height, width, ph, pw, foreground)
    y0, x0 = cy - ph // 2, cx - pw // 2
    patch_mask = np.zeros((ph, pw), dtype=np.uint8)
    patch_mask[1:-1, 1:-1] = 255  # seamlessClone needs a zero border around the region
    image[:] = _seamless_clone(np.ascontiguousarray(patch), image, patch_mask, (cx, cy))
    return x0, y0, pw, ph


def _seamless_clone(patch: np.ndarray, image: np.ndarray, patch_mask: np.ndarray,
                    centre: tuple[int, int]) -> np.ndarray:
    """cv2.seamlessClone, on a square canvas.

    Some OpenCV releases check the region against rows and columns swapped, which fails near the
    long side of a non-square image; reflecting the image to a square (bottom and right only, so
    coordinates stay) avoids that on every release.
    """
    height, width = image.shape[:2]
    side = max(height, width)
    if height == width:
        return cv2.seamlessClone(patch, image, patch_mask, centre, cv2.NORMAL_CLONE)
    canvas = cv2.copyMakeBorder(image, 0, side - height, 0, side - width, cv2.BORDER_REFLECT)
    blended = cv2.seamlessClone(patch, canvas, patch_mask, centre, cv2.NORMAL_CLONE)
    return blended[:height, :width]


def changed_pixels(before: np.ndarray, after: np.ndarray, threshold: float = CHANGE_THRESHOLD) -> np.ndarray:
    """Pixels whose mean absolute difference over the channels, blurred 5x5, exceeds `threshold`."""
    diff = np.abs(after.astype(np.float32) - before.astype(np.float32)).mean(axis=2)
    return cv2.GaussianBlur(diff, (5, 5), 0) > threshold


def _closed(mask: np.ndarray) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0


# --------------------------------------------------------------------------------------------
# CutPaste
# --------------------------------------------------------------------------------------------


def cutpaste(target: np.ndarray, rng: np.random.Generator, *, min_frac: float = 0.05, max_frac: float = 0.3,
             jitter: float = 0.1, foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste: copy a random rectangle of `target` elsewhere in it, without blending.

    Brightness, contrast and saturation of the rectangle are scaled by random factors in
    [1 - jitter, 1 + jitter] (0: no jitter; gray stays gray). The paste centre lies inside
    `foreground` when given. The mask is the pasted rectangle. A paste that changes the image by
    less than `CHANGE_THRESHOLD` on average is drawn again (at most `MAX_ATTEMPTS` times).
    """
    target = _as_rgb(target)
    _check_fractions(min_frac, max_frac)
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"cutpaste jitter must be in [0, 1), got {jitter}")
    height, width = target.shape[:2]
    fg = _target_foreground(foreground, (height, width))
    for attempt in range(MAX_ATTEMPTS):
        ph, pw = _patch_size(rng, height, width, min_frac, max_frac)
        sy = int(rng.integers(0, height - ph + 1))
        sx = int(rng.integers(0, width - pw + 1))
        patch = _colour_jitter(target[sy:sy + ph, sx:sx + pw], rng, jitter)
        cy, cx = _choose_centre(rng, height, width, ph, pw, fg)
        y0, x0 = cy - ph // 2, cx - pw // 2
        image = target.copy()
        image[y0:y0 + ph, x0:x0 + pw] = patch
        if np.abs(image[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
                  - target[y0:y0 + ph, x0:x0 + pw]).mean() > CHANGE_THRESHOLD:
            mask = np.zeros((height, width), dtype=bool)
            mask[y0:y0 + ph, x0:x0 + pw] = True
            return image, mask
        logger.debug("cutpaste attempt %d barely changed the image; drawing again", attempt + 1)
    raise DatasetError(f"CutPaste could not synthesise an anomaly: after {MAX_ATTEMPTS} attempts no pasted "
                       "rectangle changed the image (it is probably uniform); use a textured normal image")


def _colour_jitter(patch: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    if jitter == 0:
        return patch.copy()
    brightness, contrast, saturation = rng.uniform(1 - jitter, 1 + jitter, size=3)
    values = patch.astype(np.float32) * brightness
    values = (values - values.mean()) * contrast + values.mean()
    gray = values.mean(axis=2, keepdims=True)
    values = (values - gray) * saturation + gray
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Drawn marks
# --------------------------------------------------------------------------------------------

MARKS = ("stroke", "spot", "stain")


def draw(target: np.ndarray, rng: np.random.Generator, *, n_marks: tuple[int, int] = (1, 3),
         min_frac: float = 0.05, max_frac: float = 0.3,
         foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Darken or brighten 1..n drawn marks in `target`; returns (image, mask).

    Each mark is one of `MARKS`, drawn at a random place (its start or centre inside `foreground`
    when given):
    - stroke: a 1-2 px polyline that wanders like a crack or scratch, 10-50 % of the shorter side long;
    - spot: a filled ellipse 1-4 % of the shorter side across, like a hole or a pit;
    - stain: an irregular polygon whose side is a fraction in [min_frac, max_frac] of the image's,
      with soft edges, like an uneven or discoloured patch.
    Strokes and spots change the grey level by 40-110 (darker three times in four), stains by
    15-45 either way; a colour image gets a slight tint per channel, a gray one stays gray. The
    mask marks the drawn pixels that really changed by more than `CHANGE_THRESHOLD` (clipping at
    black or white can leave a mark invisible); an empty mask draws everything again.
    """
    target = _as_rgb(target)
    _check_fractions(min_frac, max_frac)
    low, high = _check_count("n_marks", n_marks)
    fg = _target_foreground(foreground, target.shape[:2])
    gray = _is_gray(target)
    for attempt in range(MAX_ATTEMPTS):
        values = target.astype(np.float32)
        drawn = np.zeros(target.shape[:2], dtype=bool)
        for _ in range(int(rng.integers(low, high + 1))):
            kind = MARKS[int(rng.integers(len(MARKS)))]
            alpha, shape = _mark(kind, target.shape[:2], rng, min_frac, max_frac, fg)
            if kind == "stain":
                delta = rng.uniform(15.0, 45.0) * rng.choice((-1.0, 1.0))
            else:
                delta = rng.uniform(40.0, 110.0) * (-1.0 if rng.random() < 0.75 else 1.0)
            tint = np.ones(3, np.float32) if gray else rng.uniform(0.7, 1.3, size=3).astype(np.float32)
            values += alpha[:, :, None] * (delta * tint)
            drawn |= shape
        image = np.clip(np.round(values), 0, 255).astype(np.uint8)
        changed = np.abs(image.astype(np.float32) - target).mean(axis=2) > CHANGE_THRESHOLD
        mask = drawn & changed
        if mask.any():
            return image, mask
        logger.debug("draw attempt %d changed no pixel; drawing again", attempt + 1)
    raise DatasetError(f"draw could not synthesise an anomaly: after {MAX_ATTEMPTS} attempts no mark changed "
                       "the image (it is probably saturated black or white); use method 'nsa' or 'cutpaste'")


def _mark(kind: str, shape: tuple[int, int], rng: np.random.Generator, min_frac: float, max_frac: float,
          foreground: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One mark: (alpha in [0, 1] as float32, the pixels it labels as bool), both of `shape`."""
    height, width = shape
    side = min(height, width)
    cy, cx = _choose_centre(rng, height, width, 1, 1, foreground)
    canvas = np.zeros(shape, dtype=np.uint8)
    if kind == "stroke":
        length = rng.uniform(0.1, 0.5) * side
        n_segments = int(rng.integers(3, 9))
        angle = rng.uniform(0.0, 2 * np.pi)
        points = [(float(cx), float(cy))]
        for _ in range(n_segments):
            angle += rng.normal(0.0, 0.4)
            x, y = points[-1]
            points.append((x + np.cos(angle) * length / n_segments, y + np.sin(angle) * length / n_segments))
        polyline = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [polyline], False, 1, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_8)
    elif kind == "spot":
        axes = np.maximum(1, np.round(rng.uniform(0.005, 0.02, size=2) * side)).astype(int)
        cv2.ellipse(canvas, (cx, cy), (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    if kind in ("stroke", "spot"):  # crisp marks: the drawn pixels, with a one-pixel soft rim
        return cv2.GaussianBlur(canvas.astype(np.float32), (3, 3), 0.5) * 0.5 + canvas * 0.5, canvas > 0
    radius = rng.uniform(min_frac, max_frac) * side / 2
    n_vertices = int(rng.integers(6, 13))
    angles = np.sort(rng.uniform(0.0, 2 * np.pi, size=n_vertices))
    radii = radius * rng.uniform(0.5, 1.0, size=n_vertices)
    polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1)
    sigma = max(1.0, radius / 4)
    alpha = cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sigma)
    return alpha, alpha > 0.5


# --------------------------------------------------------------------------------------------
# Any of them
# --------------------------------------------------------------------------------------------


def synthesize(target: np.ndarray, source: np.ndarray, rng: np.random.Generator, method: Method = "nsa",
               foreground: np.ndarray | None = None, patch_frac: tuple[float, float] = (0.05, 0.3),
               ) -> tuple[np.ndarray, np.ndarray]:
    """An anomalous version of `target` and its mask by NSA, CutPaste or drawn marks; or at random
    NSA or CutPaste ("mix"), or any of the three ("all").

    patch_frac: the patches' side as a fraction of the image's side (min, max); small values suit
    small defects (pits, holes). For "draw" it sizes the stains.
    """
    if method not in METHODS:
        raise ConfigError(f"anomaly synthesis method '{method}' is not known; use one of {', '.join(METHODS)}")
    if method == "mix":
        method = "nsa" if rng.random() < 0.5 else "cutpaste"
    elif method == "all":
        method = ("nsa", "cutpaste", "draw")[int(rng.integers(3))]
    lo, hi = patch_frac
    if method == "nsa":
        return nsa(target, source, rng, foreground=foreground, min_frac=lo, max_frac=hi)
    if method == "draw":
        return draw(target, rng, foreground=foreground, min_frac=lo, max_frac=hi)
    return cutpaste(target, rng, foreground=foreground, min_frac=lo, max_frac=hi)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return load_image(image)


def _is_gray(image: np.ndarray) -> bool:
    return bool((image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all())


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _check_fractions(min_frac: float, max_frac: float) -> None:
    if not 0.0 < min_frac <= max_frac <= 1.0:
        raise ValueError(f"patch fractions must satisfy 0 < min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")


def _check_count(name: str, count: tuple[int, int]) -> tuple[int, int]:
    low, high = count
    if not 1 <= low <= high:
        raise ValueError(f"{name} must be (low, high) with 1 <= low <= high, got {count}")
    return low, high


def _patch_size(rng: np.random.Generator, height: int, width: int, min_frac: float,
                max_frac: float) -> tuple[int, int]:
    """Height and width: each a fraction of the image's in [min_frac, max_frac], aspect at most 3:1."""
    fh, fw = rng.uniform(min_frac, max_frac, size=2)
    ph = max(_MIN_PATCH, round(fh * height))
    pw = max(_MIN_PATCH, round(fw * width))
    ph = min(ph, round(pw * _MAX_ASPECT))
    pw = min(pw, round(ph * _MAX_ASPECT))
    return min(ph, height), min(pw, width)


def _target_foreground(foreground: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if foreground is None:
        return None
    fg = np.asarray(foreground).astype(bool)
    if fg.ndim != 2:
        raise ValueError(f"foreground must be a 2-D mask, got shape {fg.shape}")
    if fg.shape != shape:
        fg = cv2.resize(fg.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return fg


def _choose_centre(rng: np.random.Generator, height: int, width: int, ph: int, pw: int,
                   foreground: np.ndarray | None) -> tuple[int, int]:
    """A centre (y, x) where a (ph, pw) patch fits, inside `foreground` when one fits there."""
    y_lo, y_hi = ph // 2, height - ph + ph // 2  # inclusive: top-left = centre - size // 2
    x_lo, x_hi = pw // 2, width - pw + pw // 2
    if foreground is not None:
        ys, xs = np.nonzero(foreground[y_lo:y_hi + 1, x_lo:x_hi + 1])
        if len(ys):
            i = int(rng.integers(len(ys)))
            return int(ys[i]) + y_lo, int(xs[i]) + x_lo
        logger.debug("no foreground centre fits a %dx%d patch; pasting anywhere", pw, ph)
    return int(rng.integers(y_lo, y_hi + 1)), int(rng.integers(x_lo, x_hi + 1))
