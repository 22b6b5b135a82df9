"""FmriImagePipeline: condition tokens (+ an optional spatial condition) in, grayscale images out.

A diffusers DiffusionPipeline, so the whole decoder saves with save_pretrained, loads with from_pretrained,
swaps its scheduler (`pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`)
and moves with `.to(device)`. With a `vae` it denoises in that autoencoder's latent space; without, in
pixel space. Model space is where the UNet works: pixels scaled to [-1, 1] and zero-padded to the UNet's
sample size, or the VAE's scaled latents.
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from fmri_diffusion.conditioning import FmriConditioner

Generators = torch.Generator | list[torch.Generator] | None


class FmriImagePipeline(DiffusionPipeline):
    """Sample images given conditioner inputs, with classifier-free guidance and img2img."""

    model_cpu_offload_seq = "conditioner->unet->vae"
    _optional_components: ClassVar[list[str]] = ["vae"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        conditioner: FmriConditioner,
        vae: AutoencoderKL | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, conditioner=conditioner, vae=vae)

    # ------------------------------------------------------------ model space
    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] or [B, C, H, W] images in [0, 1] -> what the UNet denoises."""
        x = images.to(self.device, self.unet.dtype)
        x = x.unsqueeze(1) if x.ndim == 3 else x
        x = pad_to(2 * x - 1, self._pixel_size())
        if self.vae is None:
            return x
        latents = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mean
        return latents * self.vae.config.scaling_factor

    def from_model_space(self, x: torch.Tensor, image_size: int) -> torch.Tensor:
        """The inverse: model-space samples -> [B, H, W] images in [0, 1], cropped to image_size."""
        if self.vae is not None:
            x = self.vae.decode(x.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        images = ((x.float() + 1) / 2).clamp(0, 1)
        return _crop_to(images, image_size)[:, 0]

    def _pixel_size(self) -> int:
        if self.vae is None:
            return self.unet.config.sample_size
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        condition: torch.Tensor,
        spatial_condition: torch.Tensor | None = None,
        *,
        image_size: int,
        num_inference_steps: int = 25,
        guidance_scale: float = 1.0,
        init_image: torch.Tensor | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        generator: Generators = None,
        output_type: str = "np",
    ) -> np.ndarray | torch.Tensor:
        """Images [B, image_size, image_size] in [0, 1].

        condition: [B, in_features], the conditioner's input. spatial_condition: [B, c, h, w] in model
        space, concatenated to the UNet input (None when the UNet takes no extra channels).
        guidance_scale > 1 mixes in the null condition (classifier-free guidance); 1 uses the condition only.
        init_image: [B, H, W] in [0, 1] to start from, noised to `strength` (1 = pure noise, i.e. no init);
        init_latents: the same start given in model space instead.
        generator: one per image for per-image seeds.
        """
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        batch = len(condition)
        tokens = self.conditioner(condition.to(self.device, self.conditioner.dtype))
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            tokens = torch.cat([self.conditioner.null(batch), tokens])
            if spatial_condition is not None:
                spatial_condition = torch.cat([torch.zeros_like(spatial_condition), spatial_condition])
        tokens = tokens.to(self.unet.dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        shape = (batch, self._latent_channels(), self.unet.config.sample_size, self.unet.config.sample_size)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        if init_image is not None:
            init_latents = self.to_model_space(init_image)
        if init_latents is not None and strength < 1:
            skip = num_inference_steps - max(1, round(num_inference_steps * strength))
            timesteps = timesteps[skip * self.scheduler.order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(skip * self.scheduler.order)
            x = self.scheduler.add_noise(init_latents.to(noise), noise, timesteps[:1].repeat(batch))
        else:
            x = noise * self.scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(generator)
        for t in self.progress_bar(timesteps):
            model_in = torch.cat([x, x]) if use_cfg else x
            model_in = self.scheduler.scale_model_input(model_in, t)
            if spatial_condition is not None:
                model_in = torch.cat([model_in, spatial_condition.to(model_in.dtype)], dim=1)
            out = self.unet(model_in, t, encoder_hidden_states=tokens).sample
            if use_cfg:
                unconditional, conditional = out.chunk(2)
                out = unconditional + guidance_scale * (conditional - unconditional)
            x = self.scheduler.step(out, t, x, **step_kwargs).prev_sample
        images = self.from_model_space(x, image_size)
        return images.cpu().numpy() if output_type == "np" else images

    def _latent_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else self.unet.config.out_channels

    def _step_kwargs(self, generator: Generators) -> dict[str, object]:
        accepted = inspect.signature(self.scheduler.step).parameters
        return {"generator": generator} if "generator" in accepted else {}


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (in [-1, 1] units: -1, the black background) to size x size, centred."""
    extra = size - x.shape[-1]
    if extra < 0:
        raise ValueError(f"images of {x.shape[-1]} px do not fit the model's {size} px")
    before = extra // 2
    return F.pad(x, (before, extra - before, before, extra - before), value=-1.0)


def _crop_to(x: torch.Tensor, size: int) -> torch.Tensor:
    before = (x.shape[-1] - size) // 2
    return x[..., before : before + size, before : before + size]
