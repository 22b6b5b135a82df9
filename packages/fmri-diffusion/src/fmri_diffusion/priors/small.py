"""The small base model pre-trained here: a prior a CPU can train, of the same classes as Stable Diffusion.

It learns an unpaired image corpus at a laptop-sized resolution: the "pretrained model -> domain fine-tune"
story at a size a CPU can run. The corpus is the run's `--prior-corpus` (fmri_data.corpora: screened against
every test stimulus before this runs), else the simulator's (random patterns, blobs and strokes; never a
test figure).

Stable Diffusion learned to listen to its cross-attention from text; the small model learns it from an
image embedding, as image-variation models do (unCLIP, Versatile Diffusion): its `conditioner/` maps an
image's (noised) latents to condition tokens. A UNet pre-trained on an empty context would ignore any tokens
a fine-tune sends. Since ridge predicts exactly such latents from fMRI, the fMRI conditioner of a fine-tune
starts from this embedder, and the noise it was trained with stands in for ridge's error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
import torch

from fmri_data.methods import MethodSettings
from fmri_data.simulator import image_corpus
from fmri_diffusion.models.builders import small_unet
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.latents import encode_latents
from fmri_diffusion.pipelines.pixels import to_pixels
from fmri_diffusion.priors.loading import BaseModel
from fmri_diffusion.schedulers import training_scheduler
from fmri_diffusion.training.autoencoder import AutoencoderConfig, train_autoencoder_on_pixels
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune
from fmri_encoders.training import Batch, TrainingConfig, numerics_for


@dataclass(frozen=True)
class SmallBaseConfig:
    """The small base model and its pre-training (about 4 minutes on two CPU cores, once per image size)."""

    resolution: int = 32
    channels: int = 3
    vae_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (64, 128)
    token_dim: int = 64
    n_tokens: int = 8
    embedder_hidden: int = 512
    condition_noise: float = 1.0
    condition_dropout: float = 0.1
    corpus_size: int = 3000
    autoencoder: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(
            max_shift=0, training=TrainingConfig(max_steps=400, batch_size=32, learning_rate=2e-3)
        )
    )
    unet_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(max_steps=1000, batch_size=32, learning_rate=1e-3)
    )

    def quick(self) -> SmallBaseConfig:
        tiny = TrainingConfig(max_steps=5, batch_size=8, warmup_steps=1, progress=False)
        return replace(
            self,
            vae_channels=(8, 8, 8),
            unet_channels=(8, 16),
            token_dim=8,
            n_tokens=2,
            embedder_hidden=16,
            corpus_size=24,
            autoencoder=replace(self.autoencoder, training=tiny),
            unet_training=tiny,
        )

    def under(self, settings: MethodSettings) -> SmallBaseConfig:
        """This recipe under the run's precision, accumulation and optimizer (training.numerics_for)."""
        return replace(
            self,
            autoencoder=replace(self.autoencoder, training=numerics_for(self.autoencoder.training, settings)),
            unet_training=numerics_for(self.unet_training, settings),
        )

    def key(self, image_size: int, seed: int, corpus_digest: str | None = None) -> str:
        """A cache key: changing any setting, the stimulus size, the seed or the corpus's content gives a new
        base model (None: the simulator's corpus, which the settings and seed determine)."""
        recipe = [asdict(self), image_size, seed] + ([] if corpus_digest is None else [corpus_digest])
        text = json.dumps(recipe, sort_keys=True, default=str)
        return f"small-base-{image_size}px-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def pretrain_small_base(
    config: SmallBaseConfig,
    image_size: int,
    *,
    seed: int,
    device: str,
    progress: bool,
    corpus: np.ndarray | None = None,
) -> BaseModel:
    """Autoencoder first, then the latent UNet with its image embedder, both on `corpus` ([n, H, W] in
    [0, 1]; None: `config.corpus_size` images of the simulator's corpus at `image_size`)."""
    images = (
        image_corpus(config.corpus_size, image_size, np.random.default_rng(seed))
        if corpus is None
        else corpus
    )
    pixels = to_pixels(torch.from_numpy(images), config.resolution, channels=config.channels, fit="resize")
    vae_config = replace(
        config.autoencoder,
        block_out_channels=config.vae_channels,
        latent_channels=config.latent_channels,
        training=replace(
            config.autoencoder.training, progress=progress and config.autoencoder.training.progress
        ),
    )
    vae = train_autoencoder_on_pixels(pixels, vae_config, seed=seed, device=device, description="base vae")
    latents = encode_latents(vae, pixels, device=device)
    latent_size = latents.shape[-1]
    torch.manual_seed(seed)
    unet = small_unet(
        sample_size=latent_size,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        cross_attention_dim=config.token_dim,
        block_out_channels=config.unet_channels,
    )
    embedder = FmriConditioner(
        latents[0].numel(), config.token_dim, n_tokens=config.n_tokens, hidden=config.embedder_hidden
    )
    scheduler = training_scheduler("linear")
    training = replace(
        config.unet_training, seed=seed, device=device, progress=progress and config.unet_training.progress
    )
    finetune(
        ConditionedUNet(unet, embedder),
        {"clean": latents},
        scheduler,
        FinetuneConfig(adapter="full", condition_dropout=config.condition_dropout, training=training),
        description="base unet",
        augment=partial(noisy_embedding_input, max_noise=config.condition_noise),
    )
    return BaseModel(
        unet=unet.eval().cpu(),
        vae=vae.eval().cpu(),
        scheduler=scheduler,
        source="pre-trained here",
        conditioner=embedder.eval().cpu(),
    )


def noisy_embedding_input(batch: Batch, generator: torch.Generator, *, max_noise: float) -> Batch:
    """The embedder sees each image's latents plus Gaussian noise of a random level in [0, max_noise]."""
    clean = batch["clean"]
    level = torch.rand(len(clean), 1, generator=generator) * max_noise
    noise = torch.randn(clean.flatten(1).shape, generator=generator)
    return {**batch, "condition": clean.flatten(1) + level * noise}
