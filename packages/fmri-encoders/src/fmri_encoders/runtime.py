"""Where torch training runs: the process's one accelerate state, and each fit's device within it."""

from __future__ import annotations

import atexit
import gc
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, gather_object

from fmri_data.errors import DataError

T = TypeVar("T")
R = TypeVar("R")


DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
"""What --device accepts: cuda:N is GPU N of several; cuda is the current one (GPU 0 unless set)."""
# launches the training loop cannot honour (FSDP it honours itself: fmri_encoders.training.placement)
_REFUSED_LAUNCHES = (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
# how long a process may wait for the others: the main process evaluates and writes alone at the end
_PROCESS_TIMEOUT = timedelta(hours=6)


def env_flag(name: str, default: bool = False) -> bool:
    """A yes/no setting accelerate's launcher passes in the environment ("true", "1", "yes")."""
    return os.environ.get(name, str(default)).lower() in ("1", "true", "yes")


def full_shard_requested() -> bool:
    """Whether this process was started by `accelerate launch --use_fsdp` (or a config file with FSDP)
    alongside other processes: the training loop then shards every fit (fmri_encoders.training.placement)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and env_flag("ACCELERATE_USE_FSDP")


def device_choice(text: str) -> str:
    """`text` if it names a device DEVICES allows, else a one-line error (an argparse `type=`)."""
    if (text in DEVICES and text != "cuda:N") or re.fullmatch(r"cuda:(0|[1-9][0-9]*)", text, re.ASCII):
        return text
    raise DataError(f"unknown device {text!r}; use one of {', '.join(DEVICES)}")


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is visible, else "mps" on Apple Silicon, else "cpu"; an unusable
    choice is a one-line error."""
    kind, _, index = device_choice(device).partition(":")
    mps = torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise DataError(f"device {device!r} was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    if index and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DataError(
            f"device {device!r} was asked for but torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        )
    if device == "mps" and not mps:
        raise DataError("device 'mps' was asked for but torch sees no Apple-Silicon GPU; use 'cpu' or 'auto'")
    return device


def ridge_backend(device: str) -> str:
    """himalaya's backend for a device: its torch_cuda on CUDA, numpy elsewhere (himalaya has no MPS
    backend, and MPS lacks the eigh its solvers need). torch_cuda places arrays on the current CUDA
    device, so a cuda:N choice is made current."""
    resolved = resolve_device(device)
    if not resolved.startswith("cuda"):
        return "numpy"
    if ":" in resolved:
        torch.cuda.set_device(resolved)
    return "torch_cuda"


@dataclass(frozen=True)
class ProcessSetup:
    """Where this process computes: what the run's opening log line says."""

    device: str
    processes: int
    index: int
    local_processes: int
    threads: int
    precision: str
    fully_sharded: bool = False

    @property
    def is_main(self) -> bool:
        """The process that evaluates, writes and shows progress bars."""
        return self.index == 0

    def describe(self) -> str:
        launch = (
            f"{self.processes} processes (this is {self.index}, {self.local_processes} on this machine)"
            if self.processes > 1
            else "1 process"
        )
        if self.fully_sharded:
            launch += ", weights fully sharded (FSDP2)"
        return (
            f"device {self.device}, {launch}, {self.threads} torch threads each, "
            f"launch precision {self.precision}"
        )

    def check_run(self, mixed_precision: str | None, batch_size: int | None) -> None:
        """Refuse at start-up what this launch's first training step would refuse (make_accelerator,
        training.sharding): a run's precision other than the launch's, and a batch its processes cannot
        share."""
        held = self.precision
        if mixed_precision is not None and precision_conflict(held, mixed_precision, self.processes > 1):
            raise precision_mismatch(held, mixed_precision)
        if batch_size is not None and batch_size < self.processes:
            raise unshareable_batch(batch_size, self.processes)


def precision_conflict(held: str, trained: str, launched: bool) -> bool:
    """Whether a model that trains in `trained` cannot under a process state holding `held`: accelerate
    autocasts every model it prepares to a held precision, and a launch of several processes trains in
    the launch's."""
    return held != trained and (launched or held != "no")


def precision_mismatch(held: str, trained: str) -> DataError:
    return DataError(
        f"this process computes in mixed precision {held!r} (accelerate launch --mixed_precision or "
        f"ACCELERATE_MIXED_PRECISION) but the model trains in {trained!r}; "
        "launch with the model's precision or set the model's mixed_precision to the launch's"
    )


def unshareable_batch(size: int, processes: int) -> DataError:
    return DataError(
        f"a batch of {size} cannot be shared by {processes} processes; "
        f"raise batch_size to at least {processes} or launch fewer processes"
    )


def start_process(device: str = "auto", threads: int | None = None) -> ProcessSetup:
    """Call first in an app: join an `accelerate launch` as a data-parallel rank and size torch's threads.

    accelerate's multi-process launcher (`--multi_gpu`, `--num_machines`) on a machine without a GPU, or
    with `--device cpu`, starts ranks that each believe they are alone unless the process state is made
    with `cpu=True`; here it is, so they train together over gloo. Each process then uses
    `threads` torch threads, by default its machine's cores shared among its local processes: two
    processes of two threads on two cores made a training loop ~60x slower.
    """
    resolved = resolve_device(device)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes > 1 and ":" in resolved:
        raise DataError(
            f"device {device!r}: under accelerate launch each process takes its own GPU; use 'cuda' or "
            "'auto', and choose the GPUs with accelerate launch --gpu_ids or CUDA_VISIBLE_DEVICES"
        )
    if ":" in resolved:  # accelerate's "cuda" (and every tensor made on it) is the current GPU
        torch.cuda.set_device(resolved)
    if processes > 1:
        PartialState(cpu=resolved == "cpu", timeout=_PROCESS_TIMEOUT)
        atexit.register(_leave_process_group)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if threads is not None and threads < 1:
        raise DataError(f"threads={threads}: use at least 1, or leave it unset for cores / local processes")
    count = threads or max(1, _available_cores() // local)
    torch.set_num_threads(count)
    rank = int(os.environ.get("RANK", "0"))
    precision = launch_precision() or "no"
    return ProcessSetup(resolved, processes, rank, local, count, precision, full_shard_requested())


def _leave_process_group() -> None:
    """Destroy the process groups and free what still holds them while the interpreter is whole.

    Torn down by the interpreter instead, gloo's threads (and the extra groups a sharded fit's device mesh
    adds, which its sharded weights keep alive) abort a finished process now and then.
    """
    PartialState().destroy_process_group()
    gc.collect()


def launch_precision() -> str | None:
    """The mixed precision an `accelerate launch --mixed_precision` (or its config file) holds, if any."""
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    return None if precision == "no" else precision


def _available_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def make_accelerator(
    device: str = "auto", mixed_precision: str = "no", **options: Any
) -> tuple[Accelerator, torch.device]:
    """An Accelerator for one fit, and the device the fit trains on; a fit this process cannot run (its
    device or precision conflicts with the launch's) is one DataError.

    accelerate keeps one state per process, fixed by its first Accelerator: a later one with other `cpu` or
    `mixed_precision` arguments is refused, and there is no public reset. So no fit passes them: the state is
    the launch's (`accelerate launch` flags and config, else accelerate's defaults), and the training loop
    moves the model to the fit's device and applies the fit's precision itself. In a single process, with
    nothing to distribute, every fit thus runs on its own device in its own precision. A data-parallel
    launch trains on its processes' devices in its precision, and a state that holds a precision (a
    launcher's --mixed_precision) makes accelerate autocast every model it prepares; a fit must match them.
    `options` go to Accelerator as they are (gradient_accumulation_steps, project_dir, log_with, ...).
    """
    accelerator = Accelerator(**options)
    if accelerator.distributed_type in _REFUSED_LAUNCHES:
        raise DataError(
            f"this process was launched with {accelerator.distributed_type.value}, which the training "
            "loop does not support; launch data parallel (apps/configs/accelerate/ddp*.yaml) or fully "
            "sharded (apps/configs/accelerate/fsdp_bf16.yaml)"
        )
    launched = accelerator.num_processes > 1
    held = accelerator.mixed_precision
    if precision_conflict(held, mixed_precision, launched):
        raise precision_mismatch(held, mixed_precision)
    if not launched:
        return accelerator, torch.device(resolve_device(device))
    if device not in ("auto", accelerator.device.type):
        raise DataError(
            f"device {device!r} was asked for but this launch trains on {accelerator.device.type}; "
            f"use 'auto' or {accelerator.device.type!r}"
        )
    return accelerator, accelerator.device


@contextmanager
def held_on(module: torch.nn.Module, device: str) -> Iterator[torch.nn.Module]:
    """`module` on `device` for the block, and back on the CPU after it: models used in turn (a stage 1
    that decodes before a stage 2 samples) then never share the GPU's memory."""
    try:
        module.to(device)  # inside: a move that runs out of memory halfway is undone too
        yield module
    finally:
        module.to("cpu")
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def derived_seed(*keys: int) -> int:
    """A 63-bit seed for one stream (e.g. a sample of a trial) from integer keys, via numpy's
    SeedSequence: well mixed, and the same on every platform and Python version (unlike hash())."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def on_main_process(write: Callable[[], None]) -> None:
    """Run `write` on the main process only and let the others wait for it: under `accelerate launch` every
    process fits the same model, and two of them swapping one folder into place would collide."""
    state = PartialState()
    if state.is_main_process:
        write()
    state.wait_for_everyone()


def shared_out(items: Sequence[T], work: Callable[[T], R]) -> list[R]:
    """`[work(item) for item in items]`, the items dealt round-robin to the processes of a launch and the
    results gathered on every process in item order. For work whose result does not depend on where it
    runs (sampling with per-sample generators): N processes give one process's result, N times faster."""
    state = PartialState()
    if state.num_processes == 1:
        return [work(item) for item in items]
    mine: list[tuple[int, Any, str | None]] = []
    failure: Exception | None = None
    for i, item in enumerate(items):
        if i % state.num_processes != state.process_index or failure is not None:
            continue
        try:
            mine.append((i, work(item), None))
        except Exception as error:  # gathered, so that the others raise too instead of waiting for it
            failure = error
            mine.append((i, None, f"{type(error).__name__}: {error}"))
    gathered = gather_object(mine)  # between this launch's own processes (pickled by torch.distributed)
    if failure is not None:
        raise failure
    failed = [message for _, _, message in gathered if message is not None]
    if failed:
        raise RuntimeError(f"another process of this launch failed: {failed[0]}")
    return [result for _, result, _ in sorted(gathered, key=lambda entry: entry[0])]
