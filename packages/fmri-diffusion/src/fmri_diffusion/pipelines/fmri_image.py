"""FmriImagePipeline: condition tokens (+ an optional spatial condition) in, grayscale images out (RGB out
with `colour`, for a 3-channel model on colour stimuli: Brain-Diffuser's published route).

A diffusers DiffusionPipeline, so the whole decoder saves with save_pretrained, loads with from_pretrained,
swaps its scheduler (`pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)`),
moves with `.to(device)` and takes LoRA weights with `pipe.load_lora_weights(folder)`. With a `vae` it
denoises in that autoencoder's latent space; without, in pixel space. With a `controlnet` the UNet also
gets its residuals from a control image. Model space is where the UNet works: pixels in [-1, 1] fitted to
the model's size (padded, or resized for a pretrained model's native resolution), or the VAE's scaled latents.
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DiffusionPipeline,
    SchedulerMixin,
    UNet2DConditionModel,
)
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from fmri_data.errors import DataError
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.latents import scaled_latents
from fmri_diffusion.pipelines.pixels import check_image_fit, from_pixels, to_pixels
from fmri_diffusion.schedulers import predicted_clean

Generators = torch.Generator | list[torch.Generator] | None


class Guide(NamedTuple):
    """One condition steering the denoiser: its weight in the mix, its tokens, its null (CFG only)."""

    weight: float
    tokens: torch.Tensor
    null: torch.Tensor | None


class FmriImagePipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """Sample images given conditioner inputs, with classifier-free guidance, img2img and ControlNet."""

    model_cpu_offload_seq = "conditioner->controlnet->unet->vae"
    _optional_components: ClassVar[list[str]] = ["conditioner", "vae", "controlnet"]
    _lora_loadable_modules: ClassVar[list[str]] = ["unet"]
    text_encoder: ClassVar[None] = None  # the LoRA loader looks for one; fMRI tokens need none

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        conditioner: FmriConditioner | None = None,
        vae: AutoencoderKL | None = None,
        controlnet: ControlNetModel | None = None,
        image_fit: str = "pad",  # an ImageFit, typed str: diffusers' loader warns on a Literal
        colour: bool = False,
    ) -> None:
        check_image_fit(image_fit)
        super().__init__()
        self.register_modules(
            unet=unet, scheduler=scheduler, conditioner=conditioner, vae=vae, controlnet=controlnet
        )
        self.register_to_config(image_fit=image_fit, colour=colour)

    @classmethod
    def load_lora_into_text_encoder(cls, *args: object, **kwargs: object) -> None:
        """This pipeline has no text encoder: fMRI tokens come from the conditioner."""

    @classmethod
    def saved_components(cls, folder: Path, *, progress: bool) -> dict[str, Any]:
        """The parts of a pipeline saved with save_pretrained, diffusers' loading bar shown only where the
        run shows bars (its switch is library-wide, so it is put back as it was)."""
        shown = diffusers_logging.is_progress_bar_enabled()
        if not progress:
            diffusers_logging.disable_progress_bar()
        try:
            return cls.from_pretrained(folder).components
        finally:
            if shown:
                diffusers_logging.enable_progress_bar()

    # ------------------------------------------------------------ model space
    def to_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] (or RGB [B, H, W, 3]) images in [0, 1] -> [B, C, S, S] in [-1, 1], the model's pixels."""
        return to_pixels(
            images.to(self.device),
            self.pixel_size,
            channels=self._pixel_channels(),
            fit=self.config.image_fit,
        )

    def to_model_space(self, images: torch.Tensor) -> torch.Tensor:
        """[B, H, W] or [B, 1, H, W] images in [0, 1] -> what the UNet denoises."""
        x = self.to_pixels(images).to(self.unet.dtype)
        return x if self.vae is None else scaled_latents(self.vae, x)

    def from_model_space(self, x: torch.Tensor, image_size: int, *, clip: bool = True) -> torch.Tensor:
        """The inverse: model-space samples -> [B, H, W] images (a colour pipeline's: [B, H, W, 3]) in
        [0, 1] at image_size (clip=False: not clipped, for gradients)."""
        if self.vae is not None:
            x = self.vae.decode(x.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return from_pixels(x, image_size, fit=self.config.image_fit, clip=clip, colour=self.config.colour)

    @property
    def pixel_size(self) -> int:
        if self.vae is None:
            return self.unet.config.sample_size
        return self.unet.config.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _pixel_channels(self) -> int:
        return self.vae.config.in_channels if self.vae is not None else self.unet.config.out_channels

    # --------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        condition: torch.Tensor | None = None,
        spatial_condition: torch.Tensor | None = None,
        *,
        tokens: torch.Tensor | None = None,
        text_tokens: torch.Tensor | None = None,
        mixing: float = 0.0,
        negative_tokens: torch.Tensor | None = None,
        negative_text_tokens: torch.Tensor | None = None,
        image_size: int,
        num_inference_steps: int = 25,
        guidance_scale: float = 1.0,
        init_image: torch.Tensor | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 1.0,
        control_image: torch.Tensor | None = None,
        residual_image: torch.Tensor | None = None,
        likelihood: nn.Module | None = None,
        measured: torch.Tensor | None = None,
        likelihood_weight: float = 0.0,
        generator: Generators = None,
        output_type: str = "np",
    ) -> np.ndarray | torch.Tensor:
        """Images [B, image_size, image_size] (a colour pipeline's: [..., 3]) in [0, 1].

        condition: [B, in_features], the conditioner's input; or `tokens` [B, K, D], condition tokens
        given directly (e.g. predicted from fMRI, as Brain-Diffuser predicts image embeddings).
        text_tokens: [B, K', D] a second guide (e.g. predicted caption embeddings); the noise prediction is
        (1 - mixing) x that under `tokens` + mixing x that under `text_tokens`, so mixing=0 ignores it.
        negative_tokens / negative_text_tokens: the null condition of each guide under classifier-free
        guidance (defaults: the conditioner's learned null tokens, or zeros, as image-variation models use;
        zeros for text, where a Stable Diffusion would rather take the empty caption's tokens).
        spatial_condition: [B, c, h, w] in model space, concatenated to the UNet input (None when the
        UNet takes no extra channels).
        guidance_scale > 1 mixes in the null condition (classifier-free guidance); 1 uses the condition only.
        init_image: [B, H, W] in [0, 1] to start from, noised to `strength` (1 = pure noise, i.e. no init);
        init_latents: the same start given in model space instead.
        control_image: [B, H, W] in [0, 1] for the controlnet (needed exactly when the pipeline has one).
        residual_image: [B, image_size, image_size] in [0, 1], img2img only: the output is this image plus
        what sampling changed (decoded sample − decoded start), so an autoencoder's error on the start
        (blurry ridge images decode worse than they encode) never reaches the output.
        likelihood, measured, likelihood_weight: encoding-model guidance (DPS-style). `likelihood(images,
        measured)` is the negative log-likelihood [B] of the measured voxels [B, V] given images [B, H, W] in
        [0, 1] (fmri_encoders.encoding.GaussianLikelihood); after each step the sample moves against its
        gradient through the predicted clean image, by likelihood_weight / sqrt(NLL). 0 turns it off.
        generator: one per image for per-image seeds.
        """
        if not 0 < strength <= 1:
            raise DataError(f"strength must be in (0, 1], got {strength}")
        if (condition is None) == (tokens is None):
            raise ValueError("pass either condition (the conditioner's input) or tokens, not both")
        if not 0 <= mixing <= 1:
            raise DataError(f"mixing must be in [0, 1], got {mixing}")
        if tokens is None:
            tokens = self.conditioner(condition.to(self.device, self.conditioner.dtype))
        batch = len(tokens)
        steering = likelihood_weight > 0
        if steering and (likelihood is None or measured is None):
            raise ValueError("likelihood_weight > 0 needs a likelihood and the measured voxels")
        if text_tokens is None and mixing > 0:
            raise ValueError(f"mixing={mixing} needs text_tokens to mix with the image tokens")
        use_cfg = guidance_scale != 1.0
        guides = []
        for weight, guide, negative in (
            (1.0 - mixing, tokens, negative_tokens),
            (mixing, text_tokens, negative_text_tokens),
        ):
            if weight > 0:
                null = self._negative_tokens(negative, guide) if use_cfg else None
                guides.append(
                    Guide(weight, self._on_unet(guide), None if null is None else self._on_unet(null))
                )
        control = self._control_pixels(control_image, batch)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        shape = (batch, self._latent_channels(), self.unet.config.sample_size, self.unet.config.sample_size)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        if init_image is not None:
            init_latents = self.to_model_space(init_image)
        img2img = init_latents is not None and strength < 1
        if residual_image is not None and not img2img:
            raise ValueError(
                "residual_image needs an img2img start: init_image or init_latents, strength < 1"
            )
        if img2img:
            skip = num_inference_steps - max(1, int(num_inference_steps * strength))  # as diffusers
            timesteps = timesteps[skip * self.scheduler.order :]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(skip * self.scheduler.order)
            x = self.scheduler.add_noise(init_latents.to(noise), noise, timesteps[:1].repeat(batch))
        else:
            x = noise * self.scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(generator)
        if steering:
            likelihood, measured = likelihood.to(self.device), measured.to(self.device)
        for t in self.progress_bar(timesteps):
            with torch.enable_grad() if steering else nullcontext():
                x_in = x.detach().requires_grad_(steering)
                model_in = self.scheduler.scale_model_input(x_in, t)
                out = self._guided_prediction(model_in, t, guides, guidance_scale, spatial_condition, control)
                if steering:
                    pull = self._likelihood_gradient(likelihood, measured, out, x_in, t, image_size)
            x = self.scheduler.step(out.detach(), t, x.detach(), **step_kwargs).prev_sample
            if steering:
                x = x - likelihood_weight * pull
        if residual_image is None:
            images = self.from_model_space(x, image_size)
        else:
            change = self.from_model_space(x, image_size, clip=False) - self.from_model_space(
                init_latents.to(x), image_size, clip=False
            )
            images = (residual_image.to(change) + change).clamp(0, 1)
        return images.cpu().numpy() if output_type == "np" else images

    def _likelihood_gradient(
        self,
        likelihood: nn.Module,
        measured: torch.Tensor,
        out: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        image_size: int,
    ) -> torch.Tensor:
        """d/dx of NLL / sqrt(NLL) (each sample's own scale, as DPS normalises by the residual norm), the
        NLL taken at the clean image that x and the UNet's output imply, unclipped: a pixel estimated beyond
        [0, 1] early in sampling must still feel the pull."""
        clean = self.from_model_space(predicted_clean(out, x, t, self.scheduler), image_size, clip=False)
        nll = likelihood(clean, measured)
        (gradient,) = torch.autograd.grad((nll / nll.detach().clamp_min(1e-8).sqrt()).sum(), x)
        return gradient.detach()

    def _negative_tokens(self, negative: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        if negative is not None:
            return negative.expand(len(tokens), -1, -1) if len(negative) == 1 else negative
        conditioner = self.conditioner
        if conditioner is not None and (conditioner.config.n_tokens, conditioner.config.token_dim) == tuple(
            tokens.shape[1:]
        ):
            return conditioner.null(len(tokens))
        return torch.zeros_like(tokens)

    def _on_unet(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.to(self.device, self.unet.dtype)

    def _guided_prediction(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        guides: list[Guide],
        guidance_scale: float,
        spatial: torch.Tensor | None,
        control: torch.Tensor | None,
    ) -> torch.Tensor:
        """sum_k w_k [null_k + scale (cond_k - null_k)] under CFG, else sum_k w_k cond_k.

        Each guide's null and conditional branches share one batched UNet call; a null branch sees a zero
        spatial condition.
        """
        total = 0.0
        for guide in guides:
            branches = [(guide.tokens, spatial)]
            if guide.null is not None:
                branches.insert(0, (guide.null, None if spatial is None else torch.zeros_like(spatial)))
            samples = [x if extra is None else torch.cat([x, extra.to(x.dtype)], 1) for _, extra in branches]
            control_in = None if control is None else torch.cat([control] * len(branches))
            outputs = denoise(
                self.unet,
                torch.cat(samples),
                t,
                torch.cat([tokens for tokens, _ in branches]),
                self.controlnet,
                control_in,
            ).chunk(len(branches))
            if guide.null is None:
                total = total + guide.weight * outputs[0]
            else:
                null, conditional = outputs
                total = total + guide.weight * (null + guidance_scale * (conditional - null))
        return total

    def _control_pixels(self, control_image: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """ControlNet conditioning in [0, 1] at pixel size."""
        if (control_image is None) != (self.controlnet is None):
            raise ValueError("pass control_image exactly when the pipeline has a controlnet")
        if control_image is None:
            return None
        if len(control_image) != batch:
            raise ValueError(f"control_image has {len(control_image)} images for a batch of {batch}")
        control = (self.to_pixels(control_image) + 1) / 2
        return control.to(self.controlnet.dtype)

    def _latent_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else self.unet.config.out_channels

    def _step_kwargs(self, generator: Generators) -> dict[str, object]:
        accepted = inspect.signature(self.scheduler.step).parameters
        return {"generator": generator} if "generator" in accepted else {}


def denoise(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timesteps: torch.Tensor | int,
    tokens: torch.Tensor,
    controlnet: ControlNetModel | None = None,
    control: torch.Tensor | None = None,
) -> torch.Tensor:
    """One UNet evaluation, with a ControlNet's residuals added when one is given (training and sampling)."""
    residuals = {}
    if controlnet is not None:
        down, mid = controlnet(
            sample, timesteps, encoder_hidden_states=tokens, controlnet_cond=control, return_dict=False
        )
        residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    return unet(sample, timesteps, encoder_hidden_states=tokens, **residuals).sample
