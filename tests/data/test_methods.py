import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import (
    MethodSettings,
    ReconstructionMethod,
    available_methods,
    create_method,
    reconstruct_over_splits,
    register_method,
)
from fmri_data.methods.registry import check_choices
from fmri_data.preprocessing import Preprocessing
from fmri_data.splits import leave_one_stimulus_out, make_splits


def test_installed_methods_are_found_by_name():
    names = available_methods()
    assert {"mean", "ridge"} <= set(names)
    assert create_method("mean").name == "mean"


def test_unknown_method_lists_the_available_ones():
    with pytest.raises(DataError, match=r"unknown method 'nope'; available: .*mean"):
        create_method("nope")


def test_mean_method_predicts_the_training_mean(linear_dataset):
    method = create_method("mean").fit(linear_dataset)
    prediction = method.predict(linear_dataset.fmri[:3])
    np.testing.assert_allclose(prediction[2], linear_dataset.images.mean(axis=0))


def test_over_loso_every_trial_is_predicted_once_by_a_model_blind_to_it(linear_dataset):
    result = reconstruct_over_splits(
        linear_dataset, leave_one_stimulus_out(linear_dataset), ["mean"], progress=False
    )
    np.testing.assert_array_equal(result.trial_index, np.arange(linear_dataset.n_trials))
    np.testing.assert_array_equal(result.truth, linear_dataset.images)
    # the held-out stimulus is missing from the mean that predicts it
    stim = linear_dataset.stimulus_id
    expected = linear_dataset.images[stim != stim[0]].mean(axis=0)
    np.testing.assert_allclose(result.reconstructions["mean"][0], expected, rtol=1e-5)


def test_test_repeat_averaging_is_stated_and_indexed(linear_dataset):
    splits = make_splits(linear_dataset, "given")
    result = reconstruct_over_splits(
        linear_dataset, splits, ["mean"], progress=False, preprocessing=Preprocessing(average_repeats="test")
    )
    assert result.n_test == 5
    np.testing.assert_array_equal(linear_dataset.stimulus_id[result.trial_index], result.stimulus_id)
    assert any("averaged" in note for note in result.notes)


class _OutOfRange(ReconstructionMethod):
    name = "out-of-range-test"

    def fit(self, train):
        self.shape = train.image_shape
        return self

    def predict(self, fmri):
        return np.full((len(fmri), *self.shape), 2.0)


def test_registered_method_with_bad_output_is_refused(linear_dataset):
    register_method(_OutOfRange)
    with pytest.raises(DataError, match="out-of-range-test"):
        reconstruct_over_splits(
            linear_dataset,
            make_splits(linear_dataset, "given"),
            ["out-of-range-test"],
            progress=False,
            settings=MethodSettings(seed=1),
        )


class _Oracle(ReconstructionMethod):
    """A test double that predicts the mean image and scores candidates by their position."""

    name = "oracle-identifier-test"

    def fit(self, train):
        self.mean = train.images.mean(axis=0)
        return self

    def predict(self, fmri):
        return np.broadcast_to(self.mean, (len(fmri), *self.mean.shape)).copy()

    def similarities(self, fmri, candidate_images):
        return -np.arange(len(candidate_images))[None, :].repeat(len(fmri), axis=0).astype(float)


def test_methods_that_identify_get_scored_against_every_tested_stimulus(linear_dataset):
    register_method(_Oracle)
    splits = make_splits(linear_dataset, "kfold:5")
    result = reconstruct_over_splits(
        linear_dataset, splits, ["oracle-identifier-test", "mean"], progress=False
    )
    assert set(result.similarities) == {"oracle-identifier-test"}
    np.testing.assert_array_equal(result.candidate_stimulus, np.unique(linear_dataset.stimulus_id))
    assert result.similarities["oracle-identifier-test"].shape == (linear_dataset.n_trials, 30)


def test_the_first_fold_s_artefacts_are_named_for_the_run(linear_dataset, tmp_path):
    curve = tmp_path / "curve.png"
    curve.write_bytes(b"png")

    @register_method
    class Curved(ReconstructionMethod):
        name = "curved"

        def fit(self, train):
            self.shape_ = train.image_shape
            return self

        def predict(self, fmri):
            return np.zeros((len(fmri), *self.shape_), dtype=np.float32)

        def artefacts(self):
            return {"loss_curve": curve}

    splits = make_splits(linear_dataset, "kfold:2")
    result = reconstruct_over_splits(linear_dataset, splits, ["mean", "curved"], progress=False)
    assert result.artefacts == {"loss_curve-curved.png": curve}
    assert create_method("mean").artefacts() == {}


def test_a_setting_to_choose_must_be_one_a_method_of_the_run_chooses():
    @register_method
    class Tunable(ReconstructionMethod):
        name = "tunable"

        @classmethod
        def settings_to_choose(cls):
            return frozenset({"alpha", "width"})

        def fit(self, train):
            return self

        def predict(self, fmri):
            return np.zeros((len(fmri), 2, 2), dtype=np.float32)

    check_choices(["mean", "tunable"], ["alpha", "tunable:width"])  # run-wide, or scoped to its reader
    refused = {
        "alpah": r"'alpah': not a setting of mean, tunable; did you mean 'alpha'\?",
        "mean:alpha": r"'mean:alpha': not a setting of mean; tunable chooses it: tunable:alpha",
        "tunable:steps": r"'tunable:steps': not a setting of tunable; choose among alpha, width",
        "mean:steps": r"'mean:steps': not a setting of mean; it chooses no setting on validation",
        "tunabel:alpha": r"'tunabel:alpha': no method of this run is called 'tunabel'",
    }
    for key, message in refused.items():
        with pytest.raises(DataError, match=message):
            check_choices(["mean", "tunable"], [key])
