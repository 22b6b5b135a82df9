"""`python -m fmri_diffusion ...` runs the same command line as the `fmri-diffusion` script."""

from fmri_diffusion.cli import main

raise SystemExit(main())
