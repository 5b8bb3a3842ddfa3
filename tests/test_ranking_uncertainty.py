"""How uncertain a score's ranking of experts is: the bootstrap interval of its mean weighted
Kendall's tau over tasks (against the bootstrap distribution worked out by hand, and against
the normal approximation), and how often its chosen expert changes when a task's examples are
subsampled (0 for an unambiguous choice, also with more features than examples; about a quarter
for two experts the score cannot tell apart; subsamples of distinct examples, each class's
share)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from sklearn_task2vec.selector import WeightedTauResult, weighted_kendall_tau, weighted_kendall_tau_interval
from sklearn_task2vec.transferability import logme_score
from sklearn_task2vec.zoo import Expert, selection_stability
from sklearn_task2vec.zoo._ground_truth import stratified_subsample

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# Two tasks of four experts: the score orders the experts perfectly on the first task (tau 1)
# and swaps the two worst ones on the second.
ERRORS = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
SCORES = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 1.0, 2.0]])


# ----------------------------------------------------------------------------------------
# The interval of the mean tau over tasks
# ----------------------------------------------------------------------------------------


def test_two_tasks_against_the_bootstrap_distribution_by_hand():
    """Resampling two tasks with taus t1 > t2 gives the mean t2, (t1 + t2) / 2 or t1 with
    probabilities 1/4, 1/2, 1/4: a 95 % interval spans [t2, t1], a 40 % one (quantiles 0.3 and
    0.7) is the middle value alone."""
    t1, t2 = weighted_kendall_tau(SCORES, ERRORS)
    assert t1 == pytest.approx(1.0) and t2 < 0.9
    wide = weighted_kendall_tau_interval(SCORES, ERRORS, n_bootstrap=4000, random_state=0)
    assert wide.tau == pytest.approx((t1 + t2) / 2)
    assert wide.confidence_interval == (pytest.approx(t2), pytest.approx(t1))
    narrow = weighted_kendall_tau_interval(
        SCORES, ERRORS, n_bootstrap=4000, confidence_level=0.4, random_state=0
    )
    assert narrow.confidence_interval == (pytest.approx((t1 + t2) / 2), pytest.approx((t1 + t2) / 2))


def test_many_tasks_match_the_normal_approximation():
    """With 300 tasks the percentile interval is close to mean +- z * sd / sqrt(n)."""
    rng = np.random.RandomState(0)
    errors = rng.uniform(size=(300, 6))
    scores = -errors + rng.normal(scale=0.3, size=errors.shape)
    result = weighted_kendall_tau_interval(scores, errors, n_bootstrap=4000, random_state=0)
    taus = weighted_kendall_tau(scores, errors)
    half_width = stats.norm.ppf(0.975) * taus.std() / np.sqrt(len(taus))
    low, high = result.confidence_interval
    assert result.tau == pytest.approx(taus.mean(), rel=1e-12)
    assert low == pytest.approx(taus.mean() - half_width, abs=0.1 * half_width)
    assert high == pytest.approx(taus.mean() + half_width, abs=0.1 * half_width)


def test_tasks_without_a_tau_are_left_out():
    """A task whose scores (or errors) are all equal has no tau: the result is that of the
    other tasks alone, resamples included."""
    rng = np.random.RandomState(1)
    errors = rng.uniform(size=(12, 4))
    scores = -errors + rng.normal(scale=0.3, size=errors.shape)
    with_constant = np.insert(scores, [0, 5], 1.0, axis=0)
    errors_with_constant = np.insert(errors, [0, 5], rng.uniform(size=4), axis=0)
    result = weighted_kendall_tau_interval(with_constant, errors_with_constant, random_state=3)
    alone = weighted_kendall_tau_interval(scores, errors, random_state=3)
    assert result.tau == alone.tau and result.confidence_interval == alone.confidence_interval
    assert np.isnan(result.per_task[[0, 6]]).all() and np.sum(np.isnan(result.per_task)) == 2
    assert "n_tasks=12" in repr(result)


@settings(max_examples=30)
@given(
    arrays(np.float64, (6, 4), elements=st.floats(0, 1)),
    arrays(np.float64, (6, 4), elements=st.floats(-1, 1)),
    st.floats(0.5, 0.95),
)
def test_interval_properties(errors, scores, confidence_level):
    """Within the range of the tasks' taus; at a higher confidence level, never narrower."""
    taus = weighted_kendall_tau(scores, errors)
    if np.sum(~np.isnan(taus)) < 2:
        with pytest.raises(ValueError, match="needs two at least"):
            weighted_kendall_tau_interval(scores, errors)
        return
    result = weighted_kendall_tau_interval(
        scores, errors, n_bootstrap=200, confidence_level=confidence_level, random_state=0
    )
    wider = weighted_kendall_tau_interval(
        scores, errors, n_bootstrap=200, confidence_level=0.99, random_state=0
    )
    low, high = result.confidence_interval
    assert np.nanmin(taus) - 1e-12 <= low <= high <= np.nanmax(taus) + 1e-12
    assert wider.confidence_interval[0] <= low and high <= wider.confidence_interval[1]
    assert isinstance(result, WeightedTauResult) and result.n_bootstrap == 200


def test_interval_refuses_bad_input():
    with pytest.raises(ValueError, match="1 of the 2 tasks have a weighted tau"):
        weighted_kendall_tau_interval([[1.0, 2.0], [1.0, 1.0]], [[0.1, 0.2], [0.1, 0.2]])
    with pytest.raises(ValueError, match="same shape"):
        weighted_kendall_tau_interval(SCORES[:, :3], ERRORS)
    with pytest.raises(InvalidParameterError, match="confidence_level"):
        weighted_kendall_tau_interval(SCORES, ERRORS, confidence_level=1.0)
    with pytest.raises(InvalidParameterError, match="n_bootstrap"):
        weighted_kendall_tau_interval(SCORES, ERRORS, n_bootstrap=0)


# ----------------------------------------------------------------------------------------
# How often the chosen expert changes when a task's examples are resampled
# ----------------------------------------------------------------------------------------


def linear_expert(weights, name):
    """An expert whose features are ``weights @ x`` (one feature for a vector of weights)."""
    weights = torch.as_tensor(np.atleast_2d(weights), dtype=torch.float32)
    expert = Expert(nn.Linear(weights.shape[1], weights.shape[0], bias=False), name)
    with torch.no_grad():
        expert.module.weight.copy_(weights)
    return expert


FIRST, SECOND = linear_expert([1.0, 0.0], "first"), linear_expert([0.0, 1.0], "second")


def test_an_unambiguous_choice_never_changes():
    """Each task is one expert's feature; the two other experts see noise, which the score
    cannot order (the choice is the best expert's, not the worst's, which would change)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 3)).astype(np.float32)
    experts = [linear_expert(list(row), f"feature {k}") for k, row in enumerate(np.eye(3))]
    tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]
    changes = selection_stability(experts, tasks, scores=["logme", "h_score"], n_resamples=20, random_state=0)
    assert sorted(changes) == ["h_score", "logme"]
    for frequency in changes.values():
        np.testing.assert_array_equal(frequency, [0.0, 0.0])


def test_logme_choice_is_stable_beside_an_expert_with_more_features_than_examples():
    """The real-network zoo's case: a wide expert (60 features, 56 training examples) beside the
    one expert that sees the labels' feature. On the split LogME prefers the informative one,
    and on every subsample too. A bootstrap resample would repeat examples: with fewer distinct
    examples than rows, each class indicator is a linear function of the wide expert's
    features, whose evidence is then unbounded, and the choice would move to the wide expert
    on every resample (change rate 1)."""
    rng = np.random.RandomState(0)
    n_inputs = 100
    wide = linear_expert(rng.normal(size=(60, n_inputs)), "wide")
    informative = linear_expert([1.0] + [0.0] * (n_inputs - 1), "informative")
    tasks = []
    for _ in range(2):
        X = rng.normal(size=(80, n_inputs)).astype(np.float32)
        tasks.append((X, X[:, 0] + 0.1 * rng.normal(size=80) > 0))
    changes = selection_stability(
        [wide, informative], tasks, scores=["logme"], n_resamples=20, random_state=0
    )
    np.testing.assert_array_equal(changes["logme"], [0.0, 0.0])

    X, labels = tasks[0]
    with torch.no_grad():
        features = wide.module(torch.from_numpy(X[:56])).numpy().astype(np.float64)
    resample = rng.choice(56, size=56)
    assert np.isfinite(logme_score(features, labels[:56]))
    assert logme_score(features[resample], labels[:56][resample]) == np.inf


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_subsamples_are_distinct_examples_of_each_class(counts, fraction, seed):
    """``ceil(fraction * count)`` distinct examples of each class, in increasing order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    rows = stratified_subsample(labels, fraction, np.random.default_rng(seed))
    assert np.all(np.diff(rows) > 0)
    for code, count in enumerate(counts):
        assert np.sum(labels[rows] == code) == np.ceil(fraction * count)


def test_indistinguishable_experts_change_about_a_quarter_of_the_time():
    """Labels that depend on both features alike: the two experts' score difference on a
    task's split is a draw ``D ~ N(0, s^2)``, and on a resample of it about ``D + N(0, s^2)``,
    whose sign differs from ``D``'s with probability ``E[Phi(-|D| / s)] = 1/4``."""
    rng = np.random.RandomState(0)
    tasks = []
    for _ in range(12):
        X = rng.normal(size=(80, 2)).astype(np.float32)
        tasks.append((X, X.sum(axis=1) + rng.normal(scale=0.5, size=80) > 0))
    changes = selection_stability([FIRST, SECOND], tasks, scores=["h_score"], n_resamples=30, random_state=0)
    frequency = changes["h_score"]
    assert np.all((frequency >= 0) & (frequency <= 0.5 + 0.2))
    assert 0.12 < frequency.mean() < 0.4
    again = selection_stability([FIRST, SECOND], tasks, scores=["h_score"], n_resamples=30, random_state=0)
    np.testing.assert_array_equal(again["h_score"], frequency)


def test_stability_refuses_bad_requests():
    X = np.random.RandomState(0).normal(size=(20, 2)).astype(np.float32)
    tasks = [(X, X[:, 0] > 0)]
    with pytest.raises(ValueError, match="distinct names"):
        selection_stability([FIRST], tasks, scores=["kendall"])
    with pytest.raises(ValueError, match="source head"):
        selection_stability([FIRST], tasks, scores=["leep"])
    with pytest.raises(InvalidParameterError, match="n_resamples"):
        selection_stability([FIRST], tasks, n_resamples=0)
    for fraction in (0, 1, 1.5):
        with pytest.raises(InvalidParameterError, match="subsample"):
            selection_stability([FIRST], tasks, subsample=fraction)
