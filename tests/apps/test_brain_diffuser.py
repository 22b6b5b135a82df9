"""apps/brain_diffuser.py: the documented pipeline on the simulator, both stages as rows of one report."""

from __future__ import annotations

import json


def test_quick_run_reports_both_stages_beside_the_baselines(load_app, tmp_path):
    app = load_app("brain_diffuser")
    out = tmp_path / "out"
    argv = [
        "--quick",
        "--no-progress",
        "--n-boot",
        "50",
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path / "w"),
    ]
    assert app.main(argv) == 0
    methods = set(json.loads((out / "metrics.json").read_text())["methods"])
    assert methods == {"mean", "ridge", "brain-diffuser-stage1", "brain-diffuser", "brain-diffuser-1"}
    assert (out / "report.md").is_file()
    assert (out / "reconstructions.npz").is_file()
