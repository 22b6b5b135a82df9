"""Sampling and training speed of the `ddpm` and `ldm` models at their default (digit69) sizes.

Speed does not depend on the weights, so the models are built untrained. Sampling: 10 test images of
28x28 with 25 DDIM steps, one sample each and 8 samples each (the posterior mean the methods report).
Training: optimizer steps per second at the default batch size, for a bare PyTorch loop and for the
project's own loop (`fmri_diffusion.training.denoising.finetune`: sampler, noise draws, EMA, clipping, NaN
check), with and without EMA, so the loop's own cost per step shows. Results go to
benchmarks/results/diffusion_speed-<device>.json.

    uv run benchmarks/diffusion_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from result_file import comma_separated

from fmri_diffusion.methods.conditional import DiffusionConfig, build_denoiser
from fmri_diffusion.methods.ldm import LDMConfig
from fmri_diffusion.models.builders import small_autoencoder
from fmri_diffusion.pipelines.fmri_image import FmriImagePipeline
from fmri_diffusion.schedulers import sampling_scheduler, training_scheduler
from fmri_diffusion.training.denoising import ConditionedUNet, FinetuneConfig, finetune
from fmri_encoders.training import TrainingConfig

IMAGE_SIZE, N_TEST, STEPS = 28, 10, 25


def build(kind: str, device: str) -> FmriImagePipeline:
    if kind == "ddpm":
        config, size, channels, vae = DiffusionConfig(), 32, 1, None
    else:
        config = LDMConfig()
        vae = small_autoencoder(sample_size=32, block_out_channels=config.autoencoder.block_out_channels)
        size, channels = 8, vae.config.latent_channels
    unet, conditioner = build_denoiser(config, channels, size)
    pipe = FmriImagePipeline(
        unet=unet,
        scheduler=sampling_scheduler("ddim", training_scheduler()),
        conditioner=conditioner,
        vae=vae,
    ).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def time_sampling(pipe: FmriImagePipeline, n_images: int, repeats: int = 3) -> float:
    unet = pipe.unet.config
    spatial = torch.zeros(
        n_images, unet.in_channels // 2, unet.sample_size, unet.sample_size, device=pipe.device
    )
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        start = time.perf_counter()
        pipe(spatial.flatten(1), spatial, image_size=IMAGE_SIZE, num_inference_steps=STEPS)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def time_training(pipe: FmriImagePipeline, batch_size: int, steps: int = 20) -> float:
    unet, conditioner = pipe.unet, pipe.conditioner
    unet.train()
    params = [*unet.parameters(), *conditioner.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    c = unet.config
    x = torch.randn(batch_size, c.in_channels, c.sample_size, c.sample_size, device=pipe.device)
    t = torch.randint(0, 1000, (batch_size,), device=pipe.device)
    start = None
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps
            start = time.perf_counter()
        tokens = conditioner(x[:, c.in_channels // 2 :].flatten(1))
        loss = unet(x, t, encoder_hidden_states=tokens).sample.pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    unet.eval()
    return steps / (time.perf_counter() - start)


def time_loop_training(pipe: FmriImagePipeline, batch_size: int, *, ema: bool, steps: int = 50) -> float:
    """Optimizer steps per second of the project's fine-tuning loop on this pipeline's UNet + conditioner."""
    c = pipe.unet.config
    spatial = torch.randn(4 * batch_size, c.in_channels // 2, c.sample_size, c.sample_size)
    tensors = {"clean": torch.randn_like(spatial), "spatial": spatial, "condition": spatial.flatten(1)}
    model = ConditionedUNet(pipe.unet, pipe.conditioner)
    seconds = []
    for max_steps in (10, 10 + steps):  # the first run warms up; their difference is `steps` steps
        config = FinetuneConfig(
            adapter="full",
            training=TrainingConfig(
                max_steps=max_steps,
                batch_size=batch_size,
                device=pipe.device.type,
                ema_decay=0.999 if ema else None,
                warmup_steps=1,
                progress=False,
            ),
        )
        start = time.perf_counter()
        finetune(model, tensors, training_scheduler(), config)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    model.eval()
    return steps / (seconds[1] - seconds[0])


COMPILE_BACKENDS = ("inductor", "cudagraphs")


def time_compiled_loop(kind: str, device: str, backend: str, batch_size: int) -> dict[str, float]:
    """The project's loop on a fresh UNet compiled in place by `backend` (fixed shapes): the seconds of a
    warm-up run that compiles and trains 21 steps, then steps per second."""
    pipe = build(kind, device)
    pipe.unet.compile(backend=backend, dynamic=False)
    start = time.perf_counter()
    time_loop_training(pipe, batch_size, ema=True, steps=1)
    warmup = time.perf_counter() - start
    steps_per_s = time_loop_training(pipe, batch_size, ema=True)
    return {"warmup_run_s": round(warmup, 1), "loop_train_steps_per_s": round(steps_per_s, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--kinds", type=comma_separated(("ddpm", "ldm")), default=["ddpm", "ldm"])
    parser.add_argument(
        "--compiled",
        type=comma_separated(COMPILE_BACKENDS),
        default=[],
        metavar="BACKEND[,BACKEND]",
        help="also time the loop with a fresh UNet compiled in place by each torch.compile backend, after a "
        "warm-up run that compiles: inductor (generated kernels) or cudagraphs (eager kernels replayed as "
        "CUDA graphs, forward and backward: less host work per step for launch-bound small models)",
    )
    args = parser.parse_args()
    if args.out is None and len(args.kinds) < 2:
        parser.error("--kinds with one model needs --out: the default file holds both")
    results = {}
    default_steps = {"ddpm": DiffusionConfig().training.max_steps, "ldm": LDMConfig().training.max_steps}
    for kind in args.kinds:
        pipe = build(kind, args.device)
        batch_size = DiffusionConfig().training.batch_size
        steps_per_s = time_training(pipe, batch_size)
        results[kind] = {
            "loop_train_steps_per_s": round(time_loop_training(pipe, batch_size, ema=True), 2),
            "loop_train_steps_per_s_no_ema": round(time_loop_training(pipe, batch_size, ema=False), 2),
            "sample_10_images_25_steps_s": round(time_sampling(pipe, N_TEST), 3),
            "sample_10x8_images_25_steps_s": round(time_sampling(pipe, N_TEST * 8, repeats=1), 3),
            "train_steps_per_s": round(steps_per_s, 2),
            "default_training_steps": default_steps[kind],
            "projected_unet_training_min": round(default_steps[kind] / steps_per_s / 60, 1),
        }
        for backend in args.compiled:
            results[kind][f"compiled_{backend}"] = time_compiled_loop(kind, args.device, backend, batch_size)
        print(kind, results[kind], flush=True)
    device = f"cpu{os.cpu_count()}" if args.device == "cpu" else "gpu"
    out = args.out or Path("benchmarks/results") / f"diffusion_speed-{device}.json"
    machine = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(0)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "image_size": IMAGE_SIZE,
        "n_test": N_TEST,
        "steps": STEPS,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
