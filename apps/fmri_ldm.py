"""Model the brain data itself: a voxel VAE and a DDPM in its latent space, trained and evaluated.

    uv run apps/fmri_ldm.py --mode both                 # the example config: simulated subjects
    uv run apps/fmri_ldm.py --data digit69               # real voxels, to runs/fmri-ldm/digit69
    uv run apps/fmri_ldm.py --config my.yaml --mode train --out runs/mine
    uv run apps/fmri_ldm.py --config my.yaml --mode evaluate --checkpoint runs/mine/model --out runs/mine

Writes to --out: model/ (vae/, denoiser/, scheduler/ via save_pretrained), training curves, metrics.json
(a flat mapping of metric name to value), reconstruction.png, latent_pca.png and report.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fmri_data.errors import run_cli
from fmri_diffusion.voxel_job import load_config, run_job
from fmri_eval.atomic import check_writable_folder

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "fmri_ldm.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fmri_ldm", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="YAML settings (default: %(default)s)"
    )
    parser.add_argument("--mode", choices=["train", "evaluate", "both"], default="both")
    parser.add_argument("--checkpoint", type=Path, help="a trained model folder for --mode evaluate")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/fmri-ldm/<data>)")
    parser.add_argument("--data", help="override the config's data (sim, digit69, miyawaki, a file)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)

    def job() -> int:
        config = load_config(args.config)
        config = replace(config, data=args.data) if args.data else config
        out = args.out or Path("runs/fmri-ldm") / Path(config.data).stem
        check_writable_folder(out, "--out")
        metrics = run_job(config, args.mode, out, args.checkpoint, not args.no_progress)
        if metrics is not None:
            print((out / "report.md").read_text())
        print(f"Wrote {out}/")
        return 0

    return run_cli("fmri_ldm", job)


if __name__ == "__main__":
    sys.exit(main())
