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


def test_one_gpu_of_several_is_chosen_by_index(hardware, monkeypatch):
    hardware(True, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    assert runtime.resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(
        DataError, match=r"'cuda:2' was asked for but torch sees 2 CUDA GPU\(s\), cuda:0 to cuda:1"
    ):
        runtime.resolve_device("cuda:2")
    for text in ("cuda:N", "cuda:", "cuda:one", "gpu:0", "cuda:01", "cuda:\u00b2", "cuda:-1"):
        with pytest.raises(DataError, match=f"unknown device '{text}'"):
            runtime.resolve_device(text)
    # himalaya's torch_cuda places arrays on the current GPU: the one chosen must be made current
    assert runtime.ridge_backend("cuda:1") == "torch_cuda"
    assert made_current == ["cuda:1"]


def test_a_gpu_index_is_made_current_for_the_whole_run(hardware, monkeypatch):
    """accelerate's single-process device is plain "cuda", the current GPU: it must be the one chosen."""
    hardware(True, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    made_current = []
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    before = torch.get_num_threads()
    try:
        assert runtime.start_process("cuda:1").device == "cuda:1"
        runtime.start_process("cuda")
    finally:
        torch.set_num_threads(before)
    assert made_current == ["cuda:1"]


def test_a_gpu_index_under_a_multi_process_launch_is_refused(hardware, monkeypatch):
    hardware(True, False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DataError, match="each process takes its own GPU"):
        runtime.start_process("cuda:0")


def test_a_module_held_on_a_device_is_back_on_the_cpu_after_the_block_even_after_an_error(monkeypatch):
    module, moves, emptied = torch.nn.Linear(2, 2), [], []
    monkeypatch.setattr(module, "to", lambda device: moves.append(device) or module)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    seen_inside = []

    def decode() -> None:
        with runtime.held_on(module, "cuda:1"):
            seen_inside.extend(moves)
            raise RuntimeError("decoding failed")

    with pytest.raises(RuntimeError, match="decoding failed"):
        decode()
    assert seen_inside == ["cuda:1"]
    assert moves == ["cuda:1", "cpu"]
    assert emptied == [True]  # the GPU memory it held is returned for the next stage


def test_a_move_to_the_device_that_fails_halfway_is_undone(monkeypatch):
    module, moves = torch.nn.Linear(2, 2), []

    def move(device: str) -> torch.nn.Module:
        moves.append(device)
        if device != "cpu":
            raise torch.cuda.OutOfMemoryError("out of memory")
        return module

    monkeypatch.setattr(module, "to", move)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(torch.cuda.OutOfMemoryError), runtime.held_on(module, "cuda:0"):
        pass
    assert moves == ["cuda:0", "cpu"]
