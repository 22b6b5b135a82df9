"""MATLAB .mat files in the fmriTrn/fmriTest/stimTrn/stimTest(/labelTrn/labelTest) layout, v5 and v7.3.

This is the layout of the public digit69 and Miyawaki 28x28 files: train and test trials in separate
matrices, one trial per row, each image a row of s*s pixels in MATLAB's column-major order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import h5py
import numpy as np
import scipy.io

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.images import rows_to_images, square_side, to_unit_range

_V73_HEADER = b"MATLAB 7.3"
_LAYOUT = "fmriTrn, fmriTest, stimTrn, stimTest and optionally labelTrn, labelTest"


def is_mat_v73(path: str | Path) -> bool:
    """True for a MATLAB v7.3 file: HDF5 behind a 512-byte userblock whose text starts "MATLAB 7.3"."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(len(_V73_HEADER))
    return head == _V73_HEADER and h5py.is_hdf5(path)


def read_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Every numeric variable of a MATLAB v5 or v7.3 file, by name (v7.3 matrices transposed back)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    return _read_v73(path) if is_mat_v73(path) else _read_v5(path)


def load_mat(
    path: str | Path,
    *,
    labels_are: Literal["labels", "run"] = "labels",
    name: str | None = None,
) -> PairedDataset:
    """Read train and test trials into one data set (train first); given_test marks the file's test trials.

    labels_are="run" stores labelTrn/labelTest as run ids instead of class labels: the Miyawaki file's
    "labels" are run/session numbers, and treating them as classes would be wrong.
    """
    if labels_are not in ("labels", "run"):
        raise DataError(f"labels_are must be 'labels' or 'run', got {labels_are!r}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    hdf5 = h5py.is_hdf5(path)
    arrays = _read_v73(path) if hdf5 else _read_v5(path)
    train = _read_part(arrays, path, "Trn")
    test = _read_part(arrays, path, "Test")
    if train.fmri.shape[1] != test.fmri.shape[1]:
        raise DataError(
            f"{path}: fmriTrn has {train.fmri.shape[1]} voxels but fmriTest has {test.fmri.shape[1]}; "
            "both must hold the same voxels"
        )
    if train.stim.shape[1] != test.stim.shape[1]:
        raise DataError(
            f"{path}: stimTrn rows hold {train.stim.shape[1]} pixels but stimTest rows {test.stim.shape[1]}; "
            "both must hold images of one size"
        )
    if (train.labels is None) != (test.labels is None):
        missing = "labelTest" if test.labels is None else "labelTrn"
        raise DataError(f"{path}: {missing} is missing but its counterpart is present; give both or neither")
    side = square_side(train.stim.shape[1], f"{path}: stimTrn")
    images = rows_to_images(np.concatenate([train.stim, test.stim]), (side, side))
    labels = None
    if train.labels is not None and test.labels is not None:
        labels = np.concatenate([train.labels, test.labels])
    n_train, n_test = train.fmri.shape[0], test.fmri.shape[0]
    return PairedDataset.from_arrays(
        fmri=np.concatenate([train.fmri, test.fmri]),
        images=images,
        labels=labels if labels_are == "labels" else None,
        run=labels if labels_are == "run" else None,
        given_test=np.r_[np.zeros(n_train, dtype=bool), np.ones(n_test, dtype=bool)],
        metadata={
            "name": name or path.stem,
            "source": str(path),
            "format": "mat-v7.3" if hdf5 else "mat-v5",
        },
    )


class _Part(NamedTuple):
    """One side (train or test) of the file, its trial counts already checked."""

    fmri: np.ndarray
    stim: np.ndarray
    labels: np.ndarray | None


def _read_part(arrays: dict[str, np.ndarray], path: Path, side: str) -> _Part:
    fmri = _matrix(arrays, path, f"fmri{side}")
    stim = to_unit_range(_matrix(arrays, path, f"stim{side}"))
    if fmri.shape[0] != stim.shape[0]:
        raise DataError(
            f"{path}: fmri{side} has {fmri.shape[0]} trials but stim{side} has {stim.shape[0]}; "
            "each trial needs one image row"
        )
    labels = None
    if f"label{side}" in arrays:
        raw = np.asarray(arrays[f"label{side}"], dtype=np.float64).ravel()
        if raw.size != fmri.shape[0]:
            raise DataError(
                f"{path}: label{side} has {raw.size} entries but fmri{side} has {fmri.shape[0]} trials; "
                "give one label per trial"
            )
        if not np.all(np.isfinite(raw) & (raw == np.round(raw))):
            raise DataError(f"{path}: label{side} holds non-integer values; labels must be whole numbers")
        labels = raw.astype(np.int64)
    return _Part(fmri, stim, labels)


def _matrix(arrays: dict[str, np.ndarray], path: Path, key: str) -> np.ndarray:
    if key not in arrays:
        present = ", ".join(sorted(arrays)) or "nothing"
        raise DataError(f"{path}: variable {key!r} not found (the file holds {present}); expected {_LAYOUT}")
    value = np.asarray(arrays[key])
    if value.ndim != 2:
        raise DataError(f"{path}: {key} must be a 2-D matrix (trials x values), got shape {value.shape}")
    return value


def _read_v5(path: Path) -> dict[str, np.ndarray]:
    """scipy reads MATLAB logicals as uint8 0/1; they become bool again so they escape the /255 scaling."""
    try:
        classes = {var: cls for var, _, cls in scipy.io.whosmat(path)}
        content = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DataError(f"{path}: not a readable MATLAB file ({err}); check that it is a .mat file") from None
    return {
        key: value.astype(bool) if classes.get(key) == "logical" else value
        for key, value in content.items()
        if not key.startswith("__") and isinstance(value, np.ndarray)
    }


def _read_v73(path: Path) -> dict[str, np.ndarray]:
    """HDF5 holds MATLAB's column-major matrices with reversed axes, so each variable is transposed back."""
    arrays: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            for key, item in handle.items():
                if key.startswith("#") or not isinstance(item, h5py.Dataset):
                    continue
                value = np.asarray(item).T
                matlab_class = item.attrs.get("MATLAB_class", b"")
                if isinstance(matlab_class, bytes):
                    matlab_class = matlab_class.decode()
                arrays[key] = value.astype(bool) if matlab_class == "logical" else value
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5/MATLAB v7.3 file ({err}); check the file") from None
    return arrays
