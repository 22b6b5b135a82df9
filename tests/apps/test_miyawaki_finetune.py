"""The main job, apps/miyawaki_finetune.py: a --quick run end to end, and a bad --pretrained folder."""

from __future__ import annotations

import json


def test_quick_run_writes_the_table_grid_and_loss_curve(load_app, tmp_path, capsys):
    app = load_app("miyawaki_finetune")
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["--quick", "--no-progress", "--n-boot", "50", "--out", str(out), "--work-dir", str(work)]
    assert app.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mean", "ridge", "sd-lora", "sd-lora-1"} <= set(metrics["methods"])
    assert metrics["dataset"] == "sim"
    assert (out / "reconstructions.png").is_file()
    assert (out / "loss_curve-sd-lora.png").is_file()
    assert (
        work / "fold-000" / "sd-lora" / "finetuned" / "lora" / "pytorch_lora_weights.safetensors"
    ).is_file()
    assert len(list((work / "cache").glob("small-base-*"))) == 1
    (fold,) = metrics["validation"]["sd-lora"]
    assert {tuple(point) for point in fold["grid"]} == {("decode", "likelihood_weight")}
    assert len(fold["grid"]) == 6
    printed = capsys.readouterr().out
    assert any(line.split()[:1] == ["sd-lora"] for line in printed.splitlines())
    assert "better/worse than ridge" in printed
    assert f"Attached: {out / 'loss_curve-sd-lora.png'}" in printed


def test_a_pretrained_folder_without_a_unet_is_one_clear_error(run_app_here, tmp_path):
    (tmp_path / "sd" / "vae").mkdir(parents=True)
    result = run_app_here(
        "miyawaki_finetune",
        "--quick",
        "--no-progress",
        "--out",
        str(tmp_path / "o"),
        "--pretrained",
        str(tmp_path / "sd"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no unet/, vae/, scheduler/ with a config" in lines[0]
    assert not (tmp_path / "o").exists()
