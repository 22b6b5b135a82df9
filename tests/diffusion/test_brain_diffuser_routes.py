"""Brain-Diffuser's stage models: the published settings by default, and each route refuses, in one line and
before training, what it cannot use."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings
from fmri_data.methods.registry import check_stimuli
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser, BrainDiffuserConfig, BrainDiffuserStage1
from fmri_diffusion.methods.brain_diffuser.parts import DEFAULT_MIXING


def _fit(method_class, linear_dataset, tmp_path, pretrained=None, **config):
    settings = MethodSettings(quick=True, progress=False, work_dir=tmp_path, pretrained=pretrained)
    method_class(settings, BrainDiffuserConfig(**config)).fit(linear_dataset)


def test_vdvae_without_its_weights_says_where_to_put_them(linear_dataset, tmp_path):
    with pytest.raises(DataError, match="--vdvae FILE_OR_FOLDER"):
        _fit(BrainDiffuserStage1, linear_dataset, tmp_path, stage1="vdvae")
    assert not (tmp_path / "brain-diffuser-stage1").exists()


@pytest.mark.parametrize(
    ("stage2", "pretrained", "message"),
    [
        ("versatile", None, "needs a --pretrained model folder"),
        ("image-variation", None, "needs a --pretrained model folder"),
        ("small", "MODEL", "needs no --pretrained model"),
        ("versatile", "MODEL", "is not a Versatile Diffusion folder"),
    ],
)
def test_a_stage2_route_without_its_model_is_refused(linear_dataset, tmp_path, stage2, pretrained, message):
    model = None if pretrained is None else str(tmp_path)
    with pytest.raises(DataError, match=message):
        _fit(BrainDiffuser, linear_dataset, tmp_path, model, stage2=stage2)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("brain-diffuser-stage1", {"stage1": "vdvae"}, "--vdvae FILE_OR_FOLDER"),
        ("brain-diffuser", {"stage2": "versatile"}, "needs a --pretrained model folder"),
        ("brain-diffuser", {"prior_adapter": "lora", "stage2": "versatile"}, "use --prior-adapter none"),
    ],
)
def test_route_mistakes_are_refused_before_any_fold_trains(
    linear_dataset, tmp_path, published_models, method, options, message
):
    versatile = str(published_models / "versatile-diffusion") if "prior_adapter" in options else None
    settings = MethodSettings(
        quick=True, progress=False, work_dir=tmp_path, pretrained=versatile, sampling=options
    )
    with pytest.raises(DataError, match=message):
        check_stimuli([method], settings, linear_dataset)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("captioned", "pretrained", "sampling", "choices"),
    [
        (False, None, {"mixing": 0.5}, {}),
        (False, None, {}, {"mixing": (0.0, 0.5)}),
        (False, "versatile-diffusion", {"mixing": 0.5}, {}),
        (True, None, {"mixing": 0.5}, {}),  # captions, but the small base has no text encoder
    ],
)
def test_a_caption_guide_without_captions_or_a_text_encoder_is_refused_before_any_fold_trains(
    linear_dataset, tmp_path, published_models, captioned, pretrained, sampling, choices
):
    stimuli = _captioned(linear_dataset) if captioned else linear_dataset
    settings = MethodSettings(
        quick=True,
        progress=False,
        work_dir=tmp_path,
        pretrained=None if pretrained is None else str(published_models / pretrained),
        sampling={**sampling, "prior_adapter": "none"},
        choices=choices,
    )
    with pytest.raises(DataError, match="needs captions in the data"):
        check_stimuli(["brain-diffuser"], settings, stimuli)
    assert list(tmp_path.iterdir()) == []


def test_a_grid_s_values_replace_the_configured_mixing_in_the_check(linear_dataset, tmp_path):
    def settings(choices):
        return MethodSettings(quick=True, work_dir=tmp_path, sampling={"mixing": 0.4}, choices=choices)

    check_stimuli(["brain-diffuser"], settings({"mixing": (0.0,)}), linear_dataset)
    check_stimuli(["brain-diffuser"], settings({"mixing": (None, 0.0)}), linear_dataset)  # None: auto
    with pytest.raises(DataError, match="drop the values above 0 from --choose mixing"):
        check_stimuli(["brain-diffuser"], settings({"mixing": (0.0, 0.5)}), linear_dataset)


@pytest.mark.parametrize("model", ["variation_model", "variation_model_without_text"])
def test_the_image_variation_route_needs_a_text_side_for_captions(linear_dataset, tmp_path, request, model):
    folder = str(request.getfixturevalue(model))
    settings = MethodSettings(
        quick=True, work_dir=tmp_path / "w", pretrained=folder, sampling={"mixing": 0.5}
    )
    if model == "variation_model":
        check_stimuli(["brain-diffuser"], settings, _captioned(linear_dataset))
        return
    with pytest.raises(DataError, match="a base model with text_encoder/ and tokenizer/; use --mixing 0"):
        check_stimuli(["brain-diffuser"], settings, _captioned(linear_dataset))
    assert not (tmp_path / "w").exists()


def test_an_image_variation_model_without_a_fitting_image_embedder_is_refused_before_any_fold_trains(
    linear_dataset, tmp_path, tiny_sd, variation_model
):
    def check(folder):
        settings = MethodSettings(quick=True, work_dir=tmp_path / "w", pretrained=str(folder))
        check_stimuli(["brain-diffuser"], settings, linear_dataset)

    check(variation_model)
    tiny_sd().save(tmp_path / "plain-sd")  # unet/, vae/, scheduler/ and nothing to embed images with
    with pytest.raises(DataError, match="brain-diffuser stage 2 needs an image embedder"):
        check(tmp_path / "plain-sd")
    config = variation_model / "image_encoder" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"projection_dim": 99}))
    with pytest.raises(DataError, match="CLIP embeddings of width 99 cannot guide a UNet"):
        check(variation_model)
    config.write_text(
        json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "projection_dim"})
    )
    with pytest.raises(DataError, match="width 512 cannot guide"):  # transformers' default projection_dim
        check(variation_model)
    (variation_model / "unet" / "config.json").unlink()
    with pytest.raises(DataError, match=r"no unet/config\.json; pass a complete diffusers model folder"):
        check(variation_model)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("method", ["brain-diffuser", "brain-diffuser-stage1"])
def test_a_partial_versatile_folder_is_refused_before_any_fold_trains(
    linear_dataset, tmp_path, published_models, method
):
    partial = tmp_path / "versatile-diffusion"
    shutil.copytree(published_models / "versatile-diffusion", partial)
    shutil.rmtree(partial / "text_unet")
    settings = MethodSettings(
        quick=True, work_dir=tmp_path / "w", pretrained=str(partial), sampling={"prior_adapter": "none"}
    )
    with pytest.raises(DataError, match="no text_unet/; pass a local Versatile Diffusion folder"):
        check_stimuli([method], settings, linear_dataset)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("sampling", "choices", "fix"),
    [
        ({"vdvae_layers": 999}, {}, r"use --vdvae-layers \d+ or fewer"),
        ({}, {"vdvae_layers": (1, 999)}, r"drop the values above \d+ from --choose vdvae_layers"),
    ],
)
def test_more_vdvae_layers_than_the_vdvae_has_are_refused_before_any_fold_trains(
    linear_dataset, tmp_path, published_models, sampling, choices, fix
):
    def settings(sampling, choices):
        versatile = str(published_models / "versatile-diffusion")  # holds the tiny VDVAE as vdvae/
        return MethodSettings(
            quick=True,
            work_dir=tmp_path,
            pretrained=versatile,
            sampling={"stage1": "vdvae", **sampling},
            choices=choices,
        )

    check_stimuli(["brain-diffuser-stage1"], settings({"vdvae_layers": 1}, {}), linear_dataset)
    with pytest.raises(
        DataError,
        match=r"brain-diffuser-stage1: vdvae_layers 999, but the VDVAE at .* has \d+ latent layers; " + fix,
    ):
        check_stimuli(["brain-diffuser-stage1"], settings(sampling, choices), linear_dataset)
    assert list(tmp_path.iterdir()) == []


def test_captions_pass_the_check_where_the_route_has_a_text_encoder(
    linear_dataset, tmp_path, published_models
):
    versatile = str(published_models / "versatile-diffusion")
    sampling = {"mixing": 0.5, "prior_adapter": "none"}
    settings = MethodSettings(
        quick=True, progress=False, work_dir=tmp_path, pretrained=versatile, sampling=sampling
    )
    check_stimuli(["brain-diffuser"], settings, _captioned(linear_dataset))


def _captioned(dataset):
    return replace(dataset, captions=np.array([f"image {i}" for i in dataset.stimulus_id]))


def test_versatile_samples_from_the_published_prior_unadapted(linear_dataset, tmp_path, published_models):
    with pytest.raises(DataError, match="use --prior-adapter none"):
        _fit(
            BrainDiffuser,
            linear_dataset,
            tmp_path,
            str(published_models / "versatile-diffusion"),
            prior_adapter="full",
        )


@pytest.mark.parametrize(
    ("route", "options"),
    [
        ("versatile", {"guidance_scale": 7.5}),  # it mixes the caption guide inside its dual-guided UNet
        ("image-variation", {"guidance_scale": 1.0, "mixing": 0.25}),
        ("small", {"guidance_scale": 1.0, "mixing": 0.25}),
    ],
)
def test_stage2_defaults_to_the_published_settings(route, options):
    config = BrainDiffuserConfig()
    assert (config.strength, config.num_inference_steps, config.sampler) == (0.75, 50, "ddim")
    assert (config.guidance_scale, config.mixing, DEFAULT_MIXING) == (None, None, 0.4)  # None: the route's
    method = BrainDiffuser(MethodSettings())
    method.route_ = route
    method._text_weight = lambda: 0.25  # the caption guide's weight as fitted (test_brain_diffuser_guidance)
    assert method.sampling_options() == options
    method.config = replace(config, guidance_scale=3.0)
    assert method.sampling_options()["guidance_scale"] == 3.0  # every one an option
