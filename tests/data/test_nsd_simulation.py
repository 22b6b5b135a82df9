"""The NSD-scale simulation, written small, read back by the real NSD loader."""

import numpy as np
import pytest

from fmri_data.errors import DataError
from fmri_data.loaders import nsd
from fmri_data.simulator.nsd_layout import NsdScale, write_nsd_simulation

SMALL = {"n_images": 20, "n_shared": 4, "repeats": 3, "n_sessions": 3, "n_voxels": 50, "image_size": 32}


@pytest.fixture
def short_sessions(monkeypatch):
    monkeypatch.setattr(nsd, "TRIALS_PER_SESSION", 6)


def test_the_loader_reads_every_trial_of_the_simulation_in_nsd_s_design(tmp_path, short_sessions):
    write_nsd_simulation(tmp_path, NsdScale(**SMALL))
    data = nsd.load_nsd(tmp_path, 1, image_size=16)
    assert data.fmri.shape == (18, 50)
    assert data.images.shape == (18, 16, 16)
    assert set(data.stimulus_id[data.given_test]) <= set(range(4))  # the shared images are the test split
    assert data.given_test.sum() == np.isin(data.stimulus_id, range(4)).sum()
    assert np.unique(data.stimulus_id, return_counts=True)[1].max() <= 3


def test_without_noise_a_voxel_answers_an_image_the_same_way_every_time(tmp_path, short_sessions):
    """Betas are z-scored per session by the loader, so repeats are compared within one session."""
    write_nsd_simulation(tmp_path, NsdScale(**SMALL, noise=0.0), seed=1)
    data = nsd.load_nsd(tmp_path, 1, image_size=16)
    session = data.subset(data.run == data.run[0])
    ids, counts = np.unique(session.stimulus_id, return_counts=True)
    repeated = ids[counts > 1]
    assert repeated.size, "the seed should repeat an image within a session"
    rows = session.fmri[session.stimulus_id == repeated[0]]
    np.testing.assert_allclose(rows[0], rows[1], atol=0.02)  # int16 storage: 1/300 % steps
    assert not np.allclose(session.fmri[0], session.fmri[session.stimulus_id != session.stimulus_id[0]][0])


def test_a_design_with_more_trials_than_images_can_fill_is_refused():
    with pytest.raises(DataError, match="need more than"):
        NsdScale(n_images=100, n_shared=10, repeats=3, n_sessions=1)
