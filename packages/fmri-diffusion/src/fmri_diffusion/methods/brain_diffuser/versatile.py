"""Brain-Diffuser's stage-2 guides for Versatile Diffusion, as published: ridge from fMRI to the 257
CLIP-vision tokens of each training image and (where captions exist) to the 77 CLIP-text tokens of its
captions, mixed inside the dual-guided UNet by `mixing` (the text weight; 0.4 published)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fmri_data.dataset import PairedDataset
from fmri_diffusion.methods.brain_diffuser.parts import fit_ridge, predict_tokens, resolve_mixing
from fmri_diffusion.priors.versatile import VersatileDiffusion
from fmri_encoders.persistence import load_settings_and_tensors, save_settings_and_tensors
from fmri_encoders.ridge import RidgeEncoder

GUIDANCE_SCALE = 7.5
"""The published classifier-free guidance of this route."""


class VersatileGuides:
    """The predicted [caption tokens, image tokens] of each trial, and the null pair (the empty caption's
    and a gray image's tokens) that classifier-free guidance steers away from."""

    def __init__(
        self,
        image_ridge: RidgeEncoder,
        image_shape: tuple[int, ...],
        null_text: torch.Tensor,
        null_image: torch.Tensor,
        mixing: float,
        text_ridge: RidgeEncoder | None = None,
    ) -> None:
        self.image_ridge, self.image_shape = image_ridge, image_shape
        self.null_text, self.null_image = null_text, null_image
        self.mixing, self.text_ridge = mixing, text_ridge  # a text ridge when mixing > 0

    @classmethod
    def fit(cls, train: PairedDataset, model: VersatileDiffusion, mixing: float | None) -> VersatileGuides:
        """The ridges' predictions are rescaled to the training tokens' mean and std, as published."""
        mixing = resolve_mixing(mixing, train.captions is not None)
        images = model.images(train.images)
        text_ridge = None
        if mixing > 0:
            text_ridge = fit_ridge(train, model.captions(list(train.captions)), rescale=True)
        null_text, null_image = model.captions.encode([""]), model.images.null()
        image_ridge = fit_ridge(train, images, rescale=True)
        return cls(image_ridge, tuple(images.shape[1:]), null_text, null_image, mixing, text_ridge)

    def predict(self, fmri: np.ndarray) -> dict[str, torch.Tensor]:
        """The pipeline's `tokens` and `negative_tokens`, [n, 77 + 257, D] each."""
        n = len(fmri)
        image = predict_tokens(self.image_ridge, fmri, self.image_shape)
        text = self.null_text.expand(n, -1, -1)
        if self.text_ridge is not None:
            text = predict_tokens(self.text_ridge, fmri, tuple(self.null_text.shape[1:]))
        null = torch.cat([self.null_text, self.null_image], 1).expand(n, -1, -1)
        return {"tokens": torch.cat([text, image], 1), "negative_tokens": null}

    def save(self, folder: Path) -> dict[str, object]:
        self.image_ridge.save(folder / "image_token_ridge")
        if self.text_ridge is not None:
            self.text_ridge.save(folder / "text_ridge")
        nulls = {"null_text": self.null_text, "null_image": self.null_image}
        save_settings_and_tensors(folder, "versatile_guides", {"image_shape": list(self.image_shape)}, nulls)
        return {"mixing": self.mixing}

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, object]) -> VersatileGuides:
        settings, nulls = load_settings_and_tensors(folder, "versatile_guides")
        mixing = manifest["mixing"]
        text_ridge = RidgeEncoder.load(folder / "text_ridge") if mixing > 0 else None
        return cls(
            RidgeEncoder.load(folder / "image_token_ridge"),
            tuple(settings["image_shape"]),
            nulls["null_text"],
            nulls["null_image"],
            mixing,
            text_ridge,
        )
