"""A run folder that appears whole or not at all: readers never see half-written results."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from fmri_eval.errors import EvaluationError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_output_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that becomes `out_dir` only if the block succeeds.

    On an exception the temporary folder is deleted and an existing `out_dir` is left untouched,
    so readers never see a half-written run. An existing `out_dir` is swapped out by two renames
    in the same parent (atomic each) and deleted afterwards.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluationError(f"output path {out_dir} exists and is not a folder; choose another path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a run folder gets the usual permissions
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}")
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def check_writable_folder(folder: str | Path, what: str = "output folder", *, swapped: bool = False) -> None:
    """Refuse, before any work, a folder that cannot be created or written: one that is a file, or whose
    nearest existing ancestor is not a writable folder (probed by creating and removing a file in it).

    `swapped`: the folder is written whole by `atomic_output_dir`, which stages and renames it in its parent,
    so the parent is what must be writable.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EvaluationError(f"{what} {folder} exists and is not a folder; choose another path")
    ancestor = folder.parent if swapped else folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EvaluationError(f"{what} {folder} cannot be created: {ancestor} is a file; choose another path")
    try:
        probe, name = tempfile.mkstemp(prefix=".write-probe-", dir=ancestor)
    except OSError as exc:
        raise EvaluationError(
            f"{what} {folder} cannot be written: no write access to {ancestor} ({exc.strerror}); "
            "choose another path"
        ) from None
    os.close(probe)
    os.unlink(name)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Let `write` fill a unique temporary file beside `path`, then rename it over `path`, so a reader never
    sees half a file: for files in a folder that also holds other work (a report beside the checkpoint it
    scores, one saved pair among several), where swapping the whole folder (atomic_output_dir) cannot."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write of a UTF-8 text file."""
    atomic_write(path, lambda partial: partial.write_text(text, encoding="utf-8"))
