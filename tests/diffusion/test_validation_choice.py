"""Sampling settings chosen on validation stimuli inside the training trials, never on test trials."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, reconstruct_over_splits
from fmri_data.methods.records import run_records, validation_notes
from fmri_data.splits import make_splits
from fmri_diffusion.methods import base, validation
from fmri_diffusion.methods.cvae import ConditionalVAE
from fmri_diffusion.methods.validation import _by_training, _fitted_probe, choice_grid

CHOICES = {"strength": (0.5, 1.0), "likelihood_weight": (0.0, 0.5)}


@pytest.fixture
def dataset(make_linear):
    return make_linear(size=12)  # SSIM, half of the validation score, needs 11 px


def _run(dataset, tmp_path, validation_folds=1):
    settings = MethodSettings(
        device="cpu",
        quick=True,
        cache_dir=tmp_path / "cache",
        choices=CHOICES,
        validation_folds=validation_folds,
    )
    return reconstruct_over_splits(
        dataset, make_splits(dataset, "given"), ["ddpm"], settings=settings, progress=False
    )


@pytest.mark.parametrize("validation_folds", [1, 2])
def test_poisoned_test_images_change_no_choice_and_no_reconstruction(dataset, tmp_path, validation_folds):
    clean = _run(dataset, tmp_path, validation_folds)
    images = dataset.images.copy()
    test = dataset.given_test
    images[test] = np.random.default_rng(9).random(images[test].shape).astype(np.float32)
    poisoned = _run(replace(dataset, images=images), tmp_path, validation_folds)

    record = clean.records["ddpm"][0]["validation"]
    assert len(record["grid"]) == 4
    assert len(record["scores"]) == 4
    assert record["chosen"] == record["grid"][int(np.argmax(record["scores"]))]
    assert poisoned.records == clean.records
    for row in ("ddpm", "ddpm-1"):
        np.testing.assert_array_equal(poisoned.reconstructions[row], clean.reconstructions[row])


def test_the_choice_goes_to_metrics_and_the_report(dataset, tmp_path):
    result = _run(dataset, tmp_path)
    extra = run_records(result)
    (fold,) = extra["validation"]["ddpm"]
    assert fold["fold"] == 0
    assert set(fold["chosen"]) == set(CHOICES)
    (line,) = validation_notes(result.records)
    assert line.startswith("ddpm, fold 0: chose ")
    assert "validation stimuli" in line


def test_metrics_say_where_the_time_went(dataset, tmp_path):
    settings = MethodSettings(device="cpu", quick=True, cache_dir=tmp_path / "cache", choices=CHOICES)
    splits = make_splits(dataset, "kfold:2")
    result = reconstruct_over_splits(dataset, splits, ["ridge", "ddpm"], settings=settings, progress=False)

    seconds = run_records(result)["seconds"]
    assert set(seconds) == {"ridge", "ddpm"}
    assert [set(fold) for fold in result.seconds["ddpm"]] == [{"fit", "validation", "predict"}] * 2
    assert seconds["ridge"]["validation"] == 0.0  # ridge chooses nothing on validation
    # choosing trains a probe and samples the validation trials: a part of the fit, not all of it
    assert 0 < seconds["ddpm"]["validation"] < seconds["ddpm"]["fit"]
    assert seconds["ddpm"]["predict"] > 0
    folds = result.seconds["ddpm"]
    assert seconds["ddpm"]["fit"] == pytest.approx(sum(fold["fit"] for fold in folds), abs=0.1)


def test_the_grid_keeps_only_what_the_method_has():
    settings = MethodSettings(quick=True, choices={"strength": (0.2, 0.5), "mixing": (0.0, 0.4)})
    assert choice_grid(create_method("ddpm", settings)) == [{"strength": 0.2}, {"strength": 0.5}]
    assert choice_grid(create_method("ddpm", MethodSettings(quick=True, choices={"mixing": (1.0,)}))) == []


def test_the_chosen_settings_are_the_ones_the_method_samples_with(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    settings = MethodSettings(device="cpu", quick=True, cache_dir=tmp_path / "c", choices=CHOICES)
    method = create_method("ddpm", settings).fit(train)
    for name, value in method.validation_["chosen"].items():
        assert getattr(method.config, name) == value
    assert method.steers() == (method.config.likelihood_weight > 0)
    assert method.validation_["validation_stimuli"] == pytest.approx(train.n_stimuli / 5, abs=1)
    assert method.validation_["validation_folds"] == 1
    assert "fold_scores" not in method.validation_


def test_a_grid_over_residual_decoding_fits_its_pixel_ridge_once_and_scores_both(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    choices = {"decode": ("vae", "residual")}
    settings = MethodSettings(device="cpu", quick=True, cache_dir=tmp_path / "c", choices=choices)
    method = create_method("sd-lora", replace(settings, sampling={"strength": 0.5})).fit(train)
    record = method.validation_
    assert record["grid"] == [{"decode": "vae"}, {"decode": "residual"}]
    assert record["scores"][0] != record["scores"][1]
    assert method.config.decode == record["chosen"]["decode"]


def test_the_grid_leaves_out_residual_decoding_where_nothing_is_img2img():
    choices = {"strength": (0.3, 1.0), "decode": ("vae", "residual")}
    method = create_method("sd-lora", MethodSettings(quick=True, choices=choices))
    assert {"strength": 1.0, "decode": "residual"} not in choice_grid(method)
    assert len(choice_grid(method)) == 3
    at_one = MethodSettings(quick=True, sampling={"strength": 1.0}, choices={"decode": ("vae", "residual")})
    assert choice_grid(create_method("sd-lora", at_one)) == [{"decode": "vae"}]
    never = MethodSettings(quick=True, sampling={"strength": 1.0}, choices={"decode": ("residual",)})
    with pytest.raises(DataError, match="no combination of the settings to choose from is valid"):
        choice_grid(create_method("sd-lora", never))


def test_a_grid_with_no_valid_point_is_refused_before_any_method_trains(dataset, tmp_path):
    settings = MethodSettings(
        quick=True, work_dir=tmp_path / "work", sampling={"strength": 1.0}, choices={"decode": ("residual",)}
    )
    with pytest.raises(DataError, match="sd-lora: no combination of the settings to choose from is valid"):
        reconstruct_over_splits(
            dataset,
            make_splits(dataset, "given"),
            ["mean", "ridge", "sd-lora"],
            settings=settings,
            progress=False,
        )
    assert not (tmp_path / "work").exists()  # no work folder stamped, so no method started


@pytest.mark.parametrize(("name", "values"), [("width", (8, 16)), ("beta", (0.25, 4.0))])
def test_a_training_setting_fits_one_probe_per_value_and_the_method_is_fitted_with_the_choice(
    dataset, tmp_path, monkeypatch, name, values
):
    fitted_with = []
    fit_parts = ConditionalVAE.fit_parts

    def recording(self, train):
        fitted_with.append(getattr(self.config, name))
        fit_parts(self, train)

    monkeypatch.setattr(ConditionalVAE, "fit_parts", recording)
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w", choices={name: values})
    method = create_method("cvae", settings).fit(train)
    record = method.validation_
    assert record["grid"] == [{name: values[0]}, {name: values[1]}]
    assert record["scores"][0] != record["scores"][1]  # two networks, not one probe sampled twice
    assert fitted_with == [*values, getattr(method.config, name)]
    assert getattr(method.config, name) == record["chosen"][name]
    if name == "width":  # the final network is built with the chosen width
        assert method.model_.config.width == method.config.width
    assert (tmp_path / "w" / "cvae" / "validation" / f"{name}-{values[0]}").is_dir()


def test_a_resumed_run_whose_choice_moves_trains_the_newly_chosen_network_in_its_own_folder(
    dataset, tmp_path, monkeypatch
):
    """More samples or steps may move a resumed run's choice to another width (as the forced choices here
    do): its final fit must train that network, not load the other width's checkpoints."""
    choose = base.choose_on_validation

    def choosing(width):
        def forced(method, train, **options):
            record, probe = choose(method, train, **options)
            return record | {"chosen": {"width": width}}, probe

        return forced

    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    work = tmp_path / "w"
    choices = {"width": (8, 16)}
    settings = MethodSettings(device="cpu", quick=True, resume=True, work_dir=work, choices=choices)
    losses, written = {}, {}
    for width in (8, 16, 8):
        monkeypatch.setattr(base, "choose_on_validation", choosing(width))
        method = create_method("cvae", settings)
        method.config = replace(method.config, training=replace(method.config.training, checkpoint_every=5))
        method.fit(train)
        assert method.model_.config.width == width
        losses.setdefault(width, []).append(method.training_.losses)
        checkpoints = (work / "cvae" / "final" / f"width-{width}" / "checkpoints").rglob("*")
        written.setdefault(width, []).append({path: path.stat().st_mtime_ns for path in checkpoints})
    assert losses[8][0] == losses[8][1]
    assert written[8][0]
    assert written[8][0] == written[8][1]  # width 8's finished fit was resumed, not trained again
    for width in (8, 16):
        assert (work / "cvae" / "final" / f"width-{width}" / "model" / "method.json").is_file()
    assert not (work / "cvae" / "model").exists()


def test_the_final_fit_keeps_the_method_s_folder_where_the_grid_offers_one_network(dataset, tmp_path):
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    choices = {"likelihood_weight": (0.0, 1.0), "readout": ("pixels", "patches"), "width": (8,)}
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w", choices=choices)
    create_method("cvae", settings).fit(train)
    assert (tmp_path / "w" / "cvae" / "model" / "method.json").is_file()
    assert not (tmp_path / "w" / "cvae" / "final").exists()


def test_whole_number_settings_read_as_floats_are_chosen_as_whole_numbers():
    method = create_method("cvae", MethodSettings(quick=True, choices={"max_shift": (0.0, 2.0)}))
    assert choice_grid(method) == [{"max_shift": 0}, {"max_shift": 2}]
    assert all(type(point["max_shift"]) is int for point in choice_grid(method))
    halves = create_method("cvae", MethodSettings(quick=True, choices={"max_shift": (0.5,)}))
    with pytest.raises(DataError, match="max_shift takes whole numbers"):
        choice_grid(halves)


def test_only_sampling_settings_share_a_probe():
    grid = [
        {"strength": 0.5, "max_shift": 0, "encoding_voxels": 100},
        {"strength": 1.0, "max_shift": 0, "encoding_voxels": 100},
        {"strength": 0.5, "max_shift": 2, "encoding_voxels": 100},
        {"strength": 0.5, "max_shift": 0, "encoding_voxels": 300},
    ]
    groups = _by_training(create_method("ddpm", MethodSettings(quick=True)), grid)
    assert [trained for trained, _ in groups] == [
        {"max_shift": 0, "encoding_voxels": 100},
        {"max_shift": 2, "encoding_voxels": 100},
        {"max_shift": 0, "encoding_voxels": 300},
    ]
    assert groups[0][1] == grid[:2]  # the strengths share one probe


def test_the_cvae_s_likelihood_weight_shares_one_probe_that_fits_the_encoding_model(
    dataset, tmp_path, monkeypatch
):
    encodings = []
    fit_parts = ConditionalVAE.fit_parts

    def recording(self, train):
        encodings.append(self.encoding_ is not None)
        fit_parts(self, train)

    monkeypatch.setattr(ConditionalVAE, "fit_parts", recording)
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    choices = {"likelihood_weight": (0.0, 50.0)}
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w", choices=choices)
    method = create_method("cvae", settings).fit(train)
    record = method.validation_
    assert record["grid"] == [{"likelihood_weight": 0.0}, {"likelihood_weight": 50.0}]
    assert record["scores"][0] != record["scores"][1]  # the weights changed what was scored
    assert encodings[0]  # the one probe fits what the heaviest weight needs
    assert len(encodings) == 2  # the probe, then the method itself
    assert encodings[1] == method.steers() == (record["chosen"]["likelihood_weight"] > 0)


def test_a_shorter_probe_trains_its_share_of_the_steps_and_the_final_fit_all_of_them(dataset, tmp_path):
    settings = MethodSettings(
        device="cpu", quick=True, choices={"likelihood_weight": (0.0,)}, probe_steps=0.5, work_dir=tmp_path
    )
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    method = create_method("ddpm", settings)
    steps = method.config.training.max_steps

    probe = _fitted_probe(method, {}, [{"likelihood_weight": 0.0}], train)
    assert len(probe.training_.losses) == steps // 2
    method.fit(train)
    assert len(method.training_.losses) == steps
    assert len(method.records()["validation"]["grid"]) == 1


@pytest.mark.parametrize("name", ["cvae", "ddpm", "ldm"])
def test_a_final_fit_under_refit_steps_starts_from_the_probe_and_trains_its_share(
    name, dataset, tmp_path, recorded_fits
):
    """Every per-fold stage of the final fit (ldm: the autoencoder too) starts from the weights the probe
    ended with, and trains half its steps; the record and the report say so."""
    fits = recorded_fits
    settings = MethodSettings(
        device="cpu", quick=True, choices={"likelihood_weight": (0.0,)}, refit_steps=0.5, work_dir=tmp_path
    )
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    method = create_method(name, settings).fit(train)

    stages = ["autoencoder", name] if name == "ldm" else [name]
    assert sorted(fits) == sorted(stages)
    for stage in stages:
        probe, final = fits[stage]
        assert all(torch.equal(probe.end[key], final.start[key]) for key in probe.end)
        assert any(not torch.equal(probe.start[key], final.start[key]) for key in probe.start)
        assert final.max_steps == probe.max_steps // 2
    assert method.records()["validation"]["final_fit"] == {"start": "probe", "step_fraction": 0.5}
    (line,) = validation_notes({name: [{"fold": 0, **method.records()}]})
    assert line.endswith(
        "the final fit started from the probe's weights and trained 50% of each stage's steps"
    )
    assert method.warm_start_ is None  # the probe is not kept once its weights are copied


def test_a_method_that_cannot_start_from_its_probe_fits_afresh_and_says_so(dataset, tmp_path):
    settings = MethodSettings(
        device="cpu",
        quick=True,
        choices={"likelihood_weight": (0.0,)},
        refit_steps=0.5,
        work_dir=tmp_path / "work",
        cache_dir=tmp_path / "cache",
    )
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    method = create_method("sd-direct", settings).fit(train)
    assert method.records()["validation"]["final_fit"] == {"start": "afresh"}
    (line,) = validation_notes({"sd-direct": [{"fold": 0, **method.records()}]})
    assert line.endswith("the final fit trained afresh in full (this method cannot start from its probe)")
    assert method.step_fraction == 1.0


def test_several_validation_folds_score_every_setting_on_each_and_choose_the_best_mean(
    dataset, tmp_path, monkeypatch
):
    fitted_on = []
    fit_parts = ConditionalVAE.fit_parts

    def recording(self, train):
        fitted_on.append((self.config.width, set(train.stimulus_id.tolist())))
        fit_parts(self, train)

    monkeypatch.setattr(ConditionalVAE, "fit_parts", recording)
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    choices = {"width": (8, 16)}
    one_fold = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "one", choices=choices)
    single = create_method("cvae", one_fold).fit(train).validation_
    fitted_on.clear()
    # the first fold prefers width 8 and the two others width 16 by more: the mean must decide
    bonus = iter([10.0, 0.0, 0.0, 20.0, 0.0, 20.0])
    score = validation.selection_score
    monkeypatch.setattr(validation, "selection_score", lambda *images: score(*images) + next(bonus))
    method = create_method("cvae", replace(one_fold, work_dir=tmp_path / "w", validation_folds=3)).fit(train)
    record = method.validation_

    assert record["validation_folds"] == 3
    np.testing.assert_allclose(np.subtract(record["fold_scores"][0], [10, 0]), single["scores"])  # fold 0's
    np.testing.assert_allclose(record["scores"], np.mean(record["fold_scores"], axis=0))
    assert record["chosen"] == {"width": 16}
    assert method.model_.config.width == 16
    # one probe per width and fold, each without its fold's stimuli, then the final fit on all of them
    everything = set(train.stimulus_id.tolist())
    assert [width for width, _ in fitted_on] == [8, 16, 8, 16, 8, 16, method.config.width]
    held = [everything - stimuli for _, stimuli in fitted_on[:6:2]]
    assert [everything - stimuli for _, stimuli in fitted_on[1:6:2]] == held
    assert all(not a & b for i, a in enumerate(held) for b in held[i + 1 :])
    assert record["validation_stimuli"] == sum(map(len, held))
    assert fitted_on[-1][1] == everything
    for folder in ("width-8", "fifth-2/width-8", "fifth-3/width-16"):
        assert (tmp_path / "w" / "cvae" / "validation" / folder).is_dir()
    (line,) = validation_notes({"cvae": [{"fold": 0, "validation": record}]})
    assert f"on {record['validation_stimuli']} validation stimuli in 3 folds, each held out in turn" in line


def test_validation_folds_out_of_range_or_beside_a_shortened_refit_are_refused():
    for folds in (0, 6):
        with pytest.raises(DataError, match=f"validation_folds must be 1 to 5 .*got {folds}"):
            MethodSettings(validation_folds=folds)
    with pytest.raises(DataError, match="set refit_steps to 1 or validation_folds to 1"):
        MethodSettings(validation_folds=2, refit_steps=0.5)
