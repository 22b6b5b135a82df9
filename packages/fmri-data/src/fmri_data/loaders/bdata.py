"""Kamitani-lab BData .h5 files (bdpy / BrainDecoderToolbox2), read with h5py alone so bdpy is not needed.

A BData file holds one 2-D `dataset` [n_samples, n_columns] (voxels, labels, run numbers side by side) and
`metadata`: `key` and `description` per metadata row and `value` [n_keys, n_columns], where a value of 1 marks
the columns a key names (e.g. ROI_V1) and NaN means "not set". Older files spell them `dataSet`/`metaData`.
Optional `vmap/<key>/<value>` datasets map numeric labels to names. Images are not stored in BData files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.images import to_unit_range

_TOKEN = re.compile(r"\s*(\(|\)|[|+&\-=]|[^\s()|+&\-=]+)")


class BData:
    """A BData file in memory, with bdpy-style column selection by metadata key."""

    def __init__(
        self,
        dataset: np.ndarray,
        keys: list[str],
        descriptions: list[str],
        values: np.ndarray,
        *,
        vmap: dict[str, dict[float, str]] | None = None,
        source: str = "BData",
    ) -> None:
        self.dataset = np.asarray(dataset, dtype=np.float64)
        self.keys = list(keys)
        self.descriptions = list(descriptions)
        self.values = np.asarray(values, dtype=np.float64)
        self.vmap = vmap or {}
        self.source = source
        if self.dataset.ndim != 2 or self.values.shape != (len(self.keys), self.dataset.shape[1]):
            raise DataError(
                f"{source}: metadata values of shape {self.values.shape} do not match {len(self.keys)} keys "
                f"and the dataset's {self.dataset.shape[1:]} columns; the file is not valid BData"
            )

    def metadata(self, key: str) -> np.ndarray:
        """The metadata row for `key`: one value per dataset column, NaN where unset."""
        return self.values[self._index(key)]

    def columns(self, expr: str) -> np.ndarray:
        """Boolean column mask for a selection such as "ROI_V1 + ROI_V2", "(ROI_V* & VoxelData) - ROI_V4".

        Operators, applied left to right unless bracketed: + or | union, & intersection, - difference;
        "KEY = 2" selects columns whose KEY value is 2, a bare KEY means KEY = 1. In a key, * matches any text
        (keys match whole, unlike bdpy's prefix match).
        """
        tokens = _TOKEN.findall(expr)
        if not tokens:
            raise DataError(f"{self.source}: empty selection; name metadata keys joined by + & - and ()")
        mask, rest = self._union_expr(tokens, expr)
        if rest:
            raise DataError(f"{self.source}: unexpected {rest[0]!r} in selection {expr!r}")
        return mask

    def select(self, expr: str) -> np.ndarray:
        """The dataset columns a selection names, [n_samples, n_selected]."""
        return self.dataset[:, self.columns(expr)]

    def get(self, key: str) -> np.ndarray:
        """The dataset columns one metadata key marks with 1 (e.g. "Label", "Run"): [n_samples, n_columns]."""
        return self.dataset[:, self.metadata(key) == 1]

    # ------------------------------------------------------------------ parsing
    def _union_expr(self, tokens: list[str], expr: str) -> tuple[np.ndarray, list[str]]:
        mask, tokens = self._term(tokens, expr)
        while tokens and tokens[0] in "|+&-":
            op, tokens = tokens[0], tokens[1:]
            right, tokens = self._term(tokens, expr)
            mask = mask | right if op in "|+" else mask & right if op == "&" else mask & ~right
        return mask, tokens

    def _term(self, tokens: list[str], expr: str) -> tuple[np.ndarray, list[str]]:
        if not tokens:
            raise DataError(f"{self.source}: selection {expr!r} ends early; a key is missing")
        head, tokens = tokens[0], tokens[1:]
        if head == "(":
            mask, tokens = self._union_expr(tokens, expr)
            if not tokens or tokens[0] != ")":
                raise DataError(f"{self.source}: unbalanced brackets in selection {expr!r}")
            return mask, tokens[1:]
        if head in "()|+&-=":
            raise DataError(f"{self.source}: unexpected {head!r} in selection {expr!r}")
        target = 1.0
        if tokens[:1] == ["="]:
            try:
                target = float(tokens[1])
            except (IndexError, ValueError):
                raise DataError(f"{self.source}: '=' in selection {expr!r} needs a number after it") from None
            tokens = tokens[2:]
        pattern = re.escape(head).replace(r"\*", ".*")
        rows = [i for i, key in enumerate(self.keys) if re.fullmatch(pattern, key)]
        if not rows:
            raise self._missing(head)
        return (self.values[rows] == target).any(axis=0), tokens

    def _index(self, key: str) -> int:
        if key not in self.keys:
            raise self._missing(key)
        return self.keys.index(key)

    def _missing(self, key: str) -> DataError:
        shown = ", ".join(self.keys[:25]) + (", ..." if len(self.keys) > 25 else "")
        return DataError(f"{self.source}: metadata key {key!r} not found (keys: {shown})")


def read_bdata(path: str | Path) -> BData:
    """Read a BData .h5 file (current `dataset`/`metadata` or older `dataSet`/`metaData` spelling)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file; BData files are .h5 files written by bdpy")
    with h5py.File(path, "r") as handle:
        data_name = _first_present(handle, ("dataset", "dataSet"), path)
        meta_name = _first_present(handle, ("metadata", "metaData"), path)
        meta = handle[meta_name]
        for part in ("key", "value"):
            if part not in meta:
                raise DataError(f"{path}: {meta_name}/{part} not found; the file is not valid BData")
        keys = [_text(k) for k in np.atleast_1d(meta["key"][()])]
        described = np.atleast_1d(meta["description"][()]) if "description" in meta else []
        descriptions = [_text(d) for d in described]
        vmap = {
            key: {float(value): _text(group[value][()]) for value in group}
            for key, group in handle.get("vmap", {}).items()
        }
        return BData(
            np.asarray(handle[data_name]),
            keys,
            descriptions,
            np.atleast_2d(np.asarray(meta["value"])),
            vmap=vmap,
            source=str(path),
        )


def load_bdata(
    path: str | Path,
    *,
    roi: str = "VoxelData",
    stimulus_key: str = "Label",
    images: Mapping[float, np.ndarray] | Callable[[float], np.ndarray],
    name: str | None = None,
) -> PairedDataset:
    """Pair the voxels selected by `roi` with the image of each sample's `stimulus_key` label.

    The caller supplies the images (a mapping or function from label value to image) because BData files
    only hold the labels. ROI_* keys become roi_masks (prefix dropped), voxel_x/y/z voxel_coords, Run run.
    """
    path = Path(path)
    bdata = read_bdata(path)
    voxels = bdata.columns(roi)
    if not voxels.any():
        raise DataError(f"{path}: selection {roi!r} holds no columns; choose voxels with another roi")
    labels = _single_column(bdata, stimulus_key, path)
    if np.isnan(labels).any():
        raise DataError(
            f"{path}: {int(np.isnan(labels).sum())} samples have no {stimulus_key} value; "
            "drop them before loading"
        )
    distinct, inverse = np.unique(labels, return_inverse=True)
    per_label = [_image_for(images, float(value), path) for value in distinct]
    if len({image.shape for image in per_label}) > 1:
        shapes = sorted({image.shape for image in per_label})
        raise DataError(f"{path}: the given images differ in shape ({shapes}); give images of one size")
    stimuli = to_unit_range(np.stack(per_label))
    roi_masks = {
        key.removeprefix("ROI_"): mask
        for key in bdata.keys
        if key.startswith("ROI_") and (mask := bdata.metadata(key)[voxels] == 1).any()
    }
    coords = None
    if all(axis in bdata.keys for axis in ("voxel_x", "voxel_y", "voxel_z")):
        xyz = np.stack([bdata.metadata(axis)[voxels] for axis in ("voxel_x", "voxel_y", "voxel_z")], axis=1)
        coords = xyz if np.isfinite(xyz).all() else None
    run = _single_column(bdata, "Run", path) if "Run" in bdata.keys else None
    if run is not None and not np.isfinite(run).all():
        raise DataError(f"{path}: some samples have no Run value; drop them before loading")
    return PairedDataset.from_arrays(
        fmri=bdata.dataset[:, voxels],
        images=stimuli[inverse],
        run=run,
        voxel_coords=coords,
        roi_masks=roi_masks,
        metadata={
            "name": name or path.stem,
            "source": str(path),
            "format": "bdata",
            "roi": roi,
            "stimulus_key": stimulus_key,
        },
    )


def _single_column(bdata: BData, key: str, path: Path) -> np.ndarray:
    values = bdata.get(key)
    if values.shape[1] != 1:
        raise DataError(f"{path}: metadata key {key!r} marks {values.shape[1]} columns; expected exactly one")
    return values[:, 0]


def _image_for(
    images: Mapping[float, np.ndarray] | Callable[[float], np.ndarray], label: float, path: Path
) -> np.ndarray:
    if callable(images):
        return np.asarray(images(label))
    try:
        return np.asarray(images[label])
    except KeyError:
        raise DataError(f"{path}: no image for stimulus label {label!r}; add it to `images`") from None


def _first_present(handle: h5py.File, names: tuple[str, ...], path: Path) -> str:
    for candidate in names:
        if candidate in handle:
            return candidate
    present = ", ".join(handle) or "nothing"
    raise DataError(f"{path}: neither {' nor '.join(names)} found (the file holds {present}); not BData")


def _text(value: object) -> str:
    """h5py returns stored strings as bytes (or numpy bytes); BData keys are plain text."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode()
    return str(value)
