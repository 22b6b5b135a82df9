"""The digit69 diffusion pipeline with its tuned defaults: train, sample, evaluate, figure.

    uv run apps/digit69_ldm.py                      # mean, ridge, ldm on the given 90/10 split
    uv run apps/digit69_ldm.py --method mean --method ridge --method ldm --method ddpm   # + pixel DDPM
    uv run apps/digit69_ldm.py --split kfold:5      # every digit predicted once, stimulus-disjoint
    uv run apps/digit69_ldm.py --resume             # continue from the checkpoints in --work-dir

All options of apps/reconstruct.py apply; only the defaults differ. Every training stage takes batches of
48 for two thirds of its steps (--batch-size 48 --train-steps 0.67): as many images as the models' own
batches of 32 over all their steps, in fewer updates, which a GPU bound by launching these small models'
kernels one by one should run in about two thirds of the time (not measured yet; on 2 CPU cores 504 s
against 557 s, the posterior mean level: benchmarks/results/digit69_ldm_fewer_steps-cpu2.json).
--batch-size 32 --train-steps 1 trains as apps/reconstruct.py does; a work folder of this app from before
2026-12-05 resumes through apps/reconstruct.py (same --data, --split, --method and --work-dir).
Checkpoints, loss curves and the trained pipelines (save_pretrained) go to --work-dir (default
runs/digit69-ldm/<data>-<split>-work), the report to --out (default runs/digit69-ldm/<data>-<split>).
"""

from __future__ import annotations

import sys
from pathlib import Path

from reconstruct import main_with_defaults

DEFAULTS = {
    "data": "digit69",
    "split": "given",
    "methods": ["mean", "ridge", "ldm"],
    "runs": Path("runs/digit69-ldm"),
    "keeps_work": True,
    "batch_size": 48,
    "train_steps": 0.67,
}


def main(argv: list[str] | None = None) -> int:
    return main_with_defaults(argv, prog="digit69_ldm", doc=__doc__, defaults=DEFAULTS)


if __name__ == "__main__":
    sys.exit(main())
