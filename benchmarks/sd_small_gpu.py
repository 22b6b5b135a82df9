"""Peak GPU memory of the SD-1.5-sized fine-tunes under the small-GPU options: does each fit a 12 GB card?

The UNet (859M parameters) and VAE have Stable Diffusion 1.5's configs (`sd_lora_speed.sd15_base`), loaded
through `load_base_model` as a user's weights are. Each recipe loads them afresh, puts the VAE beside the UNet
(as the sd-* routes hold it while they fine-tune) and runs a few updates of the project's own fine-tuning
loop at 512 px (64x64 latents) with bf16, gradient checkpointing and gradient accumulation, the options
`apps/reconstruct.py` exposes (`--mixed-precision bf16 --gradient-checkpointing --gradient-accumulation K
--optimizer adafactor`). A recipe fits when torch's reserved memory plus 0.5 GB of CUDA context stays under
12 GB (12e9 bytes).

    uv run benchmarks/sd_small_gpu.py --device cuda      # results/sd_small_gpu-<gpu>.json
    uv run benchmarks/sd_small_gpu.py --small --device cpu --precision no   # checks the script
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from result_file import comma_separated, torch_run_header, write_torch_result
from sd_lora_speed import N_VOXELS, sd15_base

from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.priors.loading import load_base_model
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune, prepare_unet
from fmri_encoders.training import TrainingConfig

CARD_BYTES = 12e9
CUDA_CONTEXT_BYTES = 0.5e9


@dataclass(frozen=True)
class Recipe:
    adapter: str
    micro_batch: int
    optimizer: str = "adamw"
    ema: bool = True
    accumulation: int | None = None  # micro-batches per update; None: --accumulation


RECIPES = {
    "lora": Recipe("lora", micro_batch=8),
    "full-adamw": Recipe("full", micro_batch=4),  # sd-full's own optimizer and EMA
    "full-adafactor": Recipe("full", micro_batch=4, optimizer="adafactor"),
    "full-adafactor-no-ema": Recipe("full", micro_batch=4, optimizer="adafactor", ema=False),
    # one image per micro-batch, 16 per update: the same effective batch with a quarter of the activations
    "full-adafactor-mb1": Recipe("full", micro_batch=1, optimizer="adafactor", accumulation=16),
    "full-adafactor-no-ema-mb1": Recipe(
        "full", micro_batch=1, optimizer="adafactor", ema=False, accumulation=16
    ),
}


def measure(folder: Path, recipe: Recipe, args: argparse.Namespace) -> dict[str, float | bool | str]:
    """Load the base afresh, fine-tune `args.updates` updates under `recipe`; peak memory and time."""
    base = load_base_model(folder)
    vae = base.vae.to(args.device)
    accumulation = recipe.accumulation or args.accumulation
    config = FinetuneConfig(
        adapter=recipe.adapter,
        gradient_checkpointing=True,
        training=TrainingConfig(
            max_steps=args.updates,
            batch_size=recipe.micro_batch,
            gradient_accumulation_steps=accumulation,
            mixed_precision=args.precision,
            optimizer=recipe.optimizer,
            ema_decay=0.999 if recipe.ema else None,
            device=args.device,
            warmup_steps=1,
            progress=False,
        ),
    )
    latent = base.unet.config.sample_size
    tensors = {
        "clean": torch.randn(4 * recipe.micro_batch, 4, latent, latent),
        "condition": torch.randn(4 * recipe.micro_batch, N_VOXELS),
    }
    model = ConditionedUNet(prepare_unet(base.unet, config), FmriConditioner(N_VOXELS, base.token_dim, 8))
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    finetune(model, tensors, base.scheduler, config)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result: dict[str, float | bool | str] = {
        **{key: str(value) for key, value in vars(recipe).items()},
        "effective_batch": recipe.micro_batch * accumulation,
        "seconds_per_update": seconds / args.updates,
    }
    if cuda:
        reserved = torch.cuda.max_memory_reserved()
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["peak_reserved_gib"] = reserved / 2**30
        result["fits_12_gb"] = reserved + CUDA_CONTEXT_BYTES <= CARD_BYTES
    del model, base, vae, tensors
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--accumulation", type=int, default=4, help="micro-batches per update")
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument(
        "--recipes",
        type=comma_separated(RECIPES),
        default=list(RECIPES),
        help=f"comma-separated (default: {','.join(RECIPES)})",
    )
    parser.add_argument("--small", action="store_true", help="a tiny stand-in model (checks the script)")
    parser.add_argument("--out", type=Path, help="result file (default: results/sd_small_gpu-<device>.json)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        sd15_base(Path(folder), small=args.small)
        for name in args.recipes:
            results[name] = measure(Path(folder), RECIPES[name], args)
            print(name, results[name], flush=True)
    result = {
        **torch_run_header("sd_small_gpu", args),
        "resolution": "512 px (64x64 latents)" if not args.small else "tiny stand-in",
        "gradient_checkpointing": True,
        "card_bytes": CARD_BYTES,
        "cuda_context_bytes_assumed": CUDA_CONTEXT_BYTES,
        "recipes": results,
    }
    write_torch_result(result, args)


if __name__ == "__main__":
    main()
