"""--resume may change the grid of settings a method applies when it predicts, and only where that refits
nothing wrongly: a choice that moves to another fitted model finds that model's own final fit (every
diffusion method fits each choice apart; a method that does not: tests/data/test_fingerprint.py), and no
validation probe appears or goes."""

from __future__ import annotations

import pytest

from fmri_data.errors import DataError
from fmri_data.methods.fingerprint import check_fingerprint, record_fingerprint


def _stamp(method: str, choices: dict[str, list]) -> dict:
    return {"method": method, "settings": {"seed": 0, "choices": choices or None}}


@pytest.mark.parametrize(
    ("method", "then", "now", "resumes"),
    [
        # strength, likelihood weight and readout act on one fitted model's samples
        ("ldm", {"strength": [0.3, 1]}, {"strength": [0.2, 0.3, 1], "likelihood_weight": [0, 1]}, True),
        ("brain-diffuser", {"readout": ["pixels"]}, {"readout": ["pixels", "patches"]}, True),
        (
            "ldm",
            {"strength": [1], "corpus_finetune": [0.5]},
            {"strength": [0.3, 1], "corpus_finetune": [0.5]},
            True,
        ),
        # ... also where a setting fitted by has two values: each choice's final fit has its own folder
        (
            "ldm",
            {"strength": [1], "corpus_finetune": [0.25, 0.5]},
            {"strength": [0.3, 1], "corpus_finetune": [0.25, 0.5]},
            True,
        ),
        # a grid of settings fitted by never changes
        ("ldm", {"corpus_finetune": [0.5]}, {"corpus_finetune": [0.25]}, False),
        # ... or a validation probe would come or go (under --refit-steps it is where the final fit starts)
        ("ldm", {}, {"strength": [0.3, 1]}, False),
        ("ldm", {"strength": [0.3, 1]}, {}, False),
        # a method reads neither; an ensemble's member only its own scoped grid, the other member none
        ("ridge", {"strength": [1]}, {"strength": [0.3], "latent_dim": [16, 32]}, True),
        (
            "cvae+ldm",
            {"ldm:strength": [1], "cvae:latent_dim": [16]},
            {"ldm:strength": [0.3, 1], "cvae:latent_dim": [16]},
            True,
        ),
        (
            "cvae+ldm",
            {"strength": [1], "cvae:latent_dim": [16]},
            {"strength": [0.3, 1], "cvae:latent_dim": [16]},
            True,
        ),
        (
            "cvae+ldm",
            {"ldm:strength": [1], "cvae:latent_dim": [16]},
            {"ldm:strength": [1], "cvae:latent_dim": [32]},
            False,
        ),
        (
            "cvae+ldm",
            {"ldm:strength": [1], "cvae:latent_dim": [16, 32]},
            {"ldm:strength": [0.3, 1], "cvae:latent_dim": [16, 32]},
            True,
        ),
    ],
)
def test_a_resumed_grid_may_change_only_where_it_refits_nothing(tmp_path, method, then, now, resumes):
    record_fingerprint(tmp_path, _stamp(method, then))
    if resumes:
        check_fingerprint(tmp_path, _stamp(method, now), resume=True)
    else:
        with pytest.raises(DataError, match=r"belongs to another run: its settings\.choices"):
            check_fingerprint(tmp_path, _stamp(method, now), resume=True)
