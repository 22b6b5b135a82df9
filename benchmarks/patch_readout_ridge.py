"""How much of a route's gain on Miyawaki is the patch readout alone: ridge read out as patches, honestly.

The `ridge-patches` method is that baseline inside a run; this script scores it beside saved cells, paired,
without running them again, with its readout fitted on a ridge whose alpha each pixel chooses.

In each fold, ridge is fitted on the training trials as the `ridge` method is, the patch readout
(fmri_data.readout) is fitted on ridge's stimulus-grouped out-of-fold reconstructions of those
training trials (never on a test trial) and then reads out ridge's test reconstructions. Scored with
fmri_eval beside plain ridge and the mean training image; given leaderboard cells (`--cell`), their
method rows join the table, paired over the same trials (the cells' truth must match trial for trial)
with ridge or, with `--baseline`, any other row (e.g. brain-diffuser-stage1 for its stage 2).

    uv run benchmarks/leaderboard.py --data miyawaki-kfold5 --method sd-lora
    uv run python benchmarks/patch_readout_ridge.py --cell runs/leaderboard/cpu2/miyawaki-kfold5/sd-lora
    # -> results/patch_readout_ridge-miyawaki-kfold5.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from result_file import write_result

from fmri_data.corpora import detect_patch_grid
from fmri_data.io import load_dataset
from fmri_data.methods import MethodSettings, create_method
from fmri_data.preprocessing import Preprocessing
from fmri_data.readout import PatchReadout
from fmri_data.splits import make_splits
from fmri_encoders.out_of_fold import out_of_fold_ridge
from fmri_eval import load_reconstructions
from fmri_eval.evaluate import evaluate_reconstructions

SCORES = ("pcc", "ssim", "twoway")


def ridge_rows(data: str, split: str, seed: int = 0) -> dict[str, np.ndarray]:
    """truth, stimulus_id and the mean, ridge and (stimuli made of patches) ridge+patches rows, in trial
    order as runs save them; `seed` draws the folds as a run's --seed does."""
    dataset = load_dataset(data)
    rows: dict[str, list[np.ndarray]] = {}
    folds = make_splits(dataset, split, seed=seed)
    for fold in folds:
        train, test = Preprocessing().apply(dataset.subset(fold.train), dataset.subset(fold.test))
        ridge = create_method("ridge", MethodSettings(device="cpu")).fit(train).predict(test.fmri)
        fitted = {
            "truth": test.images,
            "stimulus_id": test.stimulus_id,
            "mean": create_method("mean").fit(train).predict(test.fmri),
            "ridge": ridge,
        }
        if detect_patch_grid(train.images) is not None:  # elsewhere (digit69) the script only pairs cells
            held_out, _ = out_of_fold_ridge(train.fmri, train.images, train.stimulus_id)
            readout = PatchReadout.fit_out_of_fold(train.images, held_out)
            fitted["ridge+patches"] = readout(np.clip(ridge, 0, 1))
        for name, values in fitted.items():
            rows.setdefault(name, []).append(values)
    order = np.argsort(np.concatenate([fold.test for fold in folds]))
    return {name: np.concatenate(values)[order] for name, values in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="miyawaki")
    parser.add_argument("--split", default="kfold:5")
    parser.add_argument("--cell", type=Path, action="append", default=[], help="a leaderboard cell's folder")
    parser.add_argument("--baseline", default="ridge", help="the row every other is paired with")
    parser.add_argument("--seed", type=int, default=0, help="the cells' --seed (which folds they drew)")
    parser.add_argument("--out", type=Path, help="default: results/patch_readout_ridge-<data>-<split>.json")
    args = parser.parse_args(argv)
    rows = ridge_rows(args.data, args.split, args.seed)
    truth, stimulus_id = rows.pop("truth"), rows.pop("stimulus_id")
    for cell in args.cell:
        saved = load_reconstructions(cell / "reconstructions.npz")
        if not np.allclose(saved.truth, truth, atol=1e-6):
            parser.error(f"{cell}: its test trials are not this run's; run it on --data {args.data}")
        rows |= {name: images for name, images in saved.reconstructions.items() if name not in rows}
    summary = evaluate_reconstructions(truth, rows, stimulus_id, baseline=args.baseline)
    table = {
        name: {score: round(scores[score], 4) for score in SCORES}
        | {
            f"{score}_vs_{args.baseline}": {
                "delta": round(scores["vs_baseline"][score]["delta"], 4),
                "ci": [round(bound, 4) for bound in scores["vs_baseline"][score]["ci"]],
            }
            for score in SCORES
            if "vs_baseline" in scores
        }
        for name, scores in summary.items()
    }
    tag = (
        f"{args.data}-{args.split.replace(':', '')}"
        + ("" if args.baseline == "ridge" else f"-vs-{args.baseline}")
        + ("" if args.seed == 0 else f"-seed{args.seed}")
    )
    command = f"uv run python benchmarks/patch_readout_ridge.py --data {args.data} --split {args.split} "
    command += " ".join(f"--cell {c}" for c in args.cell)
    command += "" if args.baseline == "ridge" else f" --baseline {args.baseline}"
    command += "" if args.seed == 0 else f" --seed {args.seed}"
    write_result(
        {"data": args.data, "split": args.split, "seed": args.seed, "command": command, "rows": table},
        "patch_readout_ridge",
        tag,
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
