"""Literature-table feature networks, on tiny random models of the same torchvision/transformers classes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the feature networks need fmri-eval[features]")
models = pytest.importorskip("torchvision.models", reason="the feature networks need fmri-eval[features]")
from safetensors.torch import save_file  # noqa: E402
from torchvision.models.efficientnet import MBConvConfig  # noqa: E402
from torchvision.models.resnet import BasicBlock  # noqa: E402

from fmri_eval import (  # noqa: E402
    EvaluationError,
    feature_models,
    literature_table,
)
from fmri_eval.feature_models import (  # noqa: E402
    FeatureExtractor,
    clip_network,
    load_feature_networks,
    torchvision_network,
)


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))


def tiny_networks(clip_folder):
    torch.manual_seed(0)
    effnet = models.EfficientNet([MBConvConfig(1, 3, 1, 8, 8, 1)], dropout=0.0, num_classes=5)
    resnet = models.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5)
    inception = models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    return {
        "alexnet": torchvision_network(
            models.AlexNet(), {"features.4": "alexnet2", "features.11": "alexnet5"}, 64
        ),
        "inception_v3": torchvision_network(inception, {"avgpool": "inception"}, 75),
        "efficientnet_b1": torchvision_network(effnet, {"avgpool": "effnet"}, 32),
        "swav_resnet50": torchvision_network(resnet, {"avgpool": "swav"}, 32),
        "clip": clip_network(clip_folder),
    }


def test_tiny_networks_fill_all_eight_columns(clip_folder):
    extractor = FeatureExtractor(tiny_networks(clip_folder), batch_size=2)
    rng = np.random.default_rng(0)
    truth = rng.random((4, 16, 16))
    features = extractor(truth)
    assert {name: f.shape for name, f in features.items()} == {
        "alexnet2": (4, 192 * 7 * 7),
        "alexnet5": (4, 256 * 3 * 3),
        "inception": (4, 2048),
        "effnet": (4, 4 * 8),
        "swav": (4, 512),
        "clip": (4, 16),
    }
    np.testing.assert_allclose(extractor(truth[:1])["clip"], features["clip"][:1], rtol=1e-4, atol=1e-5)
    table, notes = literature_table(truth, {"perfect": truth, "noise": rng.random(truth.shape)}, extractor)
    assert len(notes) == 1  # the protocol note: nothing left out
    assert table["perfect"]["clip"] == 1.0
    assert table["perfect"]["swav"] == pytest.approx(0.0, abs=1e-6)


def test_colour_images_feed_the_networks_their_channels(clip_folder):
    extractor = FeatureExtractor({"clip": clip_network(clip_folder)})
    rng = np.random.default_rng(0)
    gray = rng.random((2, 8, 8))
    as_rgb = extractor(np.repeat(gray[..., None], 3, axis=-1))["clip"]
    np.testing.assert_allclose(extractor(gray)["clip"], as_rgb, rtol=1e-4, atol=1e-5)
    tinted = np.stack([gray, gray * 0.2, gray * 0.9], axis=-1)
    assert not np.allclose(extractor(tinted)["clip"], as_rgb, atol=1e-3)
    with pytest.raises(EvaluationError, match=r"\[n, H, W, 3\]"):
        extractor(np.zeros((2, 8, 8, 4)))


def test_weights_are_read_from_the_folder_and_missing_ones_noted(tmp_path, clip_folder, no_hub_cache):
    torch.manual_seed(1)
    effnet = models.efficientnet_b1()
    save_file(effnet.state_dict(), str(tmp_path / "efficientnet_b1.safetensors"))
    swav = models.resnet50()
    checkpoint = {f"module.{k}": v for k, v in swav.state_dict().items() if not k.startswith("fc.")}
    checkpoint["module.projection_head.0.weight"] = torch.zeros(2, 2)  # SwAV's own head: ignored
    torch.save({"state_dict": checkpoint}, tmp_path / "swav_resnet50.pth")

    (tmp_path / "clip").symlink_to(clip_folder)  # the folder's own clip/
    networks, notes = load_feature_networks(tmp_path)
    assert sorted(networks) == ["clip", "efficientnet_b1", "swav_resnet50"]
    assert [note.split(":")[0] for note in notes] == ["alexnet", "inception_v3"]
    images = np.random.default_rng(0).random((2, 20, 20))
    reference = FeatureExtractor({"swav": torchvision_network(swav, {"avgpool": "swav"}, 224)})(images)
    loaded = FeatureExtractor({"swav": networks["swav_resnet50"]})(images)
    np.testing.assert_allclose(loaded["swav"], reference["swav"], rtol=1e-4, atol=1e-5)


def test_weights_of_another_network_are_refused(tmp_path, no_hub_cache):
    save_file(models.ResNet(BasicBlock, [1, 1, 1, 1]).state_dict(), str(tmp_path / "alexnet.safetensors"))
    with pytest.raises(EvaluationError, match="does not hold alexnet weights"):
        load_feature_networks(tmp_path, clip_model=tmp_path / "no-clip")


def test_a_missing_folder_or_clip_model_is_an_error_and_an_uncached_default_a_note(
    tmp_path, no_hub_cache, monkeypatch
):
    with pytest.raises(EvaluationError, match="does not exist"):
        load_feature_networks(tmp_path / "nowhere")
    with pytest.raises(EvaluationError, match="cannot load the CLIP model"):
        load_feature_networks(None, clip_model=tmp_path / "no-clip")  # asked for: must load
    monkeypatch.setattr(feature_models, "DEFAULT_CLIP", str(tmp_path / "not-cached"))
    networks, notes = load_feature_networks(None)
    assert networks == {}
    assert len(notes) == 5
    assert "in None" not in " ".join(notes)
