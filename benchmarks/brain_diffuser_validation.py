"""Choose Brain-Diffuser's stage-2 settings on a validation split carved from the TRAINING trials.

Test trials are never touched: a fifth of the training stimuli (of the given split for digit69, of the
first kfold:5 fold for Miyawaki) is held out, the method is fitted on the rest, and each prior-adaptation
length x guidance scale x strength is scored on the held-out fifth beside stage 1. This is how the default
adaptation (1,500 steps, lr 1e-3) and digit69's `--guidance-scale 3` were chosen.

    python benchmarks/brain_diffuser_validation.py --data digit69 --device cuda
    # -> results/brain_diffuser_validation-digit69.json
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from result_file import write_result

from fmri_data.io import load_dataset
from fmri_data.methods import MethodSettings
from fmri_data.splits import make_splits
from fmri_diffusion.methods.brain_diffuser import BrainDiffuser, BrainDiffuserConfig, BrainDiffuserStage1
from fmri_encoders.training import TrainingConfig
from fmri_eval.evaluate import evaluate_reconstructions

ADAPTATIONS = ((0, 0.0), (400, 5e-4), (1500, 1e-3))  # (steps, learning rate); 0 = no adaptation
GUIDANCE = (1.0, 3.0)
STRENGTH = (0.75, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digit69")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    dataset = load_dataset(args.data)
    split = make_splits(dataset, "given" if args.data == "digit69" else "kfold:5")[0]
    training = dataset.subset(split.train)
    stimuli = np.unique(training.stimulus_id)
    held_out = np.random.default_rng(0).choice(stimuli, size=len(stimuli) // 5, replace=False)
    is_validation = np.isin(training.stimulus_id, held_out)
    fit_part, validation = training.subset(~is_validation), training.subset(is_validation)
    settings = MethodSettings(device=args.device, cache_dir=Path(f"/tmp/bd-validation-{args.data}"))
    rows = {}
    for steps, learning_rate in ADAPTATIONS:
        config = BrainDiffuserConfig(
            prior_adapter="full" if steps else "none",
            prior_training=TrainingConfig(
                max_steps=max(steps, 1), batch_size=32, learning_rate=learning_rate or 1e-4, warmup_steps=40
            ),
        )
        method = BrainDiffuser(settings, config).fit(fit_part)
        rows["stage1"] = BrainDiffuserStage1.predict(method, validation.fmri)
        for guidance in GUIDANCE:
            for strength in STRENGTH:
                method.config = replace(method.config, strength=strength, guidance_scale=guidance)
                name = f"adapt{steps}-guidance{guidance:g}-strength{strength:g}"
                rows[name] = method.predict_named(validation.fmri)["brain-diffuser"]
    scores = evaluate_reconstructions(validation.images, rows, validation.stimulus_id, n_boot=200)
    result = {
        "data": args.data,
        "n_fit_trials": fit_part.n_trials,
        "n_validation_trials": validation.n_trials,
        "scores": {
            name: {s: round(v[s], 4) for s in ("pcc", "ssim", "twoway")} for name, v in scores.items()
        },
    }
    write_result(result, "brain_diffuser_validation", args.data, args.out)


if __name__ == "__main__":
    main()
