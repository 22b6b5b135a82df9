"""The sd-* routes' img2img started from inverse-retinotopy's reconstruction (StableConfig.start)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.stable import StableConfig
from fmri_diffusion.methods.validation import validation_split

BOTH = ("ridge-latents", "inverse-retinotopy")


@pytest.fixture(name="settings")
def settings_fixture(quick_settings):
    """quick_settings with start inverse-retinotopy unless the sampling overrides say otherwise."""
    return lambda choices=None, **sampling: quick_settings(
        {"start": "inverse-retinotopy", **sampling}, choices
    )


def test_img2img_starts_from_and_adds_to_inverse_retinotopys_reconstruction(settings, patch_data):
    train, test = patch_data()
    method = create_method("sd-lora", settings(decode="residual")).fit(train)
    inputs = method.sampling_inputs(test.fmri)
    start = method.first_stage_.predict(test.fmri)
    np.testing.assert_array_equal(inputs["init_image"].numpy(), start)
    np.testing.assert_array_equal(inputs["residual_image"].numpy(), start)
    assert "init_latents" not in inputs
    assert not method.uses_pixel_ridge()  # nothing reads a pixel ridge, so none is fitted
    first_stage = method.records()["members"]["inverse-retinotopy"]["validation"]
    assert first_stage["validation_stimuli"] == train.n_stimuli  # fitted on the training trials alone


def test_sd_control_keeps_ridge_as_its_control_image(settings, patch_data):
    train, test = patch_data(seed=4)
    method = create_method("sd-control", settings()).fit(train)
    inputs = method.sampling_inputs(test.fmri)
    ridge = np.clip(method.pixel_ridge_.predict(test.fmri), 0, 1).reshape(test.images.shape)
    np.testing.assert_allclose(inputs["control_image"].numpy(), ridge)
    np.testing.assert_array_equal(inputs["init_image"].numpy(), method.first_stage_.predict(test.fmri))


def test_the_fine_tune_reloads_with_its_first_stage_and_samples_the_same_images(
    tmp_path, settings, patch_data
):
    train, test = patch_data(seed=1)
    fitted = create_method("sd-lora", settings()).fit(train)
    folder = tmp_path / "w" / "sd-lora" / "finetuned"
    assert (folder / "inverse-retinotopy" / "decoder").is_dir()
    # without the smoke-test budget, so the first stage's chain must be the one saved, not the default's
    reloaded = load_method(folder, MethodSettings(device="cpu", seed=2, progress=False))
    assert reloaded.config.start == "inverse-retinotopy"
    np.testing.assert_array_equal(
        reloaded.first_stage_.predict(test.fmri), fitted.first_stage_.predict(test.fmri)
    )
    rows = reloaded.predict_named(test.fmri)
    for name, images in fitted.predict_named(test.fmri).items():
        np.testing.assert_allclose(rows[name], images, atol=1e-5)


def test_validation_fits_the_first_stage_in_its_own_probe_on_the_inner_stimuli(
    tmp_path, settings, patch_data
):
    train, _ = patch_data(seed=5)
    method = create_method("sd-lora", settings(choices={"start": BOTH})).fit(train)
    record = method.validation_
    assert {point["start"] for point in record["grid"]} == set(BOTH)
    saved = list((tmp_path / "w" / "sd-lora" / "validation").rglob("inverse_retinotopy.json"))
    assert [path.relative_to(tmp_path / "w" / "sd-lora" / "validation").parts[0] for path in saved] == [
        "start-inverse-retinotopy"
    ]
    inner, _ = validation_split(train, seed=2)
    probe = load_method(saved[0].parent.parent, MethodSettings(device="cpu", seed=2, progress=False))
    assert probe.records()["members"]["inverse-retinotopy"]["validation"]["validation_stimuli"] == (
        inner.n_stimuli
    )
    chose_it = record["chosen"]["start"] == "inverse-retinotopy"
    assert ("members" in method.records()) == chose_it


@pytest.mark.parametrize(
    ("offered", "instead"),
    [
        ("start", "use --start ridge-latents or ridge-pixels"),
        ("choice", "drop inverse-retinotopy from --choose start"),
    ],
)
def test_images_without_a_patch_design_are_refused_before_any_training(
    tmp_path, offered, instead, settings, patch_data
):
    train, _ = patch_data()
    grey = np.random.default_rng(3).uniform(0.2, 0.8, train.images.shape).astype(np.float32)
    run_settings = settings(likelihood_weight=0.5)  # the encoding model would be fitted first
    if offered == "choice":
        run_settings = replace(run_settings, sampling={}, choices={"start": BOTH})
    with pytest.raises(
        DataError, match=r"sd-lora: start inverse-retinotopy needs K x K binary-patch"
    ) as error:
        create_method("sd-lora", run_settings).fit(replace(train, images=grey))
    assert str(error.value).endswith(instead)
    assert not (tmp_path / "cache").exists()  # the base model was never pre-trained
    assert not (tmp_path / "w").exists()  # nor any probe


def test_an_unknown_start_or_decoding_is_refused_in_one_line():
    with pytest.raises(DataError, match="unknown start 'noise'"):
        StableConfig(start="noise")
    with pytest.raises(DataError, match="decode one of vae, residual"):
        StableConfig(decode="sharp")
