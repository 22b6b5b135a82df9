import json

import pytest

from fmri_data.simulator import simulate_miyawaki


def test_its_defaults_train_every_stage_in_fewer_larger_batches_and_the_options_still_override_them(
    load_app,
):
    from reconstruct import _method_settings, parse_args

    defaults = load_app("digit69_ldm").DEFAULTS
    args = parse_args([], defaults=defaults)
    assert (args.data, args.batch_size, args.train_steps) == ("digit69", 48, 0.67)
    settings = _method_settings(args, progress=False)
    assert (settings.batch_size, settings.train_steps) == (48, 0.67)
    args = parse_args(["--batch-size", "32", "--train-steps", "1"], defaults=defaults)
    assert (args.batch_size, args.train_steps) == (32, 1.0)


@pytest.mark.slow
def test_quick_run_trains_samples_evaluates_and_resumes(tmp_path, load_app):
    app = load_app("digit69_ldm")
    data = simulate_miyawaki(n_train=24, test_repeats=1, image_size=16, n_voxels=80).save_npz(
        tmp_path / "d.npz"
    )
    out, work = tmp_path / "out", tmp_path / "work"
    args = [
        "--data",
        str(data),
        "--quick",
        "--out",
        str(out),
        "--work-dir",
        str(work),
        "--no-progress",
        "--n-boot",
        "50",
        "--device",
        "cpu",
    ]
    assert app.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"mean", "ridge", "ldm", "ldm-1"}
    assert (work / "fold-000" / "ldm" / "vae" / "config.json").is_file()
    assert (work / "fold-000" / "ldm" / "loss_curve.png").is_file()
    assert (work / "fold-000" / "ldm" / "pipeline" / "model_index.json").is_file()
    assert (out / "loss_curve-ldm.png").is_file()
    # resuming a finished run reloads the stages and samples the same images
    again = tmp_path / "again"
    resume_args = [str(again) if arg == str(out) else arg for arg in args]
    assert app.main([*resume_args, "--resume"]) == 0
    assert json.loads((again / "metrics.json").read_text())["methods"]["ldm"]["pcc"] == pytest.approx(
        metrics["methods"]["ldm"]["pcc"], abs=1e-6
    )
