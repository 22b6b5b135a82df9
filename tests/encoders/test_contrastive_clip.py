import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fmri_encoders.contrastive import DEFAULT_TRAINING, ContrastiveEncoder, load_clip_image_encoder
from fmri_encoders.contrastive.clip_image import CLIP_MEAN


def test_tiny_clip_loads_from_its_folder_and_embeds_any_size(clip_folder):
    encoder = load_clip_image_encoder(clip_folder)
    assert encoder.image_size == 32
    assert encoder.embed_dim == 16
    torch.testing.assert_close(encoder.mean.flatten(), torch.tensor(CLIP_MEAN))
    assert encoder(torch.rand(3, 28, 28)).shape == (3, 16)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_preprocessor_config_sets_the_normalisation(clip_folder, tmp_path):
    folder = tmp_path / "with-preprocessor"
    folder.mkdir()
    for file in clip_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    encoder = load_clip_image_encoder(folder)
    torch.testing.assert_close(encoder.std.flatten(), torch.full((3,), 0.25))


def test_the_fmri_side_trains_against_frozen_clip_and_saves_only_the_path(clip_folder, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((12, 8, 8)).astype(np.float32)
    fmri = (images.reshape(12, -1) @ rng.normal(size=(64, 40))).astype(np.float32)
    training = replace(DEFAULT_TRAINING, batch_size=6, device="cpu", progress=False)
    model = ContrastiveEncoder(hidden=32, n_tokens=2, clip_model=clip_folder, epochs=10, training=training)
    model.fit(fmri, images)
    assert model.loss_history_[-1] < model.loss_history_[0]
    frozen = load_clip_image_encoder(clip_folder)
    expected = frozen(torch.from_numpy(images)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(model.embed_images(images), expected, rtol=1e-5, atol=1e-6)
    assert model.embed_fmri(fmri).shape == (12, 16)  # embed_dim follows CLIP's projection
    assert model.embed_tokens(fmri).shape == (12, 2, 16)

    model.save(tmp_path / "saved")
    assert not any("image." in key for key in _keys(tmp_path / "saved"))
    loaded = ContrastiveEncoder.load(tmp_path / "saved")
    np.testing.assert_array_equal(loaded.embed_fmri(fmri), model.embed_fmri(fmri))
    np.testing.assert_array_equal(loaded.embed_images(images), model.embed_images(images))


def _keys(folder):
    with safe_open(str(folder / "contrastive.safetensors"), framework="pt") as handle:
        return list(handle.keys())


def test_a_bad_clip_folder_is_a_one_line_error(clip_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"folder .*nowhere does not exist") as missing:
        load_clip_image_encoder(tmp_path / "nowhere")
    assert "\n" not in str(missing.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_bytes((clip_folder / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"incomplete: missing model.safetensors") as incomplete:
        load_clip_image_encoder(empty)
    assert "\n" not in str(incomplete.value)
    with pytest.raises(
        FileNotFoundError, match=r"'nobody/no-such-clip' is neither a folder nor in the .* cache"
    ):
        load_clip_image_encoder("nobody/no-such-clip")
