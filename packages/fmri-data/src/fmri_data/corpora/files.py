"""Corpora the user brings: a folder of image files, an .npz or an HDF5 file holding an image array.

Everything comes back as float32 [n, size, size] grayscale in [0, 1]. Values outside [0, 1] are refused
rather than rescaled, because a guessed scale would hide a wrong file instead of reporting it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, UnidentifiedImageError

from fmri_data.corpora.resize import resize_images
from fmri_data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_SUFFIXES = (".npz", ".h5", ".hdf5")
_KEY = "images"


def read_corpus_path(path: Path, image_size: int) -> np.ndarray:
    """The images in a folder, .npz or HDF5 file, grayscale float32 [n, image_size, image_size]."""
    if path.is_dir():
        return read_folder(path, image_size)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        array = _read_npz(path)
    elif suffix in (".h5", ".hdf5"):
        array = _read_hdf5(path)
    else:
        raise DataError(
            f"{path}: not a corpus format; give a folder of images ({', '.join(IMAGE_SUFFIXES)}) "
            f"or a file ending in {', '.join(ARRAY_SUFFIXES)}"
        )
    return array_to_images(array, image_size, str(path))


def read_folder(folder: Path, image_size: int) -> np.ndarray:
    """Every image file directly in `folder`, in name order, as Pillow grayscale ("L") resized by Pillow."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(
            f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder; point at the folder "
            "that holds them"
        )
    images = np.empty((len(files), image_size, image_size), dtype=np.float32)
    for index, file in enumerate(files):
        images[index] = _read_image_file(file, image_size)
    return images


def array_to_images(array: np.ndarray, image_size: int, where: str) -> np.ndarray:
    """[n, H, W] or [n, H, W, C] (C in 1, 3, 4), uint8 or float in [0, 1] -> grayscale float32 resized.

    Colour becomes gray as the mean of the first three channels (a fourth, alpha, is ignored).
    """
    array = np.asarray(array)
    if not (array.ndim == 3 or (array.ndim == 4 and array.shape[3] in (1, 3, 4))):
        raise DataError(
            f"{where}: images must be [n, H, W] or [n, H, W, C] with C in 1, 3, 4; got shape {array.shape}"
        )
    if len(array) == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise DataError(f"{where}: the corpus holds no images (shape {array.shape}); give a non-empty one")
    if array.dtype == np.uint8:
        values = array.astype(np.float64) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{where}: the images hold NaN or infinite values; fix or remove those images")
        if values.min() < 0.0 or values.max() > 1.0:
            raise DataError(
                f"{where}: float images must lie within [0, 1], found {values.min():g} to {values.max():g}; "
                "rescale them or store uint8"
            )
    else:
        raise DataError(f"{where}: images must be uint8 or float in [0, 1], got {array.dtype}; convert them")
    if values.ndim == 4:
        values = values[..., 0] if values.shape[3] == 1 else values[..., :3].mean(axis=3)
    return np.clip(resize_images(values, image_size), 0.0, 1.0).astype(np.float32)


def _read_image_file(file: Path, image_size: int) -> np.ndarray:
    try:
        with Image.open(file) as image:
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"{file}: not a readable image ({err}); remove it from the folder or re-save it"
        ) from None
    shrink = gray.width > image_size or gray.height > image_size
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(gray.resize((image_size, image_size), resample), dtype=np.float32) / 255.0


def _read_npz(path: Path) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}); re-save it with numpy.savez") from None
    with archive:
        key = _pick(list(archive.files), path)
        try:
            return archive[key]
        except ValueError as err:  # an object array, which only a pickle could restore
            raise DataError(
                f"{path}: array {key!r} cannot be read without pickles ({err}); store numbers"
            ) from None


def _read_hdf5(path: Path) -> np.ndarray:
    try:
        with h5py.File(path, "r") as file:
            return np.asarray(file[_pick(_dataset_names(file), path)])
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err}); check the file") from None


def _dataset_names(file: h5py.File) -> list[str]:
    """Every dataset's path in the file, groups searched too."""
    names: list[str] = []

    def collect(name: str, item: object) -> None:  # returning anything but None would stop the visit
        if isinstance(item, h5py.Dataset):
            names.append(name)

    file.visititems(collect)
    return names


def _pick(names: list[str], path: Path) -> str:
    """The array named "images", else the only array; anything else is ambiguous."""
    if _KEY in names:
        return _KEY
    if len(names) == 1:
        return names[0]
    held = ", ".join(sorted(names)) or "nothing"
    raise DataError(
        f"{path}: no array named {_KEY!r} and not exactly one array (the file holds {held}); name it"
    )
