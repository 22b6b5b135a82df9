"""VDVAE (Child 2021), the hierarchical VAE whose latents Brain-Diffuser's stage 1 predicts from fMRI.

No maintained library ships it, so it is written here, small, as a diffusers `ModelMixin`/`ConfigMixin` (it
saves and loads like every other part) with the published module names (`encoder.enc_blocks.N.c1`,
`decoder.dec_blocks.N.{enc,prior,z_proj,resnet}`, `decoder.bias_xs.K`, `decoder.out_net.out_conv`,
`decoder.gain`), so the published ImageNet-64 EMA checkpoint's state dict loads unchanged. The defaults
are that model's hyper-parameters and data normalisation.

The decoder is a stack of blocks at rising resolutions; each draws a latent z (16 channels at its
resolution) and adds it to the running activation. Brain-Diffuser's stage-1 target is the z of the first
31 blocks (resolutions 1 to 32, 91,168 numbers per image); the rest are drawn from the prior on decoding.
Images in and out are [B, C, S, S] in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from fmri_data.errors import DataError

IMAGENET64_ENCODER = "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5"
IMAGENET64_DECODER = "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12"
Generators = torch.Generator | list[torch.Generator] | None
BRAIN_DIFFUSER_LAYERS = 31
"""Brain-Diffuser's stage 1 predicts the latents of the decoder's first 31 blocks."""


def parse_blocks(spec: str) -> list[tuple[int, int | None]]:
    """'64x2,64d2,32m16' -> [(64, None), (64, None), (64, 2), (32, 16)]: blocks as (resolution, extra),
    extra being the encoder's down-sampling rate ('d') or the decoder's lower resolution mixed in ('m')."""
    blocks: list[tuple[int, int | None]] = []
    for part in spec.split(","):
        if "x" in part:
            resolution, count = part.split("x")
            blocks += [(int(resolution), None)] * int(count)
        elif "m" in part or "d" in part:
            resolution, extra = part.replace("m", "d").split("d")
            blocks.append((int(resolution), int(extra)))
        else:
            blocks.append((int(part), None))
    return blocks


class Block(nn.Module):
    """A bottleneck of four convolutions after GELUs (3x3 in the middle above 2 px), optionally residual and
    down-sampled by average pooling."""

    def __init__(
        self,
        in_width: int,
        middle_width: int,
        out_width: int,
        *,
        down_rate: int | None = None,
        residual: bool = False,
        use_3x3: bool = True,
    ) -> None:
        super().__init__()
        middle = 3 if use_3x3 else 1
        self.c1 = nn.Conv2d(in_width, middle_width, 1)
        self.c2 = nn.Conv2d(middle_width, middle_width, middle, padding=middle // 2)
        self.c3 = nn.Conv2d(middle_width, middle_width, middle, padding=middle // 2)
        self.c4 = nn.Conv2d(middle_width, out_width, 1)
        self.down_rate, self.residual = down_rate, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for conv in (self.c1, self.c2, self.c3, self.c4):
            out = conv(F.gelu(out))
        out = x + out if self.residual else out
        if self.down_rate is not None:
            out = F.avg_pool2d(out, kernel_size=self.down_rate, stride=self.down_rate)
        return out


class Encoder(nn.Module):
    """Bottom-up: the activation at every resolution, which the decoder's posteriors read."""

    def __init__(self, image_channels: int, width: int, blocks: str, bottleneck: float) -> None:
        super().__init__()
        self.in_conv = nn.Conv2d(image_channels, width, 3, padding=1)
        self.enc_blocks = nn.ModuleList(
            Block(width, int(width * bottleneck), width, down_rate=rate, residual=True, use_3x3=res > 2)
            for res, rate in parse_blocks(blocks)
        )

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.in_conv(x)
        activations = {x.shape[2]: x}
        for block in self.enc_blocks:
            x = block(x)
            activations[x.shape[2]] = x
        return activations


class DecoderBlock(nn.Module):
    """One latent layer: its prior p(z | above), posterior q(z | above, encoder) and the update it makes."""

    def __init__(self, resolution: int, mixin: int | None, width: int, zdim: int, bottleneck: float) -> None:
        super().__init__()
        self.resolution, self.mixin, self.zdim = resolution, mixin, zdim
        middle, use_3x3 = int(width * bottleneck), resolution > 2
        self.enc = Block(width * 2, middle, zdim * 2, use_3x3=use_3x3)
        self.prior = Block(width, middle, zdim * 2 + width, use_3x3=use_3x3)
        self.z_proj = nn.Conv2d(zdim, width, 1)
        self.resnet = Block(width, middle, width, residual=True, use_3x3=use_3x3)

    def forward(
        self,
        xs: dict[int, torch.Tensor],
        *,
        activation: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        temperature: float = 1.0,
        generator: Generators = None,
    ) -> torch.Tensor:
        """Update `xs` in place; return this layer's z: the posterior mean given the encoder's `activation`,
        else the given `z`, else a draw from the prior at `temperature`."""
        x = xs.get(self.resolution)
        if x is None:  # a resolution above the decoder's learned biases starts at zero
            lower = next(iter(xs.values()))
            x = lower.new_zeros(len(lower), self.z_proj.out_channels, self.resolution, self.resolution)
        if self.mixin is not None:
            lower = xs[self.mixin][:, : x.shape[1]]
            x = x + F.interpolate(lower, scale_factor=self.resolution // self.mixin)
        features = self.prior(x)
        if activation is not None:
            z = self.enc(torch.cat([x, activation], 1))[:, : self.zdim]
        elif z is None:
            mean, log_std = features[:, : self.zdim], features[:, self.zdim : 2 * self.zdim]
            noise = _draw(torch.randn, mean, generator)
            z = mean + noise * log_std.exp() * temperature
        x = x + features[:, 2 * self.zdim :]
        xs[self.resolution] = self.resnet(x + self.z_proj(z))
        return z


class DiscretizedMixtureHead(nn.Module):
    """The output layer: per pixel, a mixture of discretised logistics over the 3 colour channels."""

    def __init__(self, width: int, num_mixtures: int) -> None:
        super().__init__()
        self.num_mixtures = num_mixtures
        self.out_conv = nn.Conv2d(width, num_mixtures * 10, 1)

    def sample(self, x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """[B, 3, S, S] in [-1, 1]: a component per pixel (Gumbel-max), a logistic draw from it, and the
        published autoregressive coupling of green on red and blue on both."""
        params = self.out_conv(x)
        k = self.num_mixtures
        logits, rest = params[:, :k], params[:, k:].unflatten(1, (3, 3 * k))
        gumbel = -torch.log(-torch.log(_uniform(logits, generator)))
        chosen = F.one_hot((logits + gumbel).argmax(1), k).permute(0, 3, 1, 2).unsqueeze(1).to(x.dtype)
        means = (rest[:, :, :k] * chosen).sum(2)
        log_scales = (rest[:, :, k : 2 * k] * chosen).sum(2).clamp_min(-7.0)
        coeffs = (torch.tanh(rest[:, :, 2 * k :]) * chosen).sum(2)
        u = _uniform(means, generator)
        draw = means + log_scales.exp() * (torch.log(u) - torch.log1p(-u))
        red = draw[:, 0].clamp(-1, 1)
        green = (draw[:, 1] + coeffs[:, 0] * red).clamp(-1, 1)
        blue = (draw[:, 2] + coeffs[:, 1] * red + coeffs[:, 2] * green).clamp(-1, 1)
        return torch.stack([red, green, blue], 1)


def _uniform(like: torch.Tensor, generator: Generators) -> torch.Tensor:
    return _draw(torch.rand, like, generator) * (1 - 2e-5) + 1e-5


def _draw(sampler: Callable[..., torch.Tensor], like: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Random numbers shaped like `like`: from one generator, or one generator per sample (so a sample's
    draws do not depend on the batch it is in)."""
    options = {"device": like.device, "dtype": like.dtype}
    if not isinstance(generator, list):
        return sampler(like.shape, generator=generator, **options)
    if len(generator) != len(like):
        raise ValueError(f"{len(generator)} generators for a batch of {len(like)}: pass one per image")
    return torch.stack([sampler(like.shape[1:], generator=g, **options) for g in generator])


class Decoder(nn.Module):
    def __init__(
        self,
        width: int,
        zdim: int,
        blocks: str,
        bottleneck: float,
        no_bias_above: int,
        num_mixtures: int,
    ) -> None:
        super().__init__()
        parsed = parse_blocks(blocks)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(res, mixin, width, zdim, bottleneck) for res, mixin in parsed
        )
        resolutions = sorted({res for res, _ in parsed})
        self.bias_xs = nn.ParameterList(
            nn.Parameter(torch.zeros(1, width, res, res)) for res in resolutions if res <= no_bias_above
        )
        self.out_net = DiscretizedMixtureHead(width, num_mixtures)
        self.gain = nn.Parameter(torch.ones(1, width, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, width, 1, 1))

    def start(self, batch: int) -> dict[int, torch.Tensor]:
        """The learned starting activation at every resolution."""
        return {bias.shape[2]: bias.expand(batch, -1, -1, -1) for bias in self.bias_xs}


class VDVAE(ModelMixin, ConfigMixin):
    """The published VDVAE; `encode_latents` and `decode_latents` are what Brain-Diffuser's stage 1 needs."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        image_channels: int = 3,
        width: int = 512,
        zdim: int = 16,
        enc_blocks: str = IMAGENET64_ENCODER,
        dec_blocks: str = IMAGENET64_DECODER,
        bottleneck_multiple: float = 0.25,
        no_bias_above: int = 64,
        num_mixtures: int = 10,
        data_shift: float = -115.92961967,
        data_scale: float = 1 / 69.37404,
    ) -> None:
        super().__init__()
        if parse_blocks(dec_blocks)[-1][0] != image_size:
            raise DataError(f"VDVAE: the decoder's last blocks must work at image_size {image_size}")
        self.encoder = Encoder(image_channels, width, enc_blocks, bottleneck_multiple)
        self.decoder = Decoder(width, zdim, dec_blocks, bottleneck_multiple, no_bias_above, num_mixtures)

    def latent_shapes(self, n_layers: int) -> list[tuple[int, int, int]]:
        """The shape of each of the first n_layers latents, [zdim, res, res]."""
        if not 0 < n_layers <= len(self.decoder.dec_blocks):
            raise DataError(
                f"VDVAE: n_layers must be in 1..{len(self.decoder.dec_blocks)} (its latent layers), "
                f"got {n_layers}"
            )
        return [(block.zdim, block.resolution, block.resolution) for block in self.decoder.dec_blocks][
            :n_layers
        ]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the encoder's input (the published data set's shift and scale of 0..255)."""
        return (images * 255 + self.config.data_shift) * self.config.data_scale

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor, n_layers: int = BRAIN_DIFFUSER_LAYERS) -> torch.Tensor:
        """[B, n] posterior means of the first n_layers latents, flattened and concatenated.

        Means, not the posterior samples the published code took: deterministic targets for the ridge."""
        self.latent_shapes(n_layers)
        activations = self.encoder(self.normalise(images.to(self.device, self.dtype)))
        xs = self.decoder.start(len(images))
        latents = [
            block(xs, activation=activations[block.resolution])
            for block in self.decoder.dec_blocks[:n_layers]
        ]
        return torch.cat([z.flatten(1) for z in latents], 1)

    @torch.no_grad()
    def decode_latents(
        self,
        latents: torch.Tensor,
        n_layers: int = BRAIN_DIFFUSER_LAYERS,
        *,
        temperature: float = 1.0,
        generator: Generators = None,
    ) -> torch.Tensor:
        """[B, n] flattened latents of the first n_layers -> [B, C, S, S] images in [0, 1]; the deeper
        layers' latents are drawn from the prior at `temperature` (the published run used 1), with one
        generator or one per image."""
        shapes = self.latent_shapes(n_layers)
        sizes = [c * h * w for c, h, w in shapes]
        if latents.shape[1] != sum(sizes):
            raise DataError(
                f"VDVAE: {n_layers} latent layers hold {sum(sizes)} numbers, got {latents.shape[1]}"
            )
        given = [
            z.view(len(latents), *shape) for z, shape in zip(latents.split(sizes, 1), shapes, strict=True)
        ]
        xs = self.decoder.start(len(latents))
        for index, block in enumerate(self.decoder.dec_blocks):
            z = given[index].to(self.device, self.dtype) if index < n_layers else None
            block(xs, z=z, temperature=temperature, generator=generator)
        top = xs[self.config.image_size] * self.decoder.gain + self.decoder.bias
        return (self.decoder.out_net.sample(top, generator) + 1) / 2
