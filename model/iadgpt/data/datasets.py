"""Listing and loading dataset samples: MVTec-AD layout, VisA split files, and plain folders of good images.

MVTec-AD layout (one class)::

    <class>/train/good/*.png
    <class>/test/good/*.png
    <class>/test/<defect>/*.png
    <class>/ground_truth/<defect>/<stem>_mask.png

A dataset root holds one such folder per class. Any image format in `IMAGE_SUFFIXES` is accepted
for images and masks. Listings are sorted (class, defect, file), so they are the same on every run
and every machine.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from iadgpt.errors import ConfigError, DatasetError, ImageLoadError
from iadgpt.imageio import IMAGE_SUFFIXES, iter_image_files, load_image, load_mask

logger = logging.getLogger(__name__)

GOOD = "good"
SPLITS = ("train", "test")
VISA_COLUMNS = ("object", "split", "label", "image", "mask")
_VISA_LABELS = {"normal": 0, "anomaly": 1}


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: label 0 is good, 1 anomalous; `mask` is None for good images."""

    image: Path
    class_name: str
    label: int
    defect: str
    mask: Path | None
    split: str


# --------------------------------------------------------------------------------------------
# MVTec-AD layout
# --------------------------------------------------------------------------------------------


def product_for(data: Path, classes: Sequence[str], product: str) -> dict[str, str]:
    """`--product NAME` for a one-class dataset: {its class: NAME}; an error naming the classes otherwise."""
    if len(classes) != 1:
        raise ConfigError(f"--product names one product, but {data} has {len(classes)} classes "
                          f"({', '.join(classes)}); pick one with --classes")
    return {classes[0]: product}


def mvtec_samples(root: Path, split: str, classes: Sequence[str] | None = None) -> list[Sample]:
    """The samples of one split of an MVTec-AD style dataset.

    `root` is either one class folder (it contains train/ or test/; the class name is the folder
    name) or a dataset root with one such folder per class. `classes` keeps only those classes.
    Raises `DatasetError` for a wrong layout, an unknown class, or a defect image without a mask.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"dataset split '{split}' is not known: MVTec-style datasets have the splits "
                           f"{', '.join(SPLITS)}; pass one of them")
    folders = _class_folders(root)
    if classes is not None:
        wanted = list(dict.fromkeys(classes))
        missing = [name for name in wanted if name not in folders]
        if missing:
            raise DatasetError(f"classes {missing} are not in dataset {root}: it has {sorted(folders)}; "
                               "check the class names")
        folders = {name: folders[name] for name in wanted}
    samples: list[Sample] = []
    for name in sorted(folders):
        samples.extend(_class_samples(folders[name], name, split))
    return samples


def _class_folders(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder; check the path")
    if _is_class_folder(root):
        return {root.name: root}
    folders = {p.name: p for p in sorted(root.iterdir())
               if p.is_dir() and not p.name.startswith(".") and _is_class_folder(p)}
    if not folders:
        raise DatasetError(f"dataset folder {root} holds no class in MVTec-AD layout (no train/ or test/ "
                           "folder, neither in it nor in its subfolders); point to a class folder or to the "
                           "folder holding the class folders")
    return folders


def _is_class_folder(folder: Path) -> bool:
    return any((folder / split).is_dir() for split in SPLITS)


def _class_samples(folder: Path, class_name: str, split: str) -> list[Sample]:
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(f"class '{class_name}' has no {split} folder ({split_dir} is missing); "
                           f"add it or use a dataset that has a {split} split")
    samples: list[Sample] = []
    defects = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for defect_dir in defects:
        defect = defect_dir.name
        images = iter_image_files([defect_dir])
        if defect == GOOD:
            samples.extend(Sample(p, class_name, 0, GOOD, None, split) for p in images)
            continue
        masks = _mask_index(folder / "ground_truth" / defect)
        for image in images:
            mask = masks.get(image.stem)
            if mask is None:
                raise DatasetError(
                    f"defect image {image} has no ground-truth mask: expected "
                    f"{folder / 'ground_truth' / defect / (image.stem + '_mask.png')} (any image suffix); "
                    "add the mask or move the image out of the dataset")
            samples.append(Sample(image, class_name, 1, defect, mask, split))
    if not samples:
        raise DatasetError(f"class '{class_name}' has no images in {split_dir}; "
                           f"put images into {split_dir}/{GOOD} (and defect folders for test)")
    return samples


def _mask_index(folder: Path) -> dict[str, Path]:
    """stem of the image -> mask file, for the files named <stem>_mask.<image suffix> in `folder`."""
    if not folder.is_dir():
        return {}
    index: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.endswith("_mask") and path.is_file():
            index.setdefault(path.stem[: -len("_mask")], path)
    return index


# --------------------------------------------------------------------------------------------
# VisA and plain folders
# --------------------------------------------------------------------------------------------


def visa_samples(root: Path, split: str, csv_path: Path | None = None,
                 classes: Sequence[str] | None = None) -> list[Sample]:
    """The samples of one split of VisA, read from its split file.

    The csv has the columns object, split, label, image, mask; label is "normal" or "anomaly";
    image and mask paths are relative to `root`. The default csv is root/split_csv/1cls.csv.
    Anomalous samples get the defect name "anomaly" (VisA's split files do not name defects).
    """
    root = Path(root)
    csv_path = Path(csv_path) if csv_path is not None else root / "split_csv" / "1cls.csv"
    rows = _read_visa_csv(csv_path)
    wanted = set(classes) if classes is not None else None
    samples: list[Sample] = []
    for line, row in rows:
        if row["split"] != split or (wanted is not None and row["object"] not in wanted):
            continue
        where = f"{csv_path} line {line}"
        label = _VISA_LABELS.get(row["label"].lower())
        if label is None:
            raise DatasetError(f"{where}: label '{row['label']}' is neither 'normal' nor 'anomaly'; fix the row")
        image = root / row["image"]
        if not image.is_file():
            raise DatasetError(f"{where}: image {image} does not exist; check the dataset root {root}")
        mask = None
        if label:
            if not row["mask"]:
                raise DatasetError(f"{where}: anomalous image {image} has no mask path; add it to the row")
            mask = root / row["mask"]
            if not mask.is_file():
                raise DatasetError(f"{where}: mask {mask} of anomalous image {image} does not exist; "
                                   "restore it or drop the row")
        defect = "anomaly" if label else GOOD
        samples.append(Sample(image, row["object"], label, defect, mask, split))
    if not samples:
        raise DatasetError(f"VisA split file {csv_path} has no rows for split '{split}'"
                           f"{f' and classes {sorted(wanted)}' if wanted else ''}; check the split name")
    return sorted(samples, key=lambda s: (s.class_name, s.label, str(s.image)))


def _read_visa_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"VisA split file {csv_path} lacks the columns {missing} (it has "
                                   f"{reader.fieldnames}); use VisA's split_csv/1cls.csv or a file with "
                                   f"the columns {', '.join(VISA_COLUMNS)}")
            return [(i, {k: (row[k] or "").strip() for k in VISA_COLUMNS})
                    for i, row in enumerate(reader, start=2)]
    except FileNotFoundError:
        raise DatasetError(f"VisA split file {csv_path} does not exist; pass csv_path or put "
                           "split_csv/1cls.csv under the dataset root") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"VisA split file {csv_path} cannot be read ({exc}); restore it") from exc


def folder_samples(folder: Path, class_name: str, split: str = "train") -> list[Sample]:
    """Every image under `folder` (recursively, sorted) as a good sample of `class_name`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist or is not a folder; check the path")
    try:
        images = iter_image_files([folder])
    except ImageLoadError as exc:
        raise DatasetError(f"image folder {folder} cannot be listed ({exc})") from exc
    if not images:
        raise DatasetError(f"image folder {folder} holds no images (accepted suffixes: "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))}); add good images of '{class_name}'")
    return [Sample(p, class_name, 0, GOOD, None, split) for p in images]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_sample(sample: Sample, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The image (RGB uint8, (H, W, 3)) and its mask (bool, (H, W); all False for good images).

    With `size`, both become (size, size): the image with INTER_AREA when shrinking and
    INTER_CUBIC when enlarging, the mask with INTER_NEAREST so it stays binary.
    """
    image = load_image(sample.image)
    height, width = image.shape[:2]
    if sample.mask is None:
        mask = np.zeros((height, width), dtype=bool)
    else:
        mask = load_mask(sample.mask)
        if mask.shape != (height, width):
            raise DatasetError(f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image "
                               f"{sample.image} is {width}x{height}; masks must have the size of their image")
    if size is None:
        return image, mask
    if size <= 0:
        raise ValueError(f"load_sample size must be a positive number of pixels, got {size}")
    shrink = size * size <= height * width
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    mask = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return image, mask
