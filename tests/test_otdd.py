"""The optimal transport dataset distance (Alvarez-Melis & Fusi, NeurIPS 2020) against its
definition evaluated by brute force: every permutation of equal-size tasks for the outer
problem, a linear program (scipy's HiGHS, not POT) for the label distances, matrix square
roots for the Gaussian closed form; and its properties on generated tasks: 0 from itself,
symmetric, non-negative, blind to the order of the examples and to the names of the labels."""

import itertools
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linprog
from sklearn.neighbors import NearestNeighbors
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_task2vec import _otdd
from sklearn_task2vec.distances import otdd_distance, pairwise_otdd_distances

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

METHODS = ("exact", "gaussian", "sliced")


@st.composite
def labelled_tasks(draw, n_examples=None, n_features=None):
    """A task ``(X, y)``: 2 to 7 examples (or ``n_examples``) of 1 to 3 features in [-5, 5]
    (or ``n_features``), 1 to 3 classes, duplicated examples possible."""
    n = draw(st.integers(2, 7)) if n_examples is None else n_examples
    d = draw(st.integers(1, 3)) if n_features is None else n_features
    X = draw(arrays(np.float64, (n, d), elements=st.floats(-5, 5, allow_subnormal=False)))
    y = draw(arrays(np.int64, n, elements=st.integers(0, 2)))
    return X, y


@st.composite
def task_pairs(draw, equal_sizes=False):
    """Two tasks with the same number of features (and of examples, if ``equal_sizes``)."""
    first = draw(labelled_tasks(n_examples=draw(st.integers(2, 5)) if equal_sizes else None))
    n_examples = len(first[0]) if equal_sizes else None
    return first, draw(labelled_tasks(n_examples=n_examples, n_features=first[0].shape[1]))


def classes_of(task):
    X, y = task
    return {label: X[y == label] for label in np.unique(y)}


def transport_lp(cost):
    """The optimal transport cost between uniform weights by linear programming (HiGHS)."""
    n, m = cost.shape
    rows = np.kron(np.eye(n), np.ones(m))
    columns = np.kron(np.ones(n), np.eye(m))
    result = linprog(
        cost.ravel(),
        A_eq=np.vstack([rows, columns]),
        b_eq=np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)]),
        bounds=(0, None),
        method="highs",
    )
    assert result.status == 0
    return result.fun


def squared(first, second):
    return ((first[:, None, :] - second[None, :, :]) ** 2).sum(axis=2)


def brute_force_otdd(task_a, task_b, label_distance):
    """min over permutations of the mean ground cost ||x - x'||^2 + W^2(class, class'): the
    OTDD of two equal-size tasks, whose optimal couplings include a permutation (Birkhoff)."""
    (X, y), (Z, v) = task_a, task_b
    classes_a, classes_b = classes_of(task_a), classes_of(task_b)
    labels = {(a, b): label_distance(classes_a[a], classes_b[b]) for a in classes_a for b in classes_b}
    cost = squared(X, Z) + np.array([[labels[a, b] for b in v] for a in y])
    return min(cost[np.arange(len(X)), list(order)].mean() for order in itertools.permutations(range(len(Z))))


def exact_label_distance(first, second):
    return transport_lp(squared(first, second))


def psd_sqrt(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def bures_label_distance(first, second):
    """||mu - mu'||^2 + tr S + tr S' - 2 tr (S^1/2 S' S^1/2)^1/2, covariances with weights 1/n."""
    mean_a, mean_b = first.mean(axis=0), second.mean(axis=0)
    cov_a = (first - mean_a).T @ (first - mean_a) / len(first)
    cov_b = (second - mean_b).T @ (second - mean_b) / len(second)
    root = psd_sqrt(cov_a)
    cross = np.trace(psd_sqrt(root @ cov_b @ root))
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def diagonal_gaussian_rows(task):
    """Each example as [x, class mean, class standard deviations]."""
    X, y = task
    stats = {label: np.concatenate([X[y == label].mean(0), X[y == label].std(0)]) for label in np.unique(y)}
    return np.hstack([X, np.array([stats[label] for label in y])])


# ----------------------------------------------------------------------------------------
# The definition
# ----------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(task_pairs(equal_sizes=True))
def test_exact_is_the_definition(pair):
    task_a, task_b = pair
    expected = brute_force_otdd(task_a, task_b, exact_label_distance)
    assert otdd_distance(task_a, task_b) == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=40)
@given(task_pairs(equal_sizes=True))
def test_gaussian_is_the_bures_closed_form(pair):
    task_a, task_b = pair
    expected = brute_force_otdd(task_a, task_b, bures_label_distance)
    # Square roots of singular covariances (the reference's) are accurate to about 1e-8 only.
    assert otdd_distance(task_a, task_b, method="gaussian") == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_gaussian_closed_form_on_full_rank_classes():
    """Classes with more examples than features (the QR factor), unequal task sizes: the
    label distances against scipy's sqrtm, the outer problem against the linear program."""
    rng = np.random.RandomState(0)
    task_a = (rng.normal(size=(30, 3)), np.repeat([0, 1, 2], 10))
    task_b = (rng.normal(size=(24, 3)) @ np.diag([1.0, 2.0, 0.5]) + 1.0, np.repeat(["p", "q"], 12))

    def sqrtm_bures(first, second):
        mean_a, mean_b = first.mean(0), second.mean(0)
        cov_a, cov_b = np.cov(first.T, bias=True), np.cov(second.T, bias=True)
        root = scipy.linalg.sqrtm(cov_a).real
        cross = np.trace(scipy.linalg.sqrtm(root @ cov_b @ root).real)
        return ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b) - 2 * cross

    classes_a, classes_b = classes_of(task_a), classes_of(task_b)
    labels = {(a, b): sqrtm_bures(classes_a[a], classes_b[b]) for a in classes_a for b in classes_b}
    cost = squared(task_a[0], task_b[0]) + np.array([[labels[a, b] for b in task_b[1]] for a in task_a[1]])
    expected = transport_lp(cost)
    assert otdd_distance(task_a, task_b, method="gaussian") == pytest.approx(expected, rel=1e-9)


@settings(max_examples=30)
@given(task_pairs(), st.integers(0, 3))
def test_exact_and_gaussian_agree_on_classes_of_one_point(pair, seed):
    """A class whose examples are all equal is a Dirac: its Gaussian is exact."""
    rng = np.random.RandomState(seed)
    (X, y), (Z, v) = pair
    task_a = (rng.normal(size=(3, X.shape[1]))[y], y)
    task_b = (rng.normal(size=(3, X.shape[1]))[v], v)
    assert otdd_distance(task_a, task_b, method="gaussian") == pytest.approx(
        otdd_distance(task_a, task_b), rel=1e-9, abs=1e-9
    )


@settings(max_examples=30)
@given(task_pairs(equal_sizes=True), st.integers(1, 3))
def test_sliced_is_below_the_diagonal_gaussian_otdd(pair, bases):
    """With whole orthonormal bases of directions, each direction's one-dimensional problem
    costs at most the projection of the optimal coupling: never above the OTDD with
    diagonal-Gaussian label distances (brute force over permutations of the augmented rows)."""
    task_a, task_b = pair
    rows_a, rows_b = diagonal_gaussian_rows(task_a), diagonal_gaussian_rows(task_b)
    cost = squared(rows_a, rows_b)
    upper = min(
        cost[np.arange(len(rows_a)), list(order)].mean()
        for order in itertools.permutations(range(len(rows_b)))
    )
    sliced = otdd_distance(
        task_a, task_b, method="sliced", n_projections=bases * rows_a.shape[1], random_state=0
    )
    assert 0.0 <= sliced <= upper + 1e-9 * (1.0 + upper)


@settings(max_examples=30)
@given(labelled_tasks(), arrays(np.float64, 3, elements=st.floats(-3, 3)))
def test_a_translation_is_twice_its_squared_length(task, shift):
    """Moving every example by v moves every class mean by v: ||v||^2 for the features and as
    much for the labels, with every method (the sliced one with whole bases of directions)."""
    X, y = task
    v = shift[: X.shape[1]]
    moved = (X + v, y)
    expected = 2.0 * float(v @ v)
    assert otdd_distance(task, moved) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert otdd_distance(task, moved, method="gaussian") == pytest.approx(expected, rel=1e-9, abs=1e-9)
    sliced = otdd_distance(task, moved, method="sliced", n_projections=6 * X.shape[1], random_state=1)
    assert sliced == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_sliced_estimates_the_diagonal_gaussian_otdd():
    """On tasks that do not differ by a translation, the sliced value is below the exact
    diagonal-Gaussian OTDD and of its order (a lower bound, not a translation's equality)."""
    rng = np.random.RandomState(0)
    task_a = (rng.normal(size=(60, 4)), rng.randint(0, 3, 60))
    task_b = (rng.normal(size=(60, 4)) * [2.0, 1.0, 0.5, 1.0] + [1.0, 0.0, 0.0, -1.0], rng.randint(0, 2, 60))
    rows_a, rows_b = diagonal_gaussian_rows(task_a), diagonal_gaussian_rows(task_b)
    exact = transport_lp(squared(rows_a, rows_b))
    sliced = otdd_distance(task_a, task_b, method="sliced", n_projections=12 * 20, random_state=0)
    assert 0.3 * exact < sliced <= exact


# ----------------------------------------------------------------------------------------
# Properties on generated tasks
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=40)
@given(task=labelled_tasks(), seed=st.integers(0, 2**16))
def test_a_task_is_at_distance_zero_from_itself(method, task, seed):
    X, y = task
    order = np.random.RandomState(seed).permutation(len(y))
    assert abs(otdd_distance(task, task, method=method, random_state=0)) <= 1e-8
    assert abs(otdd_distance(task, (X[order], y[order]), method=method, random_state=0)) <= 1e-8


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=40)
@given(pair=task_pairs())
def test_symmetric_and_non_negative(method, pair):
    task_a, task_b = pair
    forward = otdd_distance(task_a, task_b, method=method, random_state=0)
    backward = otdd_distance(task_b, task_a, method=method, random_state=0)
    assert forward >= 0.0
    assert forward == pytest.approx(backward, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
@settings(max_examples=30)
@given(pair=task_pairs(), seed=st.integers(0, 2**16))
def test_blind_to_the_order_of_examples_and_the_names_of_labels(method, pair, seed):
    (X, y), task_b = pair
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(y))
    names = np.array(["cat", "dog", "emu"])[rng.permutation(3)]
    renamed = (X[order], names[y[order]])
    expected = otdd_distance((X, y), task_b, method=method, random_state=0)
    assert otdd_distance(renamed, task_b, method=method, random_state=0) == pytest.approx(
        expected, rel=1e-9, abs=1e-12
    )


def test_labels_matter():
    """The same features with labels split otherwise are not at distance 0 (the label term)."""
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    together = (X, np.array([0, 0, 1, 1]))
    mixed = (X, np.array([0, 1, 0, 1]))
    for method in METHODS:
        assert otdd_distance(together, mixed, method=method, random_state=0) > 1.0


def test_class_spreads_matter():
    """The same features and class means, classes of other spreads: a label term only. Exact:
    each class {-a, a} against {-2, -1, 1, 2} costs 1/2; Gaussian: the coupling x -> x with
    (sigma - sqrt(2.5))^2 for sigma = 1, 2; sliced: below the Gaussian, above 0."""
    X = np.array([[-1.0], [1.0], [-2.0], [2.0]])
    two_spreads = (X, np.array([0, 0, 1, 1]))
    one_class = (X, np.zeros(4, dtype=int))
    assert otdd_distance(two_spreads, one_class) == pytest.approx(0.5, rel=1e-12)
    gaussian = ((1 - np.sqrt(2.5)) ** 2 + (2 - np.sqrt(2.5)) ** 2) / 2
    assert otdd_distance(two_spreads, one_class, method="gaussian") == pytest.approx(gaussian, rel=1e-12)
    sliced = otdd_distance(two_spreads, one_class, method="sliced", n_projections=30, random_state=0)
    assert 0.5 * gaussian < sliced <= gaussian


# ----------------------------------------------------------------------------------------
# Pairwise matrices, subsampling, probes
# ----------------------------------------------------------------------------------------


def some_tasks(n_tasks=4, seed=0, n=30, d=3):
    rng = np.random.RandomState(seed)
    return [(rng.normal(size=(n, d)) + k, rng.randint(0, 2 + k % 2, n)) for k in range(n_tasks)]


@pytest.mark.parametrize("method", METHODS)
def test_pairwise_is_every_pair(method):
    tasks, others = some_tasks(3), some_tasks(2, seed=1)
    matrix = pairwise_otdd_distances(tasks, method=method, random_state=0)
    expected = [[otdd_distance(a, b, method=method, random_state=0) for b in tasks] for a in tasks]
    np.testing.assert_allclose(matrix, expected, rtol=1e-9, atol=1e-9)
    assert np.array_equal(matrix, matrix.T) and np.all(np.diag(matrix) == 0.0)
    rectangle = pairwise_otdd_distances(tasks, others, method=method, random_state=0)
    expected = [[otdd_distance(a, b, method=method, random_state=0) for b in others] for a in tasks]
    np.testing.assert_allclose(rectangle, expected, rtol=1e-9, atol=1e-9)


def test_precomputed_matrix_in_scikit_learn():
    tasks = some_tasks(4)
    matrix = pairwise_otdd_distances(tasks, method="gaussian")
    neighbours = (
        NearestNeighbors(n_neighbors=1, metric="precomputed").fit(matrix).kneighbors(return_distance=False)
    )
    # Task k is shifted by k: its nearest task is a neighbour in k.
    assert all(abs(int(neighbours[k, 0]) - k) == 1 for k in range(4))


@pytest.mark.parametrize("method", METHODS)
def test_subsampling(method):
    (X, y), other = some_tasks(2, n=40)
    task = (X, y)
    first = otdd_distance(task, other, method=method, max_points=15, random_state=3)
    assert otdd_distance(task, other, method=method, max_points=15, random_state=3) == first
    assert otdd_distance(task, task, method=method, max_points=15, random_state=3) <= 1e-8
    assert otdd_distance(task, other, method=method, max_points=40, random_state=3) == pytest.approx(
        otdd_distance(task, other, method=method, random_state=3), rel=1e-12
    )


def test_images_through_a_probe():
    """Images go through the probe in batches; the same as the probe's features given as inputs,
    from arrays, a Dataset or a DataLoader; the user's module is left in training mode."""
    torch.manual_seed(0)
    probe = nn.Sequential(nn.Flatten(), nn.Linear(12, 4, dtype=torch.float64), nn.Tanh())
    rng = np.random.RandomState(0)
    images_a, images_b = rng.normal(size=(20, 3, 2, 2)), rng.normal(size=(16, 3, 2, 2)) + 0.5
    labels_a, labels_b = rng.randint(0, 2, 20), rng.randint(0, 3, 16)
    with torch.no_grad():
        features_a, features_b = (probe(torch.from_numpy(x)).numpy() for x in (images_a, images_b))
    expected = otdd_distance((features_a, labels_a), (features_b, labels_b))
    assert otdd_distance(
        (images_a, labels_a), (images_b, labels_b), probe=probe, batch_size=7
    ) == pytest.approx(expected, rel=1e-9)
    dataset = TensorDataset(torch.from_numpy(images_b), torch.from_numpy(labels_b))
    assert otdd_distance((images_a, labels_a), dataset, probe=probe) == pytest.approx(expected, rel=1e-9)
    loader = DataLoader(dataset, batch_size=5)
    assert otdd_distance((images_a, labels_a), loader, probe=probe) == pytest.approx(expected, rel=1e-9)
    assert probe.training


# ----------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------


def test_refuses_bad_input():
    X, y = np.random.RandomState(0).normal(size=(6, 2)), np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="task b has 3 features but task a has 2"):
        otdd_distance((X, y), (np.ones((6, 3)), y))
    with pytest.raises(ValueError, match="task b has a single example"):
        otdd_distance((X, y), (X[:1], y[:1]))
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="task b: inputs contain NaN or infinity"):
        otdd_distance((X, y), (bad, y))
    with pytest.raises(ValueError, match="task a: with probe=None the inputs are the features"):
        otdd_distance((np.ones((6, 1, 2, 2)), y), (X, y))
    with pytest.raises(TypeError, match="task a holds text"):
        otdd_distance((["a text"] * 6, y), (X, y))
    with pytest.raises(ValueError, match="task a: labels are continuous"):
        otdd_distance((X, np.linspace(0, 1, 6)), (X, y))
    with pytest.raises(InvalidParameterError, match="method"):
        otdd_distance((X, y), (X, y), method="sinkhorn")
    with pytest.raises(InvalidParameterError, match="max_points"):
        otdd_distance((X, y), (X, y), max_points=1)
    with pytest.raises(TypeError, match="got one \\(inputs, labels\\) pair"):
        pairwise_otdd_distances((X, y))
    with pytest.raises(ValueError, match="tasks is empty"):
        pairwise_otdd_distances([])
    with pytest.raises(ValueError, match="task 1 of other_tasks has 3 features but task 0 has 2"):
        pairwise_otdd_distances([(X, y)], [(X, y), (np.ones((6, 3)), y)])


@pytest.mark.parametrize("method", ["exact", "gaussian"])
def test_refuses_exact_problems_too_large_before_computing(method):
    large = (np.zeros((5001, 1)), np.zeros(5001, dtype=int))
    with pytest.raises(ValueError, match="method='sliced', which scales") as info:
        otdd_distance(large, large, method=method)
    assert "25,010,001 pairs" in str(info.value) and "max_points=" in str(info.value)
    small = (np.arange(6.0)[:, None], np.zeros(6, dtype=int))
    pairwise_otdd_distances([large, small], method=method)  # the large task is never paired with itself
    assert otdd_distance(large, large, method=method, max_points=100, random_state=0) == 0.0


def test_a_solver_that_stops_early_is_an_error(monkeypatch):
    monkeypatch.setattr(_otdd, "_SIMPLEX_MAX_PIVOTS", 1)
    rng = np.random.RandomState(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # POT's own warning, before the error
        with pytest.raises(RuntimeError, match="did not reach the optimum"):
            otdd_distance((rng.normal(size=(30, 2)), np.zeros(30)), (rng.normal(size=(30, 2)), np.zeros(30)))


def test_missing_pot_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ot", None)
    X, y = np.eye(3), np.arange(3)
    with pytest.raises(ImportError, match=r"sklearn-task2vec\[ot\]"):
        otdd_distance((X, y), (X, y))
