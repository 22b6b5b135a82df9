"""run_cli tells the user's mistakes (exit 2, one line) from bugs (exit 1, one line and the debug hint)."""

import errno

import pytest

from fmri_data.errors import DEBUG_ENV, DataError, UserError, run_cli
from fmri_eval.errors import EvaluationError


def _exit_and_stderr(error: Exception, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    def fails() -> int:
        raise error

    code = run_cli("app", fails)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        UserError("--thing: no such thing; pass another"),
        DataError("data.npz: no fmri"),
        EvaluationError("baseline 'x' is not among the methods"),  # fmri_eval's, by the shared mark
        FileNotFoundError(errno.ENOENT, "No such file or directory", "data.npz"),
        PermissionError(errno.EACCES, "Permission denied", "/out"),
    ],
)
def test_a_user_error_is_one_line_and_exit_2(error, capsys):
    code, err = _exit_and_stderr(error, capsys)
    assert code == 2
    assert err.startswith("app: error: ")
    assert err.count("\n") == 1
    assert DEBUG_ENV not in err


@pytest.mark.parametrize(
    "error",
    [
        ValueError("operands could not be broadcast together"),  # a library bug, not the user's input
        OSError(errno.ENOSPC, "No space left on device"),
        KeyError("weight"),
    ],
)
def test_a_bug_is_one_line_with_the_debug_hint_and_exit_1(error, capsys):
    code, err = _exit_and_stderr(error, capsys)
    assert code == 1
    assert err.startswith(f"app: unexpected error: {type(error).__name__}: ")
    assert err.rstrip().endswith(f"(set {DEBUG_ENV}=1 to see the traceback)")
    assert err.count("\n") == 1


def test_a_class_marked_as_the_user_s_counts_without_importing_fmri_data(capsys):
    class ToolError(RuntimeError):
        user_error = True

    assert _exit_and_stderr(ToolError("bad --tool"), capsys)[0] == 2


def test_debug_shows_the_traceback_of_any_error(monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")

    def fails() -> int:
        raise DataError("shown in full")

    with pytest.raises(DataError, match="shown in full"):
        run_cli("app", fails)


def test_data_errors_stay_value_errors():
    assert issubclass(DataError, UserError)
    assert issubclass(DataError, ValueError)
