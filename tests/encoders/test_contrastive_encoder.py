from dataclasses import replace

import numpy as np
import pytest

from fmri_encoders.contrastive import DEFAULT_TRAINING, Augmentation, ContrastiveEncoder


def _toy(n_stimuli=40, repeats=2, n_voxels=100, size=8, noise=0.3, seed=0):
    """Binary images seen through a random linear map plus noise; returns fmri, images, stimulus ids."""
    rng = np.random.default_rng(seed)
    stimuli = (rng.random((n_stimuli, size, size)) > 0.5).astype(np.float32)
    ids = np.repeat(np.arange(n_stimuli), repeats)
    weights = rng.normal(size=(size * size, n_voxels)) / size
    fmri = stimuli[ids].reshape(len(ids), -1) @ weights + noise * rng.normal(size=(len(ids), n_voxels))
    return fmri.astype(np.float32), stimuli[ids], ids


def _small(epochs=30, seed=0, **augmentation) -> ContrastiveEncoder:
    config = replace(DEFAULT_TRAINING, batch_size=16, device="cpu", progress=False, seed=seed)
    return ContrastiveEncoder(
        hidden=256,
        embed_dim=64,
        n_tokens=3,
        epochs=epochs,
        augmentation=Augmentation(**augmentation),
        training=config,
    )


@pytest.fixture(scope="module")
def toy():
    return _toy(n_stimuli=60)


@pytest.fixture(scope="module")
def trained(toy):
    fmri, images, ids = toy
    train = ids < 45
    return _small(epochs=40).fit(fmri[train], images[train], groups=ids[train])


def test_training_lowers_the_loss_and_identifies_held_out_stimuli(toy, trained):
    fmri, images, ids = toy
    history = trained.loss_history_
    assert len(history) == 40
    assert history[-1] < 0.5 * history[0]
    test = ids >= 45
    stimuli = np.unique(ids[test])
    candidates = np.stack([images[ids == s][0] for s in stimuli])
    similarity = trained.embed_fmri(fmri[test]) @ trained.embed_images(candidates).T
    top1 = np.mean(stimuli[similarity.argmax(axis=1)] == ids[test])
    assert top1 >= 0.3  # chance is 1/15


def test_embedding_shapes_and_norms(toy, trained):
    fmri, images, _ = toy
    vectors, tokens = trained.embed_fmri(fmri[:5]), trained.embed_tokens(fmri[:5])
    assert vectors.shape == (5, 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert tokens.shape == (5, 3, 64)
    np.testing.assert_allclose(np.linalg.norm(trained.embed_images(images[:3]), axis=1), 1.0, rtol=1e-5)


def test_save_load_round_trip_gives_identical_embeddings(toy, trained, tmp_path):
    fmri, images, _ = toy
    trained.save(tmp_path / "model")
    loaded = ContrastiveEncoder.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.embed_fmri(fmri), trained.embed_fmri(fmri))
    np.testing.assert_array_equal(loaded.embed_tokens(fmri), trained.embed_tokens(fmri))
    np.testing.assert_array_equal(loaded.embed_images(images), trained.embed_images(images))
    assert loaded.loss_history_ == trained.loss_history_
    with pytest.raises(FileNotFoundError, match=r"contrastive\.json is missing"):
        ContrastiveEncoder.load(tmp_path)


def test_same_seed_gives_identical_embeddings_on_cpu():
    fmri, images, ids = _toy(n_stimuli=12)
    runs = [_small(epochs=3, mixco=True, voxel_noise=True).fit(fmri, images, groups=ids) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].embed_fmri(fmri), runs[1].embed_fmri(fmri))
    np.testing.assert_array_equal(runs[0].embed_images(images), runs[1].embed_images(images))
    other = _small(epochs=3, mixco=True, voxel_noise=True, seed=1).fit(fmri, images, groups=ids)
    assert not np.array_equal(other.embed_fmri(fmri), runs[0].embed_fmri(fmri))


def test_subjects_with_different_voxel_counts_train_together():
    fmri_a, images_a, ids_a = _toy(n_stimuli=10, n_voxels=50, seed=1)
    fmri_b, images_b, ids_b = _toy(n_stimuli=10, n_voxels=70, seed=2)
    model = _small(epochs=2).fit(
        {"a": fmri_a, "b": fmri_b}, {"a": images_a, "b": images_b}, groups={"a": ids_a, "b": ids_b}
    )
    assert model.embed_fmri(fmri_a, "a").shape == model.embed_fmri(fmri_b, "b").shape == (20, 64)
    with pytest.raises(ValueError, match="several subjects"):
        model.embed_fmri(fmri_a)
    with pytest.raises(ValueError, match="50 voxels"):
        model.embed_fmri(fmri_a, "b")
