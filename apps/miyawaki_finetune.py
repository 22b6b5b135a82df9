"""The main job: fine-tune a (Stable-)Diffusion UNet with LoRA on fMRI, evaluate it beside ridge and the mean.

    uv run apps/miyawaki_finetune.py                              # simulator (Miyawaki design), given split
    uv run apps/miyawaki_finetune.py --data miyawaki --split loso # real Miyawaki, each stimulus held out
    uv run apps/miyawaki_finetune.py --pretrained ~/models/sd15   # a local Stable Diffusion folder, 512 px
    accelerate launch --num_processes 4 apps/miyawaki_finetune.py --pretrained ~/models/sd15 --device cuda

Without --pretrained a small base model of the same diffusers classes is first pre-trained on an image corpus
and cached in runs/miyawaki-finetune/cache, or --work-dir/cache (a few minutes on a laptop CPU, once): on
Miyawaki's data, random binary patches of its own stimulus grid (its training design, screened against every
test stimulus); on digit69's, the handwritten digits drawn as MNIST draws them (`digits`); elsewhere, the
simulator's corpus. fMRI then reaches the UNet through the conditioner's
cross-attention tokens, and LoRA adapters on the cross-attention learn with it. Unless the command line
sets them, the decoding (the VAE's, or residual: ridge's image plus what sampling changed), the
likelihood weight and the readout (pixels, or on binary-patch data such as Miyawaki's the posterior mean of
each patch) are chosen on validation stimuli held out of each fold's training trials.
All options of apps/reconstruct.py apply (--method sd-direct / sd-control run the other routes); only the
defaults differ. Writes metrics.json, reconstructions.npz/.png, report.md and the loss curve to --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reconstruct import main_with_defaults

DEFAULTS = {
    "data": "sim",
    "split": "given",
    "methods": ["mean", "ridge", "sd-lora"],
    "runs": Path("runs/miyawaki-finetune"),
    "keeps_work": True,
    "choose": [
        ("decode", ("vae", "residual")),
        ("likelihood_weight", (0.0, 0.5, 1.0)),
        ("readout", ("pixels", "patches")),
    ],
    "prior_corpus_for": {"miyawaki": "binary-patterns", "digit69": "digits"},
}


def main(argv: list[str] | None = None) -> int:
    return main_with_defaults(argv, prog="miyawaki_finetune", doc=__doc__, defaults=DEFAULTS)


if __name__ == "__main__":
    sys.exit(main())
