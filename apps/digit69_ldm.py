"""The digit69 diffusion pipeline with its tuned defaults: train, sample, evaluate, figure.

    uv run apps/digit69_ldm.py                      # mean, ridge, ldm on the given 90/10 split
    uv run apps/digit69_ldm.py --method mean --method ridge --method ldm --method ddpm   # + pixel DDPM
    uv run apps/digit69_ldm.py --split kfold:5      # every digit predicted once, stimulus-disjoint
    uv run apps/digit69_ldm.py --resume             # continue from the checkpoints in --work-dir

All options of apps/reconstruct.py apply; only the defaults differ. Checkpoints, loss curves and the trained
pipelines (save_pretrained) go to --work-dir (default runs/digit69-ldm/<data>-<split>-work), the report to
--out (default runs/digit69-ldm/<data>-<split>).
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
}


def main(argv: list[str] | None = None) -> int:
    return main_with_defaults(argv, prog="digit69_ldm", doc=__doc__, defaults=DEFAULTS)


if __name__ == "__main__":
    sys.exit(main())
