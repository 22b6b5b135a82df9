"""LoRA fine-tuning and generation speed of an SD-1.5-shaped model at 512x512 (64x64 latents).

The UNet (859M parameters) and VAE have Stable Diffusion 1.5's configs with random weights (speed does not
depend on the values); they are saved and read back through `load_base_model`, the path a user's real
weights take. Training runs the project's own loop (`fmri_diffusion.training.denoising.finetune`, which
calls `DenoisingStep` through `fmri_encoders.training.train`) twice, for `--warmup` and for `--warmup +
--steps` steps, and reports the difference, so start-up and the first (compiling) steps do not count.
Generation:
the project's FmriImagePipeline with DDIM, classifier-free guidance, VAE decoding to 512 px.

Each is timed under several layouts (`--variants`): `baseline` (PyTorch's defaults), `cudnn_benchmark` (cuDNN
times its convolution algorithms once per shape and keeps the fastest), `channels_last` (that, with the
UNet's and VAE's convolution weights stored channels-last, the layout Hopper's tensor cores read directly)
and `compiled` (cuDNN autotuning and the UNet, with its LoRA layers, compiled by `torch.compile`'s default
inductor mode; the warm-up run compiles; it cannot be undone, so it comes last).

    uv run benchmarks/sd_lora_speed.py --device cuda            # results/sd_lora_speed-<gpu>.json
    uv run benchmarks/sd_lora_speed.py --small --device cpu     # a tiny stand-in, to check the script
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from result_file import comma_separated, torch_run_header, write_torch_result

from fmri_diffusion.models.conditioner import FmriConditioner
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.priors.loading import BaseModel, load_base_model
from fmri_diffusion.schedulers import sampling_scheduler
from fmri_diffusion.testing import stable_diffusion_unet, stable_diffusion_vae
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune, prepare_unet
from fmri_diffusion.training.lora import count_trainable
from fmri_encoders.training import TrainingConfig

N_VOXELS = 4096


def sd15_base(folder: Path, *, small: bool) -> BaseModel:
    """SD 1.5's UNet/VAE/scheduler configs (or a tiny stand-in), saved and loaded like real weights."""
    unet = stable_diffusion_unet(published=not small)
    vae = stable_diffusion_vae(published=not small)
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    BaseModel(unet=unet, vae=vae, scheduler=scheduler, source="random").save(folder)
    return load_base_model(folder)


VARIANTS = ("baseline", "cudnn_benchmark", "channels_last", "compiled")


def apply_variant(variant: str, unet: torch.nn.Module, *others: torch.nn.Module) -> None:
    """Switch cuDNN autotuning and the modules' memory layout to `variant`'s; `compiled` compiles `unet`."""
    torch.backends.cudnn.benchmark = variant != "baseline"
    layout = torch.channels_last if variant == "channels_last" else torch.contiguous_format
    for module in (unet, *others):
        module.to(memory_format=layout)
    if variant == "compiled":
        unet.compile()


def compiled_last(text: str) -> list[str]:
    """--variants: known names, `compiled` (which cannot be undone) only last."""
    names = comma_separated(VARIANTS)(text)
    if "compiled" in names[:-1]:
        raise argparse.ArgumentTypeError("compiled cannot be undone: put it last")
    return names


def time_training(base: BaseModel, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    config = FinetuneConfig(
        adapter="lora",
        lora_rank=args.rank,
        training=TrainingConfig(
            batch_size=args.batch_size,
            mixed_precision=args.precision,
            device=args.device,
            ema_decay=None,
            warmup_steps=1,
            progress=False,
        ),
    )
    latent = base.unet.config.sample_size
    tensors = {
        "clean": torch.randn(4 * args.batch_size, 4, latent, latent),
        "condition": torch.randn(4 * args.batch_size, N_VOXELS),
    }
    unet = prepare_unet(base.unet, config)
    conditioner = FmriConditioner(N_VOXELS, base.token_dim, n_tokens=8)
    model = ConditionedUNet(unet, conditioner)
    results = {}
    for variant in args.variants:
        apply_variant(variant, model.unet, model)
        _reset_peak_memory(args.device)
        seconds = []
        for steps in (args.warmup, args.warmup, args.warmup + args.steps):  # the first run warms up
            run = replace(config, training=replace(config.training, max_steps=steps))
            _sync(args.device)
            start = time.perf_counter()
            finetune(model, tensors, base.scheduler, run)
            _sync(args.device)
            seconds.append(time.perf_counter() - start)
        per_step = (seconds[2] - seconds[1]) / args.steps
        results[variant] = {
            "lora_parameters": count_trainable(unet),
            "conditioner_parameters": count_trainable(conditioner),
            "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "seconds_per_step": per_step,
            "images_per_second": args.batch_size / per_step,
            "peak_memory_gib": _peak_memory(args.device),
        }
        print(f"training {variant}: {results[variant]['images_per_second']:.1f} img/s", flush=True)
    return results


def time_generation(base: BaseModel, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    pipe = FmriImagePipeline(
        unet=base.unet.to(dtype),
        scheduler=sampling_scheduler("ddim", base.scheduler),
        conditioner=FmriConditioner(N_VOXELS, base.token_dim, n_tokens=8),
        vae=base.vae.to(dtype),
        image_fit="resize",
    ).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    condition = torch.randn(args.gen_batch_size, N_VOXELS)
    size = base.resolution
    results = {}
    for variant in args.variants:
        apply_variant(variant, pipe.unet, pipe.vae)
        _reset_peak_memory(args.device)
        times = []
        for _ in range(args.gen_repeats + 1):  # the first call warms up
            _sync(args.device)
            start = time.perf_counter()
            pipe(condition, image_size=size, num_inference_steps=25, guidance_scale=7.5)
            _sync(args.device)
            times.append(time.perf_counter() - start)
        seconds = sorted(times[1:])[len(times[1:]) // 2]
        results[variant] = {
            "seconds_per_batch": seconds,
            "images_per_second": args.gen_batch_size / seconds,
            "peak_memory_gib": _peak_memory(args.device),
        }
        print(f"generation {variant}: {results[variant]['images_per_second']:.2f} img/s", flush=True)
    return results


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_memory(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--gen-batch-size", type=int, default=16)
    parser.add_argument("--gen-repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        type=compiled_last,
        default=list(VARIANTS),
        help=f"comma-separated, timed in this order (default: {','.join(VARIANTS)})",
    )
    parser.add_argument("--small", action="store_true", help="a tiny stand-in model (checks the script)")
    parser.add_argument("--out", type=Path, help="result file (default: results/sd_lora_speed-<device>.json)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory() as folder:
        training = time_training(sd15_base(Path(folder) / "train", small=args.small), args)
        generation = time_generation(sd15_base(Path(folder) / "gen", small=args.small), args)
    result = {
        **torch_run_header("sd_lora_speed", args),
        "lora_training": training,
        "generation_25_steps_cfg": generation,
    }
    write_torch_result(result, args)


if __name__ == "__main__":
    main()
