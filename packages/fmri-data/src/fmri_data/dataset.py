"""The in-memory container every loader returns and every method consumes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmri_data.errors import DataError

_FORMAT_VERSION = 1
_DTYPE = "per_trial_dtype"  # field metadata: the dtype of an optional per-trial array
_VARIES_WITH_REPEAT = "varies_with_repeat"  # field metadata: may differ between repeats of one stimulus


def _per_trial(dtype: type, *, varies_with_repeat: bool = False) -> dict[str, Any]:
    """The field metadata that makes an optional PairedDataset array one with an entry per trial, of `dtype`.

    That declaration is all a new per-trial field needs: coercion, validation, subset, save_npz and load_npz
    read it (TRIAL_FIELDS). varies_with_repeat: the value belongs to one acquisition (a run) rather than to
    the stimulus, so an average over a stimulus's repeats has none.
    """
    return {_DTYPE: dtype, _VARIES_WITH_REPEAT: varies_with_repeat}


def stimulus_ids_from_images(images: np.ndarray) -> np.ndarray:
    """Give identical images the same integer id (first-seen order), so repeats of a stimulus are grouped.

    Images are compared after rounding to 1/1024 so that float noise from format conversion does not split
    one stimulus into several.
    """
    quantised = np.round(np.asarray(images, dtype=np.float64) * 1024).astype(np.int32)
    ids: dict[bytes, int] = {}
    out = np.empty(len(quantised), dtype=np.int64)
    for i, image in enumerate(quantised):
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
        out[i] = ids.setdefault(key, len(ids))
    return out


def is_image_stack(images: np.ndarray) -> bool:
    """Whether `images` is laid out as a data set's images: [n, H, W] (grayscale) or [n, H, W, 3] (RGB)."""
    return images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)


@dataclass
class PairedDataset:
    """fMRI trials paired with the images that were seen.

    fmri: [n_trials, n_voxels] float32. images: [n_trials, H, W] float32 in [0, 1] (grayscale), or
    [n_trials, H, W, 3] (RGB, as NSD's stimuli are loaded with colour=True; only `colour` methods take them).
    stimulus_id: [n_trials] int64; trials that showed the identical image share an id.
    labels / run: optional [n_trials] int64 (class labels; scanning run or session).
    subject: optional [n_trials] str.
    voxel_coords: optional [n_voxels, 3] float32 (scanner or voxel-index coordinates).
    roi_masks: ROI name -> [n_voxels] bool.
    given_test: optional [n_trials] bool, the test trials of the split the source file came with.
    captions: optional [n_trials] str, a caption of each trial's image (e.g. COCO's, for NSD).
    metadata: free JSON-serialisable information (source, description, preprocessing applied, ...).
    """

    fmri: np.ndarray
    images: np.ndarray
    stimulus_id: np.ndarray
    labels: np.ndarray | None = field(default=None, metadata=_per_trial(np.int64))
    run: np.ndarray | None = field(default=None, metadata=_per_trial(np.int64, varies_with_repeat=True))
    subject: np.ndarray | None = field(default=None, metadata=_per_trial(str))
    voxel_coords: np.ndarray | None = None
    roi_masks: dict[str, np.ndarray] = field(default_factory=dict)
    given_test: np.ndarray | None = field(default=None, metadata=_per_trial(bool))
    captions: np.ndarray | None = field(default=None, metadata=_per_trial(str))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self._coerce_types()
        except (TypeError, ValueError) as error:
            where = self.metadata.get("source", self.name)
            raise DataError(f"{where}: an array has values that are not numbers ({error})") from None
        self.validate()

    def _coerce_types(self) -> None:
        self.fmri = np.asarray(self.fmri, dtype=np.float32)
        self.images = np.asarray(self.images, dtype=np.float32)
        self.stimulus_id = np.asarray(self.stimulus_id, dtype=np.int64)
        for name, dtype in _TRIAL_DTYPES.items():
            values = getattr(self, name)
            if values is not None:
                setattr(self, name, np.asarray(values, dtype=dtype))
        if self.voxel_coords is not None:
            self.voxel_coords = np.asarray(self.voxel_coords, dtype=np.float32)
        self.roi_masks = {name: np.asarray(mask, dtype=bool) for name, mask in self.roi_masks.items()}

    @classmethod
    def from_arrays(
        cls,
        fmri: np.ndarray,
        images: np.ndarray,
        stimulus_id: np.ndarray | None = None,
        **fields: Any,
    ) -> PairedDataset:
        """Build a data set, deriving stimulus ids from image identity when none are given."""
        if stimulus_id is None:
            stimulus_id = stimulus_ids_from_images(images)
        return cls(fmri=fmri, images=images, stimulus_id=stimulus_id, **fields)

    # ----------------------------------------------------------------- shape
    @property
    def n_trials(self) -> int:
        return int(self.fmri.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.fmri.shape[1])

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.images.shape[1]), int(self.images.shape[2]))

    @property
    def is_colour(self) -> bool:
        """Whether the images are RGB [n, H, W, 3] rather than grayscale [n, H, W]."""
        return self.images.ndim == 4

    @property
    def n_stimuli(self) -> int:
        return int(np.unique(self.stimulus_id).size)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "dataset"))

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise DataError with a one-line reason if the arrays do not form a usable data set."""
        where = self.metadata.get("source", self.name)
        if self.fmri.ndim != 2:
            raise DataError(f"{where}: fMRI must be [n_trials, n_voxels], got shape {self.fmri.shape}")
        if not is_image_stack(self.images):
            raise DataError(
                f"{where}: images must be [n_trials, H, W] (grayscale) or [n_trials, H, W, 3] (RGB), "
                f"got shape {self.images.shape}"
            )
        n = self.fmri.shape[0]
        if n == 0:
            raise DataError(f"{where}: the data set has no trials")
        if self.images.shape[0] != n:
            raise DataError(
                f"{where}: {n} fMRI trials but {self.images.shape[0]} images; each trial needs one image"
            )
        if self.images.shape[1] != self.images.shape[2]:
            raise DataError(
                f"{where}: images must be square, got {self.images.shape[1]}x{self.images.shape[2]}; "
                "crop or pad them before loading"
            )
        bad = ~np.isfinite(self.fmri)
        if bad.any():
            trials, voxels = np.nonzero(bad)
            raise DataError(
                f"{where}: {bad.sum()} NaN/inf fMRI values (first at trial {trials[0]}, voxel {voxels[0]}); "
                "remove or impute those voxels before loading"
            )
        if not np.isfinite(self.images).all():
            raise DataError(f"{where}: images contain NaN/inf values")
        low, high = float(self.images.min()), float(self.images.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"{where}: image values span [{low:.4g}, {high:.4g}] but must lie in [0, 1]; "
                "rescale them (uint8 images are divided by 255 by the loaders)"
            )
        for key in ("stimulus_id", *TRIAL_FIELDS):
            values = getattr(self, key)
            if values is not None and values.shape != (n,):
                raise DataError(
                    f"{where}: {key} must have one entry per trial ({n}), got shape {values.shape}"
                )
        v = self.fmri.shape[1]
        if self.voxel_coords is not None and self.voxel_coords.shape != (v, 3):
            raise DataError(f"{where}: voxel_coords must be [{v}, 3], got {self.voxel_coords.shape}")
        for name, mask in self.roi_masks.items():
            if mask.shape != (v,):
                raise DataError(f"{where}: ROI mask {name!r} must have one entry per voxel ({v})")

    # ------------------------------------------------------------- selection
    def subset(self, trials: Sequence[int] | np.ndarray) -> PairedDataset:
        """The data set restricted to some trials (indices or a boolean mask), metadata kept."""
        index = np.asarray(trials)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.size == 0:
            raise DataError(f"{self.name}: the selection holds no trials")

        per_trial = {name: getattr(self, name) for name in TRIAL_FIELDS}
        return replace(
            self,
            fmri=self.fmri[index],
            images=self.images[index],
            stimulus_id=self.stimulus_id[index],
            **{name: None if values is None else values[index] for name, values in per_trial.items()},
            metadata=dict(self.metadata),
        )

    def select_voxels(self, voxels: np.ndarray) -> PairedDataset:
        """The data set restricted to some voxels (indices or a boolean mask); coordinates and ROIs follow."""
        index = np.asarray(voxels)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.size == 0:
            raise DataError(f"{self.name}: the voxel selection is empty")
        return replace(
            self,
            fmri=self.fmri[:, index],
            voxel_coords=None if self.voxel_coords is None else self.voxel_coords[index],
            roi_masks={name: mask[index] for name, mask in self.roi_masks.items()},
            metadata=dict(self.metadata),
        )

    def with_fmri(self, fmri: np.ndarray) -> PairedDataset:
        """A copy with new voxel values for the same trials and voxels (after preprocessing)."""
        if fmri.shape != self.fmri.shape:
            raise DataError(f"{self.name}: new fMRI values must keep the shape {self.fmri.shape}")
        return replace(self, fmri=fmri, metadata=dict(self.metadata))

    # -------------------------------------------------------------------- io
    def save_npz(self, path: str | Path) -> Path:
        """Write the data set to one compressed .npz (no pickles: every array is plain, metadata is JSON)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(_FORMAT_VERSION),
            "fmri": self.fmri,
            "images": self.images,
            "stimulus_id": self.stimulus_id,
            "metadata_json": np.array(json.dumps(self.metadata, default=_json_default)),
        }
        optional = {name: getattr(self, name) for name in OPTIONAL_ARRAYS}
        arrays.update({name: values for name, values in optional.items() if values is not None})
        arrays.update({f"roi/{name}": mask for name, mask in self.roi_masks.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> PairedDataset:
        """Read a file written by save_npz (or any .npz with at least `fmri` and `images`)."""
        from fmri_data.loaders.npz import load_npz

        return load_npz(path)


_TRIAL_DTYPES: dict[str, type] = {
    spec.name: spec.metadata[_DTYPE] for spec in fields(PairedDataset) if _DTYPE in spec.metadata
}
TRIAL_FIELDS: tuple[str, ...] = tuple(_TRIAL_DTYPES)
"""PairedDataset's optional arrays with one entry per trial (labels, run, subject, ...), as declared."""
VARIES_WITH_REPEAT: tuple[str, ...] = tuple(
    spec.name for spec in fields(PairedDataset) if spec.metadata.get(_VARIES_WITH_REPEAT)
)
"""The per-trial fields that may differ between repeats of one stimulus (the run)."""
OPTIONAL_ARRAYS: tuple[str, ...] = (*TRIAL_FIELDS, "voxel_coords")
"""The optional arrays save_npz writes when present and load_npz reads back."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable")
