"""The exception types users see from fmri_data, and the one place command lines turn errors into a line.

A user error is one the person running a command can fix (a path, an option, a setting, the data); its
message is a single line that says what was wrong, where, and what to do, so that apps print it as it is and
exit 2. Anything else is a bug in this code: exit 1, and the message says so, without hiding the error type.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import ClassVar

DEBUG_ENV = "FMRI_RECON_DEBUG"

USER_FILE_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)
"""The file-system errors a user causes (a wrong path, no write access); others, such as a full disk or a
lost network mount, are not something the command's input can fix."""


class UserError(Exception):
    """Input the user can fix; the message is one line: what was wrong, where, and what to do.

    run_cli recognises a user error by the class attribute `user_error = True`, not by this base class: a
    package that may not import fmri_data (fmri_eval installs and works alone) marks its own error type with
    the same attribute and is reported alike, without either package importing the other.
    """

    user_error: ClassVar[bool] = True


class DataError(UserError, ValueError):
    """Bad or unusable input: the data, or a value given for a setting (a missing file, a wrong key, a
    leaking split, an unknown method or device, ...).

    Also a ValueError, as Python code catching a bad argument value expects.
    """


def is_user_error(error: BaseException) -> bool:
    """Whether the user can fix `error`: its class says so (`user_error = True`) or a path was wrong."""
    return isinstance(error, USER_FILE_ERRORS) or getattr(error, "user_error", False) is True


def run_cli(prog: str, main: Callable[[], int]) -> int:
    """Run a command's body; print any error as one line on stderr and return an exit code.

    A user error (see `is_user_error`) exits 2; anything else, a plain ValueError included, is a bug and
    exits 1, still as one line unless FMRI_RECON_DEBUG=1 asks for the traceback. Progress bars still open are
    closed first, so the message starts on a line of its own.
    """
    try:
        return main()
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        _close_progress_bars()
        if os.environ.get(DEBUG_ENV):
            raise
        if is_user_error(error):
            print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
            return 2
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
