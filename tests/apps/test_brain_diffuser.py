"""apps/brain_diffuser.py: the documented pipeline on the simulator, both stages as rows of one report."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np


def test_quick_run_reports_both_stages_beside_the_baselines(load_app, tmp_path, monkeypatch):
    from fmri_diffusion.methods.brain_diffuser.parts import LatentDecoding

    fits = []
    fit = LatentDecoding.fit.__func__
    monkeypatch.setattr(
        LatentDecoding, "fit", classmethod(lambda cls, *a, **k: fits.append(1) or fit(cls, *a, **k))
    )
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
        "--strength",
        "0.5",
        "--literature-table",
    ]
    assert app.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {"mean", "ridge", "brain-diffuser-stage1", "brain-diffuser", "brain-diffuser-1"}
    assert set(metrics["methods"]) == rows
    assert set(metrics["literature"]["methods"]) == rows
    assert {"pixcorr", "ssim"} <= set(metrics["literature"]["methods"]["ridge"])
    assert any("no local weights" in note for note in metrics["literature"]["notes"])  # none here
    assert "NSD literature metrics" in (out / "report.md").read_text()
    assert (out / "reconstructions.npz").is_file()
    assert (tmp_path / "w" / "fold-000" / "brain-diffuser" / "stages" / "method.json").is_file()
    assert (out / "prior_loss_curve-brain-diffuser.png").is_file()  # the method names its curve's path
    # the base is kept in the work folder, so both rows share one stage 1 of it per fold
    assert len(fits) == len(list((tmp_path / "w").glob("fold-*"))) == 1


def test_a_strength_outside_0_1_is_refused(run_app_here, tmp_path):
    result = run_app_here("brain_diffuser", "--strength", "1.5", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "must be in (0, 1]" in result.stderr


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


def test_nsd_without_its_root_is_one_clear_error(run_app_here, tmp_path):
    result = run_app_here("brain_diffuser", "--data", "nsd", "--quick", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "--nsd-root" in result.stderr


def test_caption_guidance_on_a_base_without_a_text_encoder_is_one_line(
    load_app, write_nsd_layout, tmp_path, monkeypatch, capsys
):
    from fmri_data.loaders import nsd

    write_nsd_layout(tmp_path / "nsd", captions=True)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    app = load_app("brain_diffuser")
    argv = [
        "--data",
        "nsd",
        "--nsd-root",
        str(tmp_path / "nsd"),
        "--quick",
        "--no-progress",
        "--mixing",
        "0.5",
    ]
    assert app.main([*argv, "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "w")]) == 2
    error = capsys.readouterr().err.strip()
    assert "mixing 0.5 needs captions" in error
    assert "\n" not in error
    assert not (tmp_path / "out").exists()


def test_a_bad_feature_weights_folder_fails_before_any_fitting(run_app_here, tmp_path):
    out = tmp_path / "o"
    result = run_app_here("brain_diffuser", "--feature-weights", str(tmp_path / "nowhere"), "--out", str(out))
    assert result.returncode == 2
    assert "feature weights folder" in result.stderr
    assert not out.exists()


def test_the_published_models_run_end_to_end_on_a_tiny_nsd(
    load_app, write_nsd_layout, published_models, tmp_path, monkeypatch
):
    """--stage1 vdvae --stage2 versatile --pretrained DIR: VDVAE's latents, then Versatile Diffusion guided by
    predicted CLIP-vision and caption tokens; the saved stages load back and predict the same stage 1."""
    from fmri_data.io import load_dataset
    from fmri_data.loaders import nsd
    from fmri_data.preprocessing import Preprocessing
    from fmri_diffusion.methods.base import load_method

    write_nsd_layout(tmp_path / "nsd", captions=True)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    app = load_app("brain_diffuser")
    out, work = tmp_path / "out", tmp_path / "w"
    argv = [
        *("--data", "nsd", "--nsd-root", str(tmp_path / "nsd"), "--quick", "--no-progress"),
        *("--stage1", "vdvae", "--stage2", "versatile"),
        *("--pretrained", str(published_models / "versatile-diffusion")),
        *("--n-boot", "20", "--out", str(out), "--work-dir", str(work)),
    ]
    assert app.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"brain-diffuser-stage1", "brain-diffuser", "brain-diffuser-1"} <= set(metrics["methods"])
    manifest = json.loads((work / "fold-000" / "brain-diffuser" / "stages" / "method.json").read_text())
    assert (manifest["stage1"], manifest["stage2"], manifest["mixing"]) == ("vdvae", "versatile", 0.4)
    assert manifest["vdvae_layers"] == 7  # the tiny VDVAE has 7 latent layers, fewer than the published 31
    stage1_folder = work / "fold-000" / "brain-diffuser-stage1" / "stages"
    assert "base" not in json.loads((stage1_folder / "method.json").read_text())  # VDVAE alone
    saved = np.load(out / "reconstructions.npz")
    data = load_dataset("nsd", nsd_root=tmp_path / "nsd", subject=1)
    # as Brain-Diffuser, each image's trials were averaged, training and test (and the report says so)
    _, test = Preprocessing(average_repeats="both").apply(
        data.subset(~data.given_test), data.subset(data.given_test)
    )
    assert test.n_trials == len(saved["stimulus_id"]) < data.given_test.sum()
    report = (out / "report.md").read_text()
    assert "repeats averaged before decoding" in report
    assert "averaged (both)" in report
    fmri = test.fmri[np.argsort(test.stimulus_id)][np.argsort(np.argsort(saved["stimulus_id"]))]
    again = load_method(stage1_folder).predict(fmri)
    np.testing.assert_allclose(
        again, saved["brain-diffuser-stage1"], atol=1e-3
    )  # fmri averaged here in float32
    stage2 = load_method(work / "fold-000" / "brain-diffuser" / "stages")  # Versatile Diffusion read again
    with_captions = stage2.sample(fmri, 1)
    stage2.config = replace(stage2.config, mixing=0.0)  # the caption weight applies at every draw
    assert with_captions.shape == (1, len(fmri), 64, 64)
    assert not np.allclose(with_captions, stage2.sample(fmri, 1))


def test_vdvae_stage1_before_the_small_stage2(load_app, published_models, tmp_path, monkeypatch):
    """Without a pretrained stage-2 model, VDVAE's stage 1 feeds the small base trained here; both rows use
    one fit of it per fold."""
    from fmri_diffusion.methods.brain_diffuser.parts import VdvaeDecoding

    fits = []
    fit = VdvaeDecoding.fit.__func__
    monkeypatch.setattr(
        VdvaeDecoding, "fit", classmethod(lambda cls, *a, **k: fits.append(1) or fit(cls, *a, **k))
    )
    app = load_app("brain_diffuser")
    out, work = tmp_path / "out", tmp_path / "w"
    vdvae = published_models / "versatile-diffusion" / "vdvae"
    argv = ["--quick", "--no-progress", "--stage1", "vdvae", "--vdvae", str(vdvae), "--vdvae-layers", "3"]
    assert app.main([*argv, "--n-boot", "20", "--out", str(out), "--work-dir", str(work)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"brain-diffuser-stage1", "brain-diffuser"} <= set(metrics["methods"])
    manifest = json.loads((work / "fold-000" / "brain-diffuser" / "stages" / "method.json").read_text())
    assert (manifest["stage1"], manifest["stage2"], manifest["vdvae_layers"]) == ("vdvae", "small", 3)
    assert manifest["vdvae"] == str(vdvae.resolve())
    assert len(fits) == len(list(work.glob("fold-*"))) == 1


def test_nsd_in_colour_runs_the_published_route_in_colour_and_refuses_the_grayscale_ones(
    load_app, run_app_here, write_nsd_layout, published_models, tmp_path, monkeypatch
):
    """--colour: VDVAE's and Versatile Diffusion's RGB from RGB stimuli; the small base's route is refused
    in one line before anything trains."""
    from fmri_data.loaders import nsd
    from fmri_diffusion.methods.base import load_method

    write_nsd_layout(tmp_path / "nsd", captions=True)
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)
    app = load_app("brain_diffuser")
    data = ("--data", "nsd", "--nsd-root", str(tmp_path / "nsd"), "--colour", "--quick", "--no-progress")
    out = tmp_path / "out"
    argv = [
        *data,
        *("--stage1", "vdvae", "--stage2", "versatile"),
        *("--pretrained", str(published_models / "versatile-diffusion")),
        *("--n-boot", "20", "--out", str(out), "--work-dir", str(tmp_path / "w")),
    ]
    assert app.main(argv) == 0
    saved = np.load(out / "reconstructions.npz")
    assert saved["truth"].shape[1:] == (64, 64, 3)
    for row in ("mean", "ridge", "brain-diffuser-stage1", "brain-diffuser", "brain-diffuser-1"):
        assert saved[row].shape == saved["truth"].shape
    assert not np.allclose(saved["brain-diffuser"][..., 0], saved["brain-diffuser"][..., 2])
    stage1 = load_method(tmp_path / "w" / "fold-000" / "brain-diffuser-stage1" / "stages")
    fmri = np.zeros((2, stage1.stage1_.ridge.coef_.shape[0]), np.float32)
    assert stage1.predict(fmri).shape == (2, 64, 64, 3)  # colour, reloaded
    stage2 = load_method(tmp_path / "w" / "fold-000" / "brain-diffuser" / "stages")
    assert stage2.sample(fmri, 1).shape == (1, 2, 64, 64, 3)
    refused = tmp_path / "refused"
    work = tmp_path / "refused-work"
    result = run_app_here(
        "brain_diffuser", *data, "--n-boot", "20", "--out", str(refused), "--work-dir", str(work)
    )
    assert result.returncode == 2
    assert "reconstructs colour as published only: --stage1 vdvae" in result.stderr
    assert not refused.exists()
    assert not work.exists()  # refused before any fold trained, or any folder was stamped
    published = argv[argv.index("--stage1") : argv.index("--n-boot")]
    choose = ("--choose", "likelihood_weight=0,1")
    result = run_app_here(
        "brain_diffuser", *data, *published, *choose, "--out", str(refused), "--work-dir", str(work)
    )
    assert result.returncode == 2
    assert "likelihood guidance and weights read grayscale images" in result.stderr
    assert not refused.exists()
    assert not work.exists()  # refused before stage 1 trained (a probe's fit would refuse it only after)
