"""The training step every conditional denoiser here uses, and fine-tuning a (pretrained) UNet with it.

`ConditionedUNet` puts the fMRI conditioner (and an optional ControlNet) in front of a UNet as one module,
so accelerate can wrap it for data-parallel training (`accelerate launch --num_processes N`) and one
optimizer and checkpoint hold every trainable part. `DenoisingStep` is the loss of one batch; the loop in
`fmri_encoders.training.loop` and the speed benchmarks both call this very step.

Fine-tuning adapts the UNet in one of three ways: `lora` (peft adapters on the attention projections, the
base frozen), `full` (every weight trains), or `none` (the UNet stays as it is and only the conditioner and
ControlNet learn: the `sd-direct` and `sd-control` routes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel
from torch import nn

from fmri_data.errors import DataError
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import denoise
from fmri_diffusion.training.lora import LoraTargets, add_lora
from fmri_diffusion.training.objectives import ObjectiveConfig, denoising_loss, sample_timesteps
from fmri_encoders.training import Batch, BatchNoise, BatchSampler, TrainingConfig, TrainingResult
from fmri_encoders.training import train as train_model
from fmri_encoders.training.precision import half_dtype

Adapter = Literal["lora", "full", "none"]


class ConditionedUNet(nn.Module):
    """UNet + the conditioner that feeds its cross-attention (+ an optional ControlNet).

    Without a conditioner the UNet sees one all-zero token: an unconditional model, as in pre-training.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        conditioner: FmriConditioner | None = None,
        controlnet: ControlNetModel | None = None,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.conditioner = conditioner
        self.controlnet = controlnet

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        condition: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        spatial: torch.Tensor | None = None,
        control: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's prediction for `noisy` at `timesteps`.

        condition: the conditioner's input [B, in_features]; keep: [B] bool, False rows get the null
        condition (and a zero spatial condition); spatial: [B, c, h, w] concatenated to the UNet input;
        control: the ControlNet's image [B, C, H, W] in [0, 1].
        """
        tokens = self.tokens(condition, keep, len(noisy))
        if spatial is not None:
            if keep is not None:
                spatial = spatial * keep[:, None, None, None]
            noisy = torch.cat([noisy, spatial.to(noisy.dtype)], dim=1)
        return denoise(self.unet, noisy, timesteps, tokens, self.controlnet, control)

    def tokens(self, condition: torch.Tensor | None, keep: torch.Tensor | None, batch: int) -> torch.Tensor:
        if self.conditioner is None:
            dim = self.unet.config.cross_attention_dim
            return torch.zeros(batch, 1, dim, device=self.unet.device, dtype=self.unet.dtype)
        tokens = self.conditioner(condition)
        if keep is not None:
            tokens = self.conditioner.drop(tokens, keep)
        return tokens.to(self.unet.dtype)


class DenoisingStep:
    """The loss of one batch: noise the clean samples at random timesteps and score the model's prediction.

    Batch keys: `clean` (model-space samples), and optionally `condition`, `spatial`, `control` as in
    ConditionedUNet.forward. Rows drop their condition with probability `condition_dropout` (for
    classifier-free guidance). All randomness comes from the draws of the training loop (checkpointed, and
    cut to this process's rows under data parallelism).
    """

    def __init__(
        self, scheduler: DDPMScheduler, objective: ObjectiveConfig, condition_dropout: float = 0.1
    ) -> None:
        self.scheduler = scheduler
        self.objective = objective
        self.condition_dropout = condition_dropout

    def __call__(self, model: nn.Module, batch: Batch, draws: BatchNoise) -> torch.Tensor:
        clean = batch["clean"]
        noise = draws.randn(clean.shape).to(clean.device, clean.dtype)
        t = sample_timesteps(len(clean), self.scheduler, self.objective, draws).to(clean.device)
        noisy = self.scheduler.add_noise(clean, noise, t)
        keep = (draws.rand((len(clean),)) >= self.condition_dropout).to(clean.device)
        prediction = model(
            noisy,
            t,
            condition=batch.get("condition"),
            keep=keep,
            spatial=batch.get("spatial"),
            control=batch.get("control"),
        )
        return denoising_loss(prediction, clean, noise, noisy, t, self.scheduler, self.objective)


@dataclass(frozen=True)
class FinetuneConfig:
    """How the UNet adapts, what the loss holds, and the optimisation budget.

    gradient_checkpointing: recompute the UNet's activations in the backward pass instead of keeping them
    (about a third slower, far less memory: what a whole Stable Diffusion UNet needs to fine-tune on one GPU).
    compile: compile the UNet with `torch.compile` in place, so the sampling pipeline that later holds it runs
    compiled too (its state-dict keys stay as they are, so it saves like an eager one).
    """

    adapter: Adapter = "lora"
    lora_rank: int = 8
    lora_alpha: float | None = None
    lora_targets: LoraTargets = "cross"
    condition_dropout: float = 0.1
    gradient_checkpointing: bool = False
    compile: bool = False
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            max_steps=600, batch_size=32, learning_rate=1e-3, warmup_steps=50
        )
    )


def prepare_unet(unet: UNet2DConditionModel, config: FinetuneConfig) -> UNet2DConditionModel:
    """Make the UNet's trainable part the one `config.adapter` asks for."""
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    if config.adapter == "lora":
        unet = add_lora(unet, rank=config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets)
    elif config.adapter in ("full", "none"):
        unet.requires_grad_(config.adapter == "full")
    else:
        raise DataError(f"unknown adapter {config.adapter!r}; use lora, full or none")
    if config.compile:
        unet.compile()
    return unet


def cast_frozen(model: nn.Module, mixed_precision: str) -> None:
    """Store frozen weights in the half type mixed precision computes in: half the memory and no casts."""
    dtype = half_dtype(mixed_precision)
    if dtype is None:
        return
    for parameter in model.parameters():
        if not parameter.requires_grad:
            parameter.data = parameter.data.to(dtype)


def finetune(
    model: ConditionedUNet,
    tensors: dict[str, torch.Tensor],
    scheduler: DDPMScheduler,
    config: FinetuneConfig,
    *,
    out_dir: Path | None = None,
    resume: str | Path | None = None,
    description: str = "finetune",
    augment: Callable[[Batch, torch.Generator], Batch] | None = None,
) -> TrainingResult:
    """Train `model`'s trainable parameters on `tensors` (keys as in DenoisingStep) with the shared loop.

    augment(batch, generator) may change each batch before the step (e.g. noise the condition).
    """
    cast_frozen(model, config.training.mixed_precision)
    sampler = BatchSampler(tensors, config.training.batch_size, seed=config.training.seed, augment=augment)
    step = DenoisingStep(scheduler, config.objective, config.condition_dropout)
    return train_model(
        model, step, sampler, config.training, out_dir=out_dir, resume=resume, description=description
    )
