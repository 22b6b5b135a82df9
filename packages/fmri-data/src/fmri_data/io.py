"""One entry point from a name or a path to a PairedDataset, used by the CLI and by apps."""

from __future__ import annotations

from pathlib import Path

from fmri_data.catalog import CATALOG, get_entry, resolve_dataset_path
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.matlab import is_mat_v73, load_mat
from fmri_data.loaders.npz import load_npz

_NEEDS_PYTHON = {
    ".nii": "NIfTI runs need a mask and label files: use fmri_data.loaders.nifti.load_nifti_runs in Python",
    ".h5": "not MAT v7.3; BData files need the images: use fmri_data.loaders.bdata.load_bdata in Python",
}


def load_dataset(
    spec: str | Path, *, nsd_root: str | Path | None = None, subject: int = 1, colour: bool = False
) -> PairedDataset:
    """Load "sim" (the simulator), a catalog name (digit69, miyawaki), "nsd" (with `nsd_root` and
    `subject`; `colour` keeps its stimuli RGB) or a .mat/.npz file (an .npz may hold RGB images)."""
    if isinstance(spec, str) and spec == "nsd":
        if nsd_root is None:
            raise DataError("data 'nsd' needs the folder that holds nsddata/: pass --nsd-root DIR")
        from fmri_data.loaders.nsd import load_nsd

        return load_nsd(nsd_root, subject, colour=colour)
    if colour:
        check_colour_source(spec)
    if isinstance(spec, str) and spec == "sim":
        from fmri_data.simulator import simulate_miyawaki

        return simulate_miyawaki()
    if isinstance(spec, str) and spec in CATALOG:
        entry = get_entry(spec)
        return load_mat(resolve_dataset_path(spec), name=entry.name, **entry.loader_options)
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"no such file {str(path)!r}; give sim, {', '.join(CATALOG)} or a .mat/.npz path")
    suffix = _suffix(path)
    if suffix == ".npz":
        return load_npz(path)
    if suffix == ".mat" or is_mat_v73(path):
        return load_mat(path)
    if suffix in _NEEDS_PYTHON:
        raise DataError(f"{path}: {_NEEDS_PYTHON[suffix]}")
    raise DataError(f"{path}: unknown file type {suffix or '(no suffix)'!r}; give a .mat or .npz file")


def check_colour_source(spec: str | Path) -> None:
    """Refuse a colour load of data other than NSD, the one source read in either colour or grayscale."""
    if not (isinstance(spec, str) and spec == "nsd"):
        raise DataError(
            f"--colour reads NSD's stimuli in colour; {spec} is not NSD (an .npz holding RGB images "
            "[n, H, W, 3] is read in colour without it)"
        )


def _suffix(path: Path) -> str:
    """The format suffix, folding .nii.gz into .nii and .hdf5 into .h5."""
    suffix = path.suffix.lower()
    if suffix == ".gz" and path.stem.lower().endswith(".nii"):
        return ".nii"
    return ".h5" if suffix == ".hdf5" else suffix
