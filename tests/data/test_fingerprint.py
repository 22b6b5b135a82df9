"""Work folders remember what made them; --resume continues only the run they belong to."""

import json
from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, ReconstructionMethod, reconstruct_over_splits, register_method
from fmri_data.methods.fingerprint import (
    FINGERPRINT_FILE,
    check_fingerprint,
    dataset_digest,
    record_fingerprint,
)
from fmri_data.methods.registry import check_methods
from fmri_data.splits import make_splits

FITTED: list[str] = []


@register_method
class RecordsFits(ReconstructionMethod):
    """Predicts grey images and notes every fit, so a test can tell whether training started."""

    name = "records-fits"

    @classmethod
    def settings_to_choose(cls):
        return frozenset({"width"})  # one model fitted per value

    def fit(self, train):
        FITTED.append(train.name)
        self.shape_ = train.image_shape
        return self

    def predict(self, fmri):
        return np.full((len(fmri), *self.shape_), 0.5, dtype=np.float32)


@register_method
class ChoosesWhenItPredicts(RecordsFits):
    """Chooses `strength` among samples of one fitted model, and `width` by fitting one model per value."""

    name = "chooses-when-it-predicts"

    @classmethod
    def settings_to_choose(cls):
        return frozenset({"strength", "width"})

    @classmethod
    def predict_time_settings(cls):
        return frozenset({"strength"})


def run(dataset, work_dir, *, resume=False, split="kfold:2", methods=("mean", "records-fits"), **settings):
    settings = MethodSettings(work_dir=work_dir, resume=resume, progress=False, **settings)
    splits = make_splits(dataset, split)
    return reconstruct_over_splits(dataset, splits, list(methods), settings=settings, progress=False)


def other_data(dataset):
    """The same design with other measurements, as another subject or session would give."""
    return replace(dataset, fmri=dataset.fmri[::-1].copy())


@pytest.fixture
def first_run(tmp_path, linear_dataset):
    run(linear_dataset, tmp_path / "work")
    FITTED.clear()
    return tmp_path / "work"


def test_every_fold_and_method_folder_is_stamped(first_run, linear_dataset):
    stamp = json.loads((first_run / "fold-001" / "records-fits" / FINGERPRINT_FILE).read_text())
    assert stamp["data"] == {"name": linear_dataset.name, "sha256": dataset_digest(linear_dataset)}
    assert (stamp["fold"], stamp["method"], stamp["settings"]["seed"]) == (1, "records-fits", 0)
    assert "fmri-data" in stamp["versions"]
    assert (first_run / "fold-000" / "mean" / FINGERPRINT_FILE).is_file()


def test_resume_of_the_same_run_goes_ahead(first_run, linear_dataset):
    run(linear_dataset, first_run, resume=True)
    assert len(FITTED) == 2


def test_resume_on_other_data_is_refused_before_any_training(first_run, linear_dataset):
    other = other_data(linear_dataset)
    with pytest.raises(
        DataError, match=r"--resume: .*fold-000.* belongs to another run: its data\.sha256 differ"
    ) as info:
        run(other, first_run, resume=True)
    assert "\n" not in str(info.value)
    assert FITTED == []
    # the refused run stamped nothing: the first run can still be resumed
    stamp = json.loads((first_run / "fold-000" / "mean" / FINGERPRINT_FILE).read_text())
    assert stamp["data"]["sha256"] != dataset_digest(other)


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"seed": 3}, r"settings\.seed differ \(settings\.seed: 0 there, 3 now\)"),
        ({"quick": True}, r"settings\.quick differ"),
        ({"split": "kfold:3"}, r"trials\.test, trials\.train differ"),
    ],
)
def test_resume_with_other_settings_is_refused(first_run, linear_dataset, change, differs):
    with pytest.raises(DataError, match=f"its {differs}"):
        run(linear_dataset, first_run, resume=True, **change)


def test_naming_a_default_numeric_setting_still_resumes_but_another_optimizer_does_not(
    first_run, linear_dataset
):
    run(
        linear_dataset,
        first_run,
        resume=True,
        optimizer="adamw",
        mixed_precision="no",
        ema=True,
        train_steps=1.0,
        probe_steps=1.0,
        refit_steps=1.0,
        validation_folds=1,
    )
    assert len(FITTED) == 2
    with pytest.raises(DataError, match=r"settings\.optimizer differ"):
        run(linear_dataset, first_run, resume=True, optimizer="adafactor")
    with pytest.raises(DataError, match=r"settings\.ema differ"):
        run(linear_dataset, first_run, resume=True, ema=False)
    with pytest.raises(DataError, match=r"settings\.train_steps differ"):  # every stage trains otherwise
        run(linear_dataset, first_run, resume=True, train_steps=0.5)
    with pytest.raises(DataError, match=r"settings\.probe_steps differ"):  # the probe chooses otherwise
        run(linear_dataset, first_run, resume=True, probe_steps=0.5)
    with pytest.raises(DataError, match=r"settings\.refit_steps differ"):  # the final fit trains otherwise
        run(linear_dataset, first_run, resume=True, refit_steps=0.5)
    with pytest.raises(DataError, match=r"settings\.validation_folds differ"):  # a choice on more stimuli
        run(linear_dataset, first_run, resume=True, validation_folds=2)
    with pytest.raises(DataError, match=r"settings\.batch_size_drawn differ"):  # 1 is no default for a batch
        run(linear_dataset, first_run, resume=True, batch_size=1)


def test_a_folder_stamped_before_the_batch_size_reached_every_sampler_is_not_resumed(
    tmp_path, linear_dataset
):
    run(linear_dataset, tmp_path, batch_size=48)
    run(linear_dataset, tmp_path, resume=True, batch_size=48)  # stamped now: resumes
    for stamp_file in tmp_path.rglob(FINGERPRINT_FILE):  # as fmri-data 0.23 stamped it
        stamp = json.loads(stamp_file.read_text())
        stamp["settings"]["batch_size"] = stamp["settings"].pop("batch_size_drawn")
        stamp_file.write_text(json.dumps(stamp))
    with pytest.raises(DataError, match=r"settings\.batch_size, settings\.batch_size_drawn differ"):
        run(linear_dataset, tmp_path, resume=True, batch_size=48)


def test_resume_may_widen_the_grid_of_a_setting_applied_at_predict_time_but_not_of_one_that_fits(
    tmp_path, linear_dataset
):
    work, methods = tmp_path / "work", ("mean", "chooses-when-it-predicts")  # mean reads neither
    run(linear_dataset, work, methods=methods, choices={"strength": (0.3, 0.75), "width": (8,)})
    wider = {"strength": (0.2, 0.3, 0.75), "width": (8,)}
    run(linear_dataset, work, methods=methods, choices=wider, resume=True)
    scoped = {"chooses-when-it-predicts:strength": (0.4,), "width": (8,)}  # its own grid, or none at all
    run(linear_dataset, work, methods=methods, choices=scoped, resume=True)
    run(linear_dataset, work, methods=methods, choices={"width": (8,)}, resume=True)
    with pytest.raises(DataError, match=r"its settings\.choices\.width differ"):
        run(linear_dataset, work, methods=methods, choices={"width": (8, 16)}, resume=True)


@pytest.mark.parametrize("method", ["chooses-when-it-predicts", "cvae+chooses-when-it-predicts"])
def test_resume_keeps_the_predict_time_grid_where_a_moved_choice_would_reuse_another_value_s_fit(
    tmp_path, method
):
    """A method that keeps one final fit whatever it chooses (not fits_each_choice_apart), alone or as an
    ensemble's member: with two widths to choose from, a new strength grid could move the choice of width."""

    def stamp(**choices):
        return {"method": method, "settings": {"seed": 0, "choices": choices}}

    record_fingerprint(tmp_path, stamp(strength=[0.4], width=[8, 16]))
    with pytest.raises(DataError, match=r"its settings\.choices\.strength differ"):
        check_fingerprint(tmp_path, stamp(strength=[0.3, 0.4], width=[8, 16]), resume=True)
    record_fingerprint(tmp_path, stamp(strength=[0.4], width=[8]))  # one width, one model: it may
    check_fingerprint(tmp_path, stamp(strength=[0.3, 0.4], width=[8]), resume=True)


def test_sampling_options_may_change_on_resume_but_those_that_shape_training_may_not(
    first_run, linear_dataset
):
    run(linear_dataset, first_run, resume=True, sampling={"n_samples": 16, "num_inference_steps": 10})
    assert len(FITTED) == 2
    with pytest.raises(DataError, match=r"settings\.prior_adapter differ"):
        run(linear_dataset, first_run, resume=True, sampling={"prior_adapter": "none"})
    with pytest.raises(DataError, match=r"settings\.condition_readout differ"):  # the cvae's condition
        run(linear_dataset, first_run, resume=True, sampling={"condition_readout": "patches"})


def test_a_grid_for_another_method_leaves_a_folder_resumable_but_its_own_does_not(first_run, linear_dataset):
    run(linear_dataset, first_run, resume=True, choices={"cvae:likelihood_weight": (0.0, 0.1)})
    assert len(FITTED) == 2
    with pytest.raises(DataError, match=r"settings\.choices\.width differ"):
        run(linear_dataset, first_run, resume=True, choices={"records-fits:width": (8,)})
    with pytest.raises(DataError, match=r"settings\.prior_adapter differ"):  # what it trains, scoped too
        run(linear_dataset, first_run, resume=True, sampling={"records-fits:prior_adapter": "none"})


def test_a_fresh_run_restamps_the_folder(first_run, linear_dataset):
    other = other_data(linear_dataset)
    run(other, first_run)
    run(other, first_run, resume=True)
    assert len(FITTED) == 4


def test_resume_refuses_a_folder_without_a_fingerprint(first_run, linear_dataset):
    (first_run / "fold-000" / "records-fits" / FINGERPRINT_FILE).unlink()
    (first_run / "fold-000" / "records-fits" / "checkpoint").mkdir()
    with pytest.raises(DataError, match=r"holds no fingerprint\.json"):
        run(linear_dataset, first_run, resume=True)


def test_a_changed_image_changes_the_digest(linear_dataset):
    changed = replace(linear_dataset, images=linear_dataset.images.copy())
    assert dataset_digest(changed) == dataset_digest(linear_dataset)
    changed.images[0, 0, 0] = 1 - changed.images[0, 0, 0]
    assert dataset_digest(changed) != dataset_digest(linear_dataset)


def test_every_unknown_method_is_named_before_any_training(linear_dataset):
    with pytest.raises(DataError, match=r"unknown method 'ridgee', 'nope'; available: .*mean"):
        check_methods(["mean", "ridgee", "records-fits", "nope"])
    with pytest.raises(DataError, match="unknown method 'ridgee'"):
        reconstruct_over_splits(
            linear_dataset, make_splits(linear_dataset, "kfold:2"), ["records-fits", "ridgee"], progress=False
        )
    assert FITTED == []
