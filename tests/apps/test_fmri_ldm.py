"""The fMRI-space latent diffusion: models, staged training with best-weight keeping, and the app."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fmri_diffusion.models.voxel_denoiser import LatentDenoiser
from fmri_diffusion.models.voxel_vae import VoxelVAE, vae_loss
from fmri_diffusion.voxel.config import config_from_mapping
from fmri_diffusion.voxel.ldm import FmriLDM, train_fmri_ldm
from fmri_encoders import training
from fmri_encoders.runtime import ProcessSetup

TINY = {
    "data": "sim",
    "device": "cpu",
    "model": {
        "latent_dim": 4,
        "hidden": [16],
        "denoiser_width": 16,
        "denoiser_blocks": 1,
        "num_inference_steps": 4,
    },
    "training": {"vae_steps": 30, "ddpm_steps": 20, "batch_size": 16},
}


def test_vae_and_denoiser_shapes_and_save_load(tmp_path):
    vae = VoxelVAE(12, latent_dim=3, hidden=(8,)).eval()
    x = torch.randn(5, 12)
    reconstruction, mu, logvar = vae(x)
    assert reconstruction.shape == x.shape
    assert mu.shape == logvar.shape == (5, 3)
    assert vae_loss(x, x, torch.zeros(5, 3), torch.zeros(5, 3), beta=1.0) == 0  # perfect and at the prior
    vae.save_pretrained(tmp_path / "vae")
    torch.testing.assert_close(VoxelVAE.from_pretrained(tmp_path / "vae").eval()(x)[0], reconstruction)
    denoiser = LatentDenoiser(3, width=8, n_blocks=2)
    assert denoiser(torch.randn(5, 3), torch.tensor(7)).shape == (5, 3)


def test_training_keeps_the_weights_that_validated_best():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    sampler = training.BatchSampler({"x": torch.ones(4, 1)}, 4)
    config = training.TrainingConfig(
        max_steps=30, learning_rate=0.3, warmup_steps=0, ema_decay=None, device="cpu", progress=False
    )
    # training drives the weight to 3; validation prefers 1, which the weight passes on its way
    result = training.train(
        model,
        lambda m, b, g: (m(b["x"]) - 3).pow(2).mean(),
        sampler,
        config,
        validate=lambda m: abs(float(m.weight) - 1.0),
        validate_every=1,
    )
    best_step, best_score = min(result.validation, key=lambda item: item[1])
    assert result.best_step == best_step < 30
    assert abs(float(model.weight) - 1.0) == pytest.approx(best_score)


def test_two_stages_train_save_and_reload(tmp_path):
    config = config_from_mapping(TINY).model
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(64, 10)), rng.normal(size=(16, 10))
    model, results = train_fmri_ldm(train, test, config, device="cpu", out_dir=tmp_path, progress=False)
    assert set(results) == {"vae", "ddpm"}
    assert (tmp_path / "vae-training" / "best" / "model.safetensors").is_file()
    loaded = FmriLDM.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.reconstruct(test), model.reconstruct(test), atol=1e-6)
    np.testing.assert_allclose(loaded.generate(3, steps=4), model.generate(3, steps=4), atol=1e-5)


def test_app_both_then_evaluate_from_the_checkpoint(load_app, tmp_path):
    app = load_app("fmri_ldm")
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))  # JSON is YAML
    out = tmp_path / "out"
    assert app.main(["--config", str(config), "--mode", "both", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(value, float) for value in metrics.values())
    assert {"vae_reconstruction/pearson_voxelwise_mean", "pca_reconstruction/r2", "generated/jsd"} <= set(
        metrics
    )
    for name in (
        "report.md",
        "reconstruction.png",
        "latent_pca.png",
        "aligned.npz",
        "vae-training/loss_curve.png",
    ):
        assert (out / name).is_file(), name
    again = tmp_path / "again"
    argv = [
        "--config",
        str(config),
        "--mode",
        "evaluate",
        "--checkpoint",
        str(out / "model"),
        "--out",
        str(again),
    ]
    assert app.main(argv) == 0
    assert json.loads((again / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model: {latent_dim: "thirty-two"}',
            "model.latent_dim must be a whole number >= 1, got 'thirty-two'",
        ),
        ('training: {vae_steps: "2k"}', "training.vae_steps must be a whole number >= 1, got '2k'"),
        ("model: [1, 2]", "model must be a mapping of settings, got [1, 2]"),
        ("model: {schedule: cosin}", "model.schedule must be one of ['linear', 'cosine'], got 'cosin'"),
        ("seed: -1", "seed must be a whole number >= 0, got -1"),
        ("model: {dropout: 1.5}", "model.dropout must be a number in [0, 1), got 1.5"),
        ("training: {learning_rate: .nan}", "training.learning_rate must be a finite number >= 0, got nan"),
        ("", "the config is empty"),
        ("data: /no/such/file.npz", "/no/such/file.npz: no such data file"),
        ("data: EMPTY", "empty.npz: not a readable .npz"),
    ],
)
def test_app_bad_settings_name_the_key_and_leave_no_output(load_app, tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    (tmp_path / "empty.npz").write_bytes(b"")
    config.write_text(text.replace("EMPTY", str(tmp_path / "empty.npz")))
    out = tmp_path / "o"
    assert load_app("fmri_ldm").main(["--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_app_refuses_a_launch_precision_its_models_do_not_train_in_before_the_data_load(
    load_app, tmp_path, capsys, monkeypatch
):
    app = load_app("fmri_ldm")
    monkeypatch.setattr(app, "start_process", lambda *_: ProcessSetup("cpu", 2, 0, 2, 1, "bf16"))
    monkeypatch.setattr(app, "load_patterns", _never_called)
    out = tmp_path / "o"
    assert app.main(["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "computes in mixed precision 'bf16'" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def _never_called(*args, **kwargs):
    raise AssertionError("the data were loaded before the launch was checked")


@pytest.mark.parametrize("mode", ["both", "train"])
def test_app_refuses_a_checkpoint_it_would_not_read(load_app, tmp_path, capsys, mode):
    argv = ["--mode", mode, "--checkpoint", str(tmp_path / "model"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as info:
        load_app("fmri_ldm").main(argv)
    assert info.value.code == 2
    assert f"--checkpoint is read by --mode evaluate only; with --mode {mode} leave it out" in (
        capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_app_bad_config_is_one_line(run_app_here, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: {latent_dim: 4, colour: red}\n")
    result = run_app_here("fmri_ldm", "--config", str(config), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "colour" in result.stderr


def test_evaluation_samples_with_the_configured_sampler_and_steps(load_app, tmp_path, monkeypatch):
    seen = []
    generate = FmriLDM.generate
    monkeypatch.setattr(
        FmriLDM,
        "generate",
        lambda self, n, **kw: seen.append((kw["sampler"], kw["steps"])) or generate(self, n, **kw),
    )
    tiny = {**TINY, "model": {**TINY["model"], "sampler": "dpm++", "num_inference_steps": 3}}
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(tiny))
    argv = ["--config", str(config), "--mode", "both", "--out", str(tmp_path / "out"), "--no-progress"]
    assert load_app("fmri_ldm").main(argv) == 0
    assert set(seen) == {("dpm++", 3)}
    assert len(seen) == 2 * 5  # calibrated and raw, five seeded draws each
