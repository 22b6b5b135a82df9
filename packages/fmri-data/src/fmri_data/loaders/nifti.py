"""4-D NIfTI runs with a voxel mask and per-volume label CSVs: the Miyawaki 2008 layout nilearn distributes.

In that layout (nilearn.datasets.fetch_miyawaki2008) each run has one CSV with one row per volume: the 10x10
binary pattern on screen, flattened in column-major order, or -1 during rest. nilearn's Miyawaki examples
pair volume t + 2 with label row t to allow for the haemodynamic lag (two volumes, i.e. 4 s at TR = 2 s) and
drop rest rows; those are the defaults here. No detrending or scaling is applied: that is preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.affines import apply_affine

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.images import rows_to_images, upsample_nearest

LAG_VOLUMES = 2


def load_nifti_runs(
    func_paths: Sequence[str | Path],
    mask_path: str | Path,
    label_paths: Sequence[str | Path],
    *,
    pattern_shape: tuple[int, int] = (10, 10),
    image_size: int | None = 28,
    lag_volumes: int = LAG_VOLUMES,
    drop_rest: bool = True,
    name: str | None = None,
) -> PairedDataset:
    """Mask every run's volumes into trials, pair volume t + lag_volumes with label row t, and stack the runs.

    run holds each trial's position in func_paths (0-based). A label row with any negative value marks rest;
    with drop_rest=False such trials are kept with a blank (all-zero) image. image_size (default 28, as the
    shared files; SSIM needs 11 px or more) upsamples the patterns by nearest neighbour so they stay binary;
    None keeps the 10x10 patterns.
    """
    if len(func_paths) != len(label_paths):
        raise DataError(
            f"{len(func_paths)} functional runs but {len(label_paths)} label files; give one label file a run"
        )
    if not func_paths:
        raise DataError("no functional runs given; pass at least one 4-D NIfTI file")
    if lag_volumes < 0:
        raise DataError(f"lag_volumes must be >= 0, got {lag_volumes}")
    mask_img = _load(mask_path)
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.ndim != 3 or not mask.any():
        raise DataError(
            f"{mask_path}: the mask must be a 3-D image with at least one voxel > 0, got shape {mask.shape}"
        )
    fmri, patterns, runs = [], [], []
    for run, (func_path, label_path) in enumerate(zip(func_paths, label_paths, strict=True)):
        volumes = _masked_volumes(func_path, mask, mask_img.affine)
        rows = _label_rows(label_path, volumes.shape[0], pattern_shape)
        n = volumes.shape[0] - lag_volumes
        if n <= 0:
            raise DataError(
                f"{func_path}: its {volumes.shape[0]} volumes leave none after a lag of {lag_volumes}; "
                "use a smaller lag_volumes"
            )
        fmri.append(volumes[lag_volumes:])
        patterns.append(rows[:n])
        runs.append(np.full(n, run))
    rows = np.concatenate(patterns)
    rest = (rows < 0).any(axis=1)
    keep = ~rest if drop_rest else np.ones(len(rows), dtype=bool)
    if not keep.any():
        raise DataError(f"{Path(label_paths[0]).parent}: every labelled volume is rest; check the labels")
    images = rows_to_images(np.where(rest[:, None], 0.0, rows)[keep], pattern_shape)
    if image_size is not None:
        images = upsample_nearest(images, image_size)
    return PairedDataset.from_arrays(
        fmri=np.concatenate(fmri)[keep],
        images=images,
        run=np.concatenate(runs)[keep],
        voxel_coords=apply_affine(mask_img.affine, np.argwhere(mask)),
        metadata={
            "name": name or Path(func_paths[0]).parent.name or "nifti",
            "source": str(Path(mask_path).parent),
            "format": "nifti",
            "func_files": [str(p) for p in func_paths],
            "label_files": [str(p) for p in label_paths],
            "mask": str(mask_path),
            "lag_volumes": lag_volumes,
            "rest_dropped": drop_rest,
        },
    )


def _load(path: str | Path) -> nib.spatialimages.SpatialImage:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; check the path")
    try:
        return nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable NIfTI image ({err}); check the file") from None


def _masked_volumes(path: str | Path, mask: np.ndarray, mask_affine: np.ndarray) -> np.ndarray:
    """[n_volumes, n_voxels] float32 of the in-mask voxels, after checking the run lies on the mask's grid."""
    img = _load(path)
    if len(img.shape) != 4 or img.shape[:3] != mask.shape:
        raise DataError(
            f"{path}: run of shape {img.shape} does not match the mask's grid {mask.shape}; "
            "runs must be 4-D volumes on the mask's grid (resample the mask to the runs)"
        )
    if not np.allclose(img.affine, mask_affine, atol=1e-3):
        raise DataError(f"{path}: its affine differs from the mask's; resample the mask to the runs' space")
    data = np.asarray(img.dataobj, dtype=np.float32)
    return np.ascontiguousarray(data[mask].T)


def _label_rows(path: str | Path, n_volumes: int, pattern_shape: tuple[int, int]) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; check the path")
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a numeric comma-separated label file ({err})") from None
    n_pixels = pattern_shape[0] * pattern_shape[1]
    if rows.shape != (n_volumes, n_pixels):
        raise DataError(
            f"{path}: {rows.shape[0]} label rows of {rows.shape[1]} values, but the run has {n_volumes} "
            f"volumes and patterns have {n_pixels} pixels; give one row per volume"
        )
    return rows
