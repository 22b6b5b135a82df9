"""`python -m fmri_data ...` runs the same command line as the `fmri-data` script."""

from fmri_data.cli import main

raise SystemExit(main())
