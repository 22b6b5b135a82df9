"""The `cvae` method: a conditional VAE on top of ridge, the earlier projects' generative baseline."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.readout import READOUTS, PatchReadout
from fmri_diffusion.methods.corpus_prior import CorpusPrimedMethod, check_corpus_finetune, stand_in_condition
from fmri_diffusion.methods.langevin import mala, tempered_latent_posterior
from fmri_diffusion.models.cvae import ConditionalVaeNet, CvaeConfig, load_cvae, negative_elbo, save_cvae
from fmri_diffusion.training.augment import random_shift
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_encoders.runtime import resolve_device
from fmri_encoders.training import BatchSampler, TrainingConfig
from fmri_encoders.training import train as train_model
from fmri_encoders.training.sampling import Augment


@dataclass(frozen=True)
class ConditionalVAEConfig:
    """The CVAE's size, loss weight and training, and how many prior samples make its posterior mean.

    beta weighs the KL term; max_shift is the joint random shift of image and condition; ridge_folds the
    folds of the out-of-fold ridge conditions. likelihood_weight > 0 weighs the samples by the encoding
    model's likelihood of the measured voxels (methods.reweighting; `encoding_voxels` best-predicted voxels
    of an `encoding_model`, their noise `encoding_noise`, fmri_encoders.noise): the mean of the CVAE's
    p(image | ridge image) x likelihood^weight. With langevin_steps > 0 each sample's latent follows that
    posterior's gradient instead, for that many Metropolis-adjusted Langevin steps of langevin_step_size
    (methods.langevin), and the samples' plain mean is the estimate: weights fall onto a few samples as the
    weight grows, chains keep moving towards it.
    corpus_finetune above 0: the CVAE first pre-trains on the run's prior corpus (methods.corpus_prior:
    once per recipe and corpus, cached) and each fit trains this fraction of the steps from there.
    condition_readout "patches" (K x K binary-patch stimuli) conditions the CVAE on ridge's image read out
    as the posterior mean of the design's patches (fmri_data.readout), fitted on the out-of-fold ridge
    images of the training trials: ridge's pixel image blurs every edge, and with Miyawaki's 16 training
    figures per fold the CVAE did not learn to sharpen it as well as that readout's four fitted numbers do.
    """

    latent_dim: int = 16
    width: int = 16
    beta: float = 1.0
    max_shift: int = 2
    ridge_folds: int = 5
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            max_steps=900, batch_size=32, learning_rate=2e-3, warmup_steps=20, ema_decay=None
        )
    )
    n_samples: int = 64
    sample_batch_size: int = 256
    likelihood_weight: float = 0.0
    encoding_voxels: int = 500
    encoding_model: str = "auto"
    encoding_noise: str = "independent"
    langevin_steps: int = 0
    langevin_step_size: float = 0.2
    corpus_finetune: float = 0.0
    condition_readout: str = "pixels"

    def __post_init__(self) -> None:
        check_corpus_finetune(self.corpus_finetune)
        if self.condition_readout not in READOUTS:
            raise DataError(
                f"cvae: condition_readout takes {', '.join(READOUTS)}, got {self.condition_readout!r}"
            )
        if self.langevin_steps < 0 or self.langevin_step_size <= 0:
            raise DataError(
                f"cvae: langevin_steps must be 0 or more and langevin_step_size above 0, got "
                f"{self.langevin_steps} and {self.langevin_step_size}"
            )

    def quick(self) -> ConditionalVAEConfig:
        return replace(self, training=replace(self.training, max_steps=10))


class ConditionalVAE(CorpusPrimedMethod):
    """Ridge reconstructs pixels from voxels; a CVAE p(x | z, ridge image) with z ~ N(0, I) turns that into
    images.

    The CVAE trains on out-of-fold ridge reconstructions of the training trials (each predicted by a ridge
    fitted without its stimulus, one alpha shared by all pixels), so the noise of its condition matches
    test time; test trials are conditioned on a ridge fitted on all training trials. Reports "cvae", the
    mean of n_samples decoded prior samples (a posterior-mean estimate), and "cvae-1", the first of them;
    under likelihood weights, their weighted mean and one drawn by its weight; under Langevin chains
    (langevin_steps > 0), the mean of the chains' last samples and the first of them.
    """

    name = "cvae"
    config_class = ConditionalVAEConfig
    samples_with_pipeline = False
    sampling_settings = CorpusPrimedMethod.sampling_settings | {"langevin_steps", "langevin_step_size"}
    condition_readout_: PatchReadout | None = None

    def check_stimuli(self, stimuli: PairedDataset) -> None:
        """A patch readout of the condition (set or offered to validation) needs the patch design, and
        Langevin chains a likelihood to follow (without one they would leave every draw where it is)."""
        super().check_stimuli(stimuli)
        instead = "use --condition-readout pixels"
        self.refuse_without_patch_design(stimuli.images, "condition_readout", "patches", instead)
        if self.largest_offered("langevin_steps") > 0 and self.largest_offered("likelihood_weight") == 0:
            weight = self.refusal_fix(
                "likelihood_weight",
                "offer a value above 0 in --choose likelihood_weight",
                "add --likelihood-weight 0.3",
            )
            chains = self.refusal_fix("langevin_steps", "--choose langevin_steps", "--langevin-steps")
            raise DataError(
                "cvae: langevin_steps moves each draw along the likelihood's gradient, and no "
                f"likelihood_weight above 0 is set or offered; {weight}, or leave out {chains}"
            )

    def fit_parts(self, train: PairedDataset) -> None:
        if train.n_stimuli < 2:
            raise DataError(f"cvae needs at least 2 distinct training stimuli, got {train.n_stimuli}")
        self.start_from_corpus()
        config = self.config
        conditions, self.ridge_ = out_of_fold_ridge(
            train.fmri,
            train.images,
            train.stimulus_id,
            k=config.ridge_folds,
            per_target=False,
            **self.ridge_options(),
        )
        self.condition_readout_ = None
        if config.condition_readout == "patches":
            self.condition_readout_ = PatchReadout.fit_out_of_fold(train.images, conditions)
        pairs = {
            "x": torch.from_numpy(train.images[:, None]),
            "c": torch.from_numpy(self._conditions(conditions)[:, None]),
        }
        self._fit_network(pairs, lambda batch, gen: random_shift(batch, config.max_shift, gen), self.name)

    def fit_prior(self, images: np.ndarray) -> None:
        clean = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)[:, None])
        centre_and_spread = (float(clean.mean()), float(clean.std()))

        def stand_in(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
            shifted = random_shift(batch, self.config.max_shift, generator)["x"]
            return {"x": shifted, "c": stand_in_condition(shifted, *centre_and_spread, generator)}

        self._fit_network({"x": clean}, stand_in, f"{self.name} prior")

    def _fit_network(self, data: dict[str, torch.Tensor], augment: Augment, description: str) -> None:
        """Train the CVAE (from `warm_start_`'s weights where there is one) on images `x` and conditions
        `c` (which `augment` may make)."""
        config = self.config
        torch.manual_seed(self.settings.seed)
        self.model_ = ConditionalVaeNet(CvaeConfig(self.image_size_, config.latent_dim, config.width))
        if self.warm_start_ is not None:
            self.model_.load_state_dict(self.warm_start_.model_.state_dict())
        training = self.training(config.training)  # the run's batch size, if it sets one
        sampler = BatchSampler(data, training.batch_size, seed=self.settings.seed, augment=augment)
        self.training_ = train_model(
            self.model_,
            lambda model, batch, _: negative_elbo(model, batch["x"], batch["c"], config.beta)[0],
            sampler,
            training,
            **self.checkpointing(),
            description=description,
        )

    def save_prior(self, folder: Path) -> None:
        save_cvae(self.model_, folder / "cvae")

    def load_prior(self, folder: Path) -> None:
        self.model_ = load_cvae(folder / "cvae", resolve_device(self.settings.device))

    def save_parts(self, folder: Path) -> dict[str, Any]:
        save_cvae(self.model_, folder / "cvae")
        self.ridge_.save(folder / "ridge")
        readout = self.condition_readout_
        return {"condition_readout": None if readout is None else readout.to_dict()}

    def load_parts(self, folder: Path, manifest: dict[str, Any], base: str | Path | None) -> None:
        self.model_ = load_cvae(folder / "cvae", resolve_device(self.settings.device))
        self.ridge_ = self.load_ridge(folder / "ridge")
        saved = manifest.get("condition_readout")
        self.condition_readout_ = None if saved is None else PatchReadout(**saved)
        self.config = replace(self.config, condition_readout="pixels" if saved is None else "patches")

    def records(self) -> dict[str, Any]:
        readout = self.condition_readout_
        return super().records() | ({} if readout is None else {"condition_readout": readout.to_dict()})

    def sampling_inputs(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        size = self.image_size_
        decoded = self.ridge_.predict(fmri).reshape(len(fmri), size, size)
        return {"conditions": torch.from_numpy(self._conditions(decoded)[:, None])}

    def _conditions(self, decoded: np.ndarray) -> np.ndarray:
        """Ridge's images [n, H, W] as the CVAE sees them: as decoded, or read out as the design's patches."""
        readout = self.condition_readout_
        conditions = decoded if readout is None else readout(np.clip(decoded, 0, 1))
        return np.ascontiguousarray(conditions, dtype=np.float32)

    def steers_steps(self) -> bool:
        """Whether Langevin chains carry the likelihood's gradient to the latents (else, under a likelihood
        weight, it weighs the samples)."""
        return self.steers() and self.config.langevin_steps > 0

    @torch.no_grad()
    def draw(self, inputs: dict[str, torch.Tensor], generators: list[torch.Generator]) -> np.ndarray:
        """Decode one prior draw z ~ N(0, I) per image, each from its own generator; under steers_steps,
        the draw starts a Langevin chain towards the tempered posterior and its last latent is decoded."""
        model = self.model_
        device = next(model.parameters()).device
        z = torch.stack([torch.randn(model.config.latent_dim, generator=g) for g in generators]).to(device)
        features = model.condition_features(inputs["conditions"].to(device))
        if self.steers_steps():
            config = self.config
            posterior = tempered_latent_posterior(
                lambda latents: model.decode(latents, features)[:, 0],
                self.encoding_.likelihood(config.encoding_noise).to(device),
                inputs["measured"].to(device),
                config.likelihood_weight,
            )
            z, _ = mala(posterior, z, config.langevin_steps, config.langevin_step_size, generators)
        return model.decode(z, features)[:, 0].float().cpu().numpy()
