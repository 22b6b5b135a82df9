"""Noise schedules (diffusers' DDPMScheduler) and the few-step samplers built from the same config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from fmri_data.errors import DataError

Schedule = Literal["linear", "cosine"]
Sampler = Literal["ddpm", "ddim", "dpm++"]
Prediction = Literal["epsilon", "v_prediction"]

_BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


TRAIN_TIMESTEPS = 1000
"""The forward process's length for every denoiser trained here (a user's model folder names its own)."""


def most_sampling_steps(model_folder: Path | None) -> int:
    """The most steps a sampler can take on a model folder's scheduler/ (the built-in schedule's where there
    is none): its training timesteps, less its steps_offset under "leading" spacing (Stable Diffusion
    1.x's 1), whose last timestep would otherwise fall past the schedule (diffusers' DDIM and DDPM refuse
    more steps, or index past it, at the first sampling)."""
    config = None if model_folder is None else model_folder / "scheduler" / "scheduler_config.json"
    if config is None or not config.is_file():
        return TRAIN_TIMESTEPS
    schedule = json.loads(config.read_text(encoding="utf-8"))
    timesteps = int(schedule.get("num_train_timesteps", TRAIN_TIMESTEPS))
    leading = schedule.get("timestep_spacing", "leading") == "leading"
    return timesteps - int(schedule.get("steps_offset", 0)) if leading else timesteps


def training_scheduler(
    schedule: Schedule = "cosine",
    prediction_type: Prediction = "epsilon",
    num_train_timesteps: int = TRAIN_TIMESTEPS,
    *,
    clip_sample: bool = False,
) -> DDPMScheduler:
    """The forward process used in training: betas by schedule, and what the UNet learns to predict.

    clip_sample: samplers built from this config clip each step's predicted clean image to [-1, 1]; right
    for pixels (which live there), wrong for autoencoder latents (which do not).
    """
    if schedule not in _BETA_SCHEDULES:
        raise DataError(f"unknown schedule {schedule!r}; use linear or cosine")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=_BETA_SCHEDULES[schedule],
        prediction_type=prediction_type,
        clip_sample=clip_sample,
    )


def sampling_scheduler(kind: Sampler, trained: SchedulerMixin) -> SchedulerMixin:
    """A sampler sharing the trained schedule: DDIM or DPM-Solver++ for few steps, DDPM for ancestral."""
    if kind == "ddim":
        return DDIMScheduler.from_config(trained.config)
    if kind == "dpm++":
        return DPMSolverMultistepScheduler.from_config(trained.config, algorithm_type="dpmsolver++")
    if kind == "ddpm":
        return DDPMScheduler.from_config(trained.config)
    raise DataError(f"unknown sampler {kind!r}; use ddim, dpm++ or ddpm")


def predicted_clean(
    prediction: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor | int, scheduler: SchedulerMixin
) -> torch.Tensor:
    """x0_hat from the model output at x_t (epsilon: (x_t - s eps)/a; v: a x_t - s v), differentiable in
    x_t: the training objectives' image-space terms and likelihood guidance while sampling both score it."""
    alpha_bar = scheduler.alphas_cumprod.to(noisy.device, noisy.dtype)[timesteps].reshape(-1, 1, 1, 1)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if scheduler.config.prediction_type == "v_prediction":
        return a * noisy - s * prediction
    return (noisy - s * prediction) / a
