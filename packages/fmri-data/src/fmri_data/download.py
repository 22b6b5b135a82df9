"""Fetch a catalog data set into the cache, verified by sha256, never leaving a half-written file behind.

The file is streamed to `<file>.partial`, checked, then renamed into place in one step, so a file under its
real name is always complete and verified.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from fmri_data.catalog import CatalogEntry, cache_dir, get_entry, sha256_of
from fmri_data.errors import DataError

_CHUNK = 1 << 16


def download(
    name: str | CatalogEntry,
    *,
    dest_dir: str | Path | None = None,
    force: bool = False,
    timeout: float = 60,
) -> Path:
    """Download a named data set (or a given CatalogEntry) to dest_dir (default: the cache); return its path.

    An existing file that matches the checksum is kept unless force=True; one that does not is an error.
    """
    entry = name if isinstance(name, CatalogEntry) else get_entry(name)
    folder = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir()
    target = folder / entry.filename
    if target.is_file() and not force:
        actual = sha256_of(target)
        if actual != entry.sha256:
            raise DataError(
                f"{target}: exists but its sha256 {actual} is not the expected {entry.sha256}; "
                "download again with --force"
            )
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        actual = _fetch(entry, partial, timeout)
        if actual != entry.sha256:
            raise DataError(
                f"{entry.url}: downloaded sha256 {actual} does not match the expected {entry.sha256}; "
                "the file was deleted: retry, or report the changed source"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _fetch(entry: CatalogEntry, partial: Path, timeout: float) -> str:
    """Stream the URL to `partial` with a progress bar; return the sha256 of what arrived."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response, open(partial, "wb") as out:
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None,
                unit="B",
                unit_scale=True,
                desc=entry.filename,
                disable=None,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", err)
        raise DataError(
            f"could not download {entry.url} ({reason}); check the connection, or fetch {entry.filename} "
            "by hand and put it in the folder FMRI_DATA_DIR names"
        ) from None
    return digest.hexdigest()
