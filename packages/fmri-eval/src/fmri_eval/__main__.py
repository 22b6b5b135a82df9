"""Allow `python -m fmri_eval RECON.npz`."""

from fmri_eval.cli import main

raise SystemExit(main())
