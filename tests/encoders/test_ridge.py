import numpy as np
import pytest
from himalaya.ridge import RidgeCV

from fmri_encoders import ridge
from fmri_encoders.ridge import RidgeEncoder


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# Every backend himalaya offers that this machine can run; CUDA skips itself where there is no GPU.
BACKENDS = [
    "numpy",
    "torch",
    pytest.param("torch_cuda", marks=pytest.mark.skipif(not _cuda_available(), reason="no CUDA GPU here")),
]


def _closed_form(X, Y, alpha):
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
    return W, ym - xm @ W


@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_single_alpha_matches_the_closed_form(solver):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 15)), rng.normal(size=(40, 3))
    model = RidgeEncoder(alphas=[7.0], solver=solver).fit(X, Y)
    W, b = _closed_form(X.astype(np.float32).astype(np.float64), Y.astype(np.float32).astype(np.float64), 7.0)
    np.testing.assert_allclose(model.coef_, W, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.intercept_, b, rtol=1e-3, atol=1e-5)


def test_kernel_and_primal_forms_agree():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 50)), rng.normal(size=(30, 4))
    primal = RidgeEncoder(solver="primal").fit(X, Y)
    kernel = RidgeEncoder(solver="kernel").fit(X, Y)
    np.testing.assert_allclose(primal.best_alphas_, kernel.best_alphas_, rtol=1e-6)  # himalaya: exp(log)
    np.testing.assert_allclose(primal.predict(X[:5]), kernel.predict(X[:5]), rtol=1e-3, atol=1e-4)


def test_per_target_alphas_follow_each_targets_noise():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 20))
    clean = X @ rng.normal(size=(20, 1))
    noisy = X @ rng.normal(size=(20, 1)) * 0.05 + rng.normal(size=(200, 1)) * 3
    model = RidgeEncoder(alphas=np.logspace(-2, 5, 15)).fit(X, np.hstack([clean, noisy]))
    low, high = model.best_alphas_
    assert low <= 1.0 < 100.0 <= high
    shared = RidgeEncoder(alphas=np.logspace(-2, 5, 15), per_target=False).fit(X, np.hstack([clean, noisy]))
    assert np.unique(shared.best_alphas_).size == 1


def test_rescale_restores_the_target_scale_of_held_out_predictions():
    """Ridge shrinks predictions of unseen trials towards the mean; rescaling by the out-of-fold spread
    undoes it (by the in-sample spread it would not: with more voxels than trials that fits nearly all)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(240, 300))
    Y = X @ rng.normal(size=(300, 2)) * 0.1 + rng.normal(size=(240, 2)) + 10
    train, test = slice(0, 120), slice(120, None)
    plain = RidgeEncoder(alphas=[300.0]).fit(X[train], Y[train])
    rescaled = RidgeEncoder(alphas=[300.0], rescale=True).fit(X[train], Y[train])
    spread = Y[test].std(axis=0)
    assert np.all(plain.predict(X[test]).std(axis=0) < 0.6 * spread)
    np.testing.assert_allclose(rescaled.predict(X[test]).std(axis=0), spread, rtol=0.3)
    np.testing.assert_allclose(rescaled.predict(X[test]).mean(axis=0), Y[test].mean(axis=0), atol=0.5)
    in_sample = plain.predict(X[train]).std(axis=0)
    assert np.all(in_sample > 1.5 * plain.predict(X[test]).std(axis=0))  # why out-of-fold, not in-sample


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(30, 8)), rng.normal(size=(30, 3))
    model = RidgeEncoder(rescale=True).fit(X, Y)
    model.save(tmp_path / "ridge")
    loaded = RidgeEncoder.load(tmp_path / "ridge")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.rescale
    assert loaded.solver_ == model.solver_
    with pytest.raises(FileNotFoundError, match=r"ridge\.json"):
        RidgeEncoder.load(tmp_path)


def test_groups_keep_repeats_in_one_inner_fold():
    from fmri_encoders.ridge import _grouped_folds

    groups = np.repeat(np.arange(10), 3)
    for train, test in _grouped_folds(len(groups), 5, groups):
        assert np.intersect1d(groups[train], groups[test]).size == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="samples"):
        RidgeEncoder().fit(np.ones((10, 2)), np.ones((9, 1)))
    with pytest.raises(ValueError, match="NaN"):
        RidgeEncoder().fit(np.full((10, 2), np.nan), np.ones((10, 1)))
    with pytest.raises(RuntimeError, match="not fitted"):
        RidgeEncoder().predict(np.ones((1, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("solver", ["primal", "kernel"])
def test_every_backend_gives_the_numpy_predictions(backend, solver):
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(40, 60)), rng.normal(size=(40, 5))
    reference = RidgeEncoder(solver=solver).fit(X, Y)
    model = RidgeEncoder(solver=solver, backend=backend).fit(X, Y)
    np.testing.assert_allclose(model.best_alphas_, reference.best_alphas_, rtol=1e-5)
    np.testing.assert_allclose(model.predict(X[:7]), reference.predict(X[:7]), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_target_batching_changes_nothing(backend):
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(30, 40)), rng.normal(size=(30, 9))
    whole = RidgeEncoder(backend=backend).fit(X, Y)
    batched = RidgeEncoder(backend=backend, n_targets_batch=4).fit(X, Y)
    np.testing.assert_allclose(whole.best_alphas_, batched.best_alphas_, rtol=1e-5)
    np.testing.assert_allclose(whole.coef_, batched.coef_, rtol=1e-4, atol=1e-6)


def test_alphas_resolved_one_at_a_time_to_bound_memory_change_nothing(monkeypatch):
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(30, 40)), rng.normal(size=(30, 5))
    whole = RidgeEncoder(solver="kernel").fit(X, Y)
    monkeypatch.setattr(ridge, "_RESOLUTION_BYTES", 1)  # as if every alpha's matrices were too big
    assert ridge._alphas_per_batch(32) == 1
    one_by_one = RidgeEncoder(solver="kernel").fit(X, Y)
    np.testing.assert_array_equal(whole.best_alphas_, one_by_one.best_alphas_)
    np.testing.assert_allclose(whole.coef_, one_by_one.coef_, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("per_target", [True, False])
def test_the_primal_form_chooses_and_fits_as_himalayas_ridgecv(per_target):
    """Same folds, same alphas: Cholesky factors of X^T X + alpha I give himalaya's choice and weights."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(120, 25)).astype(np.float32)
    Y = (X @ rng.normal(size=(25, 12)) * np.linspace(0.05, 3, 12) + rng.normal(size=(120, 12)) + 4).astype(
        np.float32
    )
    alphas = np.logspace(-1, 4, 11)
    mine = RidgeEncoder(alphas=alphas, solver="primal", per_target=per_target).fit(X, Y)
    folds = ridge._grouped_folds(len(X), 5, None)
    reference = RidgeCV(
        alphas=alphas, cv=folds, fit_intercept=True, solver_params={"local_alpha": per_target, "warn": False}
    )
    reference.fit(X.astype(np.float64), Y.astype(np.float64))
    np.testing.assert_allclose(mine.best_alphas_, reference.best_alphas_, rtol=1e-6)  # himalaya: exp(log)
    assert (len(np.unique(mine.best_alphas_)) > 1) == per_target  # the targets differ in signal
    np.testing.assert_allclose(mine.coef_, reference.coef_, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(mine.intercept_, reference.intercept_, rtol=1e-3, atol=1e-3)


def test_the_primal_form_batched_over_targets_changes_nothing():
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(60, 20)), rng.normal(size=(60, 7))
    whole = RidgeEncoder(solver="primal", rescale=True).fit(X, Y)
    batched = RidgeEncoder(solver="primal", rescale=True, n_targets_batch=3).fit(X, Y)
    np.testing.assert_array_equal(whole.best_alphas_, batched.best_alphas_)
    np.testing.assert_allclose(whole.coef_, batched.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole.predict(X), batched.predict(X), rtol=1e-4, atol=1e-5)


def test_a_model_saved_from_one_backend_loads_on_another(tmp_path):
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(30, 8)), rng.normal(size=(30, 3))
    model = RidgeEncoder(backend="torch").fit(X, Y)
    loaded = RidgeEncoder.load(model.save(tmp_path / "m"), backend="numpy")
    assert loaded.backend == "numpy"
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cuda", [False, True])
def test_a_model_fitted_on_a_gpu_loads_on_numpy_where_there_is_none(tmp_path, monkeypatch, cuda):
    import torch

    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(30, 8)), rng.normal(size=(30, 3))
    model = RidgeEncoder().fit(X, Y)
    model.backend = "torch_cuda"  # as a fit on a GPU machine saves it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    loaded = RidgeEncoder.load(model.save(tmp_path / "m"))
    assert loaded.backend == ("torch_cuda" if cuda else "numpy")
    if not cuda:
        np.testing.assert_allclose(loaded.predict(X), RidgeEncoder().fit(X, Y).predict(X), rtol=1e-6)


def test_per_target_alphas_recover_the_bayes_optimal_alphas():
    # With weights ~ N(0, 1) and noise ~ N(0, alpha), the best ridge penalty for a target is alpha itself.
    rng = np.random.default_rng(8)
    true_alphas = np.repeat([1.0, 30.0, 300.0], 12)
    X = rng.normal(size=(300, 20))
    W = rng.normal(size=(20, true_alphas.size))
    Y = X @ W + rng.normal(size=(300, true_alphas.size)) * np.sqrt(true_alphas)
    model = RidgeEncoder(alphas=np.logspace(-2, 6, 33), solver="primal").fit(X, Y)
    chosen = [np.median(np.log10(model.best_alphas_[true_alphas == a])) for a in np.unique(true_alphas)]
    # within half of the 1.5-decade spacing of the true alphas, so each is told apart from its neighbours
    np.testing.assert_allclose(chosen, np.log10(np.unique(true_alphas)), atol=0.75)
    assert chosen[0] < chosen[1] < chosen[2]


def test_out_of_fold_predictions_never_see_their_stimulus():
    from fmri_encoders.out_of_fold import out_of_fold_ridge

    rng = np.random.default_rng(9)
    groups = np.repeat(np.arange(20), 2)
    X = rng.normal(size=(40, 80))
    Y = rng.normal(size=(40, 2, 3))  # pure noise: in-sample fits it, out-of-fold cannot
    oof, full = out_of_fold_ridge(X, Y, groups, alphas=[1e-3], per_target=False)
    assert oof.shape == Y.shape
    in_sample = full.predict(X).reshape(Y.shape)
    assert np.abs(in_sample - Y).mean() < 0.1 * np.abs(Y).mean()
    assert np.abs(oof - Y).mean() > 0.5 * np.abs(Y).mean()
