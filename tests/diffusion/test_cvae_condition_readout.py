"""The cvae conditioned on ridge's image read out as the design's binary patches (condition_readout)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method
from fmri_data.readout import PatchReadout
from fmri_diffusion.methods import cvae as cvae_module
from fmri_diffusion.methods.base import MANIFEST_FILE, load_method
from fmri_diffusion.methods.cvae import ConditionalVAE, ConditionalVAEConfig
from fmri_encoders.out_of_fold import out_of_fold_ridge

BOTH = ("pixels", "patches")


@pytest.fixture(name="settings")
def settings_fixture(quick_settings):
    """quick_settings with condition_readout patches unless the sampling overrides say otherwise."""
    return lambda choices=None, **sampling: quick_settings(
        {"condition_readout": "patches", **sampling}, choices
    )


def test_the_cvae_trains_and_samples_on_ridges_read_out_images(monkeypatch, settings, patch_data):
    train, test = patch_data()
    seen = {}

    def out_of_fold(*args, **kwargs):
        seen["held_out"], ridge = out_of_fold_ridge(*args, **kwargs)
        return seen["held_out"], ridge

    def fit_network(self, data, augment, description):
        seen["trained_on"] = data["c"].numpy()[:, 0]
        return network(self, data, augment, description)

    network = ConditionalVAE._fit_network
    monkeypatch.setattr(cvae_module, "out_of_fold_ridge", out_of_fold)
    monkeypatch.setattr(ConditionalVAE, "_fit_network", fit_network)
    method = create_method("cvae", settings()).fit(train)

    # fitted on ridge's out-of-fold images of the training trials (noisy as at test time), read out alike
    held_out = np.clip(seen["held_out"], 0, 1)
    readout = PatchReadout.fit(train.images, held_out, train.images)
    assert method.condition_readout_ == readout
    np.testing.assert_allclose(seen["trained_on"], readout(held_out), atol=1e-6)
    decoded = method.ridge_.predict(test.fmri).reshape(test.images.shape)
    conditions = method.sampling_inputs(test.fmri)["conditions"].numpy()[:, 0]
    np.testing.assert_allclose(conditions, readout(np.clip(decoded, 0, 1)), atol=1e-6)
    assert not np.allclose(conditions, decoded, atol=0.05)
    assert method.records()["condition_readout"] == readout.to_dict()


def test_pixels_condition_on_ridges_images_as_decoded_and_a_fit_saved_before_the_option_loads_so(
    tmp_path, settings, patch_data
):
    train, test = patch_data(seed=1)
    method = create_method("cvae", settings(condition_readout="pixels")).fit(train)
    assert method.condition_readout_ is None
    assert "condition_readout" not in method.records()
    decoded = method.ridge_.predict(test.fmri).reshape(test.images.shape)
    np.testing.assert_array_equal(method.sampling_inputs(test.fmri)["conditions"].numpy()[:, 0], decoded)
    folder = tmp_path / "w" / "cvae" / "model"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    del manifest["condition_readout"]  # as fmri-diffusion 0.25 wrote it
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    older = load_method(
        folder, MethodSettings(device="cpu", seed=2, progress=False, sampling={"n_samples": 2})
    )
    assert older.config.condition_readout == "pixels"
    assert older.condition_readout_ is None


def test_the_fit_reloads_with_its_readout_and_samples_the_same_images(tmp_path, settings, patch_data):
    train, test = patch_data(seed=2)
    fitted = create_method("cvae", settings()).fit(train)
    reloaded = load_method(
        tmp_path / "w" / "cvae" / "model", MethodSettings(device="cpu", seed=2, progress=False)
    )
    assert reloaded.config.condition_readout == "patches"
    assert reloaded.condition_readout_ == fitted.condition_readout_
    rows = reloaded.predict_named(test.fmri)
    for name, images in fitted.predict_named(test.fmri).items():
        np.testing.assert_allclose(rows[name], images, atol=1e-5)


def test_validation_fits_one_probe_per_condition(tmp_path, settings, patch_data):
    train, _ = patch_data(seed=3)
    method = create_method("cvae", settings(choices={"condition_readout": BOTH})).fit(train)
    assert {point["condition_readout"] for point in method.validation_["grid"]} == set(BOTH)
    probes = {path.name for path in (tmp_path / "w" / "cvae" / "validation").iterdir()}
    assert {"condition_readout-pixels", "condition_readout-patches"} <= probes
    chosen = method.validation_["chosen"]["condition_readout"]
    assert (method.condition_readout_ is not None) == (chosen == "patches")
    assert (tmp_path / "w" / "cvae" / "final" / f"condition_readout-{chosen}").is_dir()  # its own final fit


@pytest.mark.parametrize(
    ("offered", "instead"),
    [("given", "use --condition-readout pixels"), ("choice", "drop patches from --choose condition_readout")],
)
def test_images_without_a_patch_design_are_refused_before_any_training(
    tmp_path, offered, instead, settings, patch_data
):
    train, _ = patch_data()
    grey = np.random.default_rng(3).uniform(0.2, 0.8, train.images.shape).astype(np.float32)
    run_settings = settings(likelihood_weight=0.1, corpus_finetune=0.5)  # a prior would train first
    if offered == "choice":
        run_settings = replace(run_settings, sampling={}, choices={"condition_readout": BOTH})
    with pytest.raises(
        DataError, match=r"cvae: condition_readout patches needs K x K binary-patch stimuli"
    ) as error:
        create_method("cvae", run_settings).fit(replace(train, images=grey))
    assert str(error.value).endswith(instead)
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "w").exists()


def test_a_grid_offering_only_pixels_overrides_a_patches_setting_and_is_not_refused(settings, patch_data):
    train, _ = patch_data()
    grey = np.random.default_rng(3).uniform(0.2, 0.8, train.images.shape).astype(np.float32)
    method = create_method("cvae", settings(choices={"condition_readout": ("pixels",)}))
    method.fit(replace(train, images=grey))
    assert method.condition_readout_ is None


def test_an_unknown_condition_readout_is_refused_in_one_line():
    with pytest.raises(DataError, match="condition_readout takes pixels, patches, got 'sharp'"):
        ConditionalVAEConfig(condition_readout="sharp")
