"""The encoding model: which voxels it keeps, its noise variances, its likelihood and its round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmri_data.corpora.builtin import render_bilinear
from fmri_data.errors import DataError
from fmri_data.readout import patch_values
from fmri_encoders.encoding import EncodingModel
from fmri_encoders.prf import ReceptiveFields, gaussian_windows


def _encoded(n=100, size=6, voxels=40, informative=10, seed=0):
    """fMRI whose first `informative` voxels are linear in the pixels plus noise; the rest are noise."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size)).astype(np.float32)
    weights = rng.normal(size=(size * size, informative))
    fmri = rng.normal(size=(n, voxels)).astype(np.float32)
    fmri[:, :informative] += 8 * (images.reshape(n, -1) - 0.5) @ weights / size
    return images, fmri, np.arange(n)


def test_the_best_predicted_voxels_are_kept():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=10).fit(images, fmri, groups)
    assert model.voxels_.tolist() == list(range(10))
    assert (model.accuracy_ > 0.5).all()
    assert model.predict(images).shape == (100, 10)
    assert model.measured(fmri).tolist() == fmri[:, :10].tolist()


def test_noise_variance_is_the_held_out_residual_variance():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=40).fit(images, fmri, groups)
    pure_noise = np.setdiff1d(model.voxels_, np.arange(10))
    # voxels with no signal: the residual is the unit-variance noise itself
    index = np.searchsorted(model.voxels_, pure_noise)
    assert model.noise_variance_[index].mean() == pytest.approx(1.0, abs=0.25)


def test_likelihood_is_the_gaussian_negative_log_likelihood():
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=5).fit(images, fmri, groups)
    measured = model.measured(fmri[:3])
    expected = 0.5 * (((measured - model.predict(images[:3])) ** 2) / model.noise_variance_).sum(axis=1)
    got = model.likelihood()(torch.from_numpy(images[:3]), torch.from_numpy(measured))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_the_likelihood_gradient_matches_a_finite_difference():
    images, fmri, groups = _encoded(size=4)
    likelihood = EncodingModel(n_voxels=8).fit(images, fmri, groups).likelihood().double()
    image = torch.from_numpy(images[:1]).double().requires_grad_(True)
    measured = torch.from_numpy(fmri[:1, :8]).double()
    (gradient,) = torch.autograd.grad(likelihood(image, measured).sum(), image)
    step = 1e-6
    for pixel in [(0, 0, 0), (0, 1, 2), (0, 3, 3)]:
        bumped = [image.detach().clone() for _ in range(2)]
        bumped[0][pixel] += step
        bumped[1][pixel] -= step
        numeric = (likelihood(bumped[0], measured) - likelihood(bumped[1], measured)).item() / (2 * step)
        assert gradient[pixel].item() == pytest.approx(numeric, rel=1e-5)


def test_save_and_load_round_trip(tmp_path):
    images, fmri, groups = _encoded()
    model = EncodingModel(n_voxels=7).fit(images, fmri, groups)
    model.save(tmp_path / "encoding")
    loaded = EncodingModel.load(tmp_path / "encoding")
    np.testing.assert_array_equal(loaded.predict(images), model.predict(images))
    np.testing.assert_array_equal(loaded.voxels_, model.voxels_)
    assert loaded.describe() == model.describe()


def test_bad_inputs_are_refused():
    images, fmri, groups = _encoded()
    with pytest.raises(DataError, match="n_voxels"):
        EncodingModel(n_voxels=0)
    with pytest.raises(DataError, match="images but"):
        EncodingModel().fit(images[:5], fmri, groups)
    model = EncodingModel(n_voxels=3).fit(images, fmri, groups)
    with pytest.raises(DataError, match="pixels"):
        model.predict(np.zeros((2, 5, 5), np.float32))


def _patch_voxels(patterns: np.ndarray, seed: int = 0) -> np.ndarray:
    """30 voxels, each a Gaussian window over a 5 x 5 patch grid times a gain, plus a little noise."""
    rng = np.random.default_rng(seed)
    windows = gaussian_windows(5)[rng.integers(0, len(gaussian_windows(5)), size=30)]
    drive = patterns.reshape(len(patterns), -1) @ windows.T
    return (3 * drive + rng.normal(0, 0.05, drive.shape)).astype(np.float32)


def test_on_a_patch_design_receptive_fields_predict_patterns_unlike_the_training_ones():
    rng = np.random.default_rng(1)
    distinct = (rng.random((8, 5, 5)) < 0.4).astype(np.float32)  # few distinct training images, repeated
    groups = np.repeat(np.arange(8), 4)
    images = render_bilinear(distinct[groups], 20).astype(np.float32)
    fmri = _patch_voxels(distinct[groups])
    unseen = (rng.random((20, 5, 5)) < 0.4).astype(np.float32)
    truth = _patch_voxels(unseen, seed=0)

    def accuracy(kind: str) -> float:
        model = EncodingModel(n_voxels=30, kind=kind).fit(images, fmri, groups)
        predicted = model.predict(render_bilinear(unseen, 20))
        return float(
            np.mean([np.corrcoef(predicted[:, v], truth[:, model.voxels_[v]])[0, 1] for v in range(30)])
        )

    auto = EncodingModel(n_voxels=30).fit(images, fmri, groups)
    assert auto.kind_ == "prf on a 5x5 patch grid"
    assert "prf on a 5x5 patch grid -> 30 voxels" in auto.describe()
    prf, ridge = accuracy("prf"), accuracy("ridge")
    assert prf > 0.95
    assert prf > ridge + 0.1  # ridge's weights lie in the span of the 8 training images


def test_receptive_fields_need_a_patch_design_and_round_trip(tmp_path):
    images, fmri, groups = _encoded()
    with pytest.raises(DataError, match="binary-patch stimuli"):
        EncodingModel(kind="prf").fit(images, fmri, groups)
    with pytest.raises(DataError, match="unknown encoding model"):
        EncodingModel(kind="cnn")
    assert EncodingModel(n_voxels=5).fit(images, fmri, groups).kind_ == "ridge"  # auto, no patches
    patterns = (np.random.default_rng(2).random((24, 5, 5)) < 0.4).astype(np.float32)
    model = EncodingModel(n_voxels=6, kind="prf").fit(
        render_bilinear(patterns, 20).astype(np.float32), _patch_voxels(patterns), np.arange(24)
    )
    model.save(tmp_path / "encoding")
    loaded = EncodingModel.load(tmp_path / "encoding")
    assert loaded.kind_ == model.kind_
    np.testing.assert_array_equal(
        loaded.predict(render_bilinear(patterns, 20)), model.predict(render_bilinear(patterns, 20))
    )


def test_the_pixel_weights_are_the_receptive_fields_seen_through_the_patch_values(tmp_path):
    patterns = (np.random.default_rng(3).random((24, 5, 5)) < 0.4).astype(np.float32)
    images, fmri = render_bilinear(patterns, 20).astype(np.float32), _patch_voxels(patterns)
    model = EncodingModel(n_voxels=12, kind="prf").fit(images, fmri, np.arange(24))
    fields = ReceptiveFields.fit(patch_values(images, 5), fmri)
    any_images = np.random.default_rng(4).random((6, 20, 20)).astype(np.float32)  # not renderings
    expected = fields.predict(patch_values(any_images, 5))[:, model.voxels_]
    np.testing.assert_allclose(model.predict(any_images), expected, rtol=1e-4, atol=1e-4)


def test_auto_falls_back_to_ridge_on_non_square_images_and_old_folders_load_as_ridge(tmp_path):
    rng = np.random.default_rng(5)
    wide, fmri = rng.random((30, 4, 6)).astype(np.float32), rng.normal(size=(30, 5)).astype(np.float32)
    assert EncodingModel(n_voxels=5).fit(wide, fmri, np.arange(30)).kind_ == "ridge"
    images, fmri, groups = _encoded()
    EncodingModel(n_voxels=4).fit(images, fmri, groups).save(tmp_path / "encoding")
    settings_file = tmp_path / "encoding" / "encoding.json"
    settings = json.loads(settings_file.read_text())
    settings.pop("kind"), settings.pop("fitted_kind")  # as saved before pRFs existed
    settings_file.write_text(json.dumps(settings))
    loaded = EncodingModel.load(tmp_path / "encoding")
    assert (loaded.kind, loaded.kind_) == ("ridge", "ridge")
