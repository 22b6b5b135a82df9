"""A tiny fit through the shared training loop, run as a script by test_launch.py, once alone and once under
`accelerate launch`: every random draw the loop offers (batches, augmentation, loss noise, timesteps) and
its EMA, checkpoints and resume are in play. Writes the loss curve and final weights as JSON.

    python tiny_training.py RESULT.json [--batch B] [--steps N] [--out-dir D] [--resume] [--stop-after K]
        [--nan-at K]   (the K-th loss is NaN on the last process alone)
        [--accumulate K] [--validate] (every 3 steps, patience 2) [--epochs] (an EpochSampler)
        [--blocks] (a model of blocks, partly frozen, whose loss calls a method other than forward)
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
from fmri_encoders.training import BatchSampler, EpochSampler, TrainingConfig, train


def _jitter(batch, generator):
    return batch | {"x": batch["x"] + 0.05 * torch.randn(batch["x"].shape, generator=generator)}


def _loss(model, batch, draws):
    noise = draws.randn(batch["y"].shape)
    level = draws.randint(1, 4, (len(batch["x"]), 1)).float() / 4
    return ((_predict(model, batch["x"]) - batch["y"] - 0.1 * level * noise) ** 2).mean()


class _Blocks(nn.Module):
    """Blocks in a ModuleList (each its own FSDP unit), frozen weights inside one of them (as a LoRA base's),
    a scalar weight (which FSDP2 cannot shard) and a method other than forward that the loss calls."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(2))
        self.blocks[0][0].weight.requires_grad_(False)
        self.out = nn.Linear(16, 3)
        self.gain = nn.Parameter(torch.tensor(1.0))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.inp(x))
        for block in self.blocks:
            x = x + block(x)
        return self.out(x) * self.gain


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.predict(x) if isinstance(model, _Blocks) else model(x)


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
    parser.add_argument("--accumulate", type=int, default=1)
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--epochs", action="store_true")
    parser.add_argument("--blocks", action="store_true")
    args = parser.parse_args()
    start_process("cpu")

    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.tanh(x @ torch.randn(6, 3))
    model = _Blocks() if args.blocks else nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    if args.blocks:
        model.eval()  # as a loaded base model comes: training must switch it to training mode
    calls, modes = [], []

    def loss(model, batch, draws):
        calls.append(1)
        modes.append(model.training)
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
        gradient_accumulation_steps=args.accumulate,
    )
    tensors = {"x": x, "y": y}
    if args.epochs:
        sampler = EpochSampler(tensors, args.batch, seed=3, augment=_jitter)
    else:
        sampler = BatchSampler(tensors, args.batch, seed=3, augment=_jitter)
    x_val, y_val = x[:16], -y[:16]  # worse as training goes on: early stopping must stop
    try:
        result = train(
            model,
            loss,
            sampler,
            config,
            out_dir=args.out_dir,
            resume="latest" if args.resume else None,
            validate=(lambda m: float(((_predict(m, x_val) - y_val) ** 2).mean())) if args.validate else None,
            validate_every=3,
            patience=2 if args.validate else None,
        )
    except _KilledError:
        return 0
    record = {
        "losses": result.losses,
        "weights": [p.detach().flatten().tolist() for p in model.parameters()],
        "validation": result.validation,
        "best_step": result.best_step,
        "shards": result.shards,
        "train_mode": all(modes),
    }
    on_main_process(lambda: args.result.write_text(json.dumps(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
