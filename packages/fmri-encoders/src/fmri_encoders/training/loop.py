"""One training loop for every model of this package, built on accelerate.

accelerate owns gradient accumulation, data parallelism (`accelerate launch --num_processes N` runs this
loop on N processes unchanged, each on its share of every batch: fmri_encoders.training.sharding) and
trackers; the loop places the model on the fit's device and applies the fit's
mixed precision itself (fmri_encoders.runtime, .precision: accelerate's are one per process). Around that it
adds what a researcher expects: a progress bar with the loss, checkpoints written atomically every N steps
with a total limit, `resume="latest"`, an EMA of the weights, a NaN guard that keeps the last good
checkpoint, validation with early stopping that keeps the best weights, and a loss curve.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from fmri_data.errors import DataError, UserError
from fmri_data.methods import MethodSettings
from fmri_encoders.runtime import full_shard_requested, make_accelerator
from fmri_encoders.training.checkpoint import (
    global_rng_states,
    load_states,
    save_states,
    set_global_rng_states,
)
from fmri_encoders.training.curve import write_loss_curve
from fmri_encoders.training.ema import ExponentialMovingAverage
from fmri_encoders.training.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from fmri_encoders.training.placement import FullShard, Replicated, check_full_shard_launch
from fmri_encoders.training.precision import PRECISIONS, Precision
from fmri_encoders.training.sampling import Batch, Sampler
from fmri_encoders.training.sharding import BatchNoise, Shard
from fmri_eval.atomic import atomic_write

LossFn = Callable[[nn.Module, Batch, BatchNoise], torch.Tensor]
_STATE_FILE = "trainer_state.json"
_STATE_TENSORS = "state"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the last good checkpoint and what to change."""

    user_error = True  # the settings (learning rate, precision) are the user's to change: run_cli exits 2


@dataclass(frozen=True)
class TrainingConfig:
    """How long and how to optimise. Steps count optimizer updates (after gradient accumulation).

    batch_size: the batch of one micro-step over all processes (an update takes
    gradient_accumulation_steps of them); under `accelerate launch` with N processes each computes about
    batch_size / N of its rows, so the result does not depend on N up to floating-point order and dropout
    masks (fmri_encoders.training.sharding).

    checkpoint_every: write a resumable checkpoint every this many steps when the loop has an out_dir
    (0: never); checkpoints_total_limit: how many to keep.
    log_with: an accelerate tracker ("tensorboard", "wandb", ... or a GeneralTracker) that receives the
    loss and learning rate of every step, its logs under out_dir/logs (only when the loop has an out_dir).
    schedule: "cosine" (linear warmup, then a decay to 0 at max_steps) or "constant" (linear warmup, then
    the learning rate stays: for a budget counted in epochs, or cut short by early stopping).
    decay_matrices_only: weight decay on weight matrices and kernels only, not on biases, norm gains or
    scalars such as a learned temperature.
    mixed_precision: "no", "bf16" or "fp16" (a GPU's): the forward pass and loss run under autocast; a run
    under `accelerate launch` must ask for the launcher's (fmri_encoders.runtime.make_accelerator).
    optimizer: "adamw", or "adafactor" where AdamW's two moments per weight do not fit the GPU
    (fmri_encoders.training.optim); the learning rate is an absolute step for both.
    """

    max_steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    grad_clip: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    ema_decay: float | None = 0.999
    checkpoint_every: int = 250
    checkpoints_total_limit: int = 2
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    log_with: Any = None
    schedule: str = "cosine"
    decay_matrices_only: bool = False
    optimizer: str = "adamw"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise DataError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise DataError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.mixed_precision not in PRECISIONS:
            raise DataError(
                f"unknown mixed_precision {self.mixed_precision!r}; use one of {', '.join(PRECISIONS)}"
            )


@dataclass(frozen=True)
class FixedBatchTraining(TrainingConfig):
    """A TrainingConfig whose batch a run's micro-batch setting (MethodSettings.batch_size) leaves alone: a
    stage whose budget counts epochs (a smaller batch would multiply its steps) or whose loss is the batch
    (InfoNCE's negatives are the rest of it). A subclass, not a field, so that the recipes hashed into base
    models' cache keys stay as they were."""


def training_for(training: TrainingConfig, settings: MethodSettings) -> TrainingConfig:
    """A method's training config under the run's settings: its seed and device, progress bars only where
    the run shows them, its tracker (`--log-with`), and the run's precision and accumulation where set."""
    return replace(
        numerics_for(training, settings),
        seed=settings.seed,
        device=settings.device,
        progress=settings.shows_progress(training.progress),
        log_with=settings.log_with,
    )


def numerics_for(training: TrainingConfig, settings: MethodSettings) -> TrainingConfig:
    """The run's mixed precision, micro-batch, gradient accumulation, optimizer and share of the steps where
    it sets them, and no EMA where it turns EMA off: what changes the weights a stage learns (so a cached
    base model's recipe holds them too), unlike its device or progress bars."""
    in_epochs = isinstance(training, FixedBatchTraining)
    own_batch = in_epochs or settings.batch_size is None
    return replace(
        scaled_steps(training, 1.0 if in_epochs else settings.train_steps),
        batch_size=training.batch_size if own_batch else settings.batch_size,
        ema_decay=training.ema_decay if settings.ema else None,
        optimizer=settings.optimizer or training.optimizer,
        mixed_precision=settings.mixed_precision or training.mixed_precision,
        gradient_accumulation_steps=settings.gradient_accumulation_steps
        or training.gradient_accumulation_steps,
    )


def scaled_steps(training: TrainingConfig, factor: float) -> TrainingConfig:
    """`training` with its steps and warm-up times `factor` (at least one step)."""
    if factor == 1:
        return training
    return replace(
        training,
        max_steps=max(1, round(training.max_steps * factor)),
        warmup_steps=round(training.warmup_steps * factor),
    )


def check_tracker(name: str) -> None:
    """Refuse a tracker whose package is missing now, not when the first training stage starts."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    installed = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    if name not in installed:
        raise DataError(f"unknown tracker {name!r}; use one of {sorted(installed)}")
    if not installed[name]():
        how = 'pip install "fmri-diffusion[tensorboard]"' if name == "tensorboard" else "pip install wandb"
        raise UserError(f"--log-with {name}: the {name} package is not installed; {how}")


@dataclass
class TrainingResult:
    losses: list[float] = field(default_factory=list)
    last_checkpoint: Path | None = None
    loss_curve: Path | None = None
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    shards: int = 1  # how many processes each weight was divided among while it trained (1: whole on each)


def train(
    model: nn.Module,
    loss_fn: LossFn,
    sampler: Sampler,
    config: TrainingConfig,
    *,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    description: str = "train",
    validate: Callable[[nn.Module], float] | None = None,
    validate_every: int = 100,
    patience: int | None = None,
    shard_batches: bool = True,
    unused_parameters: bool = False,
) -> TrainingResult:
    """Optimise `model`'s trainable parameters on `loss_fn(model, batch, draws)`, `draws` a BatchNoise that
    every random draw of the loss goes through (fmri_encoders.training.sharding).

    sampler: where batches come from (BatchSampler, EpochSampler); its position is checkpointed.
    out_dir: where checkpoints (`checkpoints/step-NNNNNN`) and `loss_curve.png` go; None keeps nothing.
    resume: "latest" or a checkpoint folder to continue from (same step count, batches and noise).
    validate: a held-out loss of the model (lower is better), run every `validate_every` steps and at the
    end; the best weights (what training changes) are kept, in `out_dir/best/model.safetensors` too, and
    returned.
    patience: with `validate`, stop early once this many validations in a row found no better loss.
    shard_batches: under N processes each takes its rows of every batch; False for a loss over the batch
    as a whole (a contrastive loss, whose negatives are the batch), which every process then computes on
    the whole batch: redundant, but the same result as one process.
    unused_parameters: some trainable parameters may get no gradient in a step (one subject's adapter of
    several); data parallelism then has to look for them each step.
    On return the model holds the best validated weights if `validate` is given, else the EMA weights
    when `config.ema_decay` is set, else the last ones.
    """
    if patience is not None and (validate is None or patience < 1):
        raise DataError(f"patience={patience} needs a validate function and a value of at least 1")
    set_seed(config.seed)
    out_dir = Path(out_dir) if out_dir is not None else None
    log_with = config.log_with if out_dir is not None else None  # a tracker writes under out_dir/logs
    accelerator, device = make_accelerator(
        config.device,
        config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=log_with,
        project_dir=None if out_dir is None else str(out_dir / "logs"),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused_parameters)],
    )
    shard = Shard(accelerator.process_index, accelerator.num_processes) if shard_batches else Shard()
    precision = Precision(config.mixed_precision, device)
    if full_shard_requested():
        check_full_shard_launch(config.mixed_precision, config.optimizer)
        placement: Replicated | FullShard = FullShard(model, device)
    else:
        placement = Replicated(model, device)
    if log_with is not None:
        accelerator.init_trackers(description.replace(" ", "-"))
    # the loss inside the module that is wrapped (data parallel) or sharded, so that the loss may call the
    # bare model's own methods
    objective = placement.wrap(_Objective(placement.trained, loss_fn), accelerator)
    trained = placement.trained
    parameters = [p for p in trained.parameters() if p.requires_grad]  # a list: clipping must see them too
    optimizer = make_optimizer(parameters, config)
    schedule = make_schedule(optimizer, config)
    ema = ExponentialMovingAverage(parameters, config.ema_decay) if config.ema_decay else None
    if ema is not None:
        ema.to(device)
    parts = _Checkpointed(accelerator, placement, optimizer, schedule, sampler, ema, precision.scaler)
    noise = torch.Generator(device="cpu").manual_seed(config.seed + 1)  # the same on every process

    result, step = TrainingResult(shards=placement.shards), 0
    start = _find_checkpoint(out_dir, resume)
    if resume is None and out_dir is not None:  # afresh: another run's checkpoints must not be "latest" later
        if accelerator.is_main_process:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        accelerator.wait_for_everyone()
    if start is not None:
        result.best_state = parts.load(start, noise)
        state = json.loads((start / _STATE_FILE).read_text())
        step, result.losses = state["step"], state["losses"]
        result.validation = [(int(at), float(score)) for at, score in state.get("validation", [])]
        result.best_step = state.get("best_step")
        result.last_checkpoint = start

    # disable=None: a bar on a terminal only; a log file gets none of its escape codes
    bar = tqdm(
        total=config.max_steps, initial=step, desc=description, disable=None if config.progress else True
    )
    trained.train()  # the copy that trains, under full sharding
    # accumulating, a data-parallel wrapper skips the gradient all-reduce until the last micro-batch; a
    # sharded model reduce-scatters each one, so that no process ever holds a whole gradient
    skips_sync = (objective,) if isinstance(placement, Replicated) else ()
    try:
        while step < config.max_steps and not _patience_spent(result, patience):
            with accelerator.accumulate(*skips_sync):
                batch, global_size = shard.take(next(sampler))
                batch = {k: v.to(device) for k, v in batch.items()}
                with precision.autocast():
                    loss = objective(batch, BatchNoise(noise, shard, global_size if shard_batches else None))
                    loss = loss * shard.loss_weight(global_size)
                # the global batch's loss, on every process: a NaN on one stops them all, none waits
                global_loss = accelerator.reduce(loss.detach().float(), "mean")
                if not torch.isfinite(global_loss):
                    raise TrainingDivergedError(
                        f"loss became {global_loss.item()} at step {step}; last good checkpoint: "
                        f"{result.last_checkpoint or 'none'}; lower the learning rate or train in fp32"
                    )
                precision.backward(loss / accelerator.gradient_accumulation_steps)
                if accelerator.sync_gradients:  # the last micro-batch of an update
                    placement.average_unsharded_gradients()
                    precision.unscale(optimizer)
                    if config.grad_clip:
                        placement.clip(accelerator, parameters, config.grad_clip)
                    if precision.step(optimizer):
                        schedule.step()
                    optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            if ema is not None:
                ema.step(parameters)
            result.losses.append(global_loss.item())
            if log_with is not None:
                accelerator.log({"loss": result.losses[-1], "lr": schedule.get_last_lr()[0]}, step=step)
            # set before update, which draws it: the bar shows this step's loss, not the last one's
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}", refresh=False)
            bar.update()
            if validate is not None and (step % validate_every == 0 or step == config.max_steps):
                _validate(accelerator, placement, validate, precision, step, result, out_dir)
            if out_dir is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                result.last_checkpoint = _save_checkpoint(parts, out_dir, step, result, noise, config)
    finally:  # an interrupted run still closes its bar and tracker
        bar.close()
        if log_with is not None:
            accelerator.end_training()
    if ema is not None:
        ema.copy_to(parameters)
    # the caller's model as it came: no data-parallel wrapper or shards, no autocast of a launcher's precision
    model = placement.finish(_learned_state)
    if validate is not None and result.best_step is not None:
        model.load_state_dict(result.best_state, strict=False)
    model.eval()
    if out_dir is not None and accelerator.is_main_process and result.losses:
        result.loss_curve = out_dir / "loss_curve.png"
        write_loss_curve(result.loss_curve, result.losses)
    return result


class _Objective(nn.Module):
    """The model and its loss as one module: the data-parallel wrapper around it sees the loss's forward
    pass (so gradients are averaged over processes), while the loss calls the bare model however it needs
    (a VAE's encode, a UNet with keyword inputs)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Batch, noise: BatchNoise) -> torch.Tensor:
        return self.loss_fn(self.model, batch, noise)


def _validate(
    accelerator: Any,
    placement: Replicated | FullShard,
    validate: Callable[[nn.Module], float],
    precision: Precision,
    step: int,
    result: TrainingResult,
    out_dir: Path | None,
) -> None:
    """Score the model (in the precision it trains in: frozen weights may be stored in it); when it is the
    best so far, remember its weights (and save them under out_dir)."""
    unwrapped = placement.whole_model(_learned_state)
    unwrapped.eval()
    with torch.no_grad(), precision.autocast():
        score = float(validate(unwrapped))
    unwrapped.train()
    # the processes' mean: a last-bit difference between them must not make one stop early alone
    score = float(accelerator.reduce(torch.tensor(score, device=accelerator.device), "mean"))
    if not result.validation or score < min(s for _, s in result.validation):
        result.best_step = step
        # on the CPU: a copy of the weights beside the training state on the device could exhaust it
        best = _learned_state(unwrapped).items()
        result.best_state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in best}
        if out_dir is not None and accelerator.is_main_process:
            (out_dir / "best").mkdir(parents=True, exist_ok=True)
            atomic_write(
                out_dir / "best" / "model.safetensors", lambda path: save_file(result.best_state, path)
            )
    placement.park_whole_model()
    result.validation.append((step, score))


def _patience_spent(result: TrainingResult, patience: int | None) -> bool:
    """Whether the last `patience` validations all came after the best one (early stopping)."""
    if patience is None or result.best_step is None or len(result.validation) < patience:
        return False
    return result.validation[-patience][0] > result.best_step


class _Checkpointed:
    """What a checkpoint holds, saved and restored without pickle (fmri_encoders.training.checkpoint), in
    one layout for every placement: a sharded fit's weights and optimizer and EMA states are gathered
    whole before they are written, and sharded again as they are read."""

    def __init__(
        self,
        accelerator: Any,
        placement: Replicated | FullShard,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        sampler: Sampler,
        ema: ExponentialMovingAverage | None,
        scaler: torch.amp.GradScaler | None,
    ) -> None:
        self.accelerator, self.placement, self.device = accelerator, placement, placement.device
        self.optimizer, self.schedule = optimizer, schedule
        self.sampler, self.ema, self.scaler = sampler, ema, scaler

    def save(self, folder: Path, noise: torch.Generator, best_state: dict[str, torch.Tensor]) -> None:
        """The main process writes it all: the streams (sampler, noise, RNG) are the same on every process
        (fmri_encoders.training.sharding), so the checkpoint resumes under any process count. It holds the
        best validated weights so far, so early stopping resumes where it was."""
        gather = self.placement.gather  # every process takes part in gathering shards
        model = gather(_learned_state(self.placement.trained))
        optimizer = gather(self.optimizer.state_dict())
        ema = None if self.ema is None else gather(self.ema.state_dict())
        if not self.accelerator.is_main_process:
            return
        state = {
            "model": model,
            "optimizer": optimizer,
            "schedule": self.schedule.state_dict(),
            "sampler": self.sampler.state_dict(),
            "noise": noise.get_state(),
            "rng": global_rng_states(self.device),
        }
        if ema is not None:
            state["ema"] = ema
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if best_state:
            state["best"] = best_state
        save_states(folder, _STATE_TENSORS, state)

    def load(self, folder: Path, noise: torch.Generator) -> dict[str, torch.Tensor]:
        """Restore everything in place; returns the best validated weights saved with it ({} if none)."""
        state = load_states(folder, _STATE_TENSORS)
        trained, scatter_like = self.placement.trained, self.placement.scatter_like
        _load_learned_state(trained, scatter_like(state["model"], _learned_state(trained)), folder)
        optimizer = state["optimizer"]
        self.optimizer.load_state_dict(scatter_like(optimizer, _parameters_of(optimizer, self.optimizer)))
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None:
            self.ema.load_state_dict(scatter_like(state["ema"], self.ema.state_dict()))
            self.ema.to(self.device)
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        noise.set_state(state["noise"])
        set_global_rng_states(state["rng"], self.device)
        return state.get("best", {})


def _parameters_of(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`saved` optimizer state's layout with each state tensor shaped as its parameter replaced by that
    parameter: where a sharded fit's whole tensors go back to."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    state = {
        index: {
            key: parameters[index]
            if torch.is_tensor(value) and value.shape == parameters[index].shape
            else None
            for key, value in entry.items()
        }
        for index, entry in saved["state"].items()
    }
    return {"state": state}


def _frozen_names(model: nn.Module) -> set[str]:
    state = model.state_dict(keep_vars=True)
    return {
        name for name, value in state.items() if isinstance(value, nn.Parameter) and not value.requires_grad
    }


def _learned_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: trainable parameters and buffers. Frozen weights (a Stable Diffusion UNet
    under LoRA) come back from the base model, so a checkpoint holds megabytes, not gigabytes."""
    frozen = _frozen_names(model)
    return {name: value for name, value in model.state_dict().items() if name not in frozen}


def _load_learned_state(model: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != _frozen_names(model):
        raise DataError(
            f"{folder} was saved from a model with other trainable parts (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}); resume with the same method settings or start afresh"
        )


def _save_checkpoint(
    parts: _Checkpointed,
    out_dir: Path,
    step: int,
    result: TrainingResult,
    noise: torch.Generator,
    config: TrainingConfig,
) -> Path:
    """Write to `step-N.partial`, then rename: a killed run never leaves a half-written checkpoint."""
    accelerator = parts.accelerator
    root = out_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    partial = root / f"step-{step:06d}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    parts.save(partial, noise, result.best_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "step": step,
            "losses": result.losses,
            "validation": result.validation,
            "best_step": result.best_step,
        }
        (partial / _STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in sorted(root.glob("step-??????"))[: -max(config.checkpoints_total_limit, 1)]:
            shutil.rmtree(old)
        write_loss_curve(out_dir / "loss_curve.png", result.losses)
    accelerator.wait_for_everyone()
    return final


def _find_checkpoint(out_dir: Path | None, resume: str | Path | None) -> Path | None:
    if resume is None:
        return None
    if str(resume) != "latest":
        path = Path(resume)
        if not (path / _STATE_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is not a checkpoint folder (no {_STATE_FILE}); pass 'latest' or a step-N folder"
            )
        return path
    if out_dir is None:
        raise ValueError("resume='latest' needs an out_dir to look for checkpoints in")
    found = sorted((out_dir / "checkpoints").glob("step-??????"))
    return found[-1] if found else None
