"""The .npz format PairedDataset.save_npz writes, and plain .npz files holding just `fmri` and `images`.

Pickles are never allowed: a data file must not be able to run code when it is opened.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fmri_data.dataset import OPTIONAL_ARRAYS, PairedDataset, is_image_stack
from fmri_data.errors import DataError
from fmri_data.loaders.images import to_unit_range

_SUPPORTED_VERSION = 1
_OPTIONAL = ("stimulus_id", *OPTIONAL_ARRAYS)  # a plain file may leave out stimulus ids: they are derived


def load_npz(path: str | Path) -> PairedDataset:
    """Read a data set from .npz; stimulus ids are derived from image identity when the file has none."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(
            f"{path}: not a readable .npz file without pickles ({err}); re-save it with save_npz"
        ) from None
    for key in ("fmri", "images"):
        if key not in arrays:
            present = ", ".join(sorted(arrays)) or "nothing"
            raise DataError(
                f"{path}: array {key!r} not found (the file holds {present}); an .npz needs fmri and images"
            )
    version = int(arrays.get("format_version", _SUPPORTED_VERSION))
    if version > _SUPPORTED_VERSION:
        raise DataError(
            f"{path}: written in format version {version}, newer than this fmri_data reads "
            f"({_SUPPORTED_VERSION}); upgrade fmri_data"
        )
    images = arrays["images"]
    if not is_image_stack(images):
        raise DataError(
            f"{path}: images must be stored as [n_trials, H, W] or, in colour, [n_trials, H, W, 3], got "
            f"shape {images.shape}; reshape them before saving (flat rows are ambiguous about pixel order)"
        )
    fields: dict[str, Any] = {key: arrays[key] for key in _OPTIONAL if key in arrays}
    fields["roi_masks"] = {
        key.removeprefix("roi/"): value for key, value in arrays.items() if key.startswith("roi/")
    }
    fields["metadata"] = _metadata(arrays, path)
    return PairedDataset.from_arrays(fmri=arrays["fmri"], images=to_unit_range(images), **fields)


def _metadata(arrays: dict[str, np.ndarray], path: Path) -> dict[str, Any]:
    """The stored metadata as written (so a round trip is faithful), or a minimal one for plain files."""
    if "metadata_json" not in arrays:
        return {"name": path.stem, "source": str(path), "format": "npz"}
    try:
        metadata = json.loads(str(arrays["metadata_json"][()]))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: metadata_json is not JSON ({err}); re-save it with save_npz") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: metadata_json must hold a JSON object; re-save the file with save_npz")
    metadata.setdefault("name", path.stem)
    metadata.setdefault("source", str(path))
    return metadata
