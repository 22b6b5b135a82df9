"""The fMRI-space report: its files, its tables, and metrics.json kept strict JSON when a metric is NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fmri_eval.fmri_report import write_fmri_report

PREFIXES = ("vae_reconstruction", "pca_reconstruction", "generated", "generated_raw", "gaussian")
NAMES = ("pearson_voxelwise_mean", "r2", "mse", "ks_statistic", "jsd", "correlation_structure_r")
NAMES += ("mean_difference", "std_difference")


def test_the_report_is_written_and_a_nan_metric_is_null(tmp_path):
    metrics = {f"{prefix}/{name}": 0.5 for prefix in PREFIXES for name in NAMES}
    metrics["vae_reconstruction/r2"] = float("nan")
    metrics["pca_reconstruction/psnr_db"] = float("inf")
    rng = np.random.default_rng(0)
    held_out = rng.normal(size=(6, 10))
    report = write_fmri_report(
        tmp_path / "out",
        metrics,
        "three subjects",
        held_out=held_out,
        reconstruction=held_out + 0.1,
        latents={"training": rng.normal(size=(8, 3)), "held out": rng.normal(size=(6, 3))},
        samples={"generated": rng.normal(size=(20, 10)), "gaussian": rng.normal(size=(20, 10))},
    )
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["vae_reconstruction/r2"] is None
    assert written["pca_reconstruction/psnr_db"] is None
    assert written["generated/jsd"] == 0.5
    text = report.read_text()
    assert "three subjects" in text
    assert "| R² | nan | 0.5000 |" in text
    assert "| jsd | 0.5000 | 0.5000 | 0.5000 |" in text
    assert "shifted" not in text  # no shifted set scored, no section for it
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "generated.png",
        "latent_pca.png",
        "metrics.json",
        "reconstruction.png",
        "report.md",
    ]


def test_a_shifted_set_gets_its_own_table_and_spreads_are_shown(tmp_path):
    metrics = {f"{prefix}/{name}": 0.5 for prefix in PREFIXES for name in NAMES}
    generators = ("generated", "generated_raw", "gaussian")
    metrics |= {f"shifted/{c}/{name}": 0.25 for c in generators for name in NAMES}
    metrics["shifted/gaussian/ks_statistic"] = 0.75
    metrics["shifted/generated/ks_statistic_sd"] = 0.01  # repeated draws: mean ± std
    rng = np.random.default_rng(0)
    report = write_fmri_report(
        tmp_path,
        metrics,
        "sim",
        held_out=rng.normal(size=(6, 10)),
        reconstruction=rng.normal(size=(6, 10)),
        latents={"training": rng.normal(size=(8, 3))},
        samples={"generated": rng.normal(size=(20, 10))},
    )
    text = report.read_text()
    shifted_section = text[text.index("shifted held-out set") :]
    assert "| ks_statistic | 0.2500 ± 0.0100 | 0.2500 | 0.7500 |" in shifted_section
    assert "| ks_statistic | 0.5000 | 0.5000 | 0.5000 |" in text[: text.index("shifted held-out set")]


def test_the_distribution_figure_refuses_patterns_of_other_widths(tmp_path):
    from fmri_eval.errors import EvaluationError
    from fmri_eval.figures import distribution_comparison

    rng = np.random.default_rng(0)
    with pytest.raises(EvaluationError, match=r"one d, got \[\(6, 10\), \(20, 9\)\]"):
        distribution_comparison(
            tmp_path / "g.png", rng.normal(size=(6, 10)), {"ldm": rng.normal(size=(20, 9))}
        )
    assert not (tmp_path / "g.png").exists()


def test_voxel_pair_correlations_are_pearson_r_of_the_pairs_asked():
    from fmri_eval.figures import _pair_correlations

    values = np.random.default_rng(1).normal(size=(50, 6)) @ np.random.default_rng(2).normal(size=(6, 6))
    rows, columns = np.array([0, 3, 5, 1]), np.array([2, 4, 0, 1])
    expected = np.corrcoef(values, rowvar=False)[rows, columns]
    np.testing.assert_allclose(_pair_correlations(values, rows, columns), expected)


def test_the_distribution_figure_is_drawn_when_a_generator_diverged(tmp_path):
    from fmri_eval.figures import distribution_comparison

    rng = np.random.default_rng(0)
    samples = {"diverged": np.full((20, 10), np.nan), "gaussian": rng.normal(size=(20, 10))}
    distribution_comparison(tmp_path / "g.png", rng.normal(size=(6, 10)), samples)
    assert (tmp_path / "g.png").stat().st_size > 0
