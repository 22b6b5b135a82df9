"""Peak GPU memory and time of the whole Brain-Diffuser pipeline on an SD-1.5-sized model, on one GPU.

The base model has Stable Diffusion 1.5's UNet (859M parameters) and VAE configs with random weights
(memory does not depend on the values) plus an image embedder, saved and read back through
`--pretrained` as a user's weights would be. The run is the `brain-diffuser` method itself: stage 1
(VAE encoding of the training images at 512 px, ridge to latents), the stage-2 ridge to image tokens,
the prior's LoRA adaptation (bf16) and sampling (strength 0.75, 50 DDIM steps), on simulated data.
The issue's target is the whole pipeline within 24 GB on one GPU.

    python benchmarks/brain_diffuser_memory.py --device cuda     # results/brain_diffuser_memory-<gpu>.json
    python benchmarks/brain_diffuser_memory.py --small --device cpu   # a tiny stand-in, checks the script
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from result_file import torch_run_header, write_torch_result
from sd_lora_speed import sd15_base

from fmri_data.methods import MethodSettings
from fmri_data.simulator import simulate_miyawaki
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser, BrainDiffuserConfig
from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_encoders.training import TrainingConfig


def base_with_embedder(folder: Path, *, small: bool) -> Path:
    """The SD-1.5-shaped base plus an image embedder (latents -> 8 tokens), saved like a user's folder."""
    base = sd15_base(folder / "sd", small=small)
    latent = base.unet.config.sample_size
    base.conditioner = FmriConditioner(4 * latent * latent, base.token_dim, n_tokens=8, hidden=1024)
    base.save(folder / "base")
    return folder / "base"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--prior-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--small", action="store_true", help="a tiny stand-in model (checks the script)")
    parser.add_argument("--out", type=Path, help="default: results/brain_diffuser_memory-<device>.json")
    args = parser.parse_args()
    dataset = simulate_miyawaki(n_train=args.n_train, seed=3)
    train = dataset.subset(~dataset.given_test)
    test = dataset.subset(dataset.given_test)
    config = BrainDiffuserConfig(
        prior_adapter="lora",
        n_samples=2,
        sample_batch_size=16,
        prior_training=TrainingConfig(
            max_steps=args.prior_steps,
            batch_size=args.batch_size,
            mixed_precision="bf16" if args.device == "cuda" else "no",
            progress=False,
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        pretrained = base_with_embedder(Path(folder), small=args.small)
        settings = MethodSettings(device=args.device, pretrained=str(pretrained), progress=False)
        phases = {}
        start = time.perf_counter()
        method = BrainDiffuser(settings, config).fit(train)
        phases["fit"] = {"seconds": time.perf_counter() - start, "peak_memory_gib": _peak(args.device)}
        start = time.perf_counter()
        rows = method.predict_named(test.fmri)
        phases["predict"] = {"seconds": time.perf_counter() - start, "peak_memory_gib": _peak(args.device)}
    peak = max(phase["peak_memory_gib"] or 0 for phase in phases.values())
    result = {
        **torch_run_header("brain_diffuser_memory", args),
        "n_train_trials": train.n_trials,
        "n_test_trials": test.n_trials,
        "resolution": method.base_.resolution,
        "unet_parameters": sum(p.numel() for p in method.base_.unet.parameters()),
        "phases": phases,
        "peak_memory_gib": peak,
        "within_24_gib": bool(peak <= 24) if args.device == "cuda" else None,
        "output_shape": list(rows["brain-diffuser"].shape),
    }
    write_torch_result(result, args)


def _peak(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


if __name__ == "__main__":
    main()
