"""fmri-eval installs into a fresh environment and works there without torch or sibling packages."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "packages" / "fmri-eval"

SNIPPET = """
import subprocess
import sys
import numpy as np
import fmri_eval

rng = np.random.default_rng(0)
truth = rng.random((6, 12, 12))
recon = np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0, 1)
scores = fmri_eval.image_metrics(truth, recon)
assert set(scores) == {"pcc", "ssim", "mse", "psnr"}, scores
assert fmri_eval.twoway_identification(truth, recon).score == 1.0
run = fmri_eval.write_run(
    "run",
    dataset="toy",
    split="loso",
    truth=truth,
    stimulus_id=[0, 0, 0, 1, 1, 2],
    reconstructions={"ridge": recon, "mean": np.broadcast_to(truth.mean(0), truth.shape)},
    settings=fmri_eval.EvaluationSettings(n_boot=50, baseline="ridge"),
)
assert run["ci"]["unit"] == "stimulus", run["ci"]
assert "vs_baseline" in run["methods"]["mean"]
check = subprocess.run([sys.executable, "-m", "fmri_eval", "run/reconstructions.npz", "--check"])
assert check.returncode == 0, "re-scoring did not reproduce metrics.json"
assert "torch" not in sys.modules, "fmri_eval imported torch"
assert not any(name.startswith(("fmri_data", "fmri_encoders", "fmri_diffusion")) for name in sys.modules)
print("ok")
"""


@pytest.mark.slow
def test_installs_and_runs_alone(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH, so a fresh environment cannot be created")
    assert (PACKAGE_DIR / "pyproject.toml").is_file(), f"package not found at {PACKAGE_DIR}"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if install.returncode != 0 and re.search(
        r"(?i)network|connect|dns|offline|failed to fetch", install.stderr
    ):
        pytest.skip(f"no package index reachable to install numpy & co. ({install.stderr.strip()[:120]})")
    assert install.returncode == 0, install.stderr
    result = subprocess.run(
        [str(python), "-c", SNIPPET], capture_output=True, text=True, cwd=tmp_path, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "ok"
    assert "reproduced" in result.stdout
