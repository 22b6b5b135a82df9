"""The sd-* methods end to end on toy data: the small base model, a user's pretrained folder, reloading."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_data.methods import MethodSettings, create_method, reconstruct_over_splits
from fmri_data.methods.registry import check_stimuli
from fmri_data.simulator import figure_patterns, image_corpus
from fmri_data.splits import make_splits
from fmri_diffusion.methods.base import load_method
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser, BrainDiffuserStage1
from fmri_diffusion.methods.stable import SDLora, StableConfig
from fmri_diffusion.priors.loading import BaseModelError, load_base_model


def split(dataset):
    return dataset.subset(np.flatnonzero(~dataset.given_test)), dataset.subset(
        np.flatnonzero(dataset.given_test)
    )


@pytest.mark.parametrize("name", ["sd-direct", "sd-lora", "sd-control"])
def test_each_route_reports_posterior_mean_and_one_sample(linear_dataset, tmp_path, name):
    train, test = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, seed=3, cache_dir=tmp_path / "cache")
    rows = create_method(name, settings).fit(train).predict_named(test.fmri)
    assert set(rows) == {name, f"{name}-1"}
    for images in rows.values():
        assert images.shape == test.images.shape
        assert images.min() >= 0
        assert images.max() <= 1
    assert not np.allclose(rows[name], rows[f"{name}-1"])
    assert next((tmp_path / "cache").glob("small-base-8px-*/unet/config.json")).is_file()


def test_sd_lora_is_deterministic_with_a_seed(linear_dataset):
    train, test = split(linear_dataset)
    runs = [
        create_method("sd-lora", MethodSettings(device="cpu", quick=True, seed=5))
        .fit(train)
        .predict(test.fmri)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(*runs)


def test_a_users_pretrained_folder_and_reloading_the_fine_tune(linear_dataset, tiny_sd, tmp_path):
    """The --pretrained path: a diffusers folder at its own resolution (16 px here, 8 px stimuli)."""
    tiny_sd().save(tmp_path / "sd")
    train, test = split(linear_dataset)
    settings = MethodSettings(
        device="cpu", quick=True, pretrained=str(tmp_path / "sd"), work_dir=tmp_path / "w"
    )
    method = create_method("sd-lora", settings).fit(train)
    assert method.resolution_ == 16
    reloaded = load_method(tmp_path / "w" / "sd-lora" / "finetuned").pipeline_
    reloaded.set_progress_bar_config(disable=True)
    condition = method.ridge_.predict(test.fmri).astype(np.float32)

    def images(pipe):
        return pipe(
            torch.from_numpy(condition),
            image_size=8,
            num_inference_steps=3,
            generator=torch.Generator().manual_seed(0),
        )

    np.testing.assert_allclose(images(reloaded), images(method.pipeline_), atol=1e-6)


def test_a_fine_tune_refuses_a_base_with_another_token_width(linear_dataset, tiny_sd, tmp_path):
    train, _ = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, work_dir=tmp_path / "w")
    create_method("sd-direct", settings).fit(train)
    tiny_sd().save(tmp_path / "other")  # cross_attention_dim 16; the quick small base has 8
    with pytest.raises(BaseModelError, match="cross_attention_dim is 16"):
        load_method(tmp_path / "w" / "sd-direct" / "finetuned", base=tmp_path / "other")


@pytest.mark.parametrize("name", ["sd-direct", "sd-lora", "sd-full", "sd-control"])
def test_a_versatile_folder_is_refused_before_any_fold_trains(
    linear_dataset, published_models, tmp_path, name
):
    versatile = str(published_models / "versatile-diffusion")
    settings = MethodSettings(quick=True, progress=False, work_dir=tmp_path / "w", pretrained=versatile)
    with pytest.raises(BaseModelError, match="is a Versatile Diffusion folder, which only brain-diffuser"):
        reconstruct_over_splits(
            linear_dataset,
            make_splits(linear_dataset, "given"),
            ["ridge", name],
            settings=settings,
            progress=False,
        )
    assert not (tmp_path / "w").exists()  # no work folder stamped, so no method started


@pytest.mark.parametrize(
    ("sampling", "choices", "fix"),
    [
        ({"num_inference_steps": 1001}, {}, "use --steps 1000 or fewer"),
        (
            {},
            {"num_inference_steps": (10, 1001)},
            "drop the values above 1000 from --choose num_inference_steps",
        ),
    ],
)
def test_more_sampling_steps_than_the_scheduler_takes_are_refused_before_any_fold_trains(
    linear_dataset, tmp_path, sampling, choices, fix
):
    settings = MethodSettings(quick=True, work_dir=tmp_path, sampling=sampling, choices=choices)
    with pytest.raises(
        DataError, match=f"ddpm: 1001 sampling steps, but its scheduler takes at most 1000; {fix}"
    ):
        check_stimuli(["ddpm"], settings, linear_dataset)
    assert list(tmp_path.iterdir()) == []
    check_stimuli(
        ["ddpm"], replace(settings, sampling={"num_inference_steps": 1000}, choices={}), linear_dataset
    )
    stage1 = replace(settings, sampling={"num_inference_steps": 1500}, choices={})
    check_stimuli(["brain-diffuser-stage1"], stage1, linear_dataset)  # stage 1 never samples


@pytest.mark.parametrize(
    ("schedule", "limit"),
    [
        ({"num_train_timesteps": 50}, 50),
        (
            {"steps_offset": 1, "timestep_spacing": "leading"},
            999,
        ),  # Stable Diffusion 1.x's: 1..1000 would overrun
        ({"steps_offset": 1, "timestep_spacing": "trailing"}, 1000),
    ],
)
@pytest.mark.parametrize("method", ["sd-lora", "brain-diffuser"])
def test_a_user_s_model_bounds_the_sampling_steps_by_its_own_schedule(
    linear_dataset, variation_model, tmp_path, schedule, limit, method
):
    config = variation_model / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | schedule))

    def check(steps):
        settings = MethodSettings(
            quick=True,
            work_dir=tmp_path / "w",
            pretrained=str(variation_model),
            sampling={"num_inference_steps": steps},
        )
        check_stimuli([method], settings, linear_dataset)

    check(limit)
    with pytest.raises(
        DataError, match=f"{method}: {limit + 1} sampling steps, but its scheduler takes at most {limit}"
    ):
        check(limit + 1)
    assert not (tmp_path / "w").exists()


def test_the_pretraining_corpus_never_holds_a_test_figure():
    rng = np.random.default_rng(0)
    corpus = image_corpus(300, 10, rng)
    assert corpus.shape == (300, 10, 10)
    assert corpus.min() >= 0
    assert corpus.max() <= 1
    figures = {f.astype(bool).tobytes() for f in figure_patterns(10).values()}
    assert not figures & {(image > 0.5).tobytes() for image in corpus}
    np.testing.assert_array_equal(corpus, image_corpus(300, 10, np.random.default_rng(0)))


def test_sd_lora_resumes_from_its_checkpoints(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    quick = StableConfig().quick()
    config = replace(
        quick,
        finetune=replace(
            quick.finetune, training=replace(quick.finetune.training, max_steps=6, checkpoint_every=3)
        ),
    )
    settings = MethodSettings(device="cpu", seed=2, work_dir=tmp_path, cache_dir=tmp_path / "cache")
    first = SDLora(settings, config).fit(train)
    assert sorted(p.name for p in (tmp_path / "sd-lora" / "checkpoints").iterdir()) == [
        "step-000003",
        "step-000006",
    ]
    resumed = SDLora(replace(settings, resume=True), config).fit(train)
    assert resumed.training_.last_checkpoint.name == "step-000006"
    assert resumed.training_.losses == first.training_.losses
    np.testing.assert_allclose(resumed.predict(test.fmri), first.predict(test.fmri), atol=1e-6)


def test_brain_diffuser_stages_report_their_rows(linear_dataset, tmp_path):
    train, test = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, seed=1, cache_dir=tmp_path / "cache")
    stage1 = create_method("brain-diffuser-stage1", settings).fit(train)
    coarse = stage1.predict(test.fmri)
    assert coarse.shape == test.images.shape
    np.testing.assert_array_equal(coarse, stage1.predict(test.fmri))  # deterministic
    rows = create_method("brain-diffuser", settings).fit(train).predict_named(test.fmri)
    assert set(rows) == {"brain-diffuser", "brain-diffuser-1"}
    assert all(r.shape == test.images.shape and r.min() >= 0 and r.max() <= 1 for r in rows.values())


@pytest.mark.parametrize("adapter", ["full", "lora", "none"])
def test_brain_diffuser_stages_are_saved_and_reload_to_the_same_images(linear_dataset, tmp_path, adapter):
    train, test = split(linear_dataset)
    settings = MethodSettings(
        device="cpu",
        quick=True,
        seed=4,
        work_dir=tmp_path / "w",
        cache_dir=tmp_path / "cache",
        sampling={"prior_adapter": adapter, "strength": 0.5},
    )
    fitted = BrainDiffuser(settings).fit(train)
    stages = tmp_path / "w" / "brain-diffuser" / "stages"
    assert {p.name for p in stages.iterdir()} == {"method.json", "latent_ridge", "token_ridge"} | (
        {"full": {"prior_unet"}, "lora": {"prior_lora"}, "none": set()}[adapter]
    )
    reloaded = BrainDiffuser.load(stages, replace(settings, sampling={}))
    assert reloaded.config.strength == 0.5  # the run's sampling settings, not the defaults
    reloaded.config = replace(reloaded.config, sample_batch_size=3)  # batching changes nothing
    for name, images in fitted.predict_named(test.fmri).items():
        np.testing.assert_allclose(reloaded.predict_named(test.fmri)[name], images, atol=1e-5)
    if adapter != "none":  # the adapted prior is not the base's UNet
        base = BrainDiffuser.load(stages, settings)
        base.base_ = load_base_model(base.base_.source)
        base._build_pipeline(base.base_.unet)
        assert np.abs(base.predict(test.fmri) - fitted.predict(test.fmri)).max() > 0
    with pytest.raises(BaseModelError, match="brain-diffuser stages"):
        BrainDiffuserStage1.load(stages, settings)


def test_sampling_overrides_reach_the_configs_that_have_them():
    settings = MethodSettings(sampling={"strength": 0.5, "guidance_scale": 3.0, "prior_adapter": "none"})
    assert BrainDiffuser(settings).config.strength == 0.5
    assert BrainDiffuser(settings).config.prior_adapter == "none"
    assert SDLora(settings).config.guidance_scale == 3.0  # StableConfig has no prior_adapter: ignored
    quick = MethodSettings(quick=True, sampling={"num_inference_steps": 7, "n_samples": 3})
    assert BrainDiffuser(quick).config.num_inference_steps == 7  # --steps holds under --quick too
    assert create_method("ddpm", quick).config.n_samples == 3


def test_brain_diffuser_stage2_needs_an_image_embedder(linear_dataset, tiny_sd, tmp_path):
    tiny_sd().save(tmp_path / "sd")  # a Stable-Diffusion-layout folder: no conditioner/
    train, _ = split(linear_dataset)
    settings = MethodSettings(device="cpu", quick=True, pretrained=str(tmp_path / "sd"))
    assert create_method("brain-diffuser-stage1", settings).fit(train).predict(train.fmri[:2]).shape == (
        2,
        8,
        8,
    )
    with pytest.raises(BaseModelError, match="image embedder"):
        create_method("brain-diffuser", settings).fit(train)


def test_pipeline_takes_tokens_or_a_condition_but_not_both(linear_dataset):
    train, _test = split(linear_dataset)
    method = create_method("brain-diffuser-stage1", MethodSettings(device="cpu", quick=True)).fit(train)
    with pytest.raises(ValueError, match="either condition"):
        method.pipeline_(image_size=8, num_inference_steps=2)
