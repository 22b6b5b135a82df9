"""What a fully sharded launch asks for, read off accelerate's environment, and the settings it refuses.
(Sharded training itself starts real processes: tests/distributed/test_launch.py.)"""

import pytest
import torch
from torch import nn

from fmri_data.errors import DataError
from fmri_encoders.runtime import ProcessSetup, full_shard_requested
from fmri_encoders.training.placement import Replicated, _units, check_full_shard_launch

FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "WORLD_SIZE": "2"}


@pytest.fixture
def launch(monkeypatch):
    for name in ("FSDP_OFFLOAD_PARAMS", "FSDP_ACTIVATION_CHECKPOINTING"):
        monkeypatch.delenv(name, raising=False)

    def set_env(**env: str) -> None:
        for name, value in (FSDP2 | env).items():
            monkeypatch.setenv(name, value)

    return set_env


def test_an_fsdp_launch_of_several_processes_asks_for_full_sharding(launch):
    launch()
    assert full_shard_requested()
    launch(WORLD_SIZE="1")  # one process has nothing to shard among
    assert not full_shard_requested()
    launch(ACCELERATE_USE_FSDP="false")
    assert not full_shard_requested()


def test_a_supported_launch_passes(launch):
    launch()
    check_full_shard_launch("bf16", "adamw")
    check_full_shard_launch("no", "adamw")


@pytest.mark.parametrize(
    ("env", "precision", "optimizer", "message"),
    [
        ({"FSDP_VERSION": "1"}, "no", "adamw", "--fsdp_version 2"),
        ({"FSDP_OFFLOAD_PARAMS": "true"}, "no", "adamw", "--fsdp_offload_params false"),
        ({"FSDP_ACTIVATION_CHECKPOINTING": "true"}, "no", "adamw", "--gradient-checkpointing"),
        ({}, "no", "adafactor", "adamw, not adafactor"),
        ({}, "fp16", "adamw", "--mixed-precision bf16"),
    ],
)
def test_what_the_loop_cannot_honour_is_one_line_naming_the_setting(
    launch, env, precision, optimizer, message
):
    launch(**env)
    with pytest.raises(DataError, match=message):
        check_full_shard_launch(precision, optimizer)


def test_the_opening_line_says_the_weights_are_sharded():
    setup = ProcessSetup("cpu", 2, 0, 2, 1, "bf16", fully_sharded=True)
    assert "2 processes (this is 0, 2 on this machine), weights fully sharded (FSDP2)" in setup.describe()
    assert "sharded" not in ProcessSetup("cpu", 2, 0, 2, 1, "bf16").describe()


def test_units_are_the_outermost_blocks_that_hold_weights():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(2, 2)
            inner = nn.ModuleList([nn.Linear(2, 2)])
            self.down = nn.ModuleList([nn.Sequential(nn.Linear(2, 2), inner), nn.ReLU()])
            self.heads = nn.ModuleDict({"a": nn.Linear(2, 1)})

    net = Net()
    assert _units(net) == [net.down[0], net.heads["a"]]  # not the ReLU (no weights), not the nested list


class _OneProcessFsdpAccelerator:
    """What a one-process `accelerate launch --use_fsdp` gives on a GPU: one process, and a
    prepare_model that refuses a model without its optimizer (accelerate's FSDP2 plugin)."""

    num_processes = 1

    def prepare_model(self, model, device_placement=None):
        raise ValueError("FSDP2 preparation should be done via `accelerate.prepare()`")


class _TwoProcessAccelerator:
    num_processes = 2

    def prepare_model(self, model, device_placement=None):
        return nn.Sequential(model)  # stands for the data-parallel wrapper


def test_one_process_trains_its_objective_unwrapped_even_under_an_fsdp_launch():
    objective = nn.Linear(3, 2)
    placement = Replicated(nn.Linear(3, 2), torch.device("cpu"))
    assert placement.wrap(objective, _OneProcessFsdpAccelerator()) is objective
    wrapped = placement.wrap(objective, _TwoProcessAccelerator())
    assert isinstance(wrapped, nn.Sequential)
    assert wrapped[0] is objective
