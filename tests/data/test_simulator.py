"""Behaviour of the Miyawaki-design simulator: shapes, determinism, leak-free splits, subjects, decoding."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.simulator import (
    AREAS,
    figure_names,
    figure_patterns,
    random_patterns,
    render_patterns,
    simulate_miyawaki,
    simulate_subjects,
)
from fmri_data.simulator.voxels import responses, sample_population

N_FIGURES = 9


@pytest.fixture(scope="module")
def default() -> PairedDataset:
    return simulate_miyawaki()


def _ridge_pcc(data: PairedDataset, alpha: float = 300.0) -> tuple[float, float]:
    """Mean per-image test pixel Pearson r of closed-form ridge, and of the mean training image."""
    train, test = ~data.given_test, data.given_test
    x = data.fmri[train].astype(np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-8
    z = (x - mean) / sd
    y = data.images[train].reshape(int(train.sum()), -1).astype(np.float64)
    y_mean = y.mean(axis=0)
    weights = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y_mean))
    predicted = ((data.fmri[test] - mean) / sd) @ weights + y_mean
    target = data.images[test].reshape(int(test.sum()), -1)
    baseline = np.broadcast_to(y_mean, target.shape)
    return _pcc(predicted, target), _pcc(baseline, target)


def _pcc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return float(np.mean((a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))))


def _image_keys(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


# ------------------------------------------------------------------ shapes and determinism
def test_default_shapes_dtypes_and_ranges(default: PairedDataset) -> None:
    n_trials = 300 + N_FIGURES * 4
    assert default.fmri.shape == (n_trials, 1000)
    assert default.fmri.dtype == np.float32
    assert default.images.shape == (n_trials, 28, 28)
    assert default.images.dtype == np.float32
    assert default.images.min() >= 0.0
    assert default.images.max() <= 1.0
    assert default.voxel_coords is not None
    assert default.voxel_coords.shape == (1000, 3)
    assert default.voxel_coords.dtype == np.float32
    assert set(default.subject) == {"sim-01"}


def test_rois_partition_the_voxels(default: PairedDataset) -> None:
    assert tuple(default.roi_masks) == AREAS == ("V1", "V2", "V3")
    membership = np.stack(list(default.roi_masks.values())).sum(axis=0)
    assert (membership == 1).all()
    assert all(mask.sum() > 100 for mask in default.roi_masks.values())
    assert default.voxel_coords is not None
    for index, mask in enumerate(default.roi_masks.values()):
        assert (default.voxel_coords[mask, 2] == index).all()


def test_metadata_names_the_source_and_parameters(default: PairedDataset) -> None:
    meta = default.metadata
    assert meta["name"] == "sim"
    assert meta["source"] == "fmri_data.simulator"
    assert "Miyawaki" in meta["design"]
    assert meta["n_train"] == 300
    assert meta["n_voxels"] == 1000
    assert meta["seed"] == 0
    assert meta["figures"] == figure_names()


def test_default_call_is_fast() -> None:
    start = time.perf_counter()
    simulate_miyawaki()
    assert time.perf_counter() - start < 1.0


def test_same_seed_same_data_other_seed_other_data(default: PairedDataset) -> None:
    again = simulate_miyawaki()
    np.testing.assert_array_equal(again.fmri, default.fmri)
    np.testing.assert_array_equal(again.images, default.images)
    other = simulate_miyawaki(seed=1)
    assert not np.array_equal(other.images, default.images)
    assert not np.array_equal(other.fmri, default.fmri)


def test_subject_seed_changes_voxels_not_stimuli(default: PairedDataset) -> None:
    other = simulate_miyawaki(subject_seed=1)
    np.testing.assert_array_equal(other.images, default.images)
    assert not np.array_equal(other.fmri, default.fmri)
    assert not np.array_equal(other.voxel_coords, default.voxel_coords)


# ------------------------------------------------------------------ design and split
def test_no_test_stimulus_occurs_in_training(default: PairedDataset) -> None:
    train, test = ~default.given_test, default.given_test
    assert np.intersect1d(default.stimulus_id[train], default.stimulus_id[test]).size == 0
    assert not _image_keys(default.images[train]) & _image_keys(default.images[test])


def test_given_split_marks_exactly_the_figure_trials(default: PairedDataset) -> None:
    figures = render_patterns(np.stack(list(figure_patterns().values())), 28)
    is_figure = np.array([image.tobytes() in _image_keys(figures) for image in default.images])
    np.testing.assert_array_equal(default.given_test, is_figure)
    np.testing.assert_array_equal(default.labels > 0, is_figure)
    for label, figure in enumerate(figures, start=1):
        assert (default.images[default.labels == label] == figure).all()


def test_train_and_test_are_in_separate_runs(default: PairedDataset) -> None:
    train_runs = set(default.run[~default.given_test])
    test_runs = set(default.run[default.given_test])
    assert not train_runs & test_runs
    assert len(test_runs) == 4
    for run in test_runs:
        assert sorted(default.labels[default.run == run]) == list(range(1, N_FIGURES + 1))


def test_repeats_give_repeated_stimulus_ids() -> None:
    data = simulate_miyawaki(n_train=50, train_repeats=2, test_repeats=3, n_voxels=50)
    train_ids, train_counts = np.unique(data.stimulus_id[~data.given_test], return_counts=True)
    test_ids, test_counts = np.unique(data.stimulus_id[data.given_test], return_counts=True)
    assert len(train_ids) == 50
    assert (train_counts == 2).all()
    assert len(test_ids) == N_FIGURES
    assert (test_counts == 3).all()


def test_repeats_differ_only_by_noise() -> None:
    clean = simulate_miyawaki(n_train=20, n_voxels=30, noise=0.0, drift=0.0)
    noisy = simulate_miyawaki(n_train=20, n_voxels=30)
    for data, identical in ((clean, True), (noisy, False)):
        first, second = np.flatnonzero(data.labels == 1)[:2]
        assert np.array_equal(data.fmri[first], data.fmri[second]) is identical


# ------------------------------------------------------------------ stimuli
def test_figures_are_the_shapes_and_letters_of_neuron() -> None:
    figures = figure_patterns()
    assert list(figures) == figure_names() == ["square", "frame", "plus", "x", "n", "e", "u", "r", "o"]
    assert all(f.shape == (10, 10) and f.dtype == np.float32 for f in figures.values())
    assert len(_image_keys(np.stack(list(figures.values())))) == N_FIGURES
    np.testing.assert_array_equal(figures["u"], figures["n"][::-1])
    np.testing.assert_array_equal(figures["o"], figures["o"][:, ::-1])
    np.testing.assert_array_equal(figures["x"], figures["x"].T)
    assert figures["e"][4, 2:8].all()
    assert not figures["e"][5:8, 7].any()
    assert figures["frame"][1, 1] == 1
    assert figures["frame"][4, 4] == 0
    assert figures["r"][1:9, 2].all()
    assert not figures["r"][3:9, 3:].any()
    assert figures["square"][2:8, 2:8].all()
    assert figures["square"].sum() == 36


def test_figures_enlarge_on_larger_grids() -> None:
    base, large = figure_patterns(10), figure_patterns(20)
    for name in base:
        np.testing.assert_array_equal(large[name], np.kron(base[name], np.ones((2, 2))))


def test_random_patterns_are_binary_and_avoid_excluded() -> None:
    rng = np.random.default_rng(0)
    patterns = random_patterns(500, 10, rng)
    assert patterns.shape == (500, 10, 10)
    assert set(np.unique(patterns)) == {0.0, 1.0}
    assert abs(patterns.mean() - 0.5) < 0.02
    every = np.array(
        [[[(k >> bit) & 1 for bit in (0, 1)], [(k >> bit) & 1 for bit in (2, 3)]] for k in range(16)],
        dtype=np.float32,
    )
    survivors = random_patterns(40, 2, rng, exclude=every[1:])
    np.testing.assert_array_equal(survivors, np.broadcast_to(every[0], survivors.shape))


def test_rendering_is_area_averaging() -> None:
    patterns = random_patterns(5, 10, np.random.default_rng(1))
    np.testing.assert_array_equal(render_patterns(patterns, 30), np.kron(patterns, np.ones((1, 3, 3))))
    images = render_patterns(patterns, 28)
    assert images.shape == (5, 28, 28)
    assert images.dtype == np.float32
    np.testing.assert_allclose(images.mean(axis=(1, 2)), patterns.mean(axis=(1, 2)), atol=1e-6)


# ------------------------------------------------------------------ voxels
def test_prf_sizes_grow_from_v1_to_v3_and_with_eccentricity() -> None:
    population = sample_population(3000, np.random.default_rng(0))
    sizes = [np.median(population.sigma[population.area == a]) for a in range(3)]
    assert sizes[0] < sizes[1] < sizes[2]
    eccentricity = np.hypot(population.x, population.y)
    assert np.corrcoef(eccentricity, population.sigma)[0, 1] > 0.3


def test_voxels_respond_to_their_own_side_of_the_field() -> None:
    population = sample_population(500, np.random.default_rng(0))
    left = np.zeros((1, 10, 10), dtype=np.float32)
    left[:, :, :5] = 1.0
    right = left[:, :, ::-1]
    preference = responses(population, left, 0.6)[0] - responses(population, right, 0.6)[0]
    far = np.abs(population.x) > 2.0
    np.testing.assert_array_equal(preference[far] > 0, population.x[far] < 0)


# ------------------------------------------------------------------ subjects
def test_subjects_share_stimuli_but_not_voxels() -> None:
    subjects = simulate_subjects(3, n_train=60)
    assert list(subjects) == ["sim-01", "sim-02", "sim-03"]
    first = subjects["sim-01"]
    for data in subjects.values():
        np.testing.assert_array_equal(data.images, first.images)
        np.testing.assert_array_equal(data.stimulus_id, first.stimulus_id)
        np.testing.assert_array_equal(data.run, first.run)
    assert [data.n_voxels for data in subjects.values()] == [1000, 900, 1100]
    assert not np.array_equal(subjects["sim-02"].fmri[:, :900], first.fmri[:, :900])
    assert set(subjects["sim-02"].subject) == {"sim-02"}


def test_first_subject_is_the_default_simulation(default: PairedDataset) -> None:
    np.testing.assert_array_equal(simulate_subjects(1)["sim-01"].fmri, default.fmri)


def test_subject_voxel_counts_can_be_set() -> None:
    assert [d.n_voxels for d in simulate_subjects(2, n_voxels=40, n_train=10).values()] == [40, 40]
    counts = [d.n_voxels for d in simulate_subjects(2, n_voxels=[30, 50], n_train=10).values()]
    assert counts == [30, 50]


# ------------------------------------------------------------------ decodability
def test_ridge_decodes_figures_but_not_perfectly(default: PairedDataset) -> None:
    pcc, baseline = _ridge_pcc(default)
    assert abs(baseline) < 0.15
    assert pcc > baseline + 0.4
    assert 0.55 < pcc < 0.98


def test_more_noise_decodes_worse(default: PairedDataset) -> None:
    pcc, _ = _ridge_pcc(default)
    noisy, _ = _ridge_pcc(simulate_miyawaki(noise=2.0))
    assert noisy < pcc - 0.15


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": 0},
        {"train_repeats": 0},
        {"test_repeats": 0},
        {"grid": 8},
        {"image_size": 9},
        {"n_voxels": 0},
        {"noise": -0.1},
        {"noise": float("nan")},
        {"drift": -1.0},
        {"compressive_exponent": 0.0},
        {"compressive_exponent": 1.5},
        {"trials_per_run": 0},
        {"seed": -1},
        {"subject_seed": 1.5},
        {"subject": ""},
    ],
)
def test_bad_arguments_raise_one_line_data_errors(kwargs: dict) -> None:
    with pytest.raises(DataError) as caught:
        simulate_miyawaki(**kwargs)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_subjects": 0}, {"n_voxels": [100, 200]}, {"subject": "x"}, {"subject_seed": 4}],
)
def test_bad_subject_arguments_raise_data_errors(kwargs: dict) -> None:
    with pytest.raises(DataError):
        simulate_subjects(**kwargs)


def test_bad_generator_arguments_raise_data_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DataError):
        random_patterns(0, 10, rng)
    with pytest.raises(DataError):
        random_patterns(5, 10, rng, p=1.0)
    with pytest.raises(DataError):
        figure_patterns(6)
    with pytest.raises(DataError):
        render_patterns(np.zeros((1, 10, 10)), 5)
