import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from fmri_data.methods import MethodSettings, create_method
from fmri_data.simulator import simulate_miyawaki
from fmri_diffusion.methods.stable import DECODES, STARTS
from fmri_encoders.runtime import ProcessSetup
from fmri_eval.cli import main as fmri_eval_main
from fmri_eval.io import load_reconstructions


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def test_default_run_on_the_simulator_writes_every_output(reconstruct, tmp_path, capsys):
    out = tmp_path / "run"
    assert reconstruct.main(["--out", str(out), "--no-progress", "--n-boot", "200"]) == 0
    opening, *table = capsys.readouterr().out.split("\n\n")[0].splitlines()  # the paths after are the user's
    assert opening.startswith("reconstruct: device cpu, 1 process, ")
    assert max(len(line) for line in table) <= 100
    assert table[0].split() == ["method", "pcc", "ssim", "2-way"]
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "reconstructions.npz",
        "reconstructions.png",
        "report.md",
    ]
    metrics = _metrics(out)
    assert metrics["dataset"] == "sim"
    assert metrics["split"] == "given"
    assert set(metrics["methods"]) == {"mean", "ridge"}
    for name in ("pcc", "ssim", "mse", "psnr", "twoway"):
        assert name in metrics["methods"]["ridge"]
    assert metrics["methods"]["ridge"]["pcc"] > metrics["methods"]["mean"]["pcc"] + 0.3
    assert metrics["ci"] == {"level": 0.95, "unit": "stimulus", "n_boot": 200, "seed": 0}
    assert metrics["baseline"] == "ridge"
    assert metrics["methods"]["mean"]["vs_baseline"]["pcc"]["ci"][1] < 0  # the mean image loses, clearly
    saved = load_reconstructions(out / "reconstructions.npz")
    assert saved.truth.shape == saved.reconstructions["ridge"].shape == (metrics["n_test"], 28, 28)
    report = (out / "report.md").read_text()
    assert "uv run apps/reconstruct.py" in report
    assert "## Difference from ridge" in report
    assert fmri_eval_main([str(out / "reconstructions.npz"), "--check"]) == 0
    assert "reproduced" in capsys.readouterr().out


def test_kfold_predicts_every_trial_once(reconstruct, tmp_path):
    data = simulate_miyawaki(n_train=40, test_repeats=2, n_voxels=200)
    path = data.save_npz(tmp_path / "small.npz")
    out = tmp_path / "kfold"
    code = reconstruct.main(
        [
            "--data",
            str(path),
            "--split",
            "kfold:4",
            "--method",
            "mean",
            "--out",
            str(out),
            "--no-progress",
            "--n-boot",
            "50",
        ]
    )
    assert code == 0
    saved = load_reconstructions(out / "reconstructions.npz")
    np.testing.assert_array_equal(np.sort(saved.trial_index), np.arange(data.n_trials))
    assert _metrics(out)["n_test"] == data.n_trials


def test_test_repeat_averaging_is_reported(reconstruct, tmp_path):
    out = tmp_path / "avg"
    assert (
        reconstruct.main(
            [
                "--average-repeats",
                "test",
                "--method",
                "mean",
                "--out",
                str(out),
                "--no-progress",
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    assert _metrics(out)["n_test"] == 9  # nine distinct figures
    assert _metrics(out)["repeats_averaged"] is True
    assert _metrics(out)["ci"]["unit"] == "trial"  # one row per stimulus now
    assert "9 test trials, 9 distinct test stimuli, repeats averaged" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n-boot", "0"], "--n-boot: must be 1 or more"),
        (["--method", "mean", "--baseline", "ridge"], "--baseline ridge is not among the methods run"),
        (["--device", "gpu:0"], "--device: unknown device 'gpu:0'; use one of auto, cpu, cuda, cuda:N, mps"),
    ],
)
def test_evaluation_options_are_checked_before_any_work(reconstruct, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        reconstruct.main([*args, "--out", str(tmp_path / "never")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/file.mat"], "no such file"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--split", "kfold:zero"], "whole number"),
        (["--mixed-precision", "fp16", "--device", "cpu"], "mixed_precision 'fp16' needs a CUDA GPU"),
    ],
)
def test_bad_input_gives_one_line_and_leaves_no_output(reconstruct, tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert reconstruct.main([*args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("launch_precision", "args", "message"),
    [
        (
            "no",
            ["--mixed-precision", "bf16"],
            "computes in mixed precision 'no' .* trains in 'bf16'",
        ),
        (
            "bf16",
            ["--mixed-precision", "no"],
            "computes in mixed precision 'bf16' .* trains in 'no'",
        ),
        ("no", ["--batch-size", "1"], "a batch of 1 cannot be shared by 2 processes"),
    ],
)
def test_a_launch_s_precision_or_batch_mistakes_are_refused_at_start_up(
    reconstruct, tmp_path, capsys, monkeypatch, launch_precision, args, message
):
    two_ranks = ProcessSetup("cpu", 2, 0, 2, 1, launch_precision)  # what start_process says under a launch
    monkeypatch.setattr(reconstruct, "start_process", lambda *_: two_ranks)
    out = tmp_path / "never"
    assert reconstruct.main([*args, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err)
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_one_process_trains_in_any_precision_of_its_own(reconstruct):
    alone = ProcessSetup("cpu", 1, 0, 1, 1, "no")
    alone.check_run("bf16", 1)  # the model's precision is its own, and one process takes a batch of 1


def test_bad_input_as_a_user_sees_it(tmp_path, run_app):
    path = tmp_path / "nan.npz"
    data = simulate_miyawaki(n_train=20, n_voxels=50)
    fmri = data.fmri.copy()
    fmri[3, 7] = np.nan
    np.savez(path, fmri=fmri, images=data.images)
    result = run_app("reconstruct", "--data", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("reconstruct: error:")
    assert "NaN" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_installed_methods(run_app):
    result = run_app("reconstruct", "--help")
    assert result.returncode == 0
    assert "ridge" in result.stdout
    assert "--split" in result.stdout


def test_miyawaki_given_split_is_refused_and_loso_runs(
    reconstruct, shared_data_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("FMRI_DATA_DIR", str(shared_data_dir))
    assert (
        reconstruct.main(
            ["--data", "miyawaki", "--split", "given", "--out", str(tmp_path / "g"), "--no-progress"]
        )
        == 2
    )
    assert "10 test stimuli (12 of 12 test trials) also occur in training" in capsys.readouterr().err
    out = tmp_path / "loso"
    assert (
        reconstruct.main(
            ["--data", "miyawaki", "--split", "loso", "--out", str(out), "--no-progress", "--n-boot", "200"]
        )
        == 0
    )
    metrics = _metrics(out)
    assert metrics["n_test"] == 119
    assert metrics["methods"]["ridge"]["pcc"] >= 0.78
    assert metrics["methods"]["ridge"]["pcc"] > metrics["methods"]["mean"]["pcc"]


def test_digit69_ridge_reaches_the_published_linear_baseline(
    reconstruct, shared_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("FMRI_DATA_DIR", str(shared_data_dir))
    out = tmp_path / "digit69"
    assert reconstruct.main(["--data", "digit69", "--out", str(out), "--no-progress", "--n-boot", "200"]) == 0
    methods = _metrics(out)["methods"]
    assert methods["ridge"]["pcc"] >= 0.78
    assert methods["mean"]["pcc"] == pytest.approx(0.655, abs=0.005)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_inputs(tmp_path):
    data = simulate_miyawaki(n_train=20, n_voxels=50)
    fmri, images = data.fmri, data.images
    inf_fmri = fmri.copy()
    inf_fmri[0, 0] = np.inf
    corrupt = tmp_path / "corrupt.mat"
    corrupt.write_bytes(b"MATLA")
    return {
        "wrong key": (_write_npz(tmp_path / "k.npz", voxels=fmri, images=images), "fmri"),
        "mismatched counts": (_write_npz(tmp_path / "m.npz", fmri=fmri[:-1], images=images), "images"),
        "inf voxels": (_write_npz(tmp_path / "i.npz", fmri=inf_fmri, images=images), "NaN/inf"),
        "non-square": (_write_npz(tmp_path / "s.npz", fmri=fmri, images=images[:, :, :20]), "square"),
        "range": (_write_npz(tmp_path / "r.npz", fmri=fmri, images=images * 255), "[0, 1]"),
        "corrupt file": (corrupt, "MATLAB"),
        "tiny data set": (data.subset([0, data.n_trials - 1]).save_npz(tmp_path / "t.npz"), "at least 2"),
    }


@pytest.mark.parametrize(
    "case",
    ["wrong key", "mismatched counts", "inf voxels", "non-square", "range", "corrupt file", "tiny data set"],
)
def test_each_bad_input_is_one_line_exit_2_and_no_folder(reconstruct, tmp_path, capsys, case):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    path, message = _bad_inputs(inputs)[case]
    out = tmp_path / "out"
    assert reconstruct.main(["--data", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("reconstruct: error:")
    assert message in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]


def test_allowed_overlap_is_stated_in_the_report(reconstruct, tmp_path):
    data = simulate_miyawaki(n_train=30, n_voxels=100)
    figures = np.flatnonzero(data.labels > 0)
    _, first_showing = np.unique(data.stimulus_id[figures], return_index=True)
    data.given_test[figures[first_showing]] = False  # one repeat of each figure trains -> the split leaks
    path = data.save_npz(tmp_path / "leaky.npz")
    out = tmp_path / "leaky"
    args = ["--data", str(path), "--out", str(out), "--no-progress", "--n-boot", "50", "--method", "mean"]
    assert reconstruct.main(args) == 2
    assert reconstruct.main([*args, "--allow-overlap"]) == 0
    assert "LEAKY SPLIT: 9 test stimuli" in (out / "report.md").read_text()
    assert any("LEAKY SPLIT" in note for note in _metrics(out)["notes"])


def test_allow_overlap_on_a_clean_split_adds_no_warning(reconstruct, tmp_path):
    out = tmp_path / "clean"
    assert (
        reconstruct.main(
            ["--allow-overlap", "--method", "mean", "--out", str(out), "--no-progress", "--n-boot", "50"]
        )
        == 0
    )
    assert "LEAKY" not in (out / "report.md").read_text()


def test_run_folder_is_readable_by_others(reconstruct, tmp_path):
    out = tmp_path / "perm"
    assert reconstruct.main(["--method", "mean", "--out", str(out), "--no-progress", "--n-boot", "50"]) == 0
    assert out.stat().st_mode & 0o055 == 0o055 & ~_umask()


def _umask():
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def test_an_out_that_is_a_file_fails_before_any_work(reconstruct, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    args = ["--out", str(tmp_path / "taken"), "--method", "mean", "--no-progress"]
    assert reconstruct.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"reconstruct: error: --out {tmp_path / 'taken'} exists and is not a folder; choose another path"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_an_out_that_would_destroy_more_than_a_run_fails_before_any_work(reconstruct, tmp_path, capsys):
    (tmp_path / "earlier-run").mkdir()  # --out runs: replacing it whole would delete every run in it
    args = ["--out", str(tmp_path), "--method", "mean", "--no-progress"]
    assert reconstruct.main(args) == 2
    assert f"--out {tmp_path} holds files but not an earlier run" in capsys.readouterr().err
    out = tmp_path / "run"
    args = ["--out", str(out), "--work-dir", str(out / "work"), "--method", "mean", "--no-progress"]
    assert reconstruct.main(args) == 2
    assert f"--work-dir {out / 'work'} is inside --out {out}" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier-run"]


def test_an_out_whose_parent_is_not_writable_fails_before_any_work(
    reconstruct, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "locked" / "run"
    out.mkdir(parents=True)  # the run folder itself is writable, but it is replaced through its parent
    real_mkstemp = tempfile.mkstemp

    def refuse_in_locked(**kwargs):
        if Path(kwargs["dir"]) == out.parent:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(**kwargs)

    monkeypatch.setattr("fmri_eval.atomic.tempfile.mkstemp", refuse_in_locked)
    assert reconstruct.main(["--out", str(out), "--method", "mean", "--no-progress"]) == 2
    assert f"no write access to {out.parent}" in capsys.readouterr().err


def test_an_unwritable_out_names_the_user_s_path(reconstruct, tmp_path, capsys, monkeypatch):
    def refuse(**_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("fmri_eval.atomic.tempfile.mkstemp", refuse)
    out = tmp_path / "locked" / "run"
    assert reconstruct.main(["--out", str(out), "--method", "mean", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reconstruct: error: --out {out} cannot be written: no write access to {tmp_path}")
    assert ".tmp-" not in err
    assert list(tmp_path.iterdir()) == []


def test_default_folders_keep_data_sets_and_splits_apart(load_app, reconstruct, tmp_path):
    defaults = load_app("miyawaki_finetune").DEFAULTS

    def parsed(*argv):
        return reconstruct.parse_args(list(argv), prog="miyawaki_finetune", defaults=defaults)

    sim, digits = parsed(), parsed("--data", "digit69", "--split", "kfold:5")
    root = Path("runs/miyawaki-finetune")
    assert (sim.out, sim.work_dir) == (root / "sim-given", root / "sim-given-work")
    assert (digits.out, digits.work_dir) == (root / "digit69-kfold5", root / "digit69-kfold5-work")
    assert sim.cache_dir == digits.cache_dir == root / "cache"  # the base model is pre-trained once
    assert parsed("--work-dir", str(tmp_path / "w")).cache_dir == tmp_path / "w" / "cache"
    assert parsed("--quick").work_dir == root / "sim-given-quick-work"  # a smoke test keeps off a real run
    assert reconstruct.parse_args(["--data", "nsd", "--subject", "2"]).out == Path(
        "runs/reconstruct/nsd-subj02-given"
    )


def test_the_main_job_chooses_its_decoding_and_takes_each_data_set_s_prior(load_app, reconstruct):
    defaults = load_app("miyawaki_finetune").DEFAULTS

    def parsed(*argv):
        return reconstruct.parse_args(list(argv), prog="miyawaki_finetune", defaults=defaults)

    grid = [
        ("decode", ("vae", "residual")),
        ("likelihood_weight", (0.0, 0.5, 1.0)),
        ("readout", ("pixels", "patches")),
    ]
    assert (parsed().choose, parsed().prior_corpus) == (grid, None)
    assert parsed("--data", "miyawaki").prior_corpus == "binary-patterns"
    assert parsed("--data", "digit69").prior_corpus == "digits"
    assert parsed("--data", "miyawaki", "--prior-corpus", "simulator").prior_corpus == "simulator"
    assert parsed("--decode", "vae").choose == grid[1:]  # a setting the command line gives is not chosen
    assert parsed("--choose", "strength=0.2,0.4").choose == [("strength", (0.2, 0.4))]
    assert defaults["choose"] == grid  # parsing leaves the app's defaults as they were
    assert reconstruct.parse_args([]).choose == []


def test_a_grid_may_belong_to_one_method(reconstruct, capsys):
    parsed = reconstruct.parse_args(
        [
            "--method",
            "cvae+ldm",
            "--choose",
            "cvae:likelihood-weight=0,0.1",
            "--choose",
            "ldm:readout=pixels,patches",
        ]
    )
    assert parsed.choose == [("cvae:likelihood_weight", (0.0, 0.1)), ("ldm:readout", ("pixels", "patches"))]
    argv = ["--method", "cvae", "--choose", "cvae:latent-dim=16"]
    assert reconstruct.parse_args(argv).choose == [("cvae:latent_dim", (16,))]
    for bad in (":strength=0.3", ":readout=pixels", "ldm:readout=pixels,voxels"):
        with pytest.raises(SystemExit):
            reconstruct.parse_args(["--choose", bad])
    assert "--choose" in capsys.readouterr().err
    for scope in ("cvea", "cvae+ldm"):  # a typo, or the ensemble itself: no member would see the grid
        with pytest.raises(SystemExit):
            reconstruct.parse_args(["--method", "cvae+ldm", "--choose", f"{scope}:width=16"])
        assert f"no method of this run is called {scope!r}" in capsys.readouterr().err


def test_a_misspelt_setting_to_choose_is_refused_before_anything_loads(reconstruct, capsys):
    for argv, message in [
        (["--method", "cvae", "--choose", "latnt-dim=16"], "did you mean 'latent_dim'?"),
        (["--method", "cvae+ldm", "--choose", "ldm:latent_dim=16"], "ldm; cvae chooses it: cvae:latent_dim"),
        (
            ["--method", "cvae+ldm", "--choose", "size=16"],
            "not a setting of cvae+ldm; choose among autoencoder",
        ),
        (["--method", "ridge", "--choose", "strength=0.3"], "it chooses no setting on validation"),
        (["--method", "nope", "--choose", "strength=0.3"], "unknown method 'nope'"),
    ]:
        with pytest.raises(SystemExit):
            reconstruct.parse_args(argv)
        assert message in capsys.readouterr().err
    app_defaults = {"methods": ["ridge"], "choose": [("strength", (0.3, 1.0))]}
    assert reconstruct.parse_args([], defaults=app_defaults).choose == [("strength", (0.3, 1.0))]


def test_an_ensemble_runs_end_to_end_and_reports_its_weights(reconstruct, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", "sim", "--method", "mean", "--method", "ridge", "--method", "mean+ridge"]
    assert reconstruct.main([*argv, "--out", str(out), "--no-progress", "--quick"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "mean+ridge" in metrics["methods"]
    (fold,) = metrics["validation"]["mean+ridge"]
    assert set(fold["chosen"]) == {"mean", "ridge"}
    assert sum(fold["chosen"].values()) == 1
    assert "mean+ridge, fold 0: chose" in (out / "report.md").read_text()


def test_resume_on_another_data_set_is_refused(reconstruct, tmp_path, capsys):
    work = tmp_path / "work"
    common = ["--method", "mean", "--work-dir", str(work), "--no-progress", "--n-boot", "20"]
    assert reconstruct.main([*common, "--out", str(tmp_path / "sim")]) == 0
    other = simulate_miyawaki(n_train=20, n_voxels=50).save_npz(tmp_path / "other.npz")
    capsys.readouterr()
    code = reconstruct.main([*common, "--resume", "--data", str(other), "--out", str(tmp_path / "other")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "belongs to another run: its data.sha256" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "other").exists()


def test_a_wrong_pretrained_fails_before_any_work(reconstruct, tmp_path, capsys):
    args = ["--method", "mean", "--pretrained", "some-org/uncached-model", "--out", str(tmp_path / "o")]
    assert reconstruct.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "neither a folder nor in the Hugging Face cache" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_log_with_tensorboard_writes_event_files_per_stage(reconstruct, tmp_path):
    work = tmp_path / "work"
    args = ["--method", "cvae", "--quick", "--no-progress", "--n-boot", "20", "--work-dir", str(work)]
    assert reconstruct.main([*args, "--log-with", "tensorboard", "--out", str(tmp_path / "o")]) == 0
    events = sorted((work / "fold-000" / "cvae" / "logs").rglob("events.out.tfevents.*"))
    assert len(events) == 1


def test_a_missing_tracker_fails_before_any_work(reconstruct, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("accelerate.utils.is_tensorboard_available", lambda: False)
    args = ["--method", "mean", "--work-dir", str(tmp_path / "w"), "--log-with", "tensorboard"]
    assert reconstruct.main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--log-with tensorboard: the tensorboard package is not installed" in err
    assert list(tmp_path.iterdir()) == []


def test_a_typo_after_a_slow_method_fails_before_it_trains(reconstruct, tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "out"
    argv = ["--method", "sd-lora", "--method", "ridgee", "--work-dir", str(work), "--out", str(out)]
    assert reconstruct.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reconstruct: error: unknown method 'ridgee'; available:")
    assert not work.exists()  # sd-lora never started: it would have made its work folder first
    assert not out.exists()


def test_choose_takes_numbers_and_the_decoding_and_readout_words(reconstruct, capsys):
    args = reconstruct.parse_args(
        [
            "--method",
            "sd-lora",
            "--choose",
            "strength=0.2,0.5",
            "--choose",
            "num-inference-steps=10,25",
            "--choose",
            "decode=vae,residual",
            "--choose",
            "readout=pixels,patches",
            "--choose",
            "start=ridge-latents,inverse-retinotopy",
        ]
    )
    assert args.choose == [
        ("strength", (0.2, 0.5)),
        ("num_inference_steps", (10, 25)),
        ("decode", ("vae", "residual")),
        ("readout", ("pixels", "patches")),
        ("start", ("ridge-latents", "inverse-retinotopy")),
    ]
    assert (
        reconstruct.parse_args(["--method", "sd-lora", "--start", "inverse-retinotopy"]).start
        == "inverse-retinotopy"
    )
    for bad in ("decode=vae,sharp", "strength=low", "readout=edges", "start=noise"):
        with pytest.raises(SystemExit):
            reconstruct.parse_args(["--choose", bad])
    assert "decode takes vae, residual, got 'vae,sharp'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ("strength=0.2,1.5", "strength=1.5: must be in (0, 1], got 1.5"),
        ("sd-lora:strength=0", "strength=0: must be in (0, 1], got 0.0"),
        ("n_samples=0,8", "n_samples=0: must be 1 or more, got 0"),
        ("n_samples=2.5", "n_samples takes whole numbers, got '2.5'"),
        ("likelihood_weight=-1", "likelihood_weight=-1: must be 0 or more, got -1.0"),
        ("vdvae_layers=2.5,31", "vdvae_layers takes whole numbers, got '2.5,31'"),
        ("mixing=0.4,nan", "mixing=nan: must be in [0, 1], got nan"),
    ],
)
def test_choose_refuses_values_its_option_would_refuse_before_any_work(reconstruct, capsys, choice, message):
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--method", "sd-lora", "--choose", choice])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--method", "ldm", "--langevin-steps", "20"],
            "setting 'langevin_steps' is read by none of the methods",
        ),
        (["--strength", "0.3"], "setting 'strength' is read by none of the methods run (mean, ridge): "),
        (["--method", "inverse-retinotopy", "--samples", "4"], "setting 'n_samples' is read by none"),
    ],
)
def test_an_option_no_method_of_the_run_reads_is_refused_before_any_work(reconstruct, capsys, args, message):
    with pytest.raises(SystemExit):
        reconstruct.parse_args(args)
    assert message in capsys.readouterr().err


def test_an_option_read_by_one_method_or_ensemble_member_is_taken(reconstruct):
    assert reconstruct.parse_args(["--method", "cvae+ldm", "--langevin-steps", "5"]).langevin_steps == 5
    args = ["--method", "inverse-retinotopy", "--method", "sd-lora", "--samples", "4"]
    assert reconstruct.parse_args(args).n_samples == 4


def test_choose_takes_no_corpus_pre_training_as_a_grid_point(reconstruct):
    args = reconstruct.parse_args(["--method", "cvae", "--choose", "corpus_finetune=0,0.5"])
    assert args.choose == [("corpus_finetune", (0.0, 0.5))]


def test_the_cvae_s_langevin_steps_are_an_option_that_reaches_its_settings(reconstruct, capsys):
    assert reconstruct.parse_args(["--method", "cvae", "--langevin-steps", "50"]).langevin_steps == 50
    chosen = reconstruct.parse_args(["--method", "cvae", "--choose", "langevin-steps=0,100"]).choose
    assert chosen == [("langevin_steps", (0, 100))]
    assert type(chosen[0][1][1]) is int  # a number of steps, not 100.0
    assert "langevin_steps" in reconstruct.SAMPLING
    assert create_method("cvae", MethodSettings(sampling={"langevin_steps": 50})).config.langevin_steps == 50
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--langevin-steps", "-1"])
    assert "must be 0 or more, got -1" in capsys.readouterr().err


def test_the_cvae_s_condition_readout_is_an_option_and_a_word_to_choose(reconstruct, capsys):
    assert (
        reconstruct.parse_args(["--method", "cvae", "--condition-readout", "patches"]).condition_readout
        == "patches"
    )
    both = ["--method", "cvae", "--choose", "condition-readout=pixels,patches"]
    chosen = reconstruct.parse_args(both).choose
    assert chosen == [("condition_readout", ("pixels", "patches"))]
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--method", "cvae", "--choose", "condition_readout=edges"])
    assert "condition_readout takes pixels, patches, got 'edges'" in capsys.readouterr().err
    settings = reconstruct._method_settings(
        reconstruct.parse_args(["--method", "cvae", "--condition-readout", "patches"]), False
    )
    assert create_method("cvae", settings).config.condition_readout == "patches"  # the option reaches it


def test_inverse_retinotopys_noise_model_is_a_word_to_choose(reconstruct, capsys):
    both = ["--method", "inverse-retinotopy", "--choose", "noise=independent,correlated"]
    assert reconstruct.parse_args(both).choose == [("noise", ("independent", "correlated"))]
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--method", "inverse-retinotopy", "--choose", "noise=1"])
    assert "noise takes independent, correlated, got '1'" in capsys.readouterr().err
    one = reconstruct._method_settings(reconstruct.parse_args([*both[:3], "noise=correlated"]), False)
    assert create_method("inverse-retinotopy", one).config.noise == ("correlated",)  # it reaches the method


def test_the_encoding_model_is_an_option_that_reaches_the_methods_settings(reconstruct, capsys):
    assert reconstruct.parse_args([]).encoding_model is None  # each method's own default: auto
    assert reconstruct.parse_args(["--method", "sd-lora", "--encoding-model", "prf"]).encoding_model == "prf"
    assert "encoding_model" in reconstruct.SAMPLING
    settings = MethodSettings(sampling={"encoding_model": "prf"})  # what the option's value becomes
    assert create_method("sd-lora", settings).config.encoding_model == "prf"
    assert create_method("ddpm", settings).config.encoding_model == "prf"
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--encoding-model", "cnn"])
    assert "invalid choice: 'cnn'" in capsys.readouterr().err


def test_the_encoding_noise_is_an_option_and_a_word_to_choose(reconstruct, capsys):
    assert reconstruct.parse_args([]).encoding_noise is None  # each method's own default: independent
    args = reconstruct.parse_args(["--method", "sd-lora", "--encoding-noise", "correlated"])
    assert (
        create_method("sd-lora", reconstruct._method_settings(args, False)).config.encoding_noise
        == "correlated"
    )
    both = reconstruct.parse_args(
        ["--method", "sd-lora", "--choose", "encoding-noise=independent,correlated"]
    )
    assert dict(both.choose)["encoding_noise"] == ("independent", "correlated")
    with pytest.raises(SystemExit):
        reconstruct.parse_args(["--choose", "encoding_noise=diagonal"])
    assert "encoding_noise takes independent, correlated, got 'diagonal'" in capsys.readouterr().err


def test_colour_is_for_nsd_and_refused_elsewhere_before_anything_loads(run_app_here, tmp_path):
    out = tmp_path / "o"
    result = run_app_here("reconstruct", "--data", "digit69", "--colour", "--out", str(out))
    assert result.returncode == 2
    assert "--colour reads NSD's stimuli in colour; digit69 is not NSD" in result.stderr
    assert not out.exists()


def test_colour_refuses_grayscale_methods_before_the_data_loads(run_app_here, tmp_path):
    nowhere = tmp_path / "no-nsd"  # loading would fail: the refusal must come first
    args = (
        "--data",
        "nsd",
        "--nsd-root",
        str(nowhere),
        "--colour",
        "--method",
        "cvae",
        "--out",
        str(tmp_path / "o"),
    )
    result = run_app_here("reconstruct", *args)
    assert result.returncode == 2
    assert "cvae reconstruct grayscale images only, and these stimuli are in colour" in result.stderr
    corpus = run_app_here("reconstruct", *args, "--prior-corpus", "digits")
    assert corpus.returncode == 2
    assert "prior corpora are grayscale" in corpus.stderr


def test_the_sd_start_and_decode_words_are_the_configs(reconstruct):
    assert reconstruct._WORD_SETTINGS["start"] == STARTS
    assert reconstruct._WORD_SETTINGS["decode"] == DECODES
