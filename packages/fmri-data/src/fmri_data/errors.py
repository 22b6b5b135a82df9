"""The exception type users see from fmri_data, and the one place command lines turn errors into a line.

Every message is a single line that says what was wrong, where, and what to do, so that apps can print it
as it is and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

DEBUG_ENV = "FMRI_RECON_DEBUG"


class DataError(ValueError):
    """Bad or unusable input data (a missing file, a wrong key, a leaking split, ...)."""


def run_cli(prog: str, main: Callable[[], int]) -> int:
    """Run a command's body; print any error as one line on stderr and return an exit code.

    Bad input (ValueError, which DataError and fmri_eval's EvaluationError are) and file-system errors exit
    2; anything else is a bug and exits 1, still as one line unless FMRI_RECON_DEBUG=1 asks for the traceback.
    Progress bars still open are closed first, so the message starts on a line of its own.
    """
    try:
        return main()
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        _close_progress_bars()
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:
        _close_progress_bars()
        if os.environ.get(DEBUG_ENV):
            raise
        print(
            f"{prog}: unexpected error: {type(error).__name__}: {_one_line(error)} "
            f"(set {DEBUG_ENV}=1 to see the traceback)",
            file=sys.stderr,
        )
        return 1


def _close_progress_bars() -> None:
    """Close every tqdm bar an interrupted loop left open (tqdm keeps them in a class-level set)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
