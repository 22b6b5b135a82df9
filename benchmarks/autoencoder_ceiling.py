"""How well the small base model's autoencoder draws a data set's stimuli: the ceiling of every latent route.

The sd-* routes (with `decode=vae`) and Brain-Diffuser's autoencoder stage 1 draw their images through the
base model's autoencoder, so their pixels can hardly score above what it makes of the true stimuli
themselves (encoded, then decoded; residual decoding partly bypasses it). This measures that with fmri_eval,
for the stimuli and for a sample of the prior corpus the autoencoder learned (the gap between the two is the
corpus's domain gap). The base model is the one the leaderboard's kfold cells of seed 0 use (same recipe,
corpus screened against every stimulus, from the same cache; `simulator` is the built-in corpus they use
when none is named), so it is pre-trained here only where those cells have not run yet.

    uv run benchmarks/autoencoder_ceiling.py --data digit69 --prior-corpus digits
    # -> results/autoencoder_ceiling-digit69-digits.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from result_file import write_result

from fmri_data.corpora import load_corpus
from fmri_data.io import load_dataset
from fmri_data.methods import MethodSettings
from fmri_diffusion.pipelines.pixels import from_pixels
from fmri_diffusion.priors import base_model_for
from fmri_diffusion.priors.loading import BaseModel
from fmri_diffusion.priors.small import SmallBaseConfig
from fmri_encoders.runtime import resolve_device
from fmri_eval.metrics import image_metrics

ROOT = Path(__file__).resolve().parents[1]
CORPUS_SAMPLE = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digit69", help="a data set name or file (as apps/reconstruct.py)")
    parser.add_argument("--prior-corpus", default="digits", help="a built-in corpus name or a path")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=ROOT / "runs" / "leaderboard" / "cpu2" / "cache",
        help="base models cached by recipe and corpus (default: the CPU leaderboard's)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    stimuli = np.unique(dataset.images, axis=0)  # kfold tests every stimulus: screen against them all
    size = dataset.images.shape[1]
    corpus = load_corpus(args.prior_corpus, size, stimuli=stimuli).screened(stimuli)
    device = resolve_device(args.device)
    named = None if args.prior_corpus == "simulator" else corpus  # as runs that name no corpus
    settings = MethodSettings(device=device, cache_dir=args.cache_dir, prior_corpus=named)
    base = base_model_for(settings, SmallBaseConfig(), size)
    count = min(CORPUS_SAMPLE, len(corpus.images))
    sample = np.sort(np.random.default_rng(0).choice(len(corpus.images), count, replace=False))
    result = {
        "data": args.data,
        "prior_corpus": corpus.screening.as_dict(),
        "base": Path(base.source).name,
        "stimuli": ceiling(base, stimuli, device),
        "corpus_sample": ceiling(base, corpus.images[sample], device),
    }
    name = Path(args.prior_corpus).stem if Path(args.prior_corpus).exists() else args.prior_corpus
    write_result(result, "autoencoder_ceiling", f"{Path(args.data).stem}-{name}", args.out)


@torch.no_grad()
def ceiling(base: BaseModel, images: np.ndarray, device: str) -> dict[str, float | int]:
    """Mean pcc / SSIM / MSE / PSNR of images encoded and decoded by the base model's autoencoder."""
    latents = base.encode_images(images.astype(np.float32), device) / base.vae.config.scaling_factor
    vae = base.vae.to(device)
    decoded = torch.cat([vae.decode(chunk.to(device)).sample.float().cpu() for chunk in latents.split(64)])
    drawn = from_pixels(decoded, images.shape[-1], fit="resize").numpy()
    scores = image_metrics(images, drawn)
    return {"n": len(images), **{name: round(float(values.mean()), 4) for name, values in scores.items()}}


if __name__ == "__main__":
    main()
