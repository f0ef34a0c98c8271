"""Motion-free baselines of notebook 04: colour k-means and the object/background split."""

import colorsys

import numpy as np
import pytest
import torch

from s3lib.baselines import colour_features, colour_kmeans, foreground_split
from s3lib.metrics import matched_miou


def test_hsv_features_against_colorsys():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0, 1, (3, 4, 5)).astype(np.float32))
    got = colour_features(image, "hsv")
    for (r, g, b), f in zip(image.permute(1, 2, 0).reshape(-1, 3).tolist(), got):
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        want = [s * np.cos(2 * np.pi * h), s * np.sin(2 * np.pi * h), v]
        assert np.allclose(f, want, atol=2e-3)
    assert np.array_equal(colour_features(image, "rgb"), image.permute(1, 2, 0).reshape(-1, 3).numpy())


def test_kmeans_finds_regions_of_distinct_colours_and_repeats():
    labels = torch.zeros(2, 12, 12, dtype=torch.long)
    labels[:, :, 6:] = 1
    labels[:, 6:, :6] = 2
    palette = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]])
    gen = torch.Generator().manual_seed(0)
    images = palette[labels].permute(0, 3, 1, 2) + 0.02 * torch.rand(2, 3, 12, 12, generator=gen)
    for space in ("rgb", "hsv"):
        got = colour_kmeans(images, 3, space)
        assert got.shape == (2, 12, 12) and got.dtype == torch.int64
        assert all(matched_miou(p, t) == pytest.approx(1.0) for p, t in zip(got, labels))
        assert torch.equal(got, colour_kmeans(images, 3, space))
    # one colour everywhere: colour cannot split the regions, whatever k is
    grey = torch.full((1, 3, 12, 12), 0.5) + 0.05 * torch.rand(1, 3, 12, 12, generator=gen)
    assert matched_miou(colour_kmeans(grey, 3)[0], labels[0]) < 0.6


def test_foreground_split():
    labels = torch.tensor([[0, 1, 2], [3, 0, 6]])
    assert torch.equal(foreground_split(labels), torch.tensor([[0, 1, 1], [1, 0, 1]]))


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2.0}, {"space": "lab"}])
def test_bad_arguments(kwargs):
    args = {"images": torch.rand(1, 3, 4, 4), "k": 2} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        colour_kmeans(**args)
