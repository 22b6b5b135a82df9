"""Stimuli <-> model pixels: grayscale repeated over a model's channels and averaged back, RGB kept."""

import numpy as np
import pytest
import torch

from fmri_data.errors import DataError
from fmri_diffusion.pipelines.pixels import from_pixels, to_pixels


@pytest.mark.parametrize("fit", ["pad", "resize"])
def test_rgb_stimuli_keep_their_channels_both_ways(fit):
    images = torch.rand(2, 8, 8, 3)
    pixels = to_pixels(images, 16, channels=3, fit=fit)
    assert pixels.shape == (2, 3, 16, 16)
    if fit == "resize":  # nearest-neighbour up by 2, area average down: exact
        torch.testing.assert_close(pixels[:, :, ::2, ::2], 2 * images.permute(0, 3, 1, 2) - 1)
    back = from_pixels(pixels, 8, fit=fit, colour=True)
    assert back.shape == (2, 8, 8, 3)
    torch.testing.assert_close(back, images)


def test_grayscale_is_repeated_and_averaged_back():
    images = torch.rand(2, 8, 8)
    pixels = to_pixels(images, 8, channels=3)
    torch.testing.assert_close(pixels[:, 0], pixels[:, 2])
    torch.testing.assert_close(from_pixels(pixels, 8), images)
    tinted = pixels * torch.tensor([1.0, 0.5, 0.0])[None, :, None, None]
    np.testing.assert_allclose(from_pixels(tinted, 8).numpy(), ((tinted.mean(1) + 1) / 2).numpy(), atol=1e-6)


def test_rgb_needs_a_three_channel_model():
    with pytest.raises(DataError, match="RGB images need a model of 3 channels; this one has 1"):
        to_pixels(torch.rand(2, 8, 8, 3), 8, channels=1)
    with pytest.raises(DataError, match="colour images need a model of 3 channels; this one has 1"):
        from_pixels(torch.rand(2, 1, 8, 8), 8, colour=True)
