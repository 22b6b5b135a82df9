"""What a wider grid of sampling settings would have chosen in a leaderboard cell, without fitting again.

A cell keeps, per fold, the probe that chose its settings on validation stimuli and the final fit (its work
folder). Settings that act at sampling time only (a method's `sampling_settings`: strength, likelihood
weight, ...) can be scored again on those probes: each new point is sampled on the same validation trials
as the cell's own grid, each fold keeps the best of the old and new points (never looking at a test
trial), and its final fit samples the test trials under that choice. Scored with fmri_eval beside the
cell's mean image and ridge, paired with ridge and, with --baseline-cell, with another cell's row over the
same trials (e.g. brain-diffuser-stage1 for Brain-Diffuser's stage 2). A cheap first look before a cell
is run again with a wider recipe; the result file says it is a re-scoring.

    uv run benchmarks/rescore_probes.py --cell runs/leaderboard/cpu2/digit69-kfold5/brain-diffuser \\
        --choose strength=0.3,0.5 --choose likelihood_weight=0.5,1,2 --choose sample_weight=0 \\
        --baseline-cell runs/leaderboard/cpu2/digit69-kfold5/brain-diffuser-stage1
    # -> results/rescore_probes-digit69-kfold5-brain-diffuser.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from leaderboard import choice_value
from result_file import write_result
from tqdm.auto import tqdm

from fmri_data.dataset import PairedDataset
from fmri_data.io import load_dataset
from fmri_data.methods import MethodSettings
from fmri_data.preprocessing import Preprocessing
from fmri_data.splits import make_splits
from fmri_diffusion.methods.base import DiffusionMethod, load_method
from fmri_diffusion.methods.validation import choice_grid, validation_patches, validation_split
from fmri_eval import load_reconstructions
from fmri_eval.evaluate import evaluate_reconstructions
from fmri_eval.metrics import selection_score

SCORES = ("pcc", "ssim", "twoway")


def saved_method(folder: Path, what: str) -> Path:
    """The one fitted method saved in `folder` (the folder holding its method.json)."""
    found = sorted(path.parent for path in folder.glob("*/method.json"))
    if len(found) != 1:
        raise SystemExit(
            f"{folder}: expected one saved {what}, found {len(found)}; only cells whose probe was fitted "
            "once (every chosen setting a sampling one) can be re-scored"
        )
    return found[0]


def parse_choices(choose: list[str], recorded: list[dict[str, Any]], sampling: frozenset[str]) -> dict:
    """--choose NAME=V1,V2 as MethodSettings.choices. Only sampling settings (nothing is fitted again), and
    every setting the cell chose (readout aside, which is weighed as the cell weighed it), so that no point
    inherits the probe's own value of one."""
    choices: dict[str, tuple[float | str, ...]] = {}
    for item in choose:
        name, _, values = item.partition("=")
        name = name.replace("-", "_")
        if name == "readout" or name not in sampling:
            raise SystemExit(
                f"--choose {name}: only these sampling settings can be re-scored: {sorted(sampling)}"
            )
        choices[name] = tuple(choice_value(value) for value in values.split(","))
    chosen = {name for point in recorded for name in point} - {"readout"}
    if missing := chosen - set(choices):
        raise SystemExit(f"the cell also chose {', '.join(sorted(missing))}; name its values with --choose")
    return choices


def with_encoding(method: DiffusionMethod, train: PairedDataset) -> None:
    """Fit the encoding model on `train` where a point needs one the saved fit did without (it chose no
    likelihood weight, or was saved before correlated noise existed), as DiffusionMethod.fit does:
    training trials only."""
    encoding = method.encoding_
    if method.needs_encoding() and (encoding is None or not encoding.offers(method.config.encoding_noise)):
        method.fit_encoding(train)


def rescore_fold(
    probe: DiffusionMethod,
    final: DiffusionMethod,
    train: PairedDataset,
    test_fmri: np.ndarray,
    record: dict[str, Any],
) -> tuple[dict[str, Any], np.ndarray]:
    """Score the new points on the fold's validation trials (the readouts its cell weighed), choose among
    them and the cell's own, sample the test trials with the final fit under the choice."""
    if record.get("validation_folds", 1) > 1:
        raise SystemExit(
            f"fold {record['fold']}: the cell chose on several validation folds; this rescores one"
        )
    inner, held = validation_split(train, probe.settings.seed)
    if held.n_trials != record["validation_trials"]:
        raise SystemExit(f"fold {record['fold']}: the validation trials are not the cell's")
    readouts = sorted({point["readout"] for point in record["grid"] if "readout" in point})
    scored = [(score, point) for point, score in zip(record["grid"], record["scores"], strict=True)]
    fitted: dict[str, Any] = {}
    sampled = probe.config
    for point in tqdm(choice_grid(probe), desc=f"fold {record['fold']}", leave=False):
        probe.config = replace(sampled, **point)
        with_encoding(probe, inner)
        images = probe.predict(held.fmri)
        for name in readouts or [None]:
            read, readout = validation_patches(images, inner, held) if name == "patches" else (images, None)
            key = point if name is None else point | {"readout": name}
            scored.append((selection_score(held.images, read), key))
            fitted[json.dumps(key, sort_keys=True)] = readout
    best_score, best = max(scored, key=lambda pair: pair[0])
    final.config = replace(final.config, **{key: value for key, value in best.items() if key != "readout"})
    if (key := json.dumps(best, sort_keys=True)) in fitted:
        final.readout_ = fitted[key]
    elif best != record["chosen"]:
        raise SystemExit(f"fold {record['fold']}: a recorded point other than the cell's own scored best")
    with_encoding(final, train)
    fold = {"fold": record["fold"], "chosen": best, "score": best_score, "cell_chose": record["chosen"]}
    fold["scores"] = [{"point": point, "score": score} for score, point in scored]
    return fold, np.clip(final.predict(test_fmri), 0, 1).astype(np.float32)


def evaluate(
    truth: np.ndarray, rows: dict[str, np.ndarray], stimulus_id: np.ndarray, baselines: list[str]
) -> dict[str, dict[str, Any]]:
    """Scores of every row, and each row's paired difference from each baseline (fmri_eval)."""
    evaluation: dict[str, dict[str, Any]] = {}
    for baseline in baselines:
        summary = evaluate_reconstructions(truth, rows, stimulus_id, baseline=baseline)
        for row, scores in summary.items():
            entry = evaluation.setdefault(row, {score: round(scores[score], 4) for score in SCORES})
            if row != baseline:
                entry[f"vs_{baseline}"] = {
                    score: {
                        "delta": round(scores["vs_baseline"][score]["delta"], 4),
                        "ci": [round(bound, 4) for bound in scores["vs_baseline"][score]["ci"]],
                    }
                    for score in SCORES
                }
    return evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=Path, required=True, help="a leaderboard cell's folder")
    parser.add_argument("--choose", action="append", required=True, help="NAME=V1,V2 (sampling settings)")
    parser.add_argument("--baseline-cell", type=Path, help="another cell of the same data (its method row)")
    parser.add_argument("--device", help="default: the device the cell ran on")
    parser.add_argument("--out", type=Path, help="default: results/rescore_probes-<data>-<method>.json")
    args = parser.parse_args(argv)

    cell, name = args.cell, args.cell.name
    metrics = json.loads((cell / "metrics.json").read_text())
    command = json.loads((cell / "cell.json").read_text())["command"]
    work = cell.parents[1] / "work" / cell.parent.name / name  # the leaderboard's layout
    device = args.device or command[command.index("--device") + 1]
    records = {record["fold"]: record for record in metrics["validation"][name]}
    fingerprint = json.loads((work / "fold-000" / name / "fingerprint.json").read_text())
    preprocessing = Preprocessing(**fingerprint["preprocessing"])
    if preprocessing.average_repeats != "none":
        parser.error(f"{cell}: its repeats were averaged; re-scoring such cells is not supported")
    saved = load_reconstructions(cell / "reconstructions.npz")
    rows = {key: saved.reconstructions[key] for key in ("mean", "ridge", name)}
    baselines = ["ridge"]
    if args.baseline_cell is not None:
        other = load_reconstructions(args.baseline_cell / "reconstructions.npz")
        if not np.allclose(other.truth, saved.truth, atol=1e-6):
            parser.error(f"{args.baseline_cell}: its test trials are not {cell}'s")
        rows[args.baseline_cell.name] = other.reconstructions[args.baseline_cell.name]
        baselines.append(args.baseline_cell.name)

    seed = fingerprint["settings"]["seed"]
    settings = MethodSettings(
        seed=seed,
        device=device,
        progress=False,
        quick=fingerprint["settings"]["quick"],
        sampling=fingerprint["sampling"],
    )
    dataset = load_dataset(metrics["dataset"])
    folds, rescored, trials = [], [], []
    for split in make_splits(dataset, metrics["split"], seed=seed):
        train, test = preprocessing.apply(dataset.subset(split.train), dataset.subset(split.test))
        fold_dir = work / f"fold-{split.fold:03d}" / name
        probe = load_method(saved_method(fold_dir / "validation" / name, "probe"), settings)
        probe.settings = replace(
            probe.settings,
            choices=parse_choices(args.choose, records[split.fold]["grid"], type(probe).sampling_settings),
        )
        final = load_method(saved_method(fold_dir, "final fit"), settings)
        fold, images = rescore_fold(probe, final, train, test.fmri, records[split.fold])
        folds.append(fold)
        rescored.append(images)
        trials.append(split.test)
    order = np.argsort(np.concatenate(trials))  # runs save their test trials in the data set's order
    if saved.trial_index is not None and not np.array_equal(np.concatenate(trials)[order], saved.trial_index):
        raise SystemExit(f"{cell}: its test trials are not this split's")
    rows[f"{name} (rescored)"] = np.concatenate(rescored)[order]
    result = {
        "what": "saved probes and final fits re-scored under a wider sampling grid; nothing fitted again",
        "cell": str(cell),
        "device": device,
        "choose": args.choose,
        "folds": folds,
        "evaluation": evaluate(saved.truth, rows, saved.stimulus_id, baselines),
        "command": " ".join(
            ["uv run benchmarks/rescore_probes.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    data = f"{metrics['dataset']}-{metrics['split'].replace(':', '')}"
    write_result(result, "rescore_probes", f"{data}-{name}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
