"""autocast and channels-last: reduced precision and memory layout for GPUs, checked on CPU."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder, _utils


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
    ).eval()


@pytest.fixture(scope="module")
def image_task():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(96, 3, 12, 12)).astype(np.float32)
    return images, (images[:, 0].mean(axis=(1, 2)) > images[:, 1].mean(axis=(1, 2))).astype(int)


@pytest.mark.parametrize("method", ["exact", "montecarlo"])
def test_bfloat16_autocast_keeps_the_embedding(image_task, method):
    settings = {"probe": small_cnn(), "method": method, "random_state": 0}
    full = FisherTaskEmbedder(**settings).fit_transform([image_task])[0]
    reduced = FisherTaskEmbedder(autocast="bfloat16", **settings).fit_transform([image_task])[0]
    assert reduced.dtype == np.float64 and np.all(np.isfinite(reduced))
    assert np.linalg.norm(reduced - full) / np.linalg.norm(full) < 0.15
    assert spearmanr(reduced, full)[0] > 0.98
    assert not np.array_equal(reduced, full)  # bfloat16 was really used


def test_channels_last_gives_the_same_rows(image_task, monkeypatch):
    # In double precision, so that the layout's rounding differences (about 1e-7 in float32)
    # do not move where L-BFGS stops fitting the head (about 1e-3 of the rows).
    settings = {"probe": small_cnn().double(), "method": "exact", "random_state": 0}
    contiguous = FisherTaskEmbedder(**settings).fit_transform([image_task])
    monkeypatch.setattr(_utils, "CHANNELS_LAST_DEVICES", ("cuda", "cpu"))
    seen = []
    probe = small_cnn().double()
    probe[0].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    embedder = FisherTaskEmbedder(**{**settings, "probe": probe}).fit([image_task])
    seen.clear()  # fit's inspection of the probe runs on the host, in the task's own layout
    channels_last = embedder.transform([image_task])
    assert seen and all(seen)
    np.testing.assert_allclose(channels_last, contiguous, rtol=1e-9, atol=1e-15)


def test_bad_autocast():
    X = np.zeros((4, 3))
    with pytest.raises(
        ValueError,
        match="The 'autocast' parameter of FisherTaskEmbedder must be a str among .*'bfloat16'.* or None. Got 'half'",
    ):
        FisherTaskEmbedder(autocast="half").fit([(X, [0, 1, 0, 1])])
