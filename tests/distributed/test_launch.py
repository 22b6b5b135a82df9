"""`accelerate launch` for real: separate CPU processes (gloo), compared with one process.

accelerate's multi-process launcher is `--multi_gpu`; without a GPU, fmri_encoders.runtime.start_process makes
its ranks join over gloo. These tests start real processes, so they cost seconds each.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
TINY = HERE / "tiny_training.py"
# CPU ranks; a rank that aborts (a C++ std::terminate) prints every thread's Python stack
ENV = os.environ | {
    "CUDA_VISIBLE_DEVICES": "",
    "HF_HUB_OFFLINE": "1",
    "MPLBACKEND": "Agg",
    "PYTHONFAULTHANDLER": "1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FULL_SHARD = ("--use_fsdp", "--fsdp_version=2")  # instead of --multi_gpu: every weight sharded, FSDP2


def _launcher(processes: int, *extra: str, sharding: tuple[str, ...] = ("--multi_gpu",)) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *sharding,
        f"--num_processes={processes}",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        *extra,
    ]


def _failure(stderr: str) -> str:
    """The end of a failed launch's stderr without faulthandler's list of loaded extension modules: after a
    native abort that one line alone would fill the message and hide the stack above it."""
    kept = [line for line in stderr.splitlines() if not line.lstrip().startswith("Extension modules:")]
    return "\n".join(kept)[-3000:]


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600, **kwargs)
    assert done.returncode == 0, _failure(done.stderr)
    return done


def _launched(
    tmp_path: Path, name: str, *args: str, processes: int = 2, sharding: tuple[str, ...] = ("--multi_gpu",)
) -> dict:
    result = tmp_path / f"{name}.json"
    port = f"--main_process_port={_free_port()}"
    _run([*_launcher(processes, "--num_machines=1", port, sharding=sharding), str(TINY), str(result), *args])
    return json.loads(result.read_text())


def _alone(tmp_path: Path, name: str, *args: str) -> dict:
    result = tmp_path / f"{name}.json"
    _run([sys.executable, str(TINY), str(result), *args])
    return json.loads(result.read_text())


def _assert_same_fit(a: dict, b: dict) -> None:
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5, atol=1e-7)
    assert a.get("best_step") == b.get("best_step")
    np.testing.assert_allclose(a.get("validation", []), b.get("validation", []), rtol=1e-5, atol=1e-7)
    for wa, wb in zip(a["weights"], b["weights"], strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-6)


def test_two_processes_train_as_one_on_the_same_global_batch(tmp_path):
    alone = _alone(tmp_path, "alone", "--batch=16")
    launched = _launched(tmp_path, "launched", "--batch=16")
    _assert_same_fit(alone, launched)
    other_batch = _alone(tmp_path, "other", "--batch=8")  # the comparison can fail: a real difference shows
    assert not np.allclose(other_batch["losses"], alone["losses"], rtol=1e-3)


@pytest.mark.parametrize(
    "variant", [["--accumulate=2"], ["--epochs"], ["--validate", "--steps=40"]], ids=lambda v: v[0][2:]
)
def test_accumulation_epochs_and_early_stopping_train_as_one_too(tmp_path, variant):
    alone = _alone(tmp_path, "alone", *variant)
    launched = _launched(tmp_path, "launched", *variant)
    _assert_same_fit(alone, launched)
    if "--validate" in variant:
        assert len(alone["losses"]) < 40  # early stopping did stop, on both at the same step


def test_a_checkpoint_of_one_process_resumes_under_two(tmp_path):
    whole = _alone(tmp_path, "whole")
    work = tmp_path / "work"
    killed = [sys.executable, str(TINY), str(tmp_path / "killed.json"), f"--out-dir={work}", "--stop-after=7"]
    _run(killed)  # checkpoints at steps 3 and 6, killed at step 8
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    resumed = _launched(tmp_path, "resumed", f"--out-dir={work}", "--resume")
    _assert_same_fit(whole, resumed)


def test_fully_sharded_processes_train_as_one(tmp_path):
    """Each process holds half of every weight (shards == 2), yet the loss curve, validation and final
    weights are one process's, with gradient accumulation and early stopping, for units (ModuleList
    members) holding frozen weights and a loss that calls a method other than forward."""
    variant = ["--blocks", "--validate", "--steps=40", "--accumulate=2"]
    alone = _alone(tmp_path, "alone", *variant)
    sharded = _launched(tmp_path, "sharded", *variant, sharding=FULL_SHARD)
    assert (alone["shards"], sharded["shards"]) == (1, 2)
    assert alone["train_mode"]  # though the model came in eval mode
    assert sharded["train_mode"]
    _assert_same_fit(alone, sharded)


def test_checkpoints_resume_between_one_process_and_fully_sharded_ones(tmp_path):
    """Killed sharded, resumed by one process; killed alone, resumed sharded: both end as the uninterrupted
    run (losses and the final EMA weights gathered whole)."""
    whole = _alone(tmp_path, "whole", "--blocks")

    def sharded() -> list[str]:
        return _launcher(2, "--num_machines=1", f"--main_process_port={_free_port()}", sharding=FULL_SHARD)

    for name, kill, resume in [
        ("from-sharded", sharded(), [sys.executable]),
        ("to-sharded", [sys.executable], sharded()),
    ]:
        work, result = tmp_path / name, tmp_path / f"{name}.json"
        _run(
            [
                *kill,
                str(TINY),
                str(tmp_path / "killed.json"),
                "--blocks",
                f"--out-dir={work}",
                "--stop-after=7",
            ]
        )
        assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
        _run([*resume, str(TINY), str(result), "--blocks", f"--out-dir={work}", "--resume"])
        _assert_same_fit(whole, json.loads(result.read_text()))


def test_a_nan_on_one_process_stops_every_process_with_the_same_error(tmp_path):
    port = f"--main_process_port={_free_port()}"
    command = [*_launcher(2, "--num_machines=1", port), str(TINY), str(tmp_path / "r.json"), "--nan-at=4"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)  # no hang
    assert done.returncode != 0
    for rank in (0, 1):
        assert re.search(rf"\[rank{rank}\]: .*TrainingDivergedError: loss became nan at step 3", done.stderr)
    assert not (tmp_path / "r.json").exists()


def test_two_machines_on_one_host_train_together_and_write_once(tmp_path):
    """The documented multi-node launch, machine 0 and machine 1 both on 127.0.0.1, one process each."""
    result = tmp_path / "nodes.json"
    port = _free_port()
    machines = [
        subprocess.Popen(
            [
                *_launcher(
                    2,
                    "--num_machines=2",
                    f"--machine_rank={rank}",
                    "--main_process_ip=127.0.0.1",
                    f"--main_process_port={port}",
                ),
                str(TINY),
                str(result),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for rank in (0, 1)
    ]
    for machine in machines:
        _, err = machine.communicate(timeout=600)
        assert machine.returncode == 0, _failure(err)
    _assert_same_fit(_alone(tmp_path, "alone"), json.loads(result.read_text()))


@pytest.mark.parametrize("sharding", [("--multi_gpu",), FULL_SHARD], ids=["data-parallel", "fully-sharded"])
def test_the_main_job_under_two_processes_writes_one_run_with_one_process_s_numbers(tmp_path, sharding):
    job = [str(CHECKOUT / "apps" / "miyawaki_finetune.py"), "--quick", "--no-progress"]
    one = _run([sys.executable, *job, f"--out={tmp_path / 'one'}", f"--work-dir={tmp_path / 'work1'}"])
    two = _run(
        [
            *_launcher(2, "--num_machines=1", f"--main_process_port={_free_port()}", sharding=sharding),
            *job,
            f"--out={tmp_path / 'two'}",
            f"--work-dir={tmp_path / 'work2'}",
        ]
    )
    assert "2 processes (this is 0" in two.stdout
    assert "2 processes (this is 1" in two.stdout
    assert ("weights fully sharded (FSDP2)" in two.stdout) == (sharding == FULL_SHARD)
    assert two.stdout.count("method     pcc") == 1 == one.stdout.count("method     pcc")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    alone = json.loads((tmp_path / "one" / "metrics.json").read_text())["methods"]
    launched = json.loads((tmp_path / "two" / "metrics.json").read_text())["methods"]
    for method in ("ridge", "sd-lora"):
        for metric in ("pcc", "ssim"):
            assert launched[method][metric] == pytest.approx(alone[method][metric], abs=5e-3)
