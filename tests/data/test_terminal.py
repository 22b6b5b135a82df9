"""What a researcher's terminal and log files show: bars on a terminal only, errors on a line of their own."""

import io
import re

import pytest
from tqdm.auto import tqdm

from fmri_data.errors import DataError, run_cli


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, as a researcher's shell is."""

    def isatty(self) -> bool:
        return True


def test_an_error_starts_on_its_own_line_after_an_open_bar(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    def fails_halfway() -> int:
        bar = tqdm(total=10, desc="fit", disable=None, file=terminal)
        bar.update(3)
        raise DataError("the data ran out")

    assert run_cli("app", fails_halfway) == 2
    last_line = terminal.getvalue().split("\n")[-2]
    assert last_line == "app: error: the data ran out"


@pytest.mark.parametrize(("stream", "shown"), [(Terminal(), True), (io.StringIO(), False)])
def test_bars_show_on_a_terminal_only(stream, shown):
    for _ in tqdm(range(3), disable=None, file=stream):
        pass
    assert bool(re.search(r"3/3", stream.getvalue())) is shown
