"""How a run is scored, kept with its reconstructions so that re-scoring the file gives the same numbers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fmri_eval.bootstrap import ResamplingUnit, check_bootstrap_settings
from fmri_eval.errors import EvaluationError


@dataclass(frozen=True)
class EvaluationSettings:
    """Bootstrap count, seed and level, the baseline of the paired differences, and whether test repeats
    were averaged before decoding (which the report must say, and the file cannot tell by itself; None
    where it was not recorded).
    """

    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    baseline: str | None = None
    repeats_averaged: bool | None = False

    def __post_init__(self) -> None:
        if isinstance(self.level, bool) or not isinstance(self.level, int | float):
            raise EvaluationError(f"the interval level must be a number in (0, 1), got {self.level!r}")
        check_bootstrap_settings(self.n_boot, self.level)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise EvaluationError(f"the bootstrap seed must be an integer >= 0, got {self.seed!r}")
        if self.baseline is not None and (not isinstance(self.baseline, str) or not self.baseline):
            raise EvaluationError(f"baseline must be a method name or None, got {self.baseline!r}")
        if self.repeats_averaged is not None and not isinstance(self.repeats_averaged, bool):
            raise EvaluationError(
                f"repeats_averaged must be True, False or None (not recorded), got {self.repeats_averaged!r}"
            )
        # Plain Python numbers, so the settings serialise to JSON whatever integer type came in.
        object.__setattr__(self, "n_boot", int(self.n_boot))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "level", float(self.level))

    def ci_record(self, unit: ResamplingUnit) -> dict[str, Any]:
        """metrics.json's "ci": how every interval of the run was made."""
        return {"level": self.level, "unit": unit, "n_boot": self.n_boot, "seed": self.seed}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvaluationSettings:
        """Read what `to_json` wrote; anything else is an EvaluationError naming what is wrong."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"evaluation settings are not JSON ({exc})") from exc
        expected = {field.name for field in fields(cls)}
        if not isinstance(record, dict) or set(record) != expected:
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise EvaluationError(f"evaluation settings need the keys {sorted(expected)}, found {found}")
        return cls(**record)
