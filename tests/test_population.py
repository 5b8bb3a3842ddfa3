"""The population forward pass: the stacked Sequential path computes what vmap computes."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from sklearn_task2vec import discovery
from sklearn_task2vec._population import population_forward, two_logits
from sklearn_task2vec.discovery import small_cnn, small_mlp, taskness_score


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny networks: threads gain nothing and cost a lot on a busy machine."""


def vmap_reference(template, weights, x):
    skeleton = template.to("meta")

    def logits(params, inputs):
        out = functional_call(skeleton, params, (inputs,))
        return two_logits(out if out.dim() == 2 else out.reshape(out.shape[0], 1))

    return vmap(logits)(weights, x)


def stacked(make, n_models):
    torch.manual_seed(0)
    weights, _ = stack_module_state([make() for _ in range(n_models)])
    return {name: tensor.detach().requires_grad_() for name, tensor in weights.items()}


NETWORKS = {
    "seed CNN, padded (8x8)": (lambda: small_cnn((1, 8, 8)), (1, 8, 8)),
    "seed CNN, unpadded (16x16)": (lambda: small_cnn((2, 16, 17)), (2, 16, 17)),
    "ReLU before overlapping padded max-pools, twice": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 3, 3),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(3 * 3 * 3, 2),
        ),
        (1, 7, 7),
    ),
    "seed MLP": (lambda: small_mlp(5), (5,)),
    "linear head alone": (lambda: nn.Linear(6, 2), (6,)),
    "one positive-class logit alone": (lambda: nn.Linear(6, 1, bias=False), (6,)),
    "strided grouped conv, avg pool, one logit": (
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(4, 8, 3, groups=2, bias=False, dilation=2, padding="same"),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 2 * 2, 1),
        ),
        (2, 9, 9),
    ),
    "nested Sequential, adaptive pool, flatten of features": (
        lambda: nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 5, 3), nn.SiLU()),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Sequential(nn.Flatten(), nn.Linear(5, 2, bias=False)),
        ),
        (3, 6, 7),
    ),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_stacked_sequential_computes_what_vmap_computes(name):
    make, example_shape = NETWORKS[name]
    n_models, batch = 5, 7
    x = torch.randn(n_models, batch, *example_shape)
    forward = population_forward(make(), example_shape)
    assert not hasattr(forward, "__wrapped__"), "expected the stacked path, not vmap"
    weights = stacked(make, n_models)
    out = forward(weights, x)
    reference_weights = {k: v.detach().clone().requires_grad_() for k, v in weights.items()}
    reference = vmap_reference(make(), reference_weights, x)
    assert out.shape == (n_models, batch, 2)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-6)
    # The gradients, too: the training steps use them.
    out.square().sum().backward()
    reference.square().sum().backward()
    for key, weight in weights.items():
        torch.testing.assert_close(weight.grad, reference_weights[key].grad, rtol=1e-4, atol=1e-5)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head((x + self.conv(x)).flatten(1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(32, 2)
        ),
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.0), nn.Flatten(), nn.Linear(8, 2)),
        Residual,
    ],
    ids=["reflect padding", "dropout", "not a Sequential"],
)
def test_other_networks_run_through_vmap(make):
    x = torch.randn(3, 4, 1, 4, 4)
    forward = population_forward(make(), (1, 4, 4))
    assert hasattr(forward, "__wrapped__"), "expected vmap"
    weights = stacked(make, 3)
    torch.testing.assert_close(forward(weights, x), vmap_reference(make(), weights, x))


def test_scores_do_not_depend_on_the_forward_path(monkeypatch):
    rng = np.random.RandomState(0)
    images = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    labels = np.stack([rng.permutation(np.arange(40) % 4 == 0) for _ in range(3)])
    fast = taskness_score(images, labels, random_state=0, n_steps=12)

    def vmap_only(template, example_shape):
        return lambda weights, x: vmap_reference(template, weights, x)

    monkeypatch.setattr(discovery, "population_forward", vmap_only)
    reference = taskness_score(images, labels, random_state=0, n_steps=12)
    np.testing.assert_allclose(fast, reference, atol=1e-5)
