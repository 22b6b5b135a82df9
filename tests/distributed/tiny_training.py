"""A tiny fit through the shared training loop, run as a script by test_launch.py, once alone and once under
`accelerate launch`: every random draw the loop offers (batches, augmentation, loss noise, timesteps) and
its EMA, checkpoints and resume are in play. Writes the loss curve and final weights as JSON.

    python tiny_training.py RESULT.json [--batch B] [--steps N] [--out-dir D] [--resume] [--stop-after K]
        [--nan-at K]   (the K-th loss is NaN on the last process alone)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from torch import nn

from fmri_encoders.runtime import on_main_process, start_process
from fmri_encoders.training import BatchSampler, TrainingConfig, train


def _jitter(batch, generator):
    return batch | {"x": batch["x"] + 0.05 * torch.randn(batch["x"].shape, generator=generator)}


def _loss(model, batch, draws):
    noise = draws.randn(batch["y"].shape)
    level = draws.randint(1, 4, (len(batch["x"]), 1)).float() / 4
    return ((model(batch["x"]) - batch["y"] - 0.1 * level * noise) ** 2).mean()


class _KilledError(Exception):
    """Stands for a killed run (Ctrl-C, a lost node) after --stop-after calls of the loss."""

    pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("result", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--nan-at", type=int)
    args = parser.parse_args()
    start_process("cpu")

    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.tanh(x @ torch.randn(6, 3))
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    calls = []

    def loss(model, batch, draws):
        calls.append(1)
        if args.stop_after is not None and len(calls) > args.stop_after:
            raise _KilledError
        state = PartialState()
        if len(calls) == args.nan_at and state.process_index == state.num_processes - 1:
            return _loss(model, batch, draws) * float("nan")
        return _loss(model, batch, draws)

    config = TrainingConfig(
        max_steps=args.steps,
        batch_size=args.batch,
        learning_rate=0.05,
        warmup_steps=2,
        ema_decay=0.9,
        checkpoint_every=3,
        progress=False,
        device="cpu",
    )
    sampler = BatchSampler({"x": x, "y": y}, args.batch, seed=3, augment=_jitter)
    try:
        result = train(
            model, loss, sampler, config, out_dir=args.out_dir, resume="latest" if args.resume else None
        )
    except _KilledError:
        return 0
    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    on_main_process(lambda: args.result.write_text(json.dumps({"losses": result.losses, "weights": weights})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
