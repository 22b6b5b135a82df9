"""Model the brain data itself: a voxel VAE and a DDPM in its latent space, trained and evaluated.

    uv run apps/fmri_ldm.py --mode both                 # the example config: simulated subjects
    uv run apps/fmri_ldm.py --data digit69               # real voxels, to runs/fmri-ldm/digit69
    uv run apps/fmri_ldm.py --config my.yaml --mode train --out runs/mine
    uv run apps/fmri_ldm.py --config my.yaml --mode evaluate --checkpoint runs/mine/model --out runs/mine

Writes to --out: model/ (vae/, denoiser/, scheduler/ via save_pretrained), training curves, metrics.json
(a flat mapping of metric name to value), reconstruction.png, latent_pca.png, generated.png and report.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fmri_data.errors import run_cli
from fmri_data.patterns import VoxelPatterns, load_patterns
from fmri_diffusion.voxel.config import JobConfig, load_config
from fmri_diffusion.voxel.ldm import FmriLDM, evaluate_fmri_ldm, train_fmri_ldm
from fmri_encoders.runtime import on_main_process, start_process
from fmri_eval.atomic import check_writable_folder
from fmri_eval.fmri_report import write_fmri_report

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
    if args.checkpoint is not None and args.mode != "evaluate":  # training saves to --out/model instead
        parser.error(f"--checkpoint is read by --mode evaluate only; with --mode {args.mode} leave it out")

    def job() -> int:
        config = load_config(args.config)
        config = replace(config, data=args.data) if args.data else config
        process = start_process(config.device)  # under accelerate launch: one rank of the training
        for stage in (config.model.vae_training, config.model.ddpm_training):  # before the data load
            process.check_run(stage.mixed_precision, stage.batch_size)
        out = args.out or Path("runs/fmri-ldm") / Path(config.data).stem
        check_writable_folder(out, "--out")
        checkpoint = args.checkpoint or out / "model"
        given = FmriLDM.load(checkpoint) if args.mode == "evaluate" else None  # before the data: fails early
        aligned = out / "aligned.npz" if process.is_main else None  # written by the main process
        patterns = load_patterns(config.data, config.seed, aligned_path=aligned)
        print(f"fmri_ldm: {process.describe()}", flush=True)  # once the inputs are known to be good
        if args.mode != "evaluate":
            train_fmri_ldm(
                patterns.train,
                None,  # the VAE's weights are chosen on patterns held out of train, never on the test ones
                config.model,
                seed=config.seed,
                device=config.device,
                out_dir=out,
                progress=not args.no_progress and process.is_main,
            )
        if args.mode != "train":
            on_main_process(lambda: _evaluate(given or FmriLDM.load(checkpoint), patterns, config, out))
        if process.is_main:
            print(f"Wrote {out}/")
        return 0

    return run_cli("fmri_ldm", job)


def _evaluate(model: FmriLDM, patterns: VoxelPatterns, config: JobConfig, out: Path) -> None:
    """Sample, compare with the held-out patterns and the baselines, write and print the report."""
    evaluation = evaluate_fmri_ldm(
        model,
        patterns.train,
        patterns.test,
        shifted=patterns.shifted,
        seed=config.seed,
        sampler=config.model.sampler,
        steps=config.model.num_inference_steps,
    )
    report = write_fmri_report(
        out,
        evaluation.metrics,
        patterns.description,
        held_out=patterns.test,
        reconstruction=evaluation.reconstruction,
        latents=evaluation.latents,
        samples=evaluation.samples,
    )
    print(report.read_text())


if __name__ == "__main__":
    sys.exit(main())
