"""Voxel patterns for fMRI-space models: aligned files split by time, simulated subjects aligned and saved."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_data.alignment import load_aligned_npz, ridge_align_to_first, save_aligned_npz
from fmri_data.errors import DataError
from fmri_data.patterns import load_patterns


def test_an_aligned_file_holds_out_the_last_fifth_of_each_subject(tmp_path):
    rng = np.random.default_rng(0)
    path = save_aligned_npz(
        tmp_path / "a.npz", {"s1": rng.normal(size=(10, 4)), "s2": rng.normal(size=(20, 4))}
    )
    patterns = load_patterns(str(path))
    assert patterns.train.shape == (8 + 16, 4)
    assert patterns.test.shape == (2 + 4, 4)
    np.testing.assert_allclose(patterns.train.mean(0), 0, atol=1e-6)  # z-scored on the training patterns
    assert "the last fifth" in patterns.description


def test_subjects_in_different_spaces_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = save_aligned_npz(
        tmp_path / "a.npz", {"s1": rng.normal(size=(10, 4)), "s2": rng.normal(size=(10, 5))}
    )
    with pytest.raises(DataError, match=r"subjects have \[4, 5\] voxels"):
        load_patterns(str(path))


def test_ridge_alignment_maps_every_subject_into_the_first_ones_space():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(60, 3))
    responses = {"a": shared @ rng.normal(size=(3, 6)), "b": shared @ rng.normal(size=(3, 9))}
    is_train = np.arange(60) < 45
    aligned = ridge_align_to_first(responses, is_train)
    assert aligned["a"].shape == aligned["b"].shape == (60, 6)
    held_out_r = np.corrcoef(aligned["a"][~is_train].ravel(), aligned["b"][~is_train].ravel())[0, 1]
    assert held_out_r > 0.9


def test_training_rows_aligned_out_of_fold_carry_the_held_out_rows_error():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(100, 4))
    responses = {
        "a": shared @ rng.normal(size=(4, 8)) + rng.normal(size=(100, 8)),
        "b": shared @ rng.normal(size=(4, 60)) + rng.normal(size=(100, 60)),  # many voxels: ridge overfits
    }
    is_train = np.arange(100) < 80
    stimuli = np.arange(100) // 2  # two trials per stimulus, kept in one fold
    in_sample = ridge_align_to_first(responses, is_train)
    out_of_fold = ridge_align_to_first(responses, is_train, folds=5, groups=stimuli)
    np.testing.assert_array_equal(out_of_fold["a"], in_sample["a"])  # the reference is its own
    np.testing.assert_array_equal(out_of_fold["b"][~is_train], in_sample["b"][~is_train])

    def error(aligned, rows):
        return float(((aligned["b"][rows] - aligned["a"][rows]) ** 2).mean())

    held_out = error(in_sample, ~is_train)
    assert error(in_sample, is_train) < 0.8 * held_out  # a map reproduces the rows it was fitted on
    assert 0.8 * held_out < error(out_of_fold, is_train) < 1.25 * held_out


def test_simulated_subjects_are_aligned_and_saved(tmp_path):
    patterns = load_patterns("sim", aligned_path=tmp_path / "out" / "aligned.npz")
    subjects = load_aligned_npz(tmp_path / "out" / "aligned.npz")
    assert len(subjects) == 3
    assert {a.shape[1] for a in subjects.values()} == {patterns.train.shape[1]}
    assert len(patterns.train) + len(patterns.test) + len(patterns.shifted) == sum(
        len(a) for a in subjects.values()
    )
    assert "ridge-aligned" in patterns.description


def test_the_simulator_holds_out_unseen_patches_and_a_shifted_set_of_figures():
    patterns = load_patterns("sim")
    assert len(patterns.test) == pytest.approx(len(patterns.train) / 4, rel=0.1)  # a fifth of the patches
    # z-scored on training patterns: unseen patches of the same design sit near 0, the darker figures do not
    assert abs(patterns.test.mean()) < 0.2 < 0.5 < -patterns.shifted.mean()
    assert "shifted" in patterns.description


def test_one_alignment_fold_is_refused():
    responses = {"a": np.ones((10, 2)), "b": np.ones((10, 3))}
    with pytest.raises(DataError, match="folds: 0 aligns the training rows in sample"):
        ridge_align_to_first(responses, np.arange(10) < 8, folds=1)
