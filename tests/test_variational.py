"""method="variational": the paper's robust Fisher (sec. 3.1, supplementary sec. 6)."""

import re
import warnings

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _fisher as fisher
from sklearn_task2vec import _pipeline as pipeline
from sklearn_task2vec._pipeline import EmbeddingSettings, task_head
from sklearn_task2vec._probes import prepare_probe
from sklearn_task2vec.distances import pairwise_task_distances, symmetric_distance
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


@pytest.mark.parametrize(("curvature", "max_steps"), [("hessian", 1000), ("gauss_newton", 60)])
def test_the_objective_moves_a_wrong_start_towards_the_fisher(digits_3_vs_8, curvature, max_steps):
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
        estimate, prior_term, *_ = fisher.variational_fisher(
            probe,
            head,
            batches,
            n,
            prior=embedder.trivial_embedding_,
            initial_precision=start,
            beta=beta,
            max_steps=max_steps,
            tol=0.0,
            head_weight_decay=embedder.head_weight_decay,
            generator=torch.Generator().manual_seed(0),
            curvature=curvature,
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
            {"variational_steps": -1},
            "'variational_steps' parameter .* must be an int in the range \\[0, inf\\). Got -1",
        ),
        (
            {"variational_tol": -1e-3},
            "'variational_tol' parameter .* must be a float in the range \\[0.0, inf\\). Got -0.001",
        ),
        (
            {"variational_tol": float("nan")},
            "'variational_tol' parameter .* must be a float in the range \\[0.0, inf\\). Got nan",
        ),
        (
            {"variational_noise": "per_weight"},
            "'variational_noise' parameter .* must be a str among .*per_example.*Got 'per_weight'",
        ),
        (
            {"variational_curvature": "fisher"},
            "'variational_curvature' parameter .* must be a str among .*gauss_newton.*Got 'fisher'",
        ),
    ],
)
def test_bad_variational_parameters(params, message):
    X = np.random.RandomState(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match=message):
        FisherTaskEmbedder(method="variational", **params).fit([(X, X[:, 0] > 0)])


def test_unsupported_filter_layer_is_a_clear_error():
    """Filters the perturbation does not cover (a transposed conv is refused earlier; here a
    Linear-like module of another type) raise a ValueError naming the layer."""
    with pytest.raises(ValueError, match="'odd' is a Bilinear"):
        fisher.VariationalFilterNoise(
            [("odd", nn.Bilinear(2, 2, 3))], [None], np.ones(3), torch.Generator().manual_seed(0)
        )


# ------------------------------------------------------------- convolutions: per-example noise
def one_conv(kernel_size, padding):
    torch.manual_seed(0)
    return nn.Conv2d(1, 2, kernel_size, padding=padding).eval()


@pytest.mark.parametrize("noise", ["per_example", "per_position"])
def test_conv_perturbation_has_the_variance_of_its_weight_noise(noise):
    """Through average pooling, weight noise of variance sigma^2 shared across positions gives
    the pooled output the variance ``sigma^2 ||mean_t u_t||^2``; independent noise at each
    position (the paper's local reparametrisation) only ``sigma^2 sum_t ||u_t||^2 / T^2``."""
    conv = one_conv(3, 0)
    image = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    precisions = np.array([4.0, 25.0])
    perturbation = fisher.VariationalFilterNoise(
        [("conv", conv)], [None], precisions, torch.Generator().manual_seed(0), noise
    )
    with torch.no_grad():
        clean = conv(image).mean((2, 3))
        with perturbation:
            pooled = torch.cat([conv(image.expand(2, -1, -1, -1)).mean((2, 3)) for _ in range(3000)])
    patches = torch.nn.functional.unfold(image, 3)[0].T.double()  # (T, 9)
    shared = patches.mean(0).square().sum().item()
    independent = patches.square().sum().item() / len(patches) ** 2
    expected = (shared if noise == "per_example" else independent) / precisions
    variance = (pooled.double() - clean.double()).square().mean(0).numpy()
    np.testing.assert_allclose(variance, expected, rtol=0.1)
    assert shared > 3 * independent  # the two differ on this input: the check tells them apart


@pytest.fixture(scope="module")
def conv_pool_task():
    """A convolution followed by average pooling, on the 1,797 digits (10 classes), with its
    head and ``F`` from method="exact"."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    torch.manual_seed(0)
    probe_module = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    exact = FisherTaskEmbedder(probe=probe_module.eval(), method="exact", random_state=0).fit(X, y)
    cpu = torch.device("cpu")
    probe = prepare_probe(exact.probe_, None, cpu)
    settings = EmbeddingSettings(
        **{name: getattr(exact, name) for name in EmbeddingSettings.__dataclass_fields__}
    )
    head = task_head(probe, ArrayTask(torch.from_numpy(X), y, "X"), settings, cpu).head
    return probe, head, torch.from_numpy(X), torch.as_tensor(y), exact


def run_conv_pool(
    conv_pool_task, start, noise, *, max_steps, prior=None, point=None, tol=0.0, curvature="hessian"
):
    probe, head, inputs, codes, exact = conv_pool_task
    order = np.random.RandomState(0)

    def batches():
        for indices in np.array_split(order.permutation(len(codes)), len(codes) // 128):
            yield inputs[indices], codes[indices]

    return fisher.variational_fisher(
        probe,
        head,
        batches,
        len(codes),
        prior=exact.trivial_embedding_ if prior is None else prior,
        initial_precision=start,
        beta=1e-3,
        max_steps=max_steps,
        tol=tol,
        head_weight_decay=exact.head_weight_decay,
        generator=torch.Generator().manual_seed(0),
        noise=noise,
        curvature=curvature,
        fisher=point,
    )


@pytest.mark.parametrize(("curvature", "max_steps"), [("hessian", 1500), ("gauss_newton", 100)])
@pytest.mark.parametrize("start", ["prior", "ten times above", "ten times below"])
def test_conv_followed_by_average_pooling_converges_to_the_fisher(
    conv_pool_task, start, curvature, max_steps
):
    """(row - prior term) / F within 25% of 1 where the data dominate the prior, from the prior
    and from ten times off the optimum in either direction: the objective, not the start,
    carries the estimate, and its optimum is the Fisher of method="exact". The logits are
    linear in the convolution's weights, so the loss's Hessian is its Gauss-Newton part and
    both estimators have this optimum; the pathwise one without the control variate, whose
    mean is that Fisher: the steps' own estimates, from the draws alone."""
    exact = conv_pool_task[-1]
    trivial, n, beta = exact.trivial_embedding_, len(conv_pool_task[3]), 1e-3
    optimum = trivial + n / beta * exact.embedding_
    initial = {"prior": trivial, "ten times above": 10 * optimum, "ten times below": optimum / 10}[start]
    result = run_conv_pool(conv_pool_task, initial, "per_example", max_steps=max_steps, curvature=curvature)
    data_dominate = n / beta * exact.embedding_ > 10 * trivial
    assert data_dominate.sum() >= 6
    ratio = (result.estimate - result.prior_term) / exact.embedding_
    np.testing.assert_allclose(ratio[data_dominate], 1.0, atol=0.25)


def test_control_variate_removes_the_draws_noise_where_the_loss_is_quadratic(conv_pool_task):
    """The logits are linear in the convolution's weights here: the second-order model's
    curvature carries the draws' noise, so with it the run stops within two epochs at a 2%
    standard error, on the Fisher."""
    exact = conv_pool_task[-1]
    trivial, n, beta = exact.trivial_embedding_, len(conv_pool_task[3]), 1e-3
    start = trivial + n / beta * exact.embedding_
    plain = run_conv_pool(conv_pool_task, start, "per_example", max_steps=14)
    result = run_conv_pool(
        conv_pool_task, start, "per_example", max_steps=300, point=exact.embedding_, tol=0.02
    )
    assert result.converged and result.n_steps <= 28 and result.relative_error < 0.1 * plain.relative_error
    data_dominate = n / beta * exact.embedding_ > 10 * trivial
    ratio = (result.estimate - result.prior_term) / exact.embedding_
    np.testing.assert_allclose(ratio[data_dominate], 1.0, atol=0.1)


def test_the_control_variate_is_judged_by_the_variance_it_removes():
    generator = torch.Generator().manual_seed(0)
    ones = torch.ones(3, dtype=torch.float64)

    def filled(own_noise):  # g = q + own noise: q explains 1 / (1 + own_noise^2) of var(g)
        mean = fisher._CurvatureMean(ones, quadratic_mean=torch.zeros(3, dtype=torch.float64))
        for _ in range(50):
            q = torch.randn(3, generator=generator, dtype=torch.float64)
            mean.add(q + own_noise * torch.randn(3, generator=generator, dtype=torch.float64), q)
        return mean

    assert filled(0.1).control_variate_helps(ones)
    assert not filled(10.0).control_variate_helps(ones)
    dropped = filled(0.1)
    dropped.drop_control_variate()
    plain_mean = (ones + dropped.sums["g"]) / (dropped.count + 1)
    torch.testing.assert_close(dropped.mean(), plain_mean)


def test_a_control_variate_that_barely_helps_is_dropped_after_its_first_epoch(conv_pool_task, monkeypatch):
    """Its passes cost about as much as a step's own: judged at the end of the first epoch of
    at least eight steps (14 here), one that removes under a fifth of the variance is no longer
    computed; one that helps (the real judgement here) is kept to the end."""
    exact = conv_pool_task[-1]
    start = exact.trivial_embedding_ + len(conv_pool_task[3]) / 1e-3 * exact.embedding_
    calls = []
    computed = fisher.VariationalFilterNoise.quadratic_curvatures

    def counted(self, model, inputs):
        calls.append(len(inputs))
        return computed(self, model, inputs)

    monkeypatch.setattr(fisher.VariationalFilterNoise, "quadratic_curvatures", counted)
    kept = run_conv_pool(conv_pool_task, start, "per_example", max_steps=30, point=exact.embedding_)
    assert kept.n_steps == 30 and len(calls) == 30
    calls.clear()
    monkeypatch.setattr(fisher._CurvatureMean, "control_variate_helps", lambda self, scale: False)
    dropped = run_conv_pool(conv_pool_task, start, "per_example", max_steps=30, point=exact.embedding_)
    assert dropped.n_steps == 30 and len(calls) == 14 and np.all(np.isfinite(dropped.estimate))


@pytest.mark.parametrize(("curvature", "max_steps"), [("hessian", 800), ("gauss_newton", 60)])
def test_per_position_noise_settles_far_below_the_fisher_there(conv_pool_task, curvature, max_steps):
    """The paper's approximation, kept as variational_noise="per_position": its optimum is the
    position-diagonal part of the Fisher, over an order of magnitude below F here."""
    exact = conv_pool_task[-1]
    optimum = exact.trivial_embedding_ + len(conv_pool_task[3]) / 1e-3 * exact.embedding_
    result = run_conv_pool(conv_pool_task, optimum, "per_position", max_steps=max_steps, curvature=curvature)
    ratio = (result.estimate - result.prior_term) / exact.embedding_
    assert np.all(ratio < 0.2)


# ------------------------------------------------------------------------- the stopping rule
def test_stopping_rule_stops_at_its_standard_error_and_lands_near_a_long_run(digits_3_vs_8):
    """The run stops, after at least one epoch, once the row's estimated standard error is
    ``tol`` of the row; tol=0 runs all the steps. The early row is then as close to a long run's
    as that standard error says."""
    X, y = digits_3_vs_8
    embedder = FisherTaskEmbedder(random_state=0).fit([(X, y)])
    cpu = torch.device("cpu")
    probe = prepare_probe(embedder.probe_, None, cpu)
    settings = EmbeddingSettings(
        **{name: getattr(embedder, name) for name in EmbeddingSettings.__dataclass_fields__}
    )
    head = task_head(probe, ArrayTask(torch.from_numpy(X), y, "X"), settings, cpu).head
    codes, inputs, n = torch.as_tensor(y == 8, dtype=torch.long), torch.from_numpy(X), len(y)
    point = embedder.fit(X, y).embedding_
    start = embedder.trivial_embedding_ + n / 1e-3 * point

    def batches():  # an epoch of 6 batches
        for begin in range(0, n, 64):
            yield inputs[begin : begin + 64], codes[begin : begin + 64]

    def run(tol, max_steps, seed):
        return fisher.variational_fisher(
            probe,
            head,
            batches,
            n,
            prior=embedder.trivial_embedding_,
            initial_precision=start,
            beta=1e-3,
            max_steps=max_steps,
            tol=tol,
            head_weight_decay=embedder.head_weight_decay,
            generator=torch.Generator().manual_seed(seed),
            curvature="hessian",
            fisher=point,
        )

    stopped = run(0.1, 1000, seed=0)
    assert stopped.converged and 6 <= stopped.n_steps < 1000 and stopped.relative_error <= 0.1
    loose = run(0.3, 1000, seed=0)
    assert loose.converged and loose.n_steps < stopped.n_steps
    full = run(0.0, 1200, seed=1)
    assert not full.converged and full.n_steps == 1200 and full.relative_error < 0.5 * stopped.relative_error
    # Within three of the early run's standard errors.
    distance = np.linalg.norm(stopped.estimate - full.estimate) / np.linalg.norm(full.estimate)
    assert distance < 3 * stopped.relative_error


def test_no_steps_is_the_second_order_optimum_of_the_point_estimate(digits_3_vs_8):
    """variational_steps=0: the start, F + (beta / N) lambda^2 with F the point estimate of
    method="auto" (same head, same seeds), in the same space as the iterated rows."""
    X, y = digits_3_vs_8
    tasks = [(X, y), (X[:120], y[:120])]
    point = FisherTaskEmbedder(random_state=0).fit(tasks)
    start = FisherTaskEmbedder(
        method="variational", variational_steps=0, random_state=0, variational_beta=0.5
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        rows = start.fit_transform(tasks)
    for row, task, fisher_row in zip(rows, tasks, point.transform(tasks)):
        np.testing.assert_allclose(
            row, fisher_row + 0.5 / len(task[1]) * point.trivial_embedding_, rtol=1e-12
        )
    iterated = FisherTaskEmbedder(method="variational", random_state=0, variational_beta=0.5).fit_transform(
        tasks
    )
    assert np.all(np.abs(np.log(iterated / rows)) < np.log(3))


def test_a_run_that_its_cap_ends_warns_with_its_standard_error(digits_3_vs_8):
    """No silent noisy rows: a run that ``variational_steps`` ends before the stopping rule says
    so, naming the task and giving the row's standard error; a run the rule ends, or one with
    the rule off (tol=0), does not."""
    X, y = digits_3_vs_8
    capped = {"method": "variational", "variational_steps": 3, "variational_tol": 1e-3, "random_state": 0}
    message = r"ended its run of method='variational' at variational_steps=3 with the row's estimated relative standard error at \d.*above variational_tol=0.001"
    with pytest.warns(ConvergenceWarning) as caught:
        FisherTaskEmbedder(**capped).fit_transform([(X, y), (X[:150], y[:150])])
    for task, warning in enumerate(caught):
        assert re.match(f"Task {task} " + message, str(warning.message))
    assert len(caught) == 2
    with pytest.warns(ConvergenceWarning, match=r"The task \(X, y\) " + message):
        FisherTaskEmbedder(**capped).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        FisherTaskEmbedder(**{**capped, "variational_tol": 0}).fit_transform([(X, y)])
        FisherTaskEmbedder(method="variational", random_state=0).fit_transform([(X, y)])


# ------------------------------------------------------------------- the trivial embedding
@pytest.mark.parametrize("method", ["auto", "variational"])
def test_single_class_task_has_the_smallest_norm_and_distances_still_work(digits_3_vs_8, method):
    """A single-class task's row is its method's prior term, 0 for point estimates and
    (beta / N) lambda^2 for the variational estimate: the smallest norm among tasks of the
    same examples, raw or trivial-normalised, and the asymmetric distance's complexity term
    ranks it least complex."""
    X, y = digits_3_vs_8
    tasks = [(X, y), (X, X[:, 20] > X[:, 20].mean()), (X, X[:, 36] > 0.5), (X, np.zeros(len(y)))]
    params = {"method": method, "variational_steps": 40, "random_state": 0}
    with pytest.warns(UserWarning, match="Task 3 has a single class"):
        raw_embedder = FisherTaskEmbedder(**params)
        raw = raw_embedder.fit_transform(tasks)
        normalised = FisherTaskEmbedder(normalize="trivial", **params).fit_transform(tasks)
    trivial = raw_embedder.trivial_embedding_
    if method == "variational":
        np.testing.assert_allclose(raw[3], 1e-3 / len(y) * trivial)
        np.testing.assert_allclose(normalised[3], 1.0)
    else:
        assert not raw[3].any() and not normalised[3].any()
    for rows in (raw, normalised):
        norms = np.linalg.norm(rows, axis=1)
        assert norms.argmin() == 3 and norms[3] < 0.5 * norms[:3].min()
    asymmetric = pairwise_task_distances(raw, kind="asymmetric", trivial=trivial)
    assert np.all(np.isfinite(asymmetric))
    if method != "variational":  # normalised rows are the raw ones over one common vector
        normalised_asymmetric = pairwise_task_distances(normalised, kind="asymmetric")
        np.testing.assert_allclose(asymmetric, normalised_asymmetric, atol=1e-9)
    # d_asym(a -> b) = d_sym(a, b) - alpha * d_sym(a, t_0): the single-class source is at
    # distance 0 from the trivial embedding (the zero row, or a multiple of t_0), the others not.
    gain = pairwise_task_distances(raw) - asymmetric
    np.testing.assert_allclose(gain[3], 0.0, atol=1e-9)
    assert np.all(gain[:3] > 1e-3)


@pytest.mark.slow
def test_tasks_run_side_by_side_in_threads_give_the_sequential_rows():
    # torch's forward-mode AD level is global to the process: two threads in it at once failed
    # with "Nested forward mode AD is not supported" (every run of this test, before the lock).
    rng = np.random.RandomState(0)
    tasks = []
    for k in range(4):
        X = rng.normal(size=(96, 8))
        tasks.append((X, (X[:, k] > 0).astype(int)))
    params = {"method": "variational", "variational_steps": 12, "variational_tol": 0.0, "batch_size": 16}
    expected = FisherTaskEmbedder(random_state=0, **params).fit_transform(tasks)
    embedder = FisherTaskEmbedder(random_state=0, n_jobs=2, **params)
    with joblib.parallel_config(backend="threading"):
        np.testing.assert_allclose(embedder.fit_transform(tasks), expected, rtol=1e-12)


# ------------------------------------------- the Gauss-Newton curvature (the default estimator)
def perturbed_weights(module, draws, deviation, activation):
    """Each example's weights ``w_hat + delta_n`` that one forward's draws stand for, (n, *w.shape):
    Flipout's ``delta_n = sigma * epsilon * (s_n r_n^T)``; for the local reparametrisation of a
    Linear layer applied once per example, a ``delta_n`` with ``delta_n x_n`` equal to the drawn
    output noise ``sigma ||x_n|| xi_n`` (the network then computes the same function)."""
    weight = module.weight.detach()
    kind, *tensors = draws
    trailing = (1,) * (weight.dim() - 2)
    if kind == "flipout":
        epsilon, in_signs, out_signs = tensors
        n, (n_out, in_per_group) = len(in_signs), weight.shape[:2]
        groups = getattr(module, "groups", 1)
        channel = (torch.arange(n_out) // (n_out // groups))[:, None] * in_per_group + torch.arange(
            in_per_group
        )
        signs = out_signs.reshape(n, -1)[:, :, None] * in_signs.reshape(n, -1)[:, channel]
        delta = deviation.view(1, -1, 1, *trailing) * epsilon * signs.view(*signs.shape, *trailing)
    else:
        (gaussians,) = tensors
        # An input of all zeros (every ReLU before it off) reads no weight: any delta_n will do.
        direction = activation / activation.norm(dim=1, keepdim=True).clamp_min(1e-300)
        delta = deviation[None, :, None] * gaussians[:, :, None] * direction[:, None, :]
    return weight + delta


def autograd_filter_rows(net, paths, weights, inputs, direction):
    """Mean squared gradient per filter of ``(net(x_n) * direction_n).sum()`` for each example
    ``n`` run alone at its own weights (``weights``: per path, (n, *w.shape)): torch.func."""
    rows = []
    for n in range(len(inputs)):

        def projected(params, n=n):
            return (
                torch.func.functional_call(net, params, (inputs[n : n + 1],)) * direction[n : n + 1]
            ).sum()

        params = {f"{path}.weight": weight[n] for path, weight in zip(paths, weights)}
        gradients = torch.func.grad(projected)(params)
        rows.append(torch.cat([gradients[f"{path}.weight"].square().flatten(1).mean(1) for path in paths]))
    return torch.stack(rows)


def relu_net(kind):
    if kind == "linear":
        return nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)), (5,)
    return (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, groups=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 3 * 3, 3),
        ),
        (2, 5, 5),
    )


@pytest.mark.parametrize("kind", ["linear", "conv"])
@given(seed=st.integers(0, 2**16))
@hypothesis_settings(max_examples=5)
def test_recorded_gradients_are_those_at_the_perturbed_weights(kind, seed):
    """Under the noise, the per-example filter gradients that the recorder reads off each layer's
    input and perturbed output gradient are those of the network at each example's own weights
    ``w_hat + delta_n``, by torch.func on a perturbed copy: the local reparametrisation on a
    Linear-only net (exact there), Flipout on a conv net (grouped), with the draws fixed."""
    torch.manual_seed(seed)
    net, shape = relu_net(kind)
    net = net.double()
    filters = [
        (path, module) for path, module in net.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))
    ]
    n_filters = sum(module.weight.shape[0] for _, module in filters)
    generator = torch.Generator().manual_seed(seed)
    # Noise of the weights' own size: ReLUs switch under it, so the perturbed rows differ.
    precisions = np.random.RandomState(seed).uniform(2.0, 20.0, n_filters)
    perturbation = fisher.VariationalFilterNoise(
        filters, [None] * len(filters), precisions, generator, differentiable=False
    )
    inputs = torch.randn((4, *shape), dtype=torch.float64, generator=generator)
    read = {}
    handles = [
        module.register_forward_hook(
            lambda module, args, output, path=path: read.update({path: args[0].detach()})
        )
        for path, module in filters
    ]
    with torch.enable_grad(), fisher.FilterFisherRecorder(filters) as recorder, perturbation:
        recorder.start_batch(len(inputs), inputs.device)
        outputs = net(inputs)
        direction = torch.randn(outputs.shape, dtype=torch.float64, generator=generator)
        (outputs * direction).sum().backward()
    for handle in handles:
        handle.remove()
    paths = [path for path, _ in filters]
    weights = [
        perturbed_weights(module, draws, deviation, read[path])
        for (path, module), draws, deviation in zip(
            filters, perturbation.last_draws, perturbation.deviations()
        )
    ]
    expected = autograd_filter_rows(net, paths, weights, inputs, direction)
    torch.testing.assert_close(recorder.rows, expected, rtol=1e-9, atol=1e-12)
    kinds = {draws[0] for draws in perturbation.last_draws}
    assert kinds == ({"outputs"} if kind == "linear" else {"outputs", "flipout"})
    clean = [module.weight.detach().expand(len(inputs), *module.weight.shape) for _, module in filters]
    assert not torch.allclose(autograd_filter_rows(net, paths, clean, inputs, direction), expected, rtol=1e-2)


def per_position_copies_rows(module, activation, output_grad):
    """``sum_t sum_{i in k} (d out / d w_t,i)^2`` with a weight copy ``w_t`` of its own at every
    output position ``t`` (the convolution written as unfold and product), per example."""
    n = len(activation)
    positions = output_grad[0, 0].numel()
    groups, n_out = module.groups, module.out_channels
    copies = module.weight.detach().reshape(1, groups, n_out // groups, -1).repeat(positions, 1, 1, 1)
    rows = []
    for example in range(n):
        copies_n = copies.clone().requires_grad_()
        patches = F.unfold(
            activation[example : example + 1],
            module.kernel_size,
            dilation=module.dilation,
            padding=module.padding,
            stride=module.stride,
        ).reshape(groups, -1, positions)
        output = torch.einsum("tgoj,gjt->got", copies_n, patches).reshape(n_out, *output_grad.shape[2:])
        torch.testing.assert_close(output, module(activation[example : example + 1])[0].detach())
        (gradient,) = torch.autograd.grad((output * output_grad[example]).sum(), copies_n)
        rows.append(gradient.square().sum((0, 3)).reshape(n_out))
    return torch.stack(rows)


@given(
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
@hypothesis_settings(max_examples=12)
def test_position_diagonal_squares_are_those_of_a_weight_copy_per_position(
    kernel, stride, padding, dilation, groups, seed
):
    """The curvature of variational_noise="per_position": ``sum_t ||u_t||^2 g_tk^2``, what a
    weight copy at every output position (the paper's independent noise per position) gives,
    by autograd on explicit copies; it drops the cross-position terms of the full square."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(
        4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False
    )
    conv = conv.double()
    activation = torch.randn(3, 4, 7, 6, dtype=torch.float64)
    output_grad = torch.randn_like(conv(activation))
    computed = fisher.position_diagonal_squared_gradients(conv, activation, output_grad)
    torch.testing.assert_close(computed, per_position_copies_rows(conv, activation, output_grad))
    if output_grad[0, 0].numel() > 1:
        full = fisher.squared_filter_gradients(conv, activation, output_grad)
        assert not torch.allclose(computed, full, rtol=1e-3)
    # A Linear layer on sequences: the same per token; on features, the full square.
    linear = nn.Linear(5, 3).double()
    tokens, grads = torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    expected = (tokens.square().sum(2, keepdim=True) * grads.square()).sum(1)
    torch.testing.assert_close(fisher.position_diagonal_squared_gradients(linear, tokens, grads), expected)
    torch.testing.assert_close(
        fisher.position_diagonal_squared_gradients(linear, tokens[:, 0], grads[:, 0]),
        fisher.squared_filter_gradients(linear, tokens[:, 0], grads[:, 0]),
    )


@pytest.fixture(scope="module")
def cnn_digits_task():
    """The small ReLU CNN (folded BatchNorm, grouped conv, Linear) on the 3-vs-8 digits, with
    its head and the exact Fisher (method="exact")."""
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, [3, 8])
    X, y = (X[keep] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32), y[keep]
    exact = FisherTaskEmbedder(probe=small_cnn(), method="exact", random_state=0).fit(X, y)
    cpu = torch.device("cpu")
    probe = prepare_probe(exact.probe_, None, cpu)
    settings = EmbeddingSettings(
        **{name: getattr(exact, name) for name in EmbeddingSettings.__dataclass_fields__}
    )
    head = task_head(probe, ArrayTask(torch.from_numpy(X), y, "X"), settings, cpu).head
    return probe, head, torch.from_numpy(X), torch.as_tensor(y == 8, dtype=torch.long), exact


@pytest.mark.parametrize("noise", ["per_example", "per_position"])
def test_gauss_newton_curvature_without_noise_is_half_the_exact_fisher(cnn_digits_task, noise):
    """With the noise near zero (precisions 1e12), one step's Gauss-Newton curvature on the
    whole task as one batch is ``n_k F_k / 2``, F the exact Fisher (for per_position noise its
    position-diagonal part, the recorder's at zero noise). From a start at the prior (whose own
    curvature is 0, counted as one step), the row's Fisher part is then ``g_1 / n_k = F_k / 2``."""
    probe, head, inputs, codes, exact = cnn_digits_task
    n = len(codes)
    huge = np.full(len(exact.trivial_embedding_), 1e12)
    result = fisher.variational_fisher(
        probe,
        head,
        lambda: iter([(inputs, codes)]),
        n,
        prior=huge,
        initial_precision=huge,
        beta=1e-3,
        max_steps=1,
        tol=0.0,
        head_weight_decay=exact.head_weight_decay,
        generator=torch.Generator().manual_seed(0),
        noise=noise,
        label_method="exact",
    )
    expected = exact.embedding_
    if noise == "per_position":
        with fisher.FilterFisherRecorder(probe.filters, probe.scales, position_diagonal=True) as recorder:
            rows = fisher.per_example_fisher(probe.module, head, inputs, "exact", None, recorder)
        expected = rows.mean(0).numpy()
        assert not np.allclose(expected, exact.embedding_, rtol=0.05)  # the cross terms count here
    # float32 probe, summed in other orders than exact's batches of 64: 1e-6 of the largest.
    np.testing.assert_allclose(
        result.estimate - result.prior_term, expected / 2, rtol=1e-4, atol=1e-6 * expected.max()
    )


def digits_cnn_embedder(**params):
    return FisherTaskEmbedder(probe=small_cnn(), method="variational", **params)


@pytest.fixture(scope="module")
def digits_10_classes():
    X, y = load_digits(return_X_y=True)
    return (X[:512] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32), y[:512]


def test_default_run_converges_agrees_across_seeds_and_with_a_long_run(digits_10_classes, monkeypatch):
    """The default estimator on a small ReLU CNN (10 classes, Monte Carlo labels): its stopping
    rule ends the run (no ConvergenceWarning), two random states on the same probe agree within
    10% (relative L2), and so does a run four times as long with the rule off."""
    results = []
    computed = pipeline.variational_fisher

    def recorded(*args, **kwargs):
        results.append(computed(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(pipeline, "variational_fisher", recorded)
    task = [digits_10_classes]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        first = digits_cnn_embedder(random_state=0).fit_transform(task)[0]
        second = digits_cnn_embedder(random_state=1).fit_transform(task)[0]
    epoch = -(-len(digits_10_classes[1]) // 64)
    assert all(result.converged and result.n_steps < 3 * epoch for result in results)
    long = digits_cnn_embedder(random_state=2, variational_tol=0.0, variational_steps=4 * epoch)
    long_row = long.fit_transform(task)[0]
    assert results[-1].n_steps == 4 * epoch

    def distance(row, reference):
        return np.linalg.norm(row - reference) / np.linalg.norm(reference)

    assert distance(first, second) < 0.1
    assert distance(first, long_row) < 0.1 and distance(second, long_row) < 0.1
