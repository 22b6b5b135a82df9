"""The public data sets fmri_data knows by name: where to get each file, how to check it, how to read it.

URLs point at raw files of fixed commits and every file has a sha256, so a name always means the same bytes.
Files are looked up in $FMRI_DATA_DIR first (a folder the user or CI fills), then in the user cache where
`python -m fmri_data download NAME` puts them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri_data.errors import DataError


@dataclass(frozen=True)
class CatalogEntry:
    """One named data set: a single .mat file and the load_mat options it needs."""

    name: str
    filename: str
    url: str
    sha256: str
    citation: str
    description: str = ""
    loader_options: dict[str, Any] = field(default_factory=dict)


CATALOG: dict[str, CatalogEntry] = {
    "digit69": CatalogEntry(
        name="digit69",
        filename="digit69_28x28.mat",
        url=(
            "https://raw.githubusercontent.com/ChangdeDu/DGMM/"
            "286503c79b010fd285065da7092ca43f873c1f58/digit69_28x28.mat"
        ),
        sha256="44513e09ad2398566aedd550088b817a3c0bf9cd7873f87078ecd7fdf170b22d",
        citation=(
            "van Gerven et al. 2010, Neural Computation 22:3127; Schoenmakers et al. 2013, NeuroImage 83:951 "
            "(file as shipped in ChangdeDu/DGMM)"
        ),
        description="handwritten 6s and 9s, one subject, 100 trials, V1-V3 voxels, 28x28 images",
        loader_options={"labels_are": "labels"},
    ),
    "miyawaki": CatalogEntry(
        name="miyawaki",
        filename="miyawaki_structured_28x28.mat",
        url=(
            "https://raw.githubusercontent.com/braindecoding/LDM/"
            "22280ae3f9771f7375bf56e6f1f8a79065fd6d87/data/miyawaki_structured_28x28.mat"
        ),
        sha256="aea138f10f70e539eb27c935e9154a0127e4b442f020efec780bf27d30f53484",
        citation="Miyawaki et al. 2008, Neuron 60:915 (file as shipped in braindecoding/LDM)",
        description=(
            "figure images (shapes, letters), subject 1, 119 trials of 20 stimuli; its given split leaks"
        ),
        loader_options={"labels_are": "run"},
    ),
}


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry for `name`, or a DataError listing the names there are."""
    if name not in CATALOG:
        raise DataError(f"unknown data set {name!r}; known names: {', '.join(CATALOG)}")
    return CATALOG[name]


def cache_dir() -> Path:
    """Where downloads go: $FMRI_RECON_CACHE, else ~/.cache/fmri-recon/data."""
    env = os.environ.get("FMRI_RECON_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fmri-recon" / "data"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large files do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_dataset_path(name: str) -> Path:
    """The local file of a named data set: $FMRI_DATA_DIR/<file>, else the cache, else a DataError.

    A file in FMRI_DATA_DIR is the user's own copy and is used as it is; a cached file came from `download`
    and must still match its checksum, so a damaged cache is reported instead of loaded.
    """
    entry = get_entry(name)
    data_dir = os.environ.get("FMRI_DATA_DIR")
    if data_dir and (Path(data_dir).expanduser() / entry.filename).is_file():
        return Path(data_dir).expanduser() / entry.filename
    cached = cache_dir() / entry.filename
    if cached.is_file():
        actual = sha256_of(cached)
        if actual != entry.sha256:
            raise DataError(
                f"{cached}: sha256 {actual} does not match the expected {entry.sha256}; "
                f"run `uv run python -m fmri_data download {name} --force`"
            )
        return cached
    raise DataError(
        f"data set {name!r} ({entry.filename}) not found in FMRI_DATA_DIR or the cache ({cache_dir()}); "
        f"run `uv run python -m fmri_data download {name}`"
    )
