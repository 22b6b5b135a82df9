"""The NSD literature's 8-metric table (Ozcelik & VanRullen 2023; Takagi & Nishimoto 2023; Scotti et al.).

Low level: PixCorr and SSIM of the images resized to 425x425 (NSD's display size). Feature level: 2-way
identification on AlexNet layer 2 and 5, Inception-v3 and CLIP features (chance 0.5, higher is better), and
the mean correlation distance between each image's and its reconstruction's EfficientNet-B1 and SwAV
ResNet-50 features (lower is better). This module needs no torch: the features come from any `extract`
callable, normally `fmri_eval.feature_models.FeatureExtractor` (the `features` extra), and a metric whose
features are absent is left out with a note saying why, never filled with a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.transform import resize

from fmri_eval.bootstrap import bootstrap_ci
from fmri_eval.correlation import standardize_rows
from fmri_eval.evaluate import Progress, silent
from fmri_eval.identification import twoway_identification
from fmri_eval.metrics import pcc, ssim
from fmri_eval.validation import check_feature_pair, check_image_pair, check_stimulus_id, is_colour

EVAL_SIZE = 425
"""The literature resizes stimuli and reconstructions to NSD's 425x425 before every metric."""

TWOWAY_FEATURES = ("alexnet2", "alexnet5", "inception", "clip")
DISTANCE_FEATURES = ("effnet", "swav")
TABLE_COLUMNS = ("pixcorr", "ssim", *TWOWAY_FEATURES, *DISTANCE_FEATURES)

Features = Mapping[str, NDArray]
FeatureFn = Callable[[NDArray[np.float64]], Features]


def resize_for_table(images: ArrayLike, size: int = EVAL_SIZE) -> NDArray[np.float64]:
    """[n, H, W] (or [n, H, W, 3]) images in [0, 1] -> [n, size, size] (or [n, size, size, 3]), bilinear
    with anti-aliasing; channels are kept."""
    arr = np.asarray(images, dtype=np.float32)
    return np.stack([resize(image, (size, size), order=1, anti_aliasing=True) for image in arr])


def correlation_distance(truth_features: ArrayLike, recon_features: ArrayLike) -> NDArray[np.float64]:
    """1 - Pearson r between each image's features and its reconstruction's, shape [n]."""
    truth_arr, recon_arr = check_feature_pair(truth_features, recon_features)
    n = truth_arr.shape[0]
    r = np.sum(standardize_rows(truth_arr.reshape(n, -1)) * standardize_rows(recon_arr.reshape(n, -1)), 1)
    return 1.0 - r


PIXEL_CHUNK = 64
"""Image pairs resized to EVAL_SIZE at once: 1,000 NSD test images at 425 px take 0.7 GB in float32 (2.2 GB
in colour), and twice that once the metrics convert them to float64."""


def pixel_scores(truth: ArrayLike, recon: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """PixCorr and SSIM at EVAL_SIZE, shape [n] each, PIXEL_CHUNK image pairs resized and scored at a time."""
    truth_arr, recon_arr = check_image_pair(truth, recon)
    pixcorr, similarity = [], []
    for start in range(0, len(truth_arr), PIXEL_CHUNK):
        big_truth = resize_for_table(truth_arr[start : start + PIXEL_CHUNK])
        big_recon = resize_for_table(recon_arr[start : start + PIXEL_CHUNK])
        pixcorr.append(pcc(big_truth, big_recon))
        similarity.append(ssim(big_truth, big_recon))
    return {"pixcorr": np.concatenate(pixcorr), "ssim": np.concatenate(similarity)}


def item_scores(
    truth: ArrayLike,
    recon: ArrayLike,
    truth_features: Features,
    recon_features: Features,
    stimulus_id: ArrayLike | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Per-image scores of every column whose inputs exist (images at their own size: the pixel columns
    resize them to EVAL_SIZE)."""
    scores = pixel_scores(truth, recon)
    ids = check_stimulus_id(stimulus_id, len(scores["pixcorr"]))
    for name in TWOWAY_FEATURES:
        if name in truth_features and name in recon_features:
            scores[name] = twoway_identification(truth_features[name], recon_features[name], ids).per_item
    for name in DISTANCE_FEATURES:
        if name in truth_features and name in recon_features:
            scores[name] = correlation_distance(truth_features[name], recon_features[name])
    return scores


def literature_table(
    truth: ArrayLike,
    reconstructions: Mapping[str, ArrayLike],
    extract: FeatureFn | None = None,
    stimulus_id: ArrayLike | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    progress: Progress = silent,
) -> tuple[dict[str, dict[str, float | list[float]]], list[str]]:
    """The 8 columns per method (mean and "<column>_ci"), and notes naming every column left out.

    extract(images [n, H, W] or [n, H, W, 3] in [0, 1]) -> {column: features [n, ...]} for the feature
    columns it can compute; None computes the two pixel columns only. Intervals resample stimuli where
    test stimuli repeat, as fmri_eval.evaluate's do.
    """
    truth_arr = np.asarray(truth, dtype=np.float32)
    truth_features = extract(truth_arr) if extract is not None else {}
    table: dict[str, dict[str, float | list[float]]] = {}
    for name, recon in progress(list(reconstructions.items()), "literature table"):
        _, recon_arr = check_image_pair(truth_arr, recon, recon_name=f"reconstructions[{name!r}]")
        recon_features = extract(recon_arr) if extract is not None else {}
        row: dict[str, float | list[float]] = {}
        scores = item_scores(truth_arr, recon_arr, truth_features, recon_features, stimulus_id)
        for column, values in scores.items():
            mean, low, high = bootstrap_ci(
                values, n_boot=n_boot, confidence=confidence, seed=seed, clusters=stimulus_id
            )
            row[column], row[f"{column}_ci"] = mean, [low, high]
        table[name] = row
    missing = [column for column in TABLE_COLUMNS[2:] if column not in truth_features]
    notes = [image_note(truth_arr)]
    if missing:
        notes.append(
            f"left out {', '.join(missing)}: no local weights for their feature models "
            "(pass --feature-weights DIR; see fmri_eval.feature_models)"
        )
    return table, notes


def image_note(truth: NDArray) -> str:
    """What the table's images were, beside what the published NSD tables use."""
    height, width = truth.shape[1:3]
    if is_colour(truth):
        return (
            f"images: colour stimuli at {height}x{width}, resized to {EVAL_SIZE}x{EVAL_SIZE}; PixCorr over "
            "the three channels, SSIM on luminance, as the published NSD tables (which also average each "
            "test image's repeats: --average-repeats test)"
        )
    return (
        f"images: the data set's grayscale stimuli at {height}x{width}, resized to {EVAL_SIZE}x{EVAL_SIZE} "
        "(published NSD tables use the 425x425 colour stimuli, and average each test image's repeats: "
        "--average-repeats test)"
    )


def present_columns(table: Mapping[str, Mapping[str, object]]) -> list[str]:
    """The table's columns that at least one method has, in TABLE_COLUMNS order."""
    return [column for column in TABLE_COLUMNS if any(column in row for row in table.values())]
