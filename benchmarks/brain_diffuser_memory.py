"""Peak GPU memory and time of the whole Brain-Diffuser pipeline at full size, on one GPU.

Two routes, each the `brain-diffuser` method itself on simulated data, with random weights of the real
shapes (memory does not depend on the values) saved and read back through `--pretrained` as a user's
weights would be:
- `published` (default): VDVAE stage 1 (the ImageNet-64 model, 125M parameters; ridge to its first 31
  latent layers, 91,168 numbers per image) and Versatile Diffusion stage 2 (SD-1.x-sized dual-guided UNet,
  CLIP ViT-L/14 vision and CLIP-L text encoders; ridge to 257 + 77 tokens of 768; strength 0.75, 50 DDIM
  steps, guidance 7.5, mixing 0.4, one sample per trial, as published), the stage-2 models in bf16.
- `autoencoder`: an SD-1.5-sized base with an image embedder; stage 1 on its VAE latents, the prior's LoRA
  adaptation (bf16), then sampling.
The issue's target is the whole pipeline within 24 GB on one GPU.

    python benchmarks/brain_diffuser_memory.py --device cuda   # writes brain_diffuser_memory-published-<gpu>
    python benchmarks/brain_diffuser_memory.py --small --device cpu --steps 4   # tiny stand-ins: checks it
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from result_file import torch_run_header, write_torch_result
from sd_lora_speed import sd15_base

from fmri_data.methods import MethodSettings
from fmri_data.simulator import simulate_miyawaki
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser, BrainDiffuserConfig
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.testing import write_vdvae, write_versatile
from fmri_encoders.training import TrainingConfig


def base_with_embedder(folder: Path, *, small: bool) -> Path:
    """The SD-1.5-shaped base plus an image embedder (latents -> 8 tokens), saved like a user's folder."""
    base = sd15_base(folder / "sd", small=small)
    latent = base.unet.config.sample_size
    base.conditioner = FmriConditioner(4 * latent * latent, base.token_dim, n_tokens=8, hidden=1024)
    base.save(folder / "base")
    return folder / "base"


def published_models(folder: Path, *, small: bool) -> Path:
    """A Versatile Diffusion folder with a converted VDVAE in its vdvae/: one --pretrained folder."""
    write_vdvae(
        write_versatile(folder / "versatile-diffusion", published=not small) / "vdvae", published=not small
    )
    return folder / "versatile-diffusion"


def route_config(args: argparse.Namespace) -> BrainDiffuserConfig:
    if args.route == "published":
        return BrainDiffuserConfig(stage1="vdvae", stage2="versatile", n_samples=1, sample_batch_size=8)
    training = TrainingConfig(
        max_steps=args.prior_steps,
        batch_size=args.batch_size,
        mixed_precision="bf16" if args.device == "cuda" else "no",
        progress=False,
    )
    return BrainDiffuserConfig(
        prior_adapter="lora", n_samples=2, sample_batch_size=16, prior_training=training
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="published", choices=["published", "autoencoder"])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (strength 0.75 runs 3/4 of them)")
    parser.add_argument(
        "--prior-steps", type=int, default=50, help="autoencoder route: LoRA adaptation steps"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="autoencoder route: LoRA batch size")
    parser.add_argument("--small", action="store_true", help="tiny stand-in models (checks the script)")
    parser.add_argument(
        "--out", type=Path, help="default: results/brain_diffuser_memory-<route>-<device>.json"
    )
    args = parser.parse_args()
    dataset = simulate_miyawaki(n_train=args.n_train, seed=3)
    captions = np.array([f"a pattern number {i}" for i in dataset.stimulus_id])  # caption guidance runs too
    dataset = replace(dataset, captions=captions)
    train = dataset.subset(~dataset.given_test)
    test = dataset.subset(dataset.given_test)
    config = replace(route_config(args), num_inference_steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        build = published_models if args.route == "published" else base_with_embedder
        pretrained = build(Path(folder), small=args.small)
        precision = "bf16" if args.device == "cuda" else None
        settings = MethodSettings(
            device=args.device, pretrained=str(pretrained), progress=False, mixed_precision=precision
        )
        phases = {}
        start = time.perf_counter()
        method = BrainDiffuser(settings, config).fit(train)
        phases["fit"] = {"seconds": time.perf_counter() - start, **_peaks(args.device)}
        start = time.perf_counter()
        rows = method.predict_named(test.fmri)
        phases["predict"] = {"seconds": time.perf_counter() - start, **_peaks(args.device)}
    peak = max(phase["peak_memory_gib"] for phase in phases.values())
    held = max(phase["peak_reserved_gib"] for phase in phases.values()) if args.device == "cuda" else None
    result = {
        **torch_run_header(f"brain_diffuser_memory-{args.route}", args),
        "route": args.route,
        "n_train_trials": train.n_trials,
        "n_test_trials": test.n_trials,
        "resolution": method.base_.resolution,
        "unet_parameters": sum(p.numel() for p in method.base_.unet.parameters()),
        "phases": phases,
        "peak_memory_gib": peak,
        "peak_memory_is": "GPU allocation" if args.device == "cuda" else "process resident memory (CPU)",
        "peak_reserved_gib": held,
        "within_24_gib": None if held is None else bool(held <= 24),
        "output_shape": list(rows["brain-diffuser"].shape),
    }
    write_torch_result(result, args)


def _peaks(device: str) -> dict[str, float]:
    """GiB: on a GPU its peak allocation and what the caching allocator held at most (what the card must
    hold, and what the 24 GB target is judged on); on a CPU the process's peak resident memory (weights,
    activations and the Python process together: an upper bound of what the model needs)."""
    if device == "cuda":
        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        }
    return {"peak_memory_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30}


if __name__ == "__main__":
    main()
