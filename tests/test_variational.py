"""method="variational": the paper's robust Fisher (sec. 3.1, supplementary sec. 6)."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _fisher as fisher
from sklearn_task2vec._pipeline import EmbeddingSettings, task_head
from sklearn_task2vec._probes import prepare_probe
from sklearn_task2vec.distances import symmetric_distance
from sklearn_task2vec.tasks import ArrayTask


@pytest.fixture(scope="module")
def digits_3_vs_8():
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, [3, 8])
    return X[keep] / 16.0, y[keep]


def small_cnn():
    """Conv + eval-mode BatchNorm (folded), a grouped conv and a Linear: every filter kind."""
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 16),
        nn.ReLU(),
    ).eval()
    with torch.no_grad():
        cnn[1].running_var.uniform_(0.5, 2.0)
        cnn[1].weight.uniform_(0.5, 2.0)
    return cnn


def test_deterministic_for_a_fixed_random_state(digits_3_vs_8):
    X, y = digits_3_vs_8
    tasks = [(X, y), (X[:100], y[:100])]
    settings = {"method": "variational", "variational_steps": 40, "random_state": 0}
    first = FisherTaskEmbedder(**settings).fit_transform(tasks)
    np.testing.assert_array_equal(first, FisherTaskEmbedder(**settings).fit_transform(tasks))
    assert np.all(first > 0) and np.all(np.isfinite(first))
    other_seed = FisherTaskEmbedder(**{**settings, "random_state": 1}).fit_transform(tasks)
    assert not np.array_equal(first, other_seed)


def test_few_examples_approach_the_trivial_embedding(digits_3_vs_8):
    """(beta / N) Lambda = F + (beta / N) lambda^2: the fewer the examples (or the larger beta),
    the closer a row is to its prior, i.e. to all ones in the trivial-normalised space."""
    X, y = digits_3_vs_8
    threes, eights = np.where(y == 3)[0], np.where(y == 8)[0]
    tasks = [
        (X[np.r_[threes[:n], eights[:n]]], y[np.r_[threes[:n], eights[:n]]]) for n in (2, 20, len(eights))
    ]
    embedder = FisherTaskEmbedder(method="variational", normalize="trivial", random_state=0)
    rows = embedder.fit_transform(tasks)
    to_trivial = [symmetric_distance(row, np.ones_like(row)) for row in rows]
    assert to_trivial[0] < to_trivial[1] < to_trivial[2]
    assert rows[0].mean() < 0.1 * rows[2].mean()
    # beta = 1 (the evidence lower bound) on four examples: the prior dominates.
    elbo = FisherTaskEmbedder(method="variational", normalize="trivial", variational_beta=1.0, random_state=0)
    tiny = elbo.fit_transform(tasks[:1])[0]
    np.testing.assert_allclose(tiny, 1.0, atol=0.05)
    # The same rows without normalisation: the prior term is (beta / N) lambda^2.
    embedder.set_params(normalize=None)
    raw = embedder.fit(X[:4], y[:4])
    assert np.all(raw.embedding_ > raw.prior_embedding_ * 0.5)
    ratio = raw.prior_embedding_ / raw.trivial_embedding_  # (beta / N) times the trained prior drift
    assert ratio.max() < 2 * 1e-3 / 4 and ratio.min() > 0.05 * 1e-3 / 4


@pytest.mark.parametrize("probe_kind", ["random_relu", "cnn"])
def test_filter_ranking_agrees_with_exact_on_a_well_posed_task(digits_3_vs_8, probe_kind):
    X, y = digits_3_vs_8
    probe = "auto"
    if probe_kind == "cnn":
        probe, X = small_cnn(), X.reshape(-1, 1, 8, 8).astype(np.float32)
    variational = FisherTaskEmbedder(probe=probe, method="variational", random_state=0).fit(X, y)
    exact = FisherTaskEmbedder(probe=probe, method="exact", random_state=0).fit(X, y)
    fisher_part = variational.embedding_ - variational.prior_embedding_
    assert spearmanr(variational.embedding_, exact.embedding_)[0] > 0.8
    # The estimate is F + (beta / N) lambda^2: its Fisher part has the scale of exact's F.
    assert 0.5 < fisher_part.mean() / exact.embedding_.mean() < 2.0


def test_the_objective_moves_a_wrong_start_towards_the_fisher(digits_3_vs_8):
    """From a start ten times off the second-order optimum in each direction, stochastic
    variational Bayes moves the precisions most of the way back (the objective, not the start,
    carries the estimate)."""
    X, y = digits_3_vs_8
    embedder = FisherTaskEmbedder(random_state=0).fit([(X, y)])
    cpu = torch.device("cpu")
    probe = prepare_probe(embedder.probe_, None, cpu)
    settings = EmbeddingSettings(
        **{name: getattr(embedder, name) for name in EmbeddingSettings.__dataclass_fields__}
    )
    head = task_head(probe, ArrayTask(torch.from_numpy(X), y, "X"), settings, cpu).head
    codes = torch.as_tensor(y == 8, dtype=torch.long)
    beta, n = 1e-3, len(y)
    exact = embedder.fit(X, y).embedding_
    optimum = embedder.trivial_embedding_ + n / beta * exact
    inputs = torch.from_numpy(X)

    def batches():
        for start in range(0, n, 64):
            yield inputs[start : start + 64], codes[start : start + 64]

    for start in (optimum * 10.0, embedder.trivial_embedding_ + n / beta * exact / 10.0):
        estimate, prior_term = fisher.variational_fisher(
            probe,
            head,
            batches,
            n,
            prior=embedder.trivial_embedding_,
            initial_precision=start,
            beta=beta,
            n_steps=1000,
            learning_rate=0.05,
            generator=torch.Generator().manual_seed(0),
        )
        # Compare the Fisher parts, Lambda - lambda^2 against (N / beta) F (the prior is trained too).
        # Filters the task uses (dead ReLU units have F = 0).
        used = exact > 1e-2 * exact.max()
        start_part = (start - embedder.trivial_embedding_)[used] * beta / n
        estimate_part = np.maximum(estimate - prior_term, 1e-6 * exact.max())[used]
        log_error_before = np.abs(np.log(start_part / exact[used])).mean()
        log_error_after = np.abs(np.log(estimate_part / exact[used])).mean()
        assert log_error_after < 0.35 * log_error_before


def test_named_torchvision_probe_and_a_streamed_task():
    """A torchvision ResNet (BatchNorm folded, strided 1x1 shortcuts) and a DataLoader task."""
    torch.manual_seed(0)
    images = torch.rand(24, 3, 16, 16)
    labels = (images[:, 0].mean((1, 2)) > images[:, 1].mean((1, 2))).long()
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    embedder = FisherTaskEmbedder(
        probe="resnet18",
        probe_weights=None,
        method="variational",
        variational_steps=3,
        batch_size=8,
        random_state=0,
    )
    rows = embedder.fit_transform([(images.numpy(), labels.numpy()), loader])
    assert rows.shape == (2, len(embedder.trivial_embedding_))
    assert np.all(np.isfinite(rows)) and np.all(rows > 0)


def test_transform_refuses_per_example_rows(digits_3_vs_8):
    X, y = digits_3_vs_8
    embedder = FisherTaskEmbedder(method="variational", variational_steps=5, random_state=0).fit(X, y)
    assert (
        embedder.method_ == "variational" and embedder.embedding_.shape == embedder.trivial_embedding_.shape
    )
    with pytest.raises(ValueError, match="no per-example rows"):
        embedder.transform(X)


def test_normalised_rows_are_divided_by_their_own_prior(digits_3_vs_8):
    X, y = digits_3_vs_8
    settings = {"method": "variational", "variational_steps": 20, "random_state": 0}
    raw = FisherTaskEmbedder(**settings).fit(X, y)
    normalised = FisherTaskEmbedder(normalize="trivial", **settings).fit(X, y)
    np.testing.assert_allclose(normalised.embedding_, raw.embedding_ / raw.prior_embedding_)
    np.testing.assert_allclose(
        normalised.fit_transform([(X, y)])[0], raw.embedding_ / raw.prior_embedding_, rtol=1e-12
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"variational_beta": 0.0},
            "'variational_beta' parameter .* must be a float in the range \\(0.0, inf\\). Got 0.0",
        ),
        (
            {"variational_beta": float("inf")},
            "'variational_beta' parameter .* must be a float in the range \\(0.0, inf\\). Got inf",
        ),
        (
            {"variational_learning_rate": -1.0},
            "'variational_learning_rate' parameter .* in the range \\(0.0, inf\\). Got -1.0",
        ),
        (
            {"variational_steps": 0},
            "'variational_steps' parameter .* must be an int in the range \\[1, inf\\). Got 0",
        ),
    ],
)
def test_bad_variational_parameters(params, message):
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=message):
        FisherTaskEmbedder(method="variational", **params).fit([(X, X[:, 0] > 0)])


def test_unsupported_filter_layer_is_a_clear_error():
    """Filters the local reparametrisation does not cover (a transposed conv is refused
    earlier; here a Linear-like module of another type) raise a ValueError naming the layer."""
    noise = fisher.VariationalFilterNoise(
        [("odd", nn.Bilinear(2, 2, 3))], [None], np.ones(3), np.ones(3), torch.Generator().manual_seed(0)
    )
    with noise, pytest.raises(ValueError, match="'odd' is a Bilinear"):
        noise.filters[0][1](torch.ones(1, 2), torch.ones(1, 2))
