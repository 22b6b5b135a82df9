"""How much wider intervals get when the bootstrap resamples stimuli instead of trials, on a saved run.

Reads a run's reconstructions.npz (its saved bootstrap settings) and, for every method and the metrics the
terminal table shows, puts the interval metrics.json reports (stimuli resampled where they repeat) beside
the one the old trial bootstrap gave, for the scores and for the paired differences from the baseline.

    uv run apps/reconstruct.py --data miyawaki --split kfold:5 --method mean --method ridge --method mlp \\
        --out runs/miyawaki-kfold5
    uv run python benchmarks/interval_units.py runs/miyawaki-kfold5/reconstructions.npz --tag miyawaki-kfold5
    # -> results/interval_units-miyawaki-kfold5.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from result_file import write_result

from fmri_eval import EvaluationSettings, bootstrap_ci, item_scores, load_reconstructions, paired_comparison
from fmri_eval.bootstrap import resampling_unit
from fmri_eval.terminal import TERMINAL_METRICS


def _interval(values, settings: EvaluationSettings, clusters) -> list[float]:
    _, low, high = bootstrap_ci(values, settings.n_boot, settings.level, settings.seed, clusters)
    return [low, high]


def _difference(values, baseline, settings: EvaluationSettings, clusters) -> list[float]:
    result = paired_comparison(values, baseline, settings.n_boot, settings.level, settings.seed, clusters)
    return [result.ci_low, result.ci_high]


def _widths(by_stimulus: list[float], by_trial: list[float]) -> dict[str, object]:
    stimulus_width, trial_width = by_stimulus[1] - by_stimulus[0], by_trial[1] - by_trial[0]
    return {
        "stimulus_ci": by_stimulus,
        "trial_ci": by_trial,
        "width_ratio": stimulus_width / trial_width if trial_width > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recon_file", type=Path)
    parser.add_argument("--tag", required=True, help="results file name: interval_units-TAG.json")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    saved = load_reconstructions(args.recon_file)
    settings = saved.settings or EvaluationSettings(baseline="ridge")
    ids = saved.stimulus_id
    scores = {name: item_scores(saved.truth, images, ids) for name, images in saved.reconstructions.items()}
    methods: dict[str, dict] = {}
    for name, method_scores in scores.items():
        methods[name] = {
            metric: _widths(
                _interval(method_scores[metric], settings, ids),
                _interval(method_scores[metric], settings, None),
            )
            for metric in TERMINAL_METRICS
        }
        baseline = settings.baseline
        if baseline is not None and name != baseline:
            methods[name]["vs_baseline"] = {
                metric: _widths(
                    _difference(method_scores[metric], scores[baseline][metric], settings, ids),
                    _difference(method_scores[metric], scores[baseline][metric], settings, None),
                )
                for metric in TERMINAL_METRICS
            }
    result = {
        "file": str(args.recon_file),
        "n_test": int(saved.truth.shape[0]),
        "unit_reported": resampling_unit(ids),
        "settings": settings.to_json(),
        "methods": methods,
    }
    write_result(result, "interval_units", args.tag, args.out)


if __name__ == "__main__":
    main()
