"""The Natural Scenes Dataset (Allen et al. 2022) in its published folder layout, read lazily.

    ROOT/nsddata/experiments/nsd/nsd_expdesign.mat            masterordering, subjectim, sharedix
    ROOT/nsddata/ppdata/subjNN/func1pt8mm/roi/nsdgeneral.nii.gz  ROI mask (> 0 inside)
    ROOT/nsddata_betas/ppdata/subjNN/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionSS.{nii.gz,hdf5}
    ROOT/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5          imgBrick [73000, 425, 425, 3] uint8
    ROOT/nsddata/experiments/nsd/nsd_stim_info_merged.csv      nsdId -> cocoId, cocoSplit (optional)
    ROOT/nsddata_stimuli/stimuli/nsd/annotations/captions_{train,val}2017.json   COCO captions (optional)

Betas are single-trial (750 per session, int16 = percent signal change x 300). Each session is read in
blocks of trials and masked at once, so a subject never sits in memory unmasked; each voxel is z-scored
within its session (the NSD convention against session drift). Trials keep their 0-based NSD image id
as stimulus id; the shared 1,000 images form the given test split. Repeats (each image up to 3 times)
stay separate trials: average them with Preprocessing(average_repeats=...), which the report states.
Where the stimulus table and COCO's caption files are present, each trial carries its image's COCO
captions (newline-separated, by annotation id) for the text guidance of Brain-Diffuser's stage 2; where
not, the data set has no captions and its metadata says why.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.ndimage import zoom

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.loaders.matlab import read_mat

TRIALS_PER_SESSION = 750
BETA_SCALE = 300.0
_BLOCK = 50


def nsd_paths(root: str | Path, subject: int) -> dict[str, Path]:
    root = Path(root)
    subj = f"subj{subject:02d}"
    return {
        "expdesign": root / "nsddata/experiments/nsd/nsd_expdesign.mat",
        "mask": root / f"nsddata/ppdata/{subj}/func1pt8mm/roi/nsdgeneral.nii.gz",
        "betas": root / f"nsddata_betas/ppdata/{subj}/func1pt8mm/betas_fithrf_GLMdenoise_RR",
        "stimuli": root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
        "stim_info": root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
        "annotations": root / "nsddata_stimuli/stimuli/nsd/annotations",
    }


def load_nsd(
    root: str | Path,
    subject: int = 1,
    *,
    sessions: list[int] | None = None,
    image_size: int = 64,
    colour: bool = False,
) -> PairedDataset:
    """Single trials of one subject's sessions (default: every session found), nsdgeneral voxels; the
    stimuli at image_size px, in grayscale (luminance) or, with `colour`, RGB [n, S, S, 3] as published."""
    paths = nsd_paths(root, subject)
    for key in ("expdesign", "mask", "stimuli"):
        if not paths[key].is_file():
            raise DataError(f"NSD: {paths[key]} is missing; point --nsd-root at the folder holding nsddata/")
    design = read_mat(paths["expdesign"])
    for key in ("masterordering", "subjectim", "sharedix"):
        if key not in design:
            raise DataError(f"NSD: {paths['expdesign']} has no {key!r}; is it nsd_expdesign.mat?")
    mask = _mask(paths["mask"])
    sessions = sessions or _sessions_found(paths["betas"])
    if not sessions:
        raise DataError(f"NSD: no betas_sessionNN.nii.gz or .hdf5 in {paths['betas']}")
    order = np.asarray(design["masterordering"]).ravel().astype(np.int64) - 1
    images_of_subject = np.asarray(design["subjectim"])[subject - 1].astype(np.int64) - 1
    lengths = [_session_length(paths["betas"], session) for session in sessions]
    fmri = np.empty((sum(lengths), int(mask.sum())), dtype=np.float32)  # filled session by session
    ids, runs, start = [], [], 0
    for session, length in zip(sessions, lengths, strict=True):
        trials = np.arange((session - 1) * TRIALS_PER_SESSION, (session - 1) * TRIALS_PER_SESSION + length)
        if trials[-1] >= len(order):
            raise DataError(f"NSD: session {session} has more trials than the experimental design lists")
        fmri[start : start + length] = _zscore(_session_betas(paths["betas"], session, mask))
        ids.append(images_of_subject[order[trials]])
        runs.append(np.full(length, session))
        start += length
    stimulus_id = np.concatenate(ids)
    shared = set((np.asarray(design["sharedix"]).ravel().astype(np.int64) - 1).tolist())
    captions, captions_note = _captions(paths, stimulus_id)
    return PairedDataset(
        fmri=fmri,
        images=_stimuli(paths["stimuli"], stimulus_id, image_size, colour),
        stimulus_id=stimulus_id,
        run=np.concatenate(runs),
        subject=np.full(len(stimulus_id), f"subj{subject:02d}"),
        voxel_coords=np.argwhere(mask).astype(np.float32),
        given_test=np.isin(stimulus_id, sorted(shared)),
        captions=captions,
        metadata={
            "name": f"nsd-subj{subject:02d}",
            "source": str(root),
            "preprocessing": "betas / 300 (percent signal change), z-scored per voxel within each session",
            "images": f"{'RGB' if colour else 'grayscale (luminance)'} at {image_size}x{image_size}",
            "sessions": list(sessions),
            "captions": captions_note,
        },
    )


def _captions(paths: dict[str, Path], stimulus_id: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Each trial's COCO captions (newline-separated, by annotation id), or None and why not."""
    if not paths["stim_info"].is_file():
        return None, f"no captions: {paths['stim_info']} is absent"
    coco: dict[int, tuple[int, str]] = {}
    try:
        with open(paths["stim_info"], newline="") as handle:
            for row in csv.DictReader(handle):
                coco[int(row["nsdId"])] = (int(row["cocoId"]), row["cocoSplit"])
    except (KeyError, ValueError) as error:
        raise DataError(
            f"NSD: {paths['stim_info']} lacks nsdId/cocoId/cocoSplit columns ({error}); pass the merged one"
        ) from None
    needed = {int(i) for i in np.unique(stimulus_id)}
    unknown = needed - coco.keys()
    if unknown:
        raise DataError(f"NSD: {paths['stim_info']} has no row for image {min(unknown)}")
    texts: dict[int, list[str]] = {}
    for split in sorted({coco[i][1] for i in needed}):
        path = paths["annotations"] / f"captions_{split.removesuffix('2017')}2017.json"
        if not path.is_file():
            return None, f"no captions: {path} is absent"
        for annotation in sorted(json.loads(path.read_text())["annotations"], key=lambda a: a["id"]):
            texts.setdefault(int(annotation["image_id"]), []).append(annotation["caption"].strip())
    missing = [i for i in needed if coco[i][0] not in texts]
    if missing:
        raise DataError(f"NSD: no COCO caption for image {missing[0]} (cocoId {coco[missing[0]][0]})")
    captions = np.array(["\n".join(texts[coco[int(i)][0]]) for i in stimulus_id])
    return captions, "COCO captions of each image (newline-separated)"


def _mask(path: Path) -> np.ndarray:
    try:
        mask = np.asarray(nib.load(path).dataobj) > 0
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as error:
        raise DataError(f"NSD: {path} is not a readable NIfTI mask ({error})") from None
    if not mask.any():
        raise DataError(f"NSD: {path} selects no voxel")
    return mask


def _sessions_found(folder: Path) -> list[int]:
    found = {int(p.name[len("betas_session") :][:2]) for p in folder.glob("betas_session??.*")}
    return sorted(found)


def _session_files(folder: Path, session: int) -> tuple[Path, Path]:
    return folder / f"betas_session{session:02d}.nii.gz", folder / f"betas_session{session:02d}.hdf5"


def _session_length(folder: Path, session: int) -> int:
    """A session's trial count from its header alone, so that the whole subject is allocated once."""
    nifti, hdf5 = _session_files(folder, session)
    try:
        if hdf5.is_file():
            with h5py.File(hdf5, "r") as handle:
                return int(handle["betas"].shape[0])
        if nifti.is_file():
            return int(nib.load(nifti).shape[3])
    except (OSError, EOFError, KeyError, ValueError, IndexError, nib.filebasedimages.ImageFileError) as error:
        raise DataError(
            f"NSD: session {session} betas in {folder} are unreadable or truncated ({error})"
        ) from None
    raise DataError(f"NSD: no betas for session {session} in {folder}")


def _session_betas(folder: Path, session: int, mask: np.ndarray) -> np.ndarray:
    """[trials, voxels] float32 of one session, read in blocks of trials and masked as they arrive."""
    nifti, hdf5 = _session_files(folder, session)
    try:
        if hdf5.is_file():  # stored [trials, z, y, x]: the NIfTI axes reversed
            with h5py.File(hdf5, "r") as handle:
                betas = handle["betas"]
                _check_grid(betas.shape[1:][::-1], mask.shape, hdf5)
                flipped = mask.T
                values = np.concatenate(
                    [betas[i : i + _BLOCK][:, flipped] for i in range(0, betas.shape[0], _BLOCK)]
                )
            position = np.full(mask.shape, -1)
            position[mask] = np.arange(mask.sum())
            ordered = np.empty_like(values)
            ordered[:, position.T[flipped]] = values  # back to the NIfTI (x, y, z) voxel order
            return ordered.astype(np.float32) / BETA_SCALE
        if nifti.is_file():
            image = nib.load(nifti)
            _check_grid(image.shape[:3], mask.shape, nifti)
            n = image.shape[3]
            return (
                np.concatenate(
                    [
                        np.asarray(image.dataobj[..., i : min(i + _BLOCK, n)])[mask].T
                        for i in range(0, n, _BLOCK)
                    ]
                ).astype(np.float32)
                / BETA_SCALE
            )
    except (OSError, EOFError, KeyError, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise DataError(
            f"NSD: session {session} betas in {folder} are unreadable or truncated ({error})"
        ) from None
    raise DataError(f"NSD: no betas for session {session} in {folder}")


def _check_grid(shape: tuple[int, ...], mask_shape: tuple[int, ...], path: Path) -> None:
    if tuple(shape) != tuple(mask_shape):
        raise DataError(f"NSD: {path} is on a {tuple(shape)} grid but nsdgeneral is {mask_shape}")


def _zscore(betas: np.ndarray) -> np.ndarray:
    spread = betas.std(0)
    return (betas - betas.mean(0)) / np.where(spread > 0, spread, 1.0)


def _stimuli(path: Path, stimulus_id: np.ndarray, image_size: int, colour: bool) -> np.ndarray:
    """Images [n, image_size, image_size] (or [..., 3] in colour) in [0, 1], each distinct image read once."""
    unique, inverse = np.unique(stimulus_id, return_inverse=True)
    try:
        with h5py.File(path, "r") as handle:
            brick = handle["imgBrick"]
            pictures = np.stack([_picture(brick[int(i)], image_size, colour) for i in unique])
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"NSD: {path} is not a readable nsd_stimuli.hdf5 ({error})") from None
    return pictures[inverse]


def _picture(rgb: np.ndarray, size: int, colour: bool) -> np.ndarray:
    """One uint8 RGB stimulus -> size x size in [0, 1]: its luminance, or with `colour` its three channels."""
    pixels = np.asarray(rgb, np.float32)  # divided by 255 after the luminance sum, as ever: same bits
    pixels = (pixels if colour else pixels @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
    scale = size / pixels.shape[0]
    zoomed = zoom(pixels, (scale, scale, 1) if colour else scale, order=1)
    return np.clip(zoomed, 0.0, 1.0)[:size, :size]
