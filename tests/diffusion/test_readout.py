"""The patch readout: the posterior mean of a K x K binary patch design, fitted inside the training set."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.corpora.builtin import render_bilinear
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, reconstruct_over_splits
from fmri_data.methods.records import validation_notes
from fmri_data.readout import NO_DESIGN, ONE_VALUE, PatchReadout, patch_values
from fmri_data.splits import make_splits, validation_folds
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.validation import usable_in_every_fold, usable_readouts, validation_patches

GRID, SIZE = 5, 20


def _patterns(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, GRID, GRID)) < 0.3).astype(np.float64)


def test_patch_values_undo_the_bilinear_rendering():
    patterns = _patterns(4)
    np.testing.assert_allclose(patch_values(render_bilinear(patterns, SIZE), GRID), patterns, atol=1e-5)


def test_fit_recovers_the_means_spread_and_fill_of_noisy_patch_estimates():
    patterns = _patterns(400)
    noisy = 0.2 + 0.6 * patterns + np.random.default_rng(1).normal(0, 0.1, patterns.shape)
    readout = PatchReadout.fit(
        render_bilinear(patterns, SIZE),
        np.clip(render_bilinear(noisy, SIZE), 0, 1),
        render_bilinear(patterns, SIZE),
    )
    assert readout.grid == GRID
    assert readout.off_mean == pytest.approx(0.2, abs=0.01)
    assert readout.on_mean == pytest.approx(0.8, abs=0.01)
    assert readout.noise == pytest.approx(0.01, rel=0.1)
    assert readout.fill == pytest.approx(patterns.mean(), abs=1e-6)


def test_the_readout_is_the_posterior_mean_of_each_patch():
    readout = PatchReadout(grid=GRID, off_mean=0.2, on_mean=0.8, noise=0.05, fill=0.25)
    values = np.array([0.2, 0.5, 0.8, 0.65])
    images = render_bilinear(np.broadcast_to(values[:, None, None], (4, GRID, GRID)), SIZE)
    posterior = readout(images)[:, 0, 0]
    likelihood_ratio = np.exp(-((values - 0.8) ** 2) / 0.1) / np.exp(-((values - 0.2) ** 2) / 0.1)
    expected = 0.25 * likelihood_ratio / (0.25 * likelihood_ratio + 0.75)
    np.testing.assert_allclose(posterior, expected, rtol=1e-4)
    assert posterior[1] == pytest.approx(0.25, rel=1e-4)  # halfway between the means: the prior alone


def test_the_readout_brings_noisy_reconstructions_closer_to_the_truth():
    patterns = _patterns(60, seed=2)
    truth = render_bilinear(patterns, SIZE)
    rng = np.random.default_rng(3)
    noisy = np.clip(render_bilinear(0.3 + 0.4 * patterns + rng.normal(0, 0.12, patterns.shape), SIZE), 0, 1)
    readout = PatchReadout.fit(truth[:30], noisy[:30], truth[:30])
    assert np.mean((readout(noisy[30:]) - truth[30:]) ** 2) < 0.5 * np.mean((noisy[30:] - truth[30:]) ** 2)


def test_images_without_a_patch_design_are_refused_in_one_line():
    smooth = np.random.default_rng(4).random((10, SIZE, SIZE)).astype(np.float32)
    with pytest.raises(DataError, match="not K x K binary patches"):
        PatchReadout.fit(smooth, smooth, smooth)
    blank = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    with pytest.raises(DataError, match="only one patch value"):
        PatchReadout.fit(render_bilinear(_patterns(10), SIZE), blank, blank)


def _patch_dataset(n_stimuli: int = 30, repeats: int = 2, seed: int = 0) -> PairedDataset:
    """5 x 5 binary patches at 20 px seen through a random linear map plus noise; the last 5 stimuli are
    the given test set."""
    rng = np.random.default_rng(seed)
    patterns = _patterns(n_stimuli, seed)
    stimulus_id = np.repeat(np.arange(n_stimuli), repeats)
    weights = rng.normal(size=(GRID * GRID, 40))
    fmri = patterns[stimulus_id].reshape(len(stimulus_id), -1) @ weights
    return PairedDataset(
        fmri=fmri + 0.3 * rng.normal(size=fmri.shape),
        images=render_bilinear(patterns, SIZE)[stimulus_id],
        stimulus_id=stimulus_id,
        given_test=np.isin(stimulus_id, np.arange(n_stimuli - 5, n_stimuli)),
        metadata={"name": "patch-toy"},
    )


def _settings(tmp_path, **choices) -> MethodSettings:
    return MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "work", choices=choices)


def test_the_readout_is_chosen_on_validation_and_saved_with_the_method(tmp_path):
    dataset = _patch_dataset()
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    settings = _settings(tmp_path, readout=("pixels", "patches"))
    method = create_method("cvae", settings).fit(train)
    record = method.validation_
    assert record["grid"] == [{"readout": "pixels"}, {"readout": "patches"}]
    assert record["left_out"] == []
    if record["chosen"]["readout"] == "patches":
        assert method.readout_ == PatchReadout(**record["readout"])
    else:
        assert (method.readout_, record["readout"]) == (None, None)

    method.readout_ = PatchReadout(grid=GRID, off_mean=0.2, on_mean=0.8, noise=0.05, fill=0.3)
    test_fmri = dataset.fmri[dataset.given_test]
    rows, raw = method.predict_named(test_fmri), method.named_rows(test_fmri)
    np.testing.assert_allclose(rows["cvae"], method.readout_(raw["cvae"]), atol=1e-6)
    np.testing.assert_array_equal(rows["cvae-1"], raw["cvae-1"])  # one sample stays as sampled
    assert not np.allclose(rows["cvae"], raw["cvae"])
    method.save_fitted()
    loaded = load_method(tmp_path / "work" / "cvae" / "model", replace(settings, choices={}))
    assert loaded.readout_ == method.readout_


def test_each_validation_stimulus_is_read_out_by_a_readout_fitted_without_it():
    dataset = _patch_dataset(n_stimuli=8, repeats=1)
    inner, held = dataset.subset(np.arange(4)), dataset.subset(np.arange(4, 8))
    sampled = np.clip(held.images * 0.6 + 0.2, 0, 1)
    sampled[0] = 1 - sampled[0]  # one badly reconstructed stimulus: the others' readout must not learn it
    images, kept = validation_patches(sampled, inner, held)
    for i in range(4):
        others = np.arange(4) != i
        readout = PatchReadout.fit(inner.images, sampled[others], held.images[others])
        np.testing.assert_allclose(images[i], readout(sampled[[i]])[0], atol=1e-6)
    assert kept == PatchReadout.fit(inner.images, sampled, held.images)


def test_readouts_the_data_rule_out_are_left_out_with_their_reason():
    dataset = _patch_dataset(n_stimuli=6, repeats=1)
    inner = dataset.subset(np.arange(3))
    blank = replace(dataset, images=np.zeros_like(dataset.images))
    one_on = blank.images.copy()
    one_on[4] = dataset.images[4]  # holding stimulus 4 out leaves only off patches
    held = replace(blank, images=one_on).subset(np.arange(3, 6))
    both = ("pixels", "patches")
    assert usable_readouts(both, inner, dataset.subset(np.arange(3, 6))) == (both, [])
    assert usable_readouts(both, inner, held) == ((), ["patches: " + ONE_VALUE])
    assert usable_readouts(("patches",), inner, held) == ((), ["patches: " + ONE_VALUE])
    assert usable_readouts(("pixels",), inner, held) == ((), [])
    rgb = replace(dataset, images=np.repeat(dataset.images[..., None], 3, axis=-1))  # a patch design in RGB
    rgb_inner, rgb_held = rgb.subset(np.arange(3)), rgb.subset(np.arange(3, 6))
    assert usable_readouts(both, rgb_inner, rgb_held) == ((), ["patches: " + NO_DESIGN])


def test_data_without_a_patch_design_train_no_probe_for_the_readout(tmp_path):
    dataset = _patch_dataset()
    smooth = np.random.default_rng(5).random(dataset.images.shape).astype(np.float32)
    train = replace(dataset, images=smooth).subset(np.flatnonzero(~dataset.given_test))
    method = create_method("cvae", _settings(tmp_path, readout=("pixels", "patches"))).fit(train)
    record = method.validation_
    assert (record["grid"], record["chosen"], method.readout_) == ([], {}, None)
    assert record["left_out"] == ["patches: " + NO_DESIGN]
    assert not (tmp_path / "work" / "cvae" / "validation").exists()
    (line,) = validation_notes({"cvae": [{"fold": 0, "validation": record}]})
    assert line == f"cvae, fold 0: nothing left to choose; left out readout patches: {NO_DESIGN}"
    with pytest.raises(DataError, match="readout takes pixels, patches, got edges"):
        create_method("cvae", _settings(tmp_path, readout=("edges",))).fit(train)


def test_poisoned_test_images_change_neither_readout_nor_reconstruction(tmp_path):
    dataset = _patch_dataset()
    choices = {"readout": ("patches",), "strength": (0.5, 1.0)}

    def run(data):
        settings = MethodSettings(device="cpu", quick=True, cache_dir=tmp_path / "cache", choices=choices)
        return reconstruct_over_splits(
            data, make_splits(data, "given"), ["ddpm"], settings=settings, progress=False
        )

    clean = run(dataset)
    images = dataset.images.copy()
    images[dataset.given_test] = np.random.default_rng(9).random(images[dataset.given_test].shape)
    poisoned = run(replace(dataset, images=images.astype(np.float32)))
    record = clean.records["ddpm"][0]["validation"]
    assert [point["readout"] for point in record["grid"]] == ["patches", "patches"]
    assert record["readout"]["grid"] == GRID
    assert poisoned.records == clean.records
    np.testing.assert_array_equal(poisoned.reconstructions["ddpm"], clean.reconstructions["ddpm"])


def test_under_several_validation_folds_the_readout_is_fitted_on_every_fold_s_reconstructions(
    tmp_path, monkeypatch
):
    dataset = _patch_dataset()
    train = dataset.subset(np.flatnonzero(~dataset.given_test))
    truths = []
    fit = PatchReadout.fit.__func__

    def recording(cls, train_images, reconstructed, truth):
        truths.append(len(truth))
        return fit(cls, train_images, reconstructed, truth)

    monkeypatch.setattr(PatchReadout, "fit", classmethod(recording))
    settings = replace(_settings(tmp_path, readout=("patches",)), validation_folds=2)
    method = create_method("cvae", settings).fit(train)
    record = method.validation_
    held = [held for _, held in validation_folds(train.stimulus_id, 2)]
    assert record["validation_trials"] == truths[-1] == sum(map(len, held))  # both folds' trials
    on = patch_values(train.images, GRID) > 0.5
    assert record["readout"]["fill"] == pytest.approx(on.mean())  # from every training image, once each


def test_a_readout_that_one_validation_fold_rules_out_is_left_out_of_all():
    dataset = _patch_dataset(n_stimuli=9, repeats=1)
    inner, good = dataset.subset(np.arange(3)), dataset.subset(np.arange(3, 6))
    blank = replace(dataset, images=np.zeros_like(dataset.images)).subset(np.arange(6, 9))
    both = ("pixels", "patches")
    assert usable_in_every_fold(both, [(inner, good), (inner, good)]) == (both, [])
    for folds in ([(inner, good), (inner, blank)], [(inner, blank), (inner, good)]):
        assert usable_in_every_fold(both, folds) == ((), ["patches: " + ONE_VALUE])
