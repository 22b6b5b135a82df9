import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.splits import (
    group_kfold,
    leave_one_stimulus_out,
    make_splits,
    stimulus_kfold,
    validation_folds,
)


def _every_trial_tested_once(dataset, splits):
    tested = np.sort(np.concatenate([s.test for s in splits]))
    np.testing.assert_array_equal(tested, np.arange(dataset.n_trials))


def test_kfold_is_stimulus_disjoint_and_covers_every_trial(linear_dataset):
    splits = stimulus_kfold(linear_dataset, 5, seed=3)
    assert len(splits) == 5
    for split in splits:
        assert split.overlap(linear_dataset.stimulus_id).size == 0
        assert np.intersect1d(split.train, split.test).size == 0
    _every_trial_tested_once(linear_dataset, splits)


def test_kfold_depends_on_seed(linear_dataset):
    a = stimulus_kfold(linear_dataset, 3, seed=0)[0].test
    b = stimulus_kfold(linear_dataset, 3, seed=1)[0].test
    assert not np.array_equal(a, b)


def test_leave_one_stimulus_out_holds_out_all_repeats(linear_dataset):
    splits = leave_one_stimulus_out(linear_dataset)
    assert len(splits) == linear_dataset.n_stimuli
    for split in splits:
        assert np.unique(linear_dataset.stimulus_id[split.test]).size == 1
        assert split.test.size == 2  # both repeats
    _every_trial_tested_once(linear_dataset, splits)


def test_given_split_is_used_when_disjoint(linear_dataset):
    (split,) = make_splits(linear_dataset, "given")
    np.testing.assert_array_equal(split.test, np.flatnonzero(linear_dataset.given_test))


def test_leaking_given_split_is_refused_with_the_count(linear_dataset):
    linear_dataset.given_test = np.zeros(linear_dataset.n_trials, dtype=bool)
    linear_dataset.given_test[::2] = True  # one repeat of every stimulus in test, the other in train
    with pytest.raises(DataError, match=r"30 test stimuli \(30 of 30 test trials\) also occur in training"):
        make_splits(linear_dataset, "given")
    (split,) = make_splits(linear_dataset, "given", allow_overlap=True)
    assert split.allow_overlap


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kfold:x", "whole number"),
        ("kfold:1", "2 <= K"),
        ("kfold:999", "2 <= K"),
        ("random", "unknown split"),
    ],
)
def test_bad_split_specs(linear_dataset, spec, message):
    with pytest.raises(DataError, match=message):
        make_splits(linear_dataset, spec)


def test_empty_side_is_refused(linear_dataset):
    linear_dataset.given_test = np.zeros(linear_dataset.n_trials, dtype=bool)
    with pytest.raises(DataError, match="test side is empty"):
        make_splits(linear_dataset, "given")


def test_missing_given_split(linear_dataset):
    linear_dataset.given_test = None
    with pytest.raises(DataError, match="without a given"):
        make_splits(linear_dataset, "given")


def test_validation_folds_are_disjoint_fifths_of_the_training_stimuli_in_a_seeded_order(
    linear_dataset,
):
    groups = linear_dataset.stimulus_id
    folds = validation_folds(groups, 3, seed=4)
    assert len(folds) == 3
    for (inner, held), (fifth_inner, fifth) in zip(folds, group_kfold(groups, 5, seed=4), strict=False):
        np.testing.assert_array_equal(inner, fifth_inner)
        np.testing.assert_array_equal(held, fifth)
    held_stimuli = [set(groups[held]) for _, held in folds]
    for i, stimuli in enumerate(held_stimuli):
        assert stimuli.isdisjoint(set(groups[folds[i][0]]))  # a fold's inner trials never see its stimuli
        assert abs(len(stimuli) - np.unique(groups).size / 5) < 1
        for other in held_stimuli[i + 1 :]:
            assert stimuli.isdisjoint(other)
    three = np.unique(groups)[:3]
    assert len(validation_folds(groups[np.isin(groups, three)], 5)) == 3  # three stimuli: three "fifths"


@pytest.mark.parametrize("count", [0, 6])
def test_validation_folds_beyond_the_five_fifths_are_refused(linear_dataset, count):
    with pytest.raises(DataError, match=f"validation folds must be 1 to 5 .*got {count}"):
        validation_folds(linear_dataset.stimulus_id, count)
