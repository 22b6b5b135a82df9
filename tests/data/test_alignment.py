"""Functional alignment: known transforms recovered, save/load, and the multi-subject decoding target."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from fmri_data.alignment import (
    ProcrustesAlignment,
    RidgeAlignment,
    hyperalign,
    load_aligned_npz,
    save_aligned_npz,
)
from fmri_data.errors import DataError
from fmri_data.preprocessing import VoxelStandardizer
from fmri_data.simulator import simulate_subjects
from fmri_encoders.ridge import RidgeEncoder
from fmri_eval.metrics import pcc


def rotated_pair(n=200, voxels=12, seed=0):
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(n, voxels)) @ np.diag(np.linspace(3, 1, voxels)) + 5.0
    rotation = ortho_group.rvs(voxels, random_state=seed)
    return (reference - 5.0) @ rotation.T - 2.0, reference


def test_procrustes_recovers_a_known_rotation_on_held_out_responses():
    source, reference = rotated_pair()
    aligner = ProcrustesAlignment(n_components=12).fit(source[:150], reference[:150])
    np.testing.assert_allclose(aligner.transform(source[150:]), reference[150:], atol=1e-8)


def test_ridge_alignment_recovers_a_linear_map_between_different_voxel_counts():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(300, 20))
    mapping = rng.normal(size=(20, 7))
    reference = source @ mapping + 0.01 * rng.normal(size=(300, 7))
    aligner = RidgeAlignment().fit(source[:250], reference[:250])
    assert aligner.transform(source[250:]).shape == (50, 7)
    np.testing.assert_allclose(aligner.transform(source[250:]), source[250:] @ mapping, atol=0.05)
    assert float(aligner.alpha) <= 1.0  # little noise: GCV picks little shrinkage


@pytest.mark.parametrize("aligner", [RidgeAlignment(), ProcrustesAlignment(n_components=5)])
def test_aligners_save_and_load_without_pickle(tmp_path, aligner):
    source, reference = rotated_pair()
    fitted = aligner.fit(source, reference)
    loaded = type(fitted).load(fitted.save(tmp_path / "aligner.npz"))
    assert type(loaded) is type(fitted)
    np.testing.assert_array_equal(loaded.transform(source), fitted.transform(source))


def test_hyperalignment_brings_rotated_subjects_to_one_template():
    source, reference = rotated_pair(seed=2)
    aligners, template = hyperalign({"a": reference, "b": source}, n_components=12)
    np.testing.assert_allclose(aligners["b"].transform(source), aligners["a"].transform(reference), atol=1e-6)
    assert template.shape == reference.shape


def test_aligned_npz_round_trip_and_errors(tmp_path):
    responses = {"sim-01": np.ones((4, 3)), "sim-02": np.zeros((4, 5))}
    loaded = load_aligned_npz(save_aligned_npz(tmp_path / "aligned.npz", responses))
    assert set(loaded) == set(responses)
    np.testing.assert_array_equal(loaded["sim-02"], responses["sim-02"])
    with pytest.raises(DataError, match="n_timepoints, n_voxels"):
        save_aligned_npz(tmp_path / "bad.npz", {"s": np.ones(3)})
    for broken in (b"not a zip", b""):
        (tmp_path / "broken.npz").write_bytes(broken)
        with pytest.raises(DataError, match="not a readable"):
            load_aligned_npz(tmp_path / "broken.npz")
    with pytest.raises(DataError, match="same n stimuli"):
        RidgeAlignment().fit(np.ones((5, 2)), np.ones((4, 2)))


def test_a_decoder_of_two_subjects_serves_a_third_aligned_on_a_fifth_of_its_trials():
    """The target: >= 80% of the pcc of a decoder trained on the new subject's own data.

    1,000 training trials, so that C's fifth (200) exceeds the 100 patches a linear map must resolve; with
    60 (a fifth of 300) ridge alignment reaches about half of C's own decoder.
    """
    subjects = simulate_subjects(3, n_train=1000)
    a = subjects["sim-01"]
    train, test = np.flatnonzero(~a.given_test), np.flatnonzero(a.given_test)
    z = {name: VoxelStandardizer().fit(s.fmri[train]).transform(s.fmri) for name, s in subjects.items()}
    za, zb, zc = z.values()
    few = train[: len(train) // 5]  # C's alignment sees 20% of its training trials
    b_in_a = RidgeAlignment().fit(zb[train], za[train]).transform(zb)
    c_in_a = RidgeAlignment().fit(zc[few], za[few]).transform(zc)
    pixels = a.images.reshape(len(a.images), -1)

    shared = RidgeEncoder(per_target=False).fit(
        np.concatenate([za[train], b_in_a[train]]), np.concatenate([pixels[train], pixels[train]])
    )
    own = RidgeEncoder(per_target=False).fit(zc[train], pixels[train])

    def score(decoder, fmri):
        images = np.clip(decoder.predict(fmri[test]), 0, 1).reshape(a.images[test].shape)
        return float(np.mean(pcc(a.images[test], images)))

    few_only = RidgeEncoder(per_target=False).fit(zc[few], pixels[few])
    aligned, self_trained, self_few = score(shared, c_in_a), score(own, zc), score(few_only, zc)
    assert aligned >= 0.8 * self_trained, (aligned, self_trained)
    assert aligned > self_few  # what alignment buys: better than C's fifth decoded on its own
