import pytest
import torch

from fmri_encoders.contrastive import ConvImageEncoder, FmriEncoder, FmriEncoderConfig, ImageEncoderConfig


def _encoder(**sizes) -> FmriEncoder:
    config = FmriEncoderConfig(n_voxels={"s1": 30, "s2": 45}, hidden=32, embed_dim=16, n_tokens=3, **sizes)
    return FmriEncoder(config).eval()


def test_vector_and_token_shapes():
    out = _encoder()(torch.randn(5, 30), "s1")
    assert out.embedding.shape == (5, 16)
    assert out.tokens.shape == (5, 3, 16)  # token_dim defaults to embed_dim
    assert _encoder(token_dim=8)(torch.randn(2, 30), "s1").tokens.shape == (2, 3, 8)


def test_subject_adapters_take_different_voxel_counts_to_the_same_shapes():
    encoder = _encoder()
    a, b = encoder(torch.randn(4, 30), "s1"), encoder(torch.randn(4, 45), "s2")
    assert a.embedding.shape == b.embedding.shape
    assert a.tokens.shape == b.tokens.shape
    with pytest.raises(ValueError, match="45 voxels"):
        encoder(torch.randn(4, 45), "s1")
    with pytest.raises(ValueError, match="several subjects"):
        encoder(torch.randn(4, 30))
    with pytest.raises(ValueError, match="unknown subject 's3'"):
        encoder(torch.randn(4, 30), "s3")


@pytest.mark.parametrize("size", [8, 28])
def test_cnn_takes_any_square_size(size):
    encoder = ConvImageEncoder(ImageEncoderConfig(embed_dim=12, channels=4))
    assert encoder(torch.rand(3, size, size)).shape == (3, 12)
