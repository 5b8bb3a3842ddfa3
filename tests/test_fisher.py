"""The Fisher estimators against closed forms and brute-force per-example Jacobians."""

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _fisher as fisher
from sklearn_task2vec._fisher import exact_logit_directions, sampled_logit_directions
from sklearn_task2vec._probes import probe_filters


def brute_force_fisher(probe, head, X):
    """diag(J^T (diag p - p p^T) J) per example, filter-averaged, from full per-example Jacobians."""
    model = nn.Sequential(probe, head).double()
    filters = [(f"0.{path}" if path else "0", module) for path, module in probe_filters(probe)]
    weights = {f"{path}.weight": module.weight.detach().double() for path, module in filters}
    inputs = torch.as_tensor(X, dtype=torch.float64)

    def logits(weights, x):
        return torch.func.functional_call(model, weights, (x.unsqueeze(0),))[0]

    jacobians = torch.func.vmap(torch.func.jacrev(logits), in_dims=(None, 0))(weights, inputs)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)
    metric = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)
    columns = []
    for name in weights:
        jac = jacobians[name].flatten(2)  # (n, C, weights)
        diagonal = torch.einsum("ncw,ncd,ndw->nw", jac, metric, jac)
        n_filters = weights[name].shape[0]
        columns.append(diagonal.view(len(X), n_filters, -1).mean(2))
    return torch.cat(columns, dim=1).numpy()


class ConvZoo(nn.Module):
    """Convolutions of every kind the fast path handles, and a Linear over a token axis."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=False)
        self.grouped = nn.Conv2d(4, 6, 3, padding="same", groups=2, padding_mode="reflect")
        self.dilated = nn.Conv2d(6, 16, 3, dilation=2, padding=2)
        self.bn = nn.BatchNorm2d(16)
        # Few positions, many inputs: these two take the Gram form (one of them 1x1 strided).
        self.pointwise = nn.Conv2d(16, 16, 1, stride=2)
        self.deep = nn.Conv2d(16, 16, 3, padding=1)
        self.tokens = nn.Linear(16, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.tanh(self.stem(x))
        x = torch.relu(self.grouped(x))
        x = self.bn(self.dilated(x))
        x = torch.relu(self.deep(torch.tanh(self.pointwise(x))))
        x = torch.tanh(self.tokens(x.flatten(2).transpose(1, 2)))  # (n, positions, 5)
        return self.out(x.mean(1))


class Conv1dProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 5, 3, stride=2, padding=1)
        self.same = nn.Conv1d(5, 4, 4, padding="same", padding_mode="circular")

    def forward(self, x):
        return torch.tanh(self.same(torch.relu(self.conv(x)))).mean(2)


class Conv3dProbe(nn.Module):
    """Conv3d has no fast path: it goes through the generic torch.func per-example gradient."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 3, 2)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return torch.tanh(self.fc(torch.relu(self.conv(x)).mean((2, 3, 4))))


def _randomise_bn(probe):
    for module in probe.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return probe


@pytest.mark.parametrize(
    "make_probe, shape",
    [
        (lambda: _randomise_bn(ConvZoo().double()), (2, 8, 8)),
        (lambda: Conv1dProbe().double(), (2, 9)),
        (lambda: Conv3dProbe().double(), (1, 3, 4, 4)),
    ],
    ids=["conv2d-zoo", "conv1d", "conv3d-generic"],
)
def test_exact_matches_brute_force_per_example(make_probe, shape, monkeypatch):
    forms = []
    original = fisher.gram_is_cheaper

    def spy(*args):
        forms.append(original(*args))
        return forms[-1]

    monkeypatch.setattr(fisher, "gram_is_cheaper", spy)
    torch.manual_seed(0)
    probe = make_probe()
    rng = np.random.RandomState(0)
    X = rng.normal(size=(24, *shape))
    y = rng.randint(3, size=24)
    embedder = FisherTaskEmbedder(probe=probe, method="exact", batch_size=7, random_state=0).fit(X, y)
    expected = brute_force_fisher(embedder.probe_, embedder.head_, X)
    rows = embedder.transform(X)
    np.testing.assert_allclose(rows, expected, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(embedder.embedding_, expected.mean(0), rtol=1e-9, atol=1e-13)
    if isinstance(probe, ConvZoo):
        assert True in forms and False in forms, "both the Gram and the direct form are exercised"


def test_exact_equals_closed_form_of_two_layer_sigmoid_network():
    """Supplementary sec. 5: F = E[p (1 - p) S (x) x x^T], S = w w^T . z z^T . (1 - z)(1 - z)^T."""
    rng = np.random.RandomState(1)
    n_features, n_hidden = 5, 7
    X = rng.normal(size=(60, n_features))
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.3 * rng.normal(size=60) > 0).astype(int)
    probe = nn.Sequential(nn.Linear(n_features, n_hidden, bias=False), nn.Sigmoid()).double()
    embedder = FisherTaskEmbedder(probe=probe, method="exact", random_state=0).fit(X, y)

    U = embedder.probe_[0].weight.detach().numpy()
    W = embedder.head_.weight.detach().numpy()
    b = embedder.head_.bias.detach().numpy()
    z = 1.0 / (1.0 + np.exp(-X @ U.T))
    w = W[1] - W[0]  # a two-class softmax head is a sigmoid of the logit difference
    p = 1.0 / (1.0 + np.exp(-(z @ w + b[1] - b[0])))
    # Diagonal of p(1-p) S (x) x x^T at (k, j): p(1-p) w_k^2 z_k^2 (1-z_k)^2 x_j^2, averaged over j.
    per_example = (p * (1 - p))[:, None] * (w * z * (1 - z)) ** 2 * (X**2).mean(1, keepdims=True)

    assert np.abs(w).max() > 0.1, "the head should have learned something for this test to bite"
    np.testing.assert_allclose(embedder.transform(X), per_example, rtol=1e-10)
    np.testing.assert_allclose(embedder.embedding_, per_example.mean(0), rtol=1e-10)


def test_montecarlo_converges_to_exact():
    rng = np.random.RandomState(2)
    X = rng.normal(size=(40, 6))
    y = np.digitize(X[:, 0] + X[:, 1], [-1.0, 0.0, 1.0])  # four classes
    settings = dict(random_state=3)
    exact = FisherTaskEmbedder(method="exact", **settings).fit(X, y)
    montecarlo = FisherTaskEmbedder(method="montecarlo", **settings).fit(X, y)
    # Same seeds, so the same probe and the same head: only the estimator differs.
    np.testing.assert_array_equal(exact.probe_.features.weight, montecarlo.probe_.features.weight)
    np.testing.assert_array_equal(exact.head_.weight, montecarlo.head_.weight)

    rows = montecarlo.transform(np.tile(X, (1024, 1)))  # 1024 labels sampled per example
    errors = []
    for n_draws in (4, 64, 1024):
        estimate = rows[: n_draws * len(X)].mean(0)
        errors.append(np.linalg.norm(estimate - exact.embedding_) / np.linalg.norm(exact.embedding_))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.03
    # Monte Carlo is unbiased but one draw is not the expectation.
    assert np.linalg.norm(rows[: len(X)].mean(0) - exact.embedding_) > 1e-3 * np.linalg.norm(exact.embedding_)


@pytest.mark.parametrize("n_classes", [2, 3, 5, 10])
def test_exact_logit_directions_factor_the_softmax_metric(n_classes):
    generator = torch.Generator().manual_seed(n_classes)
    logits = 4 * torch.randn(50, n_classes, generator=generator, dtype=torch.float64)
    logits[0, 0] = 60.0  # a confident example: the Householder step must stay stable
    probs = torch.softmax(logits, dim=1)
    directions = exact_logit_directions(probs)
    assert directions.shape == (50, n_classes, n_classes - 1)
    metric = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)
    torch.testing.assert_close(directions @ directions.transpose(1, 2), metric, rtol=0, atol=1e-12)


def test_sampled_directions_average_to_the_metric():
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1, 4, generator=generator, dtype=torch.float64), dim=1)
    draws = sampled_logit_directions(probs.expand(200_000, 4), generator)
    outer = (draws @ draws.transpose(1, 2)).mean(0)
    metric = torch.diag(probs[0]) - probs[0].unsqueeze(1) * probs[0].unsqueeze(0)
    torch.testing.assert_close(outer, metric, rtol=0, atol=5e-3)


def test_fisher_ignores_dataset_labels_given_the_head():
    """y ~ p_w(y|x): once the head is fixed, the dataset labels play no part in F."""
    rng = np.random.RandomState(4)
    X = rng.normal(size=(30, 3))
    embedder = FisherTaskEmbedder(method="exact", random_state=0).fit(X, X[:, 0] > 0)
    rows = embedder.transform(X)
    # transform(X) takes no labels at all; refitting with other labels changes the head and F.
    other = FisherTaskEmbedder(method="exact", random_state=0).fit(X, X[:, 1] > 0)
    assert not np.allclose(rows, other.transform(X))
    assert np.all(rows >= 0)


def test_layer_called_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Linear(3, 3)

        def forward(self, x):
            return self.shared(torch.tanh(self.shared(x)))

    X = np.random.RandomState(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="'shared' is called more than once"):
        FisherTaskEmbedder(probe=Twice(), random_state=0).fit(X, X[:, 0] > 0)


def test_folding_batchnorm_keeps_the_fisher_of_the_original_filters(monkeypatch):
    import torchvision

    from sklearn_task2vec import _probes as probes

    torch.manual_seed(0)
    probe = torchvision.models.resnet18(weights=None)
    probe.fc = nn.Identity()
    for module in probe.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.running_var.uniform_(0.5, 2.0)
            module.running_mean.uniform_(-0.2, 0.2)
    probe = probe.double()
    images = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    tasks = [(images, torch.tensor([0, 1, 0, 1, 1, 0])), (images, torch.arange(6) % 3)]

    embedder = FisherTaskEmbedder(probe=probe, method="exact", random_state=0)
    folded = embedder.fit_transform(tasks)
    runnable = probes.folded_filters(embedder.probe_)
    assert sum(scale is not None for scale in runnable.scales) == 20  # every conv of resnet18
    assert not any(isinstance(m, nn.BatchNorm2d) for m in runnable.module.modules())

    monkeypatch.setattr(probes, "fold_batchnorm", lambda probe: (probe, {}))
    unfolded = FisherTaskEmbedder(probe=probe, method="exact", random_state=0).fit_transform(tasks)
    np.testing.assert_allclose(folded[0], unfolded[0], rtol=1e-7, atol=1e-12 * unfolded.max())
    # Three classes: the heads agree only to where L-BFGS stops on features that differ by rounding.
    assert np.linalg.norm(folded[1] - unfolded[1]) < 1e-4 * np.linalg.norm(unfolded[1])
