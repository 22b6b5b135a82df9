"""Fetch what the NSD loader reads of one subject, from the data set's public bucket, resumably.

    python -m fmri_data download nsd --subject 1 --sessions 1-40 --root ~/nsd

Only the files `fmri_data.loaders.nsd` reads are fetched, in the bucket's own layout (so `--nsd-root` is the
same folder): the experimental design and stimulus table, the subject's nsdgeneral mask and single-trial
betas of the sessions asked, the stimulus brick and COCO's caption files. Before any byte moves, every
file's size is asked for (HTTP HEAD) and the free disk space checked. Each file streams to a hidden
`.NAME.partial` beside it and continues from where it stopped on the next run (an HTTP range request); it
takes its real name only once its size is right, so a partial file never passes for a complete one. The
sha256 of every completed file goes to a checksum manifest (`nsd-checksums.json` in the root), and every
later run checks the files already there against it.
"""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fmri_data.catalog import sha256_of
from fmri_data.errors import DataError

NSD_BUCKET = "https://natural-scenes-dataset.s3.amazonaws.com"
MANIFEST = "nsd-checksums.json"
OPTIONAL = {
    "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
    "nsddata_stimuli/stimuli/nsd/annotations/captions_train2017.json",
    "nsddata_stimuli/stimuli/nsd/annotations/captions_val2017.json",
}
"""Files the loader does without (no captions then): absent from a mirror, they are skipped."""
SESSIONS = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
"""The number of scan sessions of each NSD subject."""
_CHUNK = 1 << 20
_SPARE_BYTES = 1 << 30  # left free on the disk beyond what the download needs


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the root, as in the bucket
    size: int


def nsd_files(subject: int, sessions: Sequence[int]) -> list[str]:
    """The bucket paths the NSD loader reads for `subject` and `sessions`."""
    if subject not in SESSIONS:
        raise DataError(f"NSD has subjects 1-8, not {subject}")
    if not sessions:
        raise DataError("no sessions asked for; give e.g. --sessions 1-37")
    wrong = [s for s in sessions if not 1 <= s <= SESSIONS[subject]]
    if wrong:
        raise DataError(f"NSD subject {subject} has sessions 1-{SESSIONS[subject]}, not {wrong}")
    subj = f"subj{subject:02d}"
    betas = f"nsddata_betas/ppdata/{subj}/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    stimuli = "nsddata_stimuli/stimuli/nsd"
    return [
        "nsddata/experiments/nsd/nsd_expdesign.mat",
        "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
        f"nsddata/ppdata/{subj}/func1pt8mm/roi/nsdgeneral.nii.gz",
        *(f"{betas}/betas_session{session:02d}.nii.gz" for session in sessions),
        f"{stimuli}/annotations/captions_train2017.json",
        f"{stimuli}/annotations/captions_val2017.json",
        f"{stimuli}/nsd_stimuli.hdf5",
    ]


def parse_sessions(text: str) -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7]."""
    sessions: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            span = range(int(first), int(last or first) + 1)
            if not span:
                raise ValueError(part)
            sessions += span
    except ValueError:
        sessions = []
    if not sessions:
        raise DataError(f"sessions must look like 1-40 or 1,3,5-7, got {text!r}")
    return sorted(set(sessions))


def download_nsd(
    root: str | Path,
    subject: int,
    sessions: Sequence[int] | None = None,
    *,
    base_url: str = NSD_BUCKET,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Bring `root` up to date with the subject's files (all its sessions by default); return `root`."""
    root = Path(root).expanduser()
    paths = nsd_files(subject, range(1, SESSIONS.get(subject, 0) + 1) if sessions is None else sessions)
    manifest_path = root / MANIFEST
    checksums = _read_manifest(manifest_path)
    remote = []
    for path in paths:
        target = root / path
        if target.is_file() and path in checksums:
            _verify(target, checksums[path])
            continue
        size = _remote_size(f"{base_url}/{path}", timeout, optional=path in OPTIONAL)
        if size is None and target.is_file():  # a mirror without it, and a copy here: kept as it is
            checksums[path] = sha256_of(target)
        elif size is None:
            tqdm.write(f"skipped {path}: not on the server (optional: without it the data have no captions)")
        elif not (target.is_file() and _adopted(target, size, checksums, path)):
            remote.append(RemoteFile(path, size))
    _check_space(root, remote)
    try:
        for file in remote:
            checksums[file.path] = _fetch(
                f"{base_url}/{file.path}", root / file.path, file.size, timeout, progress
            )
    finally:
        _write_manifest(manifest_path, checksums)
    return root


def _remote_size(url: str, timeout: float, *, optional: bool = False) -> int | None:
    """The file's size in bytes (HTTP HEAD); None for an optional file the server does not have."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.headers["Content-Length"])
    except urllib.error.HTTPError as error:
        if optional and error.code == 404:
            return None
        raise DataError(f"cannot reach {url} ({error}); check the connection and the URL") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DataError(f"cannot reach {url} ({_reason(error)}); check the connection and the URL") from None
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{url} does not say its size; cannot check the download") from None


def _adopted(target: Path, size: int, checksums: dict[str, str], path: str) -> bool:
    """Whether a file under its real name that this command did not record (an older download, another
    tool's) is kept: at the bucket's size it is recorded; shorter, it becomes the partial file to continue
    (False); longer, refused."""
    have = target.stat().st_size
    if have == size:
        checksums[path] = sha256_of(target)
        return True
    if have < size:
        target.replace(_partial(target))
        return False
    raise DataError(f"{target} is {have} bytes but the bucket's file is {size}: delete it and run again")


def _check_space(root: Path, remote: list[RemoteFile]) -> None:
    needed = sum(file.size - _bytes_there(_partial(root / file.path)) for file in remote)
    if not needed:
        return
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if needed + _SPARE_BYTES > free:
        raise DataError(
            f"NSD: {needed / 1e9:.1f} GB to download but {free / 1e9:.1f} GB free in {root} (1 GB kept "
            "spare); free space, ask for fewer --sessions, or choose another --root"
        )


def _bytes_there(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _partial(target: Path) -> Path:
    """Hidden, so that no loader's glob (betas_session??.*) takes it for data."""
    return target.with_name(f".{target.name}.partial")


def _fetch(url: str, target: Path, size: int, timeout: float, progress: bool) -> str:
    """Stream `url` into the partial file, continuing it if one is there; rename it to `target` once its size
    is `size`; return its sha256."""
    partial = _partial(target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = _bytes_there(partial)
    if have > size:
        partial.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if 0 < have < size else {}
    bar = tqdm(
        total=size, initial=have, unit="B", unit_scale=True, desc=target.name, disable=not progress or None
    )
    try:
        if have < size:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=timeout
            ) as response:
                resumed = response.status == 206
                if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                    partial.unlink()
                    raise DataError(f"{url} answered from another byte than asked; run again to restart it")
                with open(partial, "ab" if resumed else "wb") as out:
                    if not resumed:
                        bar.reset(total=size)
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise DataError(
            f"download of {url} stopped ({_reason(error)}); run the same command again to continue it"
        ) from None
    finally:
        bar.close()
    got = partial.stat().st_size
    if got != size:
        raise DataError(
            f"{url}: {got} of {size} bytes arrived; run the same command again to continue the download"
        )
    digest = sha256_of(partial)
    partial.replace(target)
    return digest


def _verify(target: Path, expected: str) -> None:
    actual = sha256_of(target)
    if actual != expected:
        raise DataError(
            f"{target}: its sha256 {actual[:12]}... is not the {expected[:12]}... recorded in {MANIFEST} "
            "when it was downloaded; the file changed: delete it and run the command again"
        )


def _read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["sha256"])
    except (ValueError, KeyError, TypeError):
        raise DataError(f"{path} is not a checksum manifest this command wrote; move it away") from None


def _write_manifest(path: Path, checksums: dict[str, str]) -> None:
    if not checksums:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps({"sha256": dict(sorted(checksums.items()))}, indent=1) + "\n")
    staging.replace(path)


def _reason(error: Exception) -> object:
    return error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error)
