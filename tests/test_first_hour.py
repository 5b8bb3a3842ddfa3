"""What a new user meets first (issue 15): gray images for the ImageNet probes."""

import numpy as np
import pytest
import torch

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import load_digits_images, to_rgb


def test_to_rgb_repeats_the_gray_level_in_three_channels():
    gray = load_digits_images().images[:5]
    rgb = to_rgb(gray)
    assert isinstance(rgb, np.ndarray) and rgb.shape == (5, 3, 8, 8)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, channel], gray[:, 0])
    tensor = to_rgb(torch.from_numpy(gray))
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_array_equal(tensor.numpy(), rgb)
    with pytest.raises(
        ValueError, match=r"one-channel images of shape \(N, 1, H, W\), got shape \(5, 3, 8, 8\)"
    ):
        to_rgb(rgb)


def test_gray_images_refused_with_the_fix_then_embedded_after_it():
    digits = load_digits_images()
    keep = np.flatnonzero(digits.target < 2)[:16]
    task = (digits.images[keep], digits.target[keep])
    embedder = FisherTaskEmbedder(probe="resnet18", probe_weights=None, batch_size=16, random_state=0)
    with pytest.raises(
        ValueError, match=r"^task 0: probe 'resnet18' takes 3-channel images.*to_rgb\(images\)"
    ):
        embedder.fit_transform([task])
    embedding = embedder.fit_transform([(to_rgb(task[0]), task[1])])
    assert embedding.shape == (1, len(embedder.get_feature_names_out()))
    assert np.all(np.isfinite(embedding)) and np.all(embedding >= 0) and embedding.sum() > 0
