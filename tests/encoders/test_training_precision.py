import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from torch import nn

from fmri_data.errors import DataError
from fmri_encoders import runtime
from fmri_encoders.training import BatchSampler, TrainingConfig, train

PACKAGES = Path(__file__).resolve().parents[2] / "packages"


class _Line(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.w * x


def _fit(mixed_precision, seen):
    def loss(model, batch, gen):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return ((model(batch["x"]) - batch["y"]) ** 2).mean()

    x = torch.linspace(-1, 1, 32)
    config = TrainingConfig(
        max_steps=40,
        learning_rate=0.1,
        warmup_steps=0,
        ema_decay=None,
        progress=False,
        device="cpu",
        mixed_precision=mixed_precision,
    )
    model = _Line()
    result = train(model, loss, BatchSampler({"x": x, "y": 3 * x}, batch_size=8), config)
    return model, result


def test_fits_of_one_process_each_train_in_their_own_precision():
    for mixed_precision, dtype in [("no", None), ("bf16", torch.bfloat16), ("no", None)]:
        seen = []
        model, result = _fit(mixed_precision, seen)
        assert set(seen) == {dtype}
        assert result.losses[-1] < 0.2 * result.losses[0]
        assert model.w.dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")
        assert model.forward.__func__ is _Line.forward  # handed back without an autocast wrapper


def test_fp16_needs_a_gpu_and_an_unknown_precision_is_refused():
    with pytest.raises(DataError, match=r"fp16.*CUDA"):
        _fit("fp16", [])
    with pytest.raises(DataError, match="mixed_precision 'fp8'"):
        TrainingConfig(mixed_precision="fp8")


def _launch(monkeypatch, num_processes, mixed_precision, device, distributed_type="MULTI_CPU"):
    """Stand in for accelerate's process state: a real one is fixed for the whole test session."""
    state = SimpleNamespace(
        num_processes=num_processes,
        mixed_precision=mixed_precision,
        device=device,
        distributed_type=DistributedType[distributed_type],
    )
    monkeypatch.setattr(runtime, "Accelerator", lambda **options: state)


def test_a_single_process_runs_each_fit_on_its_own_device(monkeypatch):
    _launch(monkeypatch, 1, "no", torch.device("cuda"))
    assert runtime.make_accelerator("cpu", "bf16")[1] == torch.device("cpu")


@pytest.mark.parametrize("processes", [1, 2])
def test_a_launcher_s_precision_is_the_only_one_a_fit_may_ask_for(monkeypatch, processes):
    _launch(monkeypatch, processes, "bf16", torch.device("cpu"))
    assert runtime.make_accelerator("cpu", "bf16")[1] == torch.device("cpu")
    with pytest.raises(DataError, match=r"mixed precision 'bf16'.*trains in 'no'"):
        runtime.make_accelerator("cpu", "no")


def test_a_data_parallel_launch_refuses_a_fit_on_another_device_or_precision(monkeypatch):
    _launch(monkeypatch, 2, "no", torch.device("cuda", 1))
    assert runtime.make_accelerator("auto", "no")[1] == torch.device("cuda", 1)
    assert runtime.make_accelerator("cuda", "no")[1] == torch.device("cuda", 1)
    with pytest.raises(DataError, match=r"device 'cpu'.*trains on cuda"):
        runtime.make_accelerator("cpu", "no")
    with pytest.raises(DataError, match=r"mixed precision 'no'.*trains in 'bf16'"):
        runtime.make_accelerator("cuda", "bf16")


def test_no_private_accelerate_state_is_touched():
    private = re.compile(r"_reset_state|_shared_state|(AcceleratorState|PartialState|GradientState)\._")
    sources = sorted(PACKAGES.glob("*/src/**/*.py"))
    assert sources
    offenders = [str(path) for path in sources if private.search(path.read_text(encoding="utf-8"))]
    assert not offenders


@pytest.mark.parametrize("sharding", ["DEEPSPEED", "MEGATRON_LM"])
def test_a_launch_the_loop_cannot_honour_is_refused_in_one_line_that_names_the_way_out(monkeypatch, sharding):
    _launch(monkeypatch, 2, "no", torch.device("cpu"), sharding)
    with pytest.raises(DataError, match=rf"launched with {sharding}.*ddp\*\.yaml.*fsdp_bf16\.yaml"):
        runtime.make_accelerator("cpu", "no")


def test_an_fsdp_launch_is_accepted(monkeypatch):
    _launch(monkeypatch, 2, "no", torch.device("cpu"), "FSDP")
    assert runtime.make_accelerator("cpu", "no")[1] == torch.device("cpu")
