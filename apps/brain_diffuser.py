"""Brain-Diffuser: ridge to autoencoder latents (stage 1), then img2img guided by predicted image embeddings.

    uv run apps/brain_diffuser.py                                    # simulator, given split
    uv run apps/brain_diffuser.py --data digit69                     # stage 1 and stage 2 as two rows
    uv run apps/brain_diffuser.py --data miyawaki --split kfold:5 --strength 0.5
    uv run apps/brain_diffuser.py --data nsd --nsd-root DIR --subject 1 --device cuda \
        --feature-weights ~/models/feature-nets                      # + the NSD literature's 8-metric table
    uv run apps/brain_diffuser.py --data nsd --nsd-root DIR --subject 1 --device cuda \
        --stage1 vdvae --stage2 versatile --pretrained ~/models/versatile-diffusion --colour   # as published

On NSD each image's trials are averaged over their repeats, training and test, as Brain-Diffuser did
(the papers score each shared test image once; --average-repeats test keeps single training trials).
--colour reads NSD's stimuli in RGB, as published: the published route (VDVAE, then Versatile Diffusion)
reconstructs them in colour; the other routes work in grayscale and refuse colour.
Stage 1 decodes ridge-predicted latents of the base model's autoencoder, or of VDVAE as published
(--stage1 vdvae); stage 2 starts from them at --strength (0.75, 50 DDIM steps) guided by image-embedding
tokens ridge-predicted from fMRI: on Versatile Diffusion as published (--stage2 versatile), or on a prior
adapted to the training images first (--prior-adapter). The base model is the small one pre-trained here
(cached in runs/brain-diffuser/cache, or --work-dir/cache), or --pretrained for a user's model. Every
stage is saved in --work-dir.
All options of apps/reconstruct.py apply; the outputs are the same (metrics.json, reconstructions, report).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reconstruct import main_with_defaults

DEFAULTS = {
    "data": "sim",
    "split": "given",
    "methods": ["mean", "ridge", "brain-diffuser-stage1", "brain-diffuser"],
    "runs": Path("runs/brain-diffuser"),
    "keeps_work": True,
    "average_repeats_for": {"nsd": "both"},  # as Brain-Diffuser: each image once, its trials averaged
}


def main(argv: list[str] | None = None) -> int:
    return main_with_defaults(argv, prog="brain_diffuser", doc=__doc__, defaults=DEFAULTS)


if __name__ == "__main__":
    sys.exit(main())
