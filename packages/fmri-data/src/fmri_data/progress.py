"""Progress bars the way every app shows them: on a terminal only, gone when their loop ends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def terminal_progress(items: Iterable[Any], description: str) -> Iterable[Any]:
    """`items` behind a transient bar on a terminal; a log file gets none (tqdm's disable=None)."""
    return tqdm(items, desc=description, disable=None, leave=False)
