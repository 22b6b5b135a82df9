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


def test_the_documented_nsd_command_runs_on_a_tiny_nsd(load_app, write_nsd_layout, tmp_path, monkeypatch):
    from fmri_data.loaders import nsd

    write_nsd_layout(tmp_path / "nsd")
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    app = load_app("brain_diffuser")
    out = tmp_path / "out"
    argv = [
        "--data",
        "nsd",
        "--nsd-root",
        str(tmp_path / "nsd"),
        "--subject",
        "1",
        "--quick",
        "--no-progress",
    ]
    assert app.main([*argv, "--n-boot", "20", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "nsd-subj01"
    assert {"brain-diffuser-stage1", "brain-diffuser"} <= set(metrics["methods"])


def test_nsd_without_its_root_is_one_clear_error(run_app, tmp_path):
    result = run_app("brain_diffuser", "--data", "nsd", "--quick", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "--nsd-root" in result.stderr
