"""A run's --batch-size (MethodSettings.batch_size) is the batch that every training stage draws: it
reached the training configs but not the cvae's, ddpm's and ldm's own samplers, which kept their recipes'."""

from __future__ import annotations

import numpy as np
import pytest

from fmri_data.methods import MethodSettings, create_method
from fmri_diffusion.methods import conditional, cvae
from fmri_diffusion.training import autoencoder, denoising
from fmri_encoders.training import BatchSampler

RUN_BATCH = 5
"""Apart from every recipe's batch (quick or not), so a sampler built from a recipe is caught."""


@pytest.mark.parametrize("name", ["cvae", "ddpm", "ldm", "sd-lora"])
def test_every_stage_draws_the_run_s_batch(linear_dataset, tmp_path, monkeypatch, name):
    drawn: list[int] = []

    class RecordingSampler(BatchSampler):
        def __init__(self, tensors, batch_size, **options):
            drawn.append(batch_size)
            super().__init__(tensors, batch_size, **options)

    for module in (cvae, conditional, autoencoder, denoising):
        monkeypatch.setattr(module, "BatchSampler", RecordingSampler)
    train = linear_dataset.subset(np.flatnonzero(~linear_dataset.given_test))
    settings = MethodSettings(
        quick=True, device="cpu", progress=False, batch_size=RUN_BATCH, work_dir=tmp_path
    )
    create_method(name, settings).fit(train)
    assert drawn
    assert set(drawn) == {RUN_BATCH}
