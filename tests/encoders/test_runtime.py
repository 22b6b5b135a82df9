"""Devices, threads and the sharing-out of work, with the hardware patched in where it is absent."""

import pytest
import torch

from fmri_data.errors import DataError
from fmri_encoders import runtime


@pytest.fixture
def hardware(monkeypatch):
    def patch(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return patch


@pytest.mark.parametrize(
    ("cuda", "mps", "auto"), [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, auto):
    hardware(cuda, mps)
    assert runtime.resolve_device("auto") == auto


def test_a_device_torch_cannot_see_is_one_clear_error(hardware):
    hardware(False, False)
    with pytest.raises(DataError, match="'mps' was asked for"):
        runtime.resolve_device("mps")
    with pytest.raises(DataError, match="'cuda' was asked for"):
        runtime.resolve_device("cuda")
    with pytest.raises(DataError, match="unknown device 'tpu'"):
        runtime.resolve_device("tpu")


def test_ridge_runs_on_the_gpu_with_cuda_and_falls_back_to_numpy_on_mps(hardware):
    hardware(True, True)
    assert runtime.ridge_backend("cuda") == "torch_cuda"
    assert runtime.ridge_backend("mps") == "numpy"


def test_threads_are_the_cores_shared_among_this_machine_s_processes(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    try:
        setup = runtime.start_process("cpu")
        assert (setup.threads, torch.get_num_threads()) == (2, 2)
        assert "1 process, 2 torch threads each" in setup.describe()
        assert runtime.start_process("cpu", threads=3).threads == 3
        with pytest.raises(DataError, match="threads=0"):
            runtime.start_process("cpu", threads=0)
    finally:
        torch.set_num_threads(before)


def test_work_shared_out_comes_back_in_order():
    assert runtime.shared_out(range(5), lambda i: i * i) == [0, 1, 4, 9, 16]
