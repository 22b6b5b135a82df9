"""download: checksum-verified, atomic, with one-line errors for bad digests and unreachable URLs."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from fmri_data import catalog
from fmri_data.catalog import CATALOG, CatalogEntry
from fmri_data.download import download
from fmri_data.errors import DataError

CONTENT = b"0123456789" * 5000


def entry_for(source: Path, sha256: str | None = None) -> CatalogEntry:
    return replace(
        CATALOG["digit69"], url=source.as_uri(), sha256=sha256 or hashlib.sha256(CONTENT).hexdigest()
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "server" / "digit69_28x28.mat"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def test_downloads_and_verifies(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    path = download(entry_for(source), dest_dir=dest)
    assert path == dest / "digit69_28x28.mat"
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in dest.iterdir()) == ["digit69_28x28.mat"]


def test_by_name_into_the_cache(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(catalog.CATALOG, "digit69", entry_for(source))
    monkeypatch.setenv("FMRI_RECON_CACHE", str(tmp_path / "cache"))
    assert download("digit69") == tmp_path / "cache" / "digit69_28x28.mat"


def test_wrong_checksum_leaves_nothing(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    expected = "0" * 64
    actual = hashlib.sha256(CONTENT).hexdigest()
    with pytest.raises(DataError, match=rf"sha256 {actual} does not match .*{expected}"):
        download(entry_for(source, expected), dest_dir=dest)
    assert list(dest.iterdir()) == []


def test_unreachable_url(tmp_path: Path) -> None:
    entry = replace(CATALOG["digit69"], url="http://127.0.0.1:9/x")
    with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/x .*FMRI_DATA_DIR") as err:
        download(entry, dest_dir=tmp_path, timeout=2)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_remote_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="could not download file://"):
        download(entry_for(tmp_path / "absent.mat"), dest_dir=tmp_path / "dest")


def test_existing_file_is_kept_or_refused(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / "digit69_28x28.mat"
    target.write_bytes(CONTENT)
    source.write_bytes(b"changed upstream")
    assert download(entry_for(source), dest_dir=dest).read_bytes() == CONTENT
    target.write_bytes(b"damaged")
    with pytest.raises(DataError, match=r"exists but its sha256 .*--force"):
        download(entry_for(source), dest_dir=dest)
    source.write_bytes(CONTENT)
    assert download(entry_for(source), dest_dir=dest, force=True).read_bytes() == CONTENT
