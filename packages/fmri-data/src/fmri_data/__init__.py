"""fmri_data: paired fMRI/image data sets, leak-proof splits, preprocessing and the method interface.

from fmri_data import load_dataset, make_splits
data = load_dataset("digit69")          # or "sim", "miyawaki", a .mat/.npz path
splits = make_splits(data, "kfold:5")   # stimulus-disjoint; leaking splits are refused
"""

from importlib.metadata import version

from fmri_data.dataset import PairedDataset, stimulus_ids_from_images
from fmri_data.errors import DataError, UserError
from fmri_data.io import load_dataset
from fmri_data.preprocessing import Preprocessing, VoxelSelector, VoxelStandardizer, average_repeats
from fmri_data.simulator import simulate_miyawaki, simulate_subjects
from fmri_data.splits import (
    Split,
    check_split,
    given_split,
    leave_one_stimulus_out,
    make_splits,
    stimulus_kfold,
)

__version__ = version("fmri-data")  # the one source: the package's pyproject.toml

__all__ = [
    "DataError",
    "PairedDataset",
    "Preprocessing",
    "Split",
    "UserError",
    "VoxelSelector",
    "VoxelStandardizer",
    "average_repeats",
    "check_split",
    "given_split",
    "leave_one_stimulus_out",
    "load_dataset",
    "make_splits",
    "simulate_miyawaki",
    "simulate_subjects",
    "stimulus_ids_from_images",
    "stimulus_kfold",
]
