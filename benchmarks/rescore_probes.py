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
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from result_file import write_result
from tqdm.auto import tqdm

from fmri_data.dataset import PairedDataset
from fmri_data.io import load_dataset
from fmri_data.methods import MethodSettings
from fmri_data.preprocessing import Preprocessing
from fmri_data.splits import make_splits
from fmri_diffusion.methods.base import DiffusionMethod, load_method
from fmri_diffusion.methods.validation import validation_patches, validation_split
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


def new_points(choose: list[str], recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The --choose grid; it must name every setting the cell chose (readout aside), so no point inherits
    the probe's own value of one."""
    options = {}
    for item in choose:
        name, _, values = item.partition("=")
        options[name] = [_number(value) for value in values.split(",")]
    chosen = {name for point in recorded for name in point} - {"readout"}
    if missing := chosen - set(options):
        raise SystemExit(f"the cell also chose {', '.join(sorted(missing))}; name its values with --choose")
    return [dict(zip(options, values, strict=True)) for values in product(*options.values())]


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def rescore_fold(
    probe: DiffusionMethod,
    final: DiffusionMethod,
    inner: PairedDataset,
    held: PairedDataset,
    test_fmri: np.ndarray,
    record: dict[str, Any],
    points: list[dict[str, Any]],
    readouts: list[str],
) -> tuple[dict[str, Any], np.ndarray]:
    """Score the new points on the validation trials, choose among them and the cell's own, sample the
    test trials with the final fit under the choice."""
    scored = [(score, point) for point, score in zip(record["grid"], record["scores"], strict=True)]
    fitted = {}
    sampled = probe.config
    for point in tqdm(points, desc=f"fold {record['fold']}", leave=False):
        probe.config = replace(sampled, **point)
        images = probe.predict(held.fmri)
        for name in readouts or [None]:
            images_read, readout = (
                validation_patches(images, inner, held) if name == "patches" else (images, None)
            )
            key = point if name is None else point | {"readout": name}
            scored.append((selection_score(held.images, images_read), key))
            fitted[json.dumps(key, sort_keys=True)] = readout
    best_score, best = max(scored, key=lambda pair: pair[0])
    setting = {key: value for key, value in best.items() if key != "readout"}
    final.config = replace(final.config, **setting)
    if json.dumps(best, sort_keys=True) in fitted:
        final.readout_ = fitted[json.dumps(best, sort_keys=True)]
    elif best != record["chosen"]:
        raise SystemExit(f"fold {record['fold']}: chose a recorded point other than the cell's own; cannot")
    fold = {"fold": record["fold"], "chosen": best, "score": best_score, "cell_chose": record["chosen"]}
    fold["scores"] = [{"point": point, "score": score} for score, point in scored]
    return fold, final.predict(test_fmri)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", type=Path, required=True, help="a leaderboard cell's folder")
    parser.add_argument("--choose", action="append", required=True, help="NAME=V1,V2 (sampling settings)")
    parser.add_argument("--baseline-cell", type=Path, help="another cell of the same data (its method row)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="default: results/rescore_probes-<data>-<method>.json")
    args = parser.parse_args(argv)

    cell = args.cell
    metrics = json.loads((cell / "metrics.json").read_text())
    command = json.loads((cell / "cell.json").read_text())["command"]
    work = Path(command[command.index("--work-dir") + 1])
    name = cell.name
    records = {record["fold"]: record for record in metrics["validation"][name]}
    points = new_points(args.choose, records[0]["grid"])
    readouts = sorted({point["readout"] for point in records[0]["grid"] if "readout" in point})
    fingerprint = json.loads((work / "fold-000" / name / "fingerprint.json").read_text())
    seed = fingerprint["settings"]["seed"]
    preprocessing = Preprocessing(**fingerprint["preprocessing"])

    dataset = load_dataset(metrics["dataset"])
    settings = MethodSettings(seed=seed, device=args.device, progress=False)
    folds, rows, order = [], [], []
    for split in make_splits(dataset, metrics["split"], seed=seed):
        train, test = preprocessing.apply(dataset.subset(split.train), dataset.subset(split.test))
        inner, held = validation_split(train, seed)
        fold_dir = work / f"fold-{split.fold:03d}" / name
        probe = load_method(saved_method(fold_dir / "validation" / name, "probe"), settings)
        final = load_method(saved_method(fold_dir, "final fit"), settings)
        fold, images = rescore_fold(
            probe, final, inner, held, test.fmri, records[split.fold], points, readouts
        )
        folds.append(fold)
        rows.append(images)
        order.append(split.test)

    saved = load_reconstructions(cell / "reconstructions.npz")
    trials = np.concatenate(order)
    rescored = np.concatenate(rows)[np.argsort(trials)]
    if saved.trial_index is not None and not np.array_equal(np.sort(trials), saved.trial_index):
        raise SystemExit(f"{cell}: its test trials are not this split's")
    reconstructions = {key: saved.reconstructions[key] for key in ("mean", "ridge", name)}
    reconstructions[f"{name} (rescored)"] = rescored
    baselines = ["ridge"]
    if args.baseline_cell is not None:
        other = load_reconstructions(args.baseline_cell / "reconstructions.npz")
        if not np.allclose(other.truth, saved.truth, atol=1e-6):
            parser.error(f"{args.baseline_cell}: its test trials are not {cell}'s")
        reconstructions[args.baseline_cell.name] = other.reconstructions[args.baseline_cell.name]
        baselines.append(args.baseline_cell.name)
    evaluation = {}
    for baseline in baselines:
        summary = evaluate_reconstructions(saved.truth, reconstructions, saved.stimulus_id, baseline=baseline)
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
    result = {
        "what": "saved probes and final fits re-scored under a wider sampling grid; nothing fitted again",
        "cell": str(cell),
        "grid": points,
        "readouts": readouts,
        "folds": folds,
        "evaluation": evaluation,
        "command": " ".join(
            ["uv run benchmarks/rescore_probes.py", *(sys.argv[1:] if argv is None else argv)]
        ),
    }
    data = f"{metrics['dataset']}-{metrics['split'].replace(':', '')}"
    write_result(result, "rescore_probes", f"{data}-{name}", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
