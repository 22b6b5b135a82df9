"""`fmri-diffusion` / `python -m fmri_diffusion`: one-off conversions of published weights.

    python -m fmri_diffusion convert-vdvae imagenet64-iter-1600000-model-ema.th ~/models/vdvae

Errors end as one line "fmri-diffusion: error: ..." on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fmri_data.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)

    def run() -> int:
        from fmri_diffusion.priors.vdvae import convert_vdvae, read_config

        print(convert_vdvae(args.checkpoint, args.out, config=read_config(args.config)))
        return 0

    return run_cli("fmri-diffusion", run)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmri-diffusion", description="Prepare published weights.")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert-vdvae",
        help="the published VDVAE checkpoint (.th) -> a diffusers folder (config.json + safetensors)",
    )
    convert.add_argument("checkpoint", help="e.g. imagenet64-iter-1600000-model-ema.th")
    convert.add_argument(
        "out",
        help="the folder to write (an earlier conversion there is replaced; any other folder is refused)",
    )
    convert.add_argument(
        "--config", metavar="JSON", help="the checkpoint's config.json (default: the ImageNet-64 model's)"
    )
    return parser
