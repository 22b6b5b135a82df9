"""Catalog entries and where a named data set is looked for: FMRI_DATA_DIR, then the cache, then an error."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from fmri_data import catalog
from fmri_data.catalog import CATALOG, cache_dir, get_entry, resolve_dataset_path
from fmri_data.errors import DataError

CONTENT = b"pretend this is a .mat file"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An empty FMRI_DATA_DIR and cache, and a digit69 entry whose checksum is that of CONTENT."""
    data_dir, cache = tmp_path / "data", tmp_path / "cache"
    data_dir.mkdir()
    cache.mkdir()
    monkeypatch.setenv("FMRI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FMRI_RECON_CACHE", str(cache))
    entry = replace(CATALOG["digit69"], sha256=hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setitem(catalog.CATALOG, "digit69", entry)
    return data_dir, cache


def test_entries_are_pinned() -> None:
    for name, entry in CATALOG.items():
        assert entry.name == name
        assert entry.url.startswith("https://raw.githubusercontent.com/")
        assert len(entry.sha256) == 64
        assert entry.url.endswith(entry.filename)
        assert entry.citation
    assert CATALOG["miyawaki"].loader_options == {"labels_are": "run"}


def test_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown data set 'mnist'; known names: digit69, miyawaki"):
        get_entry("mnist")


def test_data_dir_comes_first(dirs: tuple[Path, Path]) -> None:
    data_dir, cache = dirs
    (cache / "digit69_28x28.mat").write_bytes(CONTENT)
    (data_dir / "digit69_28x28.mat").write_bytes(b"the user's own copy")
    assert resolve_dataset_path("digit69") == data_dir / "digit69_28x28.mat"


def test_then_the_cache(dirs: tuple[Path, Path]) -> None:
    _, cache = dirs
    (cache / "digit69_28x28.mat").write_bytes(CONTENT)
    assert resolve_dataset_path("digit69") == cache / "digit69_28x28.mat"


def test_damaged_cache_is_reported(dirs: tuple[Path, Path]) -> None:
    _, cache = dirs
    (cache / "digit69_28x28.mat").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"does not match the expected .*download digit69 --force"):
        resolve_dataset_path("digit69")


@pytest.mark.usefixtures("dirs")
def test_then_an_error_saying_how_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMRI_DATA_DIR")
    message = r"not found in FMRI_DATA_DIR or the cache .*python -m fmri_data download digit69"
    with pytest.raises(DataError, match=message):
        resolve_dataset_path("digit69")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FMRI_RECON_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "fmri-recon" / "data"
    monkeypatch.setenv("FMRI_RECON_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
