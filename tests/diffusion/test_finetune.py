"""LoRA placement and round trips, the shared training step and fine-tune resume, on tiny SD-shaped models."""

from __future__ import annotations

import socket

import huggingface_hub.constants
import pytest
import torch
from accelerate.tracking import GeneralTracker
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel
from torch._dynamo.testing import CompileCounter

from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.pipelines.pixels import from_pixels, to_pixels
from fmri_diffusion.priors.loading import BaseModel, BaseModelError, load_base_model
from fmri_diffusion.schedulers import sampling_scheduler
from fmri_diffusion.training.denoising import (
    ConditionedUNet,
    DenoisingStep,
    FinetuneConfig,
    finetune,
    prepare_unet,
)
from fmri_diffusion.training.lora import add_lora, count_trainable, lora_target_modules, save_lora
from fmri_diffusion.training.objectives import ObjectiveConfig
from fmri_encoders.training import BatchNoise, TrainingConfig

N_IN, RANK, TOKEN_DIM = 6, 2, 16


def attention_projections(unet: UNet2DConditionModel, attention: str) -> int:
    """How many q/k/v/out projections the UNet has in attention layers named `attention`."""
    suffixes = tuple(f"{attention}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0"))
    return sum(isinstance(m, torch.nn.Linear) and n.endswith(suffixes) for n, m in unet.named_modules())


@pytest.mark.parametrize(
    ("targets", "attentions"), [("cross", {"attn2"}), ("self", {"attn1"}), ("all", {"attn1", "attn2"})]
)
def test_lora_trains_only_the_chosen_attention_projections(tiny_sd, targets, attentions):
    unet = add_lora(tiny_sd().unet, rank=RANK, targets=targets)
    trainable = [name for name, p in unet.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in name for name in trainable)
    assert {part for name in trainable for part in name.split(".") if part.startswith("attn")} == attentions
    # each adapted Linear(i, o) adds A: rank x i and B: o x rank
    expected = sum(
        RANK * (module.in_features + module.out_features)
        for name, module in tiny_sd().unet.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.endswith(t) for t in lora_target_modules(targets))
    )
    assert count_trainable(unet) == expected
    assert len(trainable) == 2 * sum(attention_projections(tiny_sd().unet, a) for a in attentions)


def test_adapters_of_prepare_unet(tiny_sd):
    assert count_trainable(prepare_unet(tiny_sd().unet, FinetuneConfig(adapter="none"))) == 0
    full = tiny_sd().unet
    assert count_trainable(prepare_unet(full, FinetuneConfig(adapter="full"))) == sum(
        p.numel() for p in full.parameters()
    )
    with pytest.raises(ValueError, match="unknown adapter"):
        prepare_unet(tiny_sd().unet, FinetuneConfig(adapter="half"))


def test_prepare_unet_compiles_in_place_keeping_the_state_dict_keys(tiny_sd, monkeypatch):
    traced = CompileCounter()  # dynamo traces into it, no inductor: the test stays fast
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda function, **options: real_compile(function, backend=traced))
    unet = prepare_unet(tiny_sd().unet, FinetuneConfig(compile=True))
    assert not any("_orig_mod" in key for key in unet.state_dict())  # saves like an eager UNet
    size = unet.config.sample_size
    inputs = (torch.randn(2, 4, size, size), torch.tensor([10, 500]), torch.randn(2, 3, TOKEN_DIM))
    try:
        with torch.no_grad():
            torch.testing.assert_close(unet(*inputs).sample, unet.forward(*inputs).sample)
        assert traced.frame_count >= 1  # the call went through dynamo
    finally:
        torch._dynamo.reset()


def make_pipeline(base: BaseModel, conditioner: FmriConditioner, controlnet=None) -> FmriImagePipeline:
    pipe = FmriImagePipeline(
        unet=base.unet,
        scheduler=sampling_scheduler("ddim", base.scheduler),
        conditioner=conditioner.eval(),
        vae=base.vae,
        controlnet=controlnet,
        image_fit="resize",
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe: FmriImagePipeline, seed: int = 0, **kwargs) -> torch.Tensor:
    condition = torch.linspace(-1, 1, 2 * N_IN).view(2, N_IN)
    return pipe(
        condition,
        image_size=10,
        num_inference_steps=3,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def test_lora_save_then_load_lora_weights_gives_identical_images(tiny_sd, tmp_path):
    tuned = tiny_sd()
    add_lora(tuned.unet, rank=RANK)
    with torch.no_grad():  # make the adapters matter (B starts at zero)
        for name, parameter in tuned.unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    conditioner = FmriConditioner(N_IN, TOKEN_DIM, n_tokens=3, hidden=8)
    expected = sample(make_pipeline(tuned, conditioner))
    save_lora(tuned.unet, tmp_path)

    fresh = make_pipeline(tiny_sd(), conditioner)
    before = sample(fresh)
    fresh.load_lora_weights(str(tmp_path))
    assert not torch.allclose(torch.from_numpy(before), torch.from_numpy(expected))
    torch.testing.assert_close(torch.from_numpy(sample(fresh)), torch.from_numpy(expected))


def test_pipeline_with_controlnet_is_seeded_and_needs_its_control_image(tiny_sd):
    base = tiny_sd()
    controlnet = ControlNetModel.from_unet(
        base.unet, conditioning_channels=3, conditioning_embedding_out_channels=(8, 8)
    )
    pipe = make_pipeline(base, FmriConditioner(N_IN, TOKEN_DIM, n_tokens=2, hidden=8), controlnet)
    control = torch.rand(2, 10, 10)
    first = sample(pipe, control_image=control, guidance_scale=2.0)
    assert first.shape == (2, 10, 10)
    assert first.min() >= 0
    assert first.max() <= 1
    assert (first == sample(pipe, control_image=control, guidance_scale=2.0)).all()
    assert not (first == sample(pipe, seed=1, control_image=control, guidance_scale=2.0)).all()
    with pytest.raises(ValueError, match="control_image"):
        sample(pipe)


@pytest.mark.parametrize("fit", ["pad", "resize"])
def test_pixels_round_trip(fit):
    images = torch.rand(3, 10, 10)
    pixels = to_pixels(images, 20 if fit == "resize" else 16, channels=3, fit=fit)
    assert pixels.shape == (3, 3, pixels.shape[-1], pixels.shape[-1])
    assert pixels.min() >= -1
    back = from_pixels(pixels, 10, fit=fit)
    torch.testing.assert_close(back, images)


def test_smooth_fitting_interpolates_an_edge_where_resizing_keeps_it_sharp():
    step = torch.zeros(1, 8, 8)
    step[..., 4:] = 1.0
    sharp = to_pixels(step, 64, fit="resize")
    smooth = to_pixels(step, 64, fit="smooth")
    assert set(sharp.unique().tolist()) == {-1.0, 1.0}
    assert smooth.min() >= -1
    assert smooth.max() <= 1
    assert ((smooth > -0.9) & (smooth < 0.9)).any()  # values between the two sides, at the edge
    torch.testing.assert_close(from_pixels(smooth, 8, fit="smooth"), step, atol=0.15, rtol=0)  # edge blurred


def finetune_run(base: BaseModel, tmp_path, steps: int, resume=None, checkpoint_every: int = 0):
    config = FinetuneConfig(
        adapter="lora",
        lora_rank=RANK,
        objective=ObjectiveConfig(timestep_range=(100, 900), edge=0.1, fft=0.05),
        training=TrainingConfig(
            max_steps=steps,
            batch_size=4,
            learning_rate=1e-2,
            warmup_steps=1,
            checkpoint_every=checkpoint_every,
            device="cpu",
            progress=False,
        ),
    )
    torch.manual_seed(1)
    tensors = {"clean": torch.randn(8, 4, 8, 8), "condition": torch.randn(8, N_IN)}
    conditioner = FmriConditioner(N_IN, TOKEN_DIM, n_tokens=2, hidden=8)
    model = ConditionedUNet(prepare_unet(base.unet, config), conditioner)
    return finetune(model, tensors, base.scheduler, config, out_dir=tmp_path, resume=resume)


def test_lora_finetune_lowers_the_loss(tiny_sd, tmp_path):
    losses = finetune_run(tiny_sd(), tmp_path, steps=40).losses
    assert sum(losses[-10:]) < sum(losses[:10])


def test_finetune_resumes_after_interruption_with_the_same_losses(tiny_sd, tmp_path):
    straight = finetune_run(tiny_sd(), tmp_path / "a", steps=6).losses
    # a run that checkpointed at step 4 and was killed: continue from that checkpoint
    finetune_run(tiny_sd(), tmp_path / "b", steps=6, checkpoint_every=4)
    resumed = finetune_run(tiny_sd(), tmp_path / "b", steps=6, resume="latest")
    assert resumed.last_checkpoint.name == "step-000004"
    assert resumed.losses == pytest.approx(straight, rel=1e-5)


def test_denoising_step_drops_the_condition_at_the_asked_rate():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, noisy, timesteps, condition=None, keep=None, spatial=None, control=None):
            seen.append(keep)
            return torch.zeros_like(noisy, requires_grad=True)

    step = DenoisingStep(DDPMScheduler(), ObjectiveConfig(), condition_dropout=0.25)
    step(Recorder(), {"clean": torch.randn(4000, 1, 2, 2)}, BatchNoise(torch.Generator().manual_seed(0)))
    assert seen[0].float().mean().item() == pytest.approx(0.75, abs=0.03)


def test_unconditional_unet_sees_a_zero_token(tiny_sd):
    base = tiny_sd()
    tokens = ConditionedUNet(base.unet).tokens(None, None, batch=3)
    assert tokens.shape == (3, 1, TOKEN_DIM)
    assert not tokens.any()


class ListTracker(GeneralTracker):
    name, requires_logging_directory = "list", False

    def __init__(self):
        super().__init__()
        self.logged = []

    @property
    def tracker(self):
        return self.logged

    def store_init_configuration(self, values):
        pass

    def log(self, values, step=None, **kwargs):
        self.logged.append((step, values["loss"]))


def test_training_reports_every_step_to_a_tracker(tmp_path):
    from fmri_encoders import training

    tracker = ListTracker()
    model = torch.nn.Linear(2, 1)
    sampler = training.BatchSampler({"x": torch.randn(8, 2)}, 4)
    config = TrainingConfig(max_steps=3, device="cpu", progress=False, ema_decay=None, log_with=tracker)
    result = training.train(model, lambda m, b, g: m(b["x"]).pow(2).mean(), sampler, config, out_dir=tmp_path)
    assert tracker.logged == [(i + 1, loss) for i, loss in enumerate(result.losses)]


def test_base_model_round_trips_through_a_diffusers_folder(tiny_sd, tmp_path):
    tiny_sd().save(tmp_path)
    loaded = load_base_model(tmp_path)
    assert loaded.resolution == 16
    assert loaded.token_dim == TOKEN_DIM
    assert loaded.vae.config.in_channels == 3


def test_a_wrong_pretrained_folder_names_what_is_missing(tiny_sd, tmp_path):
    tiny_sd().unet.save_pretrained(tmp_path / "unet")
    with pytest.raises(BaseModelError, match=r"no vae/, scheduler/ with a config"):
        load_base_model(tmp_path)
    with pytest.raises(BaseModelError, match="neither a folder nor in the Hugging Face cache"):
        load_base_model("no-such-org/no-such-model")


def test_an_uncached_hub_id_is_refused_at_once_without_the_network(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # a user's networked machine

    def no_network(*args, **kwargs):
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(
        BaseModelError, match=r"hf download some-org/uncached-model\) or add --allow-download"
    ):
        load_base_model("some-org/uncached-model")


@pytest.mark.parametrize("n_tokens", [1, 8])
def test_conditioner_makes_k_normalised_tokens_and_a_learned_null(tmp_path, n_tokens):
    conditioner = FmriConditioner(N_IN, TOKEN_DIM, n_tokens=n_tokens, hidden=8).eval()
    inputs = torch.randn(5, N_IN)
    tokens = conditioner(inputs)
    assert tokens.shape == (5, n_tokens, TOKEN_DIM)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(5, n_tokens), atol=1e-5, rtol=0)
    assert conditioner.null(3).shape == (3, n_tokens, TOKEN_DIM)
    keep = torch.tensor([True, False, True, False, True])
    dropped = conditioner.drop(tokens, keep)
    torch.testing.assert_close(dropped[keep], tokens[keep])
    torch.testing.assert_close(dropped[~keep], conditioner.null(2))
    conditioner.save_pretrained(tmp_path)
    torch.testing.assert_close(FmriConditioner.from_pretrained(tmp_path).eval()(inputs), tokens)
