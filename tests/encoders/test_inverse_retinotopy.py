"""Inverse retinotopy: pRFs fitted on a patch design, the Gibbs posterior over patches, and the method."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import product

import numpy as np
import pytest

from fmri_data.corpora.builtin import render_bilinear
from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, reconstruct_over_splits
from fmri_data.readout import PatchReadout
from fmri_data.splits import make_splits
from fmri_encoders.methods.inverse_retinotopy import InverseRetinotopy, InverseRetinotopyConfig
from fmri_encoders.noise import correlated_noise_precision
from fmri_encoders.patch_posterior import IsingPrior, grid_neighbours, sample_patches
from fmri_encoders.prf import NOISE_FLOOR, ReceptiveFields, gaussian_windows
from fmri_eval.metrics import pcc

GRID, SIZE = 5, 20


def _shapes(n: int, seed: int) -> np.ndarray:
    """[n, GRID, GRID] solid rectangles: figures, not the salt and pepper the prior's coupling penalises."""
    rng = np.random.default_rng(seed)
    shapes = np.zeros((n, GRID, GRID))
    for shape in shapes:
        top, left = rng.integers(0, GRID - 1, size=2)
        shape[top : top + rng.integers(2, GRID - top + 1), left : left + rng.integers(2, GRID - left + 1)] = 1
    return shapes


def _true_fields(voxels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's window (drawn from the fitting bank, so the fit can find it exactly) and gain."""
    rng = np.random.default_rng(seed)
    bank = gaussian_windows(GRID)
    return rng.integers(0, len(bank), size=voxels), rng.choice([-1.0, 1.0], voxels) * rng.uniform(
        2, 4, voxels
    )


def _voxels(
    patterns: np.ndarray, windows: np.ndarray, gains: np.ndarray, noise: float, seed: int
) -> np.ndarray:
    drive = patterns.reshape(len(patterns), -1) @ gaussian_windows(GRID)[windows].T
    return gains * drive + np.random.default_rng(seed).normal(0, noise, (len(patterns), len(gains)))


def test_windows_are_unit_sum_gaussians_peaking_at_their_centre():
    bank = gaussian_windows(GRID, step=1.0, sizes=(0.5, 1.0))
    assert bank.shape == (2 * GRID * GRID, GRID * GRID)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0)
    # candidates run over sizes, then centre rows, then centre columns: candidate 7 is size 0.5 at (1, 2)
    assert np.unravel_index(bank[7].argmax(), (GRID, GRID)) == (1, 2)


def test_the_fit_recovers_each_voxels_window_gain_and_noise():
    windows, gains = _true_fields(40, seed=0)
    patterns = (np.random.default_rng(1).random((300, GRID, GRID)) < 0.4).astype(np.float64)
    fmri = _voxels(patterns, windows, gains, noise=0.05, seed=2)
    fields = ReceptiveFields.fit(patterns, fmri)
    np.testing.assert_allclose(fields.windows, gaussian_windows(GRID)[windows], atol=0.02)
    np.testing.assert_allclose(fields.gains, gains, rtol=0.05)
    np.testing.assert_allclose(fields.noise, 0.05**2 + NOISE_FLOOR * fmri.var(axis=0), rtol=0.2)
    assert fields.explained.min() > 0.9


def test_best_keeps_the_best_explained_voxels_in_order():
    windows, gains = _true_fields(30, seed=3)
    patterns = (np.random.default_rng(4).random((80, GRID, GRID)) < 0.4).astype(np.float64)
    noise = np.random.default_rng(5).normal(0, 1, (80, 30)) * np.repeat([0.01, 3.0], 15)
    fmri = _voxels(patterns, windows, gains, 0, seed=6) + noise  # the first 15 voxels are clean
    fields = ReceptiveFields.fit(patterns, fmri)
    kept, index = fields.best(15)
    assert sorted(index) == list(range(15))
    assert kept.weights.shape == (15, GRID * GRID)
    np.testing.assert_allclose(kept.predict(patterns), fields.predict(patterns)[:, index])
    assert len(fields.best(None)[1]) == 30
    assert len(fields.best(0)[1]) == 30  # 0 keeps all, as a voxel count of 0 on the command line does
    assert len(fields.best(100)[1]) == 30


def test_patches_no_training_stimulus_varies_get_no_weight():
    windows, gains = _true_fields(20, seed=15)
    patterns = (np.random.default_rng(16).random((120, GRID, GRID)) < 0.4).astype(np.float64)
    patterns[:, :, -1] = 0.0  # the last column is never on
    patterns[:, 0, 0] = 1.0  # the corner is always on
    fields = ReceptiveFields.fit(patterns, _voxels(patterns, windows, gains, noise=0.05, seed=17))
    untouched = fields.windows.reshape(-1, GRID, GRID)
    assert not untouched[:, :, -1].any()
    assert not untouched[:, 0, 0].any()
    assert untouched[:, :, :-1].any(axis=(1, 2)).all()
    lit = patterns[:3].copy()
    lit[:, :, -1] = 1.0
    np.testing.assert_allclose(fields.predict(lit), fields.predict(patterns[:3]))


def test_fitting_mismatched_or_constant_stimuli_is_refused():
    with pytest.raises(DataError, match="same trials"):
        ReceptiveFields.fit(np.zeros((3, GRID, GRID)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="differ"):
        ReceptiveFields.fit(np.ones((4, GRID, GRID)), np.random.default_rng(0).random((4, 2)))


def _exact_marginals(fmri, fields, prior, evidence, weight, precision=None):
    """On-probabilities of every patch by summing over all 2^(grid^2) states."""
    grid = fields.grid
    states = np.array(list(product([0.0, 1.0], repeat=grid * grid)))
    residual = fmri[None, :] - states @ fields.weights.T - fields.offsets
    if precision is None:
        precision = np.diag(1 / fields.noise)
    log_p = -0.5 * weight * np.einsum("sv,vw,sw->s", residual, precision, residual)
    log_p += states @ (evidence.ravel() + prior.field)
    spins = 2 * states - 1
    pairs = [(i, j) for i, near in enumerate(grid_neighbours(grid)) for j in near if j > i]
    log_p += prior.coupling * sum(spins[:, i] * spins[:, j] for i, j in pairs)
    p = np.exp(log_p - log_p.max())
    return (p / p.sum()) @ states


def _random_fields(rng: np.random.Generator, grid: int, noise: np.ndarray) -> ReceptiveFields:
    """Arbitrary windows and gains for len(noise) voxels: what exact enumeration checks the sampler on."""
    voxels = len(noise)
    return ReceptiveFields(
        grid,
        windows=rng.random((voxels, grid * grid)),
        gains=rng.normal(0, 1, voxels),
        offsets=rng.normal(0, 0.1, voxels),
        explained=np.ones(voxels),
        noise=noise,
    )


def test_gibbs_marginals_match_exact_enumeration_on_a_small_grid():
    rng = np.random.default_rng(7)
    grid, voxels = 3, 6
    noise = rng.uniform(2.0, 4.0, voxels)  # weak enough that prior and evidence count too
    fields = _random_fields(rng, grid, noise)
    fmri = rng.normal(0, 1, (1, voxels))
    evidence = rng.normal(0, 0.5, (1, grid, grid))
    prior = IsingPrior.from_fill(0.5, coupling=0.2)
    mean, sample = sample_patches(
        fmri, fields, prior, likelihood_weight=0.7, evidence=evidence, sweeps=6000, burn_in=200, seed=1
    )
    exact = _exact_marginals(fmri[0], fields, prior, evidence[0], 0.7)
    assert np.sum((exact > 0.1) & (exact < 0.9)) >= 3  # not decided by the likelihood alone
    np.testing.assert_allclose(mean.ravel(), exact, atol=0.03)
    assert set(np.unique(sample)) <= {0.0, 1.0}


def test_gibbs_marginals_with_correlated_noise_match_exact_enumeration():
    rng = np.random.default_rng(27)
    grid, voxels = 3, 6
    fields = _random_fields(rng, grid, np.full(voxels, 3.0))  # the covariance's diagonal below
    shared = rng.normal(0, 1, (voxels, 1))
    correlation = 0.8 * (shared @ shared.T) / np.sqrt(np.outer(shared**2, shared**2)) + 0.2 * np.eye(voxels)
    precision = np.linalg.inv(3.0 * correlation)
    fmri = rng.normal(0, 1, (1, voxels))
    evidence = rng.normal(0, 0.5, (1, grid, grid))
    prior = IsingPrior.from_fill(0.5, coupling=0.2)
    mean, _ = sample_patches(
        fmri,
        fields,
        prior,
        likelihood_weight=0.7,
        evidence=evidence,
        noise_precision=precision,
        sweeps=6000,
        burn_in=200,
        seed=1,
    )
    exact = _exact_marginals(fmri[0], fields, prior, evidence[0], 0.7, precision)
    independent = _exact_marginals(fmri[0], fields, prior, evidence[0], 0.7)
    assert np.abs(exact - independent).max() > 0.1  # the correlations change the answer
    np.testing.assert_allclose(mean.ravel(), exact, atol=0.03)


def test_independent_noise_given_as_a_matrix_changes_nothing():
    rng = np.random.default_rng(28)
    fields = ReceptiveFields(
        2, rng.random((4, 4)), rng.normal(size=4), np.zeros(4), np.ones(4), rng.uniform(1, 2, 4)
    )
    fmri = rng.normal(size=(3, 4))
    given = sample_patches(fmri, fields, IsingPrior(0.0, 0.3), noise_precision=np.diag(1 / fields.noise))
    default = sample_patches(fmri, fields, IsingPrior(0.0, 0.3))
    for ours, theirs in zip(given, default, strict=True):
        np.testing.assert_allclose(ours, theirs)


def test_correlated_noise_keeps_each_voxels_variance_and_shrinks_what_the_trials_cannot_tell():
    rng = np.random.default_rng(29)
    variances = np.array([1.0, 4.0, 9.0])
    shared = rng.normal(size=(2000, 1))
    residuals = np.hstack([shared + 0.3 * rng.normal(size=(2000, 2)), rng.normal(size=(2000, 1))])
    covariance = np.linalg.inv(correlated_noise_precision(residuals, variances))
    np.testing.assert_allclose(np.diag(covariance), variances, rtol=1e-6)
    correlation = covariance / np.sqrt(np.outer(variances, variances))
    assert correlation[0, 1] > 0.85  # 1 / 1.09 in the residuals, hardly shrunk with 2,000 trials
    assert abs(correlation[0, 2]) < 0.1
    constant = np.hstack([residuals, np.full((2000, 1), 0.5)])  # a voxel the pRF fits exactly
    with_constant = np.linalg.inv(correlated_noise_precision(constant, np.append(variances, 2.0)))
    np.testing.assert_allclose(np.diag(with_constant), np.append(variances, 2.0), rtol=1e-6)
    one_trial = correlated_noise_precision(residuals[:1], variances)
    np.testing.assert_allclose(one_trial, np.diag(1 / variances))
    few_trials = rng.normal(size=(10, 50))  # independent voxels, 10 trials: sizeable chance correlations
    raw = np.corrcoef(few_trials.T)[~np.eye(50, dtype=bool)]
    few = np.linalg.inv(correlated_noise_precision(few_trials, np.ones(50)))[~np.eye(50, dtype=bool)]
    assert np.abs(few).max() < 0.5 * np.abs(raw).max()


def test_the_prior_field_is_the_fills_log_odds_and_burn_in_must_leave_sweeps():
    assert IsingPrior.from_fill(0.25, 0.0).field == pytest.approx(np.log(1 / 3))
    fields = ReceptiveFields(2, np.ones((1, 4)), np.ones(1), np.zeros(1), np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="burn_in"):
        sample_patches(np.zeros((1, 1)), fields, IsingPrior(0.0, 0.0), sweeps=10, burn_in=10)


def test_the_readouts_evidence_is_the_two_gaussian_log_likelihood_ratio():
    readout = PatchReadout(grid=GRID, off_mean=0.2, on_mean=0.8, noise=0.05, fill=0.25)
    values = np.random.default_rng(8).random((3, GRID, GRID))
    evidence = readout.evidence(render_bilinear(values, SIZE))

    def log_density(x, mean):
        return -((x - mean) ** 2) / (2 * 0.05) - 0.5 * np.log(2 * np.pi * 0.05)

    np.testing.assert_allclose(evidence, log_density(values, 0.8) - log_density(values, 0.2), atol=1e-4)


def _figure_dataset(n_stimuli: int, repeats: int, seed: int) -> PairedDataset:
    patterns = _shapes(n_stimuli, seed)
    stimulus_id = np.repeat(np.arange(n_stimuli), repeats)
    windows, gains = _true_fields(60, seed)
    fmri = _voxels(patterns[stimulus_id], windows, gains, noise=0.3, seed=seed + 1)
    return PairedDataset(
        fmri=fmri.astype(np.float32),
        images=render_bilinear(patterns[stimulus_id], SIZE).astype(np.float32),
        stimulus_id=stimulus_id,
    )


def test_the_method_reconstructs_unseen_figures_and_reports_its_choice():
    data = _figure_dataset(n_stimuli=24, repeats=2, seed=9)
    train, test = data.subset(np.arange(36)), data.subset(np.arange(36, 48))
    settings = MethodSettings(progress=False, choices={"coupling": (0.0, 0.3), "prf_voxels": (0, 30)})
    method = create_method("inverse-retinotopy", settings).fit(train)
    rows = method.predict_named(test.fmri)
    assert set(rows) == {"inverse-retinotopy", "inverse-retinotopy-1"}
    assert rows["inverse-retinotopy"].shape == test.images.shape
    assert rows["inverse-retinotopy"].min() >= 0
    assert rows["inverse-retinotopy"].max() <= 1
    mean_image = np.broadcast_to(train.images.mean(axis=0), test.images.shape)
    assert np.mean(pcc(test.images, rows["inverse-retinotopy"])) > np.mean(pcc(test.images, mean_image)) + 0.3
    record = method.records()["validation"]
    assert {point["coupling"] for point in record["grid"]} == {0.0, 0.3}
    assert len(record["scores"]) == len(record["grid"])
    assert record["chosen"] in record["grid"]
    assert record["validation_stimuli"] == 18


def test_poisoned_test_images_change_neither_the_choice_nor_the_reconstruction():
    data = _figure_dataset(n_stimuli=20, repeats=2, seed=10)
    data = replace(data, given_test=np.arange(data.n_trials) >= 30)

    def run(dataset: PairedDataset):
        settings = MethodSettings(quick=True, progress=False)
        return reconstruct_over_splits(
            dataset, make_splits(dataset, "given"), ["inverse-retinotopy"], settings=settings, progress=False
        )

    clean = run(data)
    images = data.images.copy()
    images[data.given_test] = np.random.default_rng(12).random(images[data.given_test].shape)
    poisoned = run(replace(data, images=images))
    assert clean.records["inverse-retinotopy"][0]["validation"]["grid"]
    assert poisoned.records == clean.records
    np.testing.assert_array_equal(
        poisoned.reconstructions["inverse-retinotopy"], clean.reconstructions["inverse-retinotopy"]
    )


def test_a_saved_method_reloads_with_its_choice_and_chain(tmp_path):
    data = _figure_dataset(n_stimuli=12, repeats=2, seed=13)
    train, test = data.subset(np.arange(18)), data.subset(np.arange(18, 24))
    # the decoder's evidence and a voxel subset in use, so every saved part counts
    choices = {"decoder_weight": (1.0,), "prf_voxels": (30,)}
    fitted = InverseRetinotopy(MethodSettings(quick=True, progress=False, seed=3, choices=choices)).fit(train)
    fitted.save(tmp_path / "ir")
    # without the smoke-test budget: the chain's length must come from the saved fit, not the defaults
    reloaded = InverseRetinotopy.load(tmp_path / "ir", MethodSettings(progress=False, seed=3))
    assert reloaded.records() == fitted.records()
    rows = reloaded.predict_named(test.fmri)
    for name, images in fitted.predict_named(test.fmri).items():
        np.testing.assert_array_equal(rows[name], images)


def test_images_without_a_patch_design_are_refused_in_one_line():
    rng = np.random.default_rng(11)
    smooth = PairedDataset(
        fmri=rng.normal(size=(12, 5)).astype(np.float32),
        images=rng.random((12, SIZE, SIZE)).astype(np.float32),
        stimulus_id=np.arange(12),
    )
    with pytest.raises(DataError, match=r"not K x K binary patches.*use ridge"):
        create_method("inverse-retinotopy", MethodSettings(progress=False)).fit(smooth)


def test_each_inner_fold_is_scored_by_parts_learned_without_its_stimuli(monkeypatch):
    data = _figure_dataset(n_stimuli=12, repeats=2, seed=13)
    seen: list[set[int]] = []
    learn = InverseRetinotopy._learn

    def recording(self, train):
        seen.append(set(train.stimulus_id.tolist()))
        return learn(self, train)

    monkeypatch.setattr(InverseRetinotopy, "_learn", recording)
    create_method("inverse-retinotopy", MethodSettings(quick=True, progress=False)).fit(data)
    everything = set(range(12))
    *inner, final = seen
    assert final == everything
    held_out = [everything - stimuli for stimuli in inner]
    assert len(inner) == 4
    assert all(held_out)
    assert set().union(*held_out) == everything
    assert sum(len(stimuli) for stimuli in held_out) == 12  # each stimulus validated exactly once


def test_candidates_from_options_are_tuples_with_whole_voxel_counts():
    settings = MethodSettings(sampling={"prf_weight": 0.5}, choices={"prf_voxels": (0.0, 300.0)})
    config = create_method("inverse-retinotopy", settings).config
    assert config.prf_weight == (0.5,)
    assert config.prf_voxels == (None, 300)
    with pytest.raises(DataError, match="prf_voxels must be whole numbers"):
        create_method("inverse-retinotopy", MethodSettings(choices={"prf_voxels": (-1.0,)}))
    unrelated = MethodSettings(choices={"likelihood_weight": (0.0, 1.0)})  # the diffusion routes' guidance
    assert create_method("inverse-retinotopy", unrelated).config == InverseRetinotopyConfig()


def test_too_few_training_stimuli_are_refused_in_one_line():
    data = _figure_dataset(n_stimuli=3, repeats=2, seed=14)
    with pytest.raises(DataError, match="at least 4 distinct training stimuli, got 3"):
        create_method("inverse-retinotopy", MethodSettings(progress=False)).fit(data)


def test_both_noise_models_are_candidates_and_a_correlated_fit_reloads(tmp_path):
    data = _figure_dataset(n_stimuli=12, repeats=3, seed=30)
    train, test = data.subset(np.arange(27)), data.subset(np.arange(27, 36))
    assert InverseRetinotopyConfig().noise == ("independent", "correlated")
    choices = {"noise": ("correlated",), "decoder_weight": (1.0,), "prf_voxels": (30,)}
    fitted = InverseRetinotopy(MethodSettings(quick=True, progress=False, seed=3, choices=choices)).fit(train)
    independent = InverseRetinotopy(
        MethodSettings(quick=True, progress=False, seed=3, choices={**choices, "noise": ("independent",)})
    ).fit(train)
    assert not np.array_equal(
        fitted.predict(test.fmri), independent.predict(test.fmri)
    )  # the noise model reaches the posterior
    fitted.save(tmp_path / "ir")
    reloaded = InverseRetinotopy.load(tmp_path / "ir", MethodSettings(progress=False, seed=3))
    for name, images in fitted.predict_named(test.fmri).items():
        np.testing.assert_array_equal(reloaded.predict_named(test.fmri)[name], images)


def test_a_fit_saved_before_the_noise_choice_reloads_with_independent_noise(tmp_path):
    """Fits saved by fmri-encoders < 0.16 hold no residuals and no noise in their choice."""
    from safetensors.numpy import load_file, save_file

    data = _figure_dataset(n_stimuli=12, repeats=2, seed=31)
    train, test = data.subset(np.arange(18)), data.subset(np.arange(18, 24))
    choices = {"noise": ("independent",)}
    fitted = InverseRetinotopy(MethodSettings(quick=True, progress=False, seed=3, choices=choices)).fit(train)
    fitted.save(tmp_path / "ir")
    arrays = load_file(tmp_path / "ir" / "inverse_retinotopy.safetensors")
    save_file(
        {k: v for k, v in arrays.items() if k != "residuals"},
        tmp_path / "ir" / "inverse_retinotopy.safetensors",
    )
    settings_file = tmp_path / "ir" / "inverse_retinotopy.json"
    saved = json.loads(settings_file.read_text())
    del saved["setting"]["noise"]
    settings_file.write_text(json.dumps(saved))
    reloaded = InverseRetinotopy.load(tmp_path / "ir", MethodSettings(progress=False, seed=3))
    np.testing.assert_array_equal(reloaded.predict(test.fmri), fitted.predict(test.fmri))
    reloaded.save(tmp_path / "again")  # as a two-stage route saves the first stage it reloaded
    again = InverseRetinotopy.load(tmp_path / "again", MethodSettings(progress=False, seed=3))
    np.testing.assert_array_equal(again.predict(test.fmri), fitted.predict(test.fmri))


def test_an_unknown_noise_model_is_refused_in_one_line():
    with pytest.raises(
        DataError, match=r"noise must be one of independent, correlated, got corelated; e\.g\."
    ):
        create_method("inverse-retinotopy", MethodSettings(choices={"noise": ("corelated",)}))
