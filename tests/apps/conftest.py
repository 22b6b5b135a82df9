"""Load the apps (scripts, not modules) so tests can call their main(argv) in-process."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import ModuleType

import pytest

APPS = Path(__file__).resolve().parents[2] / "apps"


def load_app(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"app_{name}", APPS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_app(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APPS / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(autouse=True)
def run_in_a_temporary_folder(tmp_path, monkeypatch):
    """Apps write their default runs/ folders relative to where they start: here, a temporary folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_app():
    """Run an app as a user would, in a separate interpreter, capturing its output."""
    return _run_app


def _run_app_here(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """main(argv) in this interpreter, its exit code and printed streams (warnings and argparse's errors
    included) as a separate one would give them, without the seconds a fresh interpreter takes to import
    torch."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, category, *_: print(
            f"{category.__name__}: {message}", file=err
        )
        try:
            code = load_app(name).main(list(args))
        except SystemExit as exit_:
            code = exit_.code
    if not isinstance(code, int | None):  # sys.exit("message"): the interpreter prints it and exits 1
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess([name, *args], code or 0, out.getvalue(), err.getvalue())


@pytest.fixture
def run_app_here(load_app):
    """Run an app's main in-process, for checks of its exit code and messages."""
    return _run_app_here


@pytest.fixture
def reconstruct() -> ModuleType:
    return load_app("reconstruct")


@pytest.fixture(name="load_app")
def load_app_fixture():
    """Import an app by name; apps import each other as scripts do, from the apps folder."""
    sys.path.insert(0, str(APPS))
    yield load_app
    sys.path.remove(str(APPS))
