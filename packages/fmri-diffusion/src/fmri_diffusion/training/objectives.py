"""The denoising objective and the optional image-space terms earlier projects added to it.

Image-space terms (Sobel edges, FFT magnitude, SSIM) are computed on the clean image the model implies at
the sampled timestep, x0_hat, so they work for epsilon- and v-prediction alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from fmri_data.errors import DataError
from fmri_diffusion.schedulers import predicted_clean
from fmri_encoders.training import BatchNoise


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the denoising loss includes.

    timestep_range: train on t in [low, high) only (the earlier project used 100-900).
    min_snr_gamma: Min-SNR-gamma loss weighting (Hang et al. 2023); None for plain MSE.
    edge / fft / ssim: weights of the image-space terms on x0_hat (0 = off).
    """

    timestep_range: tuple[int, int] | None = None
    min_snr_gamma: float | None = None
    edge: float = 0.0
    fft: float = 0.0
    ssim: float = 0.0


def sample_timesteps(
    batch_size: int, scheduler: DDPMScheduler, config: ObjectiveConfig, noise: BatchNoise
) -> torch.Tensor:
    low, high = config.timestep_range or (0, scheduler.config.num_train_timesteps)
    if not 0 <= low < high <= scheduler.config.num_train_timesteps:
        raise DataError(
            f"timestep_range {config.timestep_range} must lie in [0, {scheduler.config.num_train_timesteps}]"
        )
    return noise.randint(low, high, (batch_size,))


def denoising_loss(
    prediction: torch.Tensor,
    clean: torch.Tensor,
    noise: torch.Tensor,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDPMScheduler,
    config: ObjectiveConfig,
) -> torch.Tensor:
    """MSE to the scheduler's target (epsilon or v), SNR-weighted if asked, plus the image-space terms."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = scheduler.get_velocity(clean, noise, timesteps)
    else:
        raise DataError(f"unsupported prediction_type {prediction_type!r}")
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").flatten(1).mean(1)
    if config.min_snr_gamma is not None:
        snr = signal_to_noise(scheduler, timesteps).to(per_sample.device)
        denominator = snr + 1 if prediction_type == "v_prediction" else snr
        weight = torch.clamp(snr, max=config.min_snr_gamma) / denominator
        per_sample = per_sample * weight
    loss = per_sample.mean()
    if config.edge or config.fft or config.ssim:
        x0_hat = predicted_clean(prediction, noisy, timesteps, scheduler)
        if config.edge:
            loss = loss + config.edge * F.l1_loss(sobel_magnitude(x0_hat), sobel_magnitude(clean))
        if config.fft:
            loss = loss + config.fft * F.l1_loss(fft_magnitude(x0_hat), fft_magnitude(clean))
        if config.ssim:
            loss = loss + config.ssim * (1 - ssim(x0_hat, clean))
    return loss


def signal_to_noise(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    return alphas / (1 - alphas)


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Per-channel gradient magnitude with 3x3 Sobel kernels."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    kernels = torch.stack([kx, kx.T]).unsqueeze(1).to(images.dtype)  # [2, 1, 3, 3]
    channels = images.shape[1]
    grads = F.conv2d(images.reshape(-1, 1, *images.shape[-2:]), kernels, padding=1)
    return grads.pow(2).sum(1).add(1e-8).sqrt().view(-1, channels, *images.shape[-2:])


def fft_magnitude(images: torch.Tensor) -> torch.Tensor:
    return torch.fft.fft2(images.float(), norm="ortho").abs()


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM with a Gaussian window (Wang et al. 2004), differentiable; images in [-1, 1] by default.

    The window is truncated at 3.5 sigma, or at the image size for images smaller than that.
    """
    radius = min(int(3.5 * sigma + 0.5), (min(a.shape[-2:]) - 1) // 2)
    coords = torch.arange(-radius, radius + 1, device=a.device, dtype=a.dtype)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(a.shape[1], 1, -1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=a.shape[1])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean()
