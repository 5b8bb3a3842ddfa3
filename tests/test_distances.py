"""The symmetric TASK2VEC distance (paper, sec. 3.3) against a naive loop over pairs."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cosine

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.distances import (
    asymmetric_distance,
    pairwise_task_distances,
    symmetric_distance,
    task_distance_metric,
)


def naive_symmetric_distance(a, b):
    """d_cos(a / (a + b), b / (a + b)) with scipy, leaving out coordinates where a + b == 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = (a + b) > 0
    if not keep.any():
        return 0.0
    total = (a + b)[keep]
    return cosine(a[keep] / total, b[keep] / total)


def naive_pairwise(X, Y):
    return np.array([[naive_symmetric_distance(x, y) for y in Y] for x in X])


def embeddings(n, n_filters=20, seed=0, sparsity=0.3):
    """Fisher-like non-negative rows over several orders of magnitude, with some exact zeros."""
    rng = np.random.RandomState(seed)
    X = np.exp(rng.normal(scale=2.0, size=(n, n_filters)))
    X[rng.uniform(size=X.shape) < sparsity] = 0.0
    X[:, 0] = 0.0  # a filter no task uses
    return X


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_loop(seed):
    X, Y = embeddings(7, seed=seed), embeddings(5, seed=seed + 10)
    np.testing.assert_allclose(pairwise_task_distances(X, Y), naive_pairwise(X, Y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pairwise_task_distances(X), naive_pairwise(X, X), rtol=1e-10, atol=1e-12)
    for x, y in zip(X, Y):
        assert symmetric_distance(x, y) == pytest.approx(naive_symmetric_distance(x, y), rel=1e-10, abs=1e-12)


def test_tiling_does_not_change_the_result():
    """Several tiles of pairs, on and off the diagonal, give what each pair alone gives."""
    X, Y = embeddings(75, seed=3), embeddings(40, seed=4)  # tiles are 32 x 32 pairs
    np.testing.assert_allclose(pairwise_task_distances(X, Y), naive_pairwise(X, Y), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pairwise_task_distances(X), naive_pairwise(X, X), rtol=1e-10, atol=1e-12)


def test_float32_is_computed_in_float32_and_close_to_float64():
    """Like scikit-learn's pairwise distances: float32 in, float32 out, about 1e-6 accurate."""
    X, Y = embeddings(30, n_filters=2000, seed=6), embeddings(20, n_filters=2000, seed=7)
    exact = pairwise_task_distances(X, Y)
    single = pairwise_task_distances(X.astype(np.float32), Y.astype(np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, atol=2e-6)
    assert pairwise_task_distances(X.astype(np.float32), Y).dtype == np.float64  # mixed: float64
    single_self = pairwise_task_distances(X.astype(np.float32))
    assert np.array_equal(single_self, single_self.T) and not single_self.diagonal().any()
    np.testing.assert_allclose(single_self, pairwise_task_distances(X), atol=2e-6)


def test_entries_far_below_the_largest_of_their_filter_are_not_lost():
    """Filters of very different scales (float32 spans 1e-38..3e38): each filter is rescaled
    by its own power of two, so a filter of tiny entries still counts."""
    rng = np.random.RandomState(8)
    X = np.exp(rng.normal(size=(6, 50)))
    X[:, :25] *= 1e-60
    X[:, 25:] *= 1e60
    expected = naive_pairwise(X, X)
    np.testing.assert_allclose(pairwise_task_distances(X), expected, rtol=1e-10, atol=1e-12)
    # 1e-30 and 1e30 are float32 numbers; their ratio is not (a common scale would flush one).
    single = np.hstack([X[:, :25] * 1e30, X[:, 25:] * 1e-30]).astype(np.float32)
    np.testing.assert_allclose(pairwise_task_distances(single), expected, atol=2e-6)


def test_symmetric_with_zero_diagonal_exactly():
    X = embeddings(12, seed=5)
    X = np.vstack([X, X[3], 2.0 * X[4]])  # duplicates and a rescaled copy
    D = pairwise_task_distances(X)
    assert D.dtype == np.float64 and D.shape == (14, 14)
    np.testing.assert_array_equal(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0.0)
    assert D[3, 12] == 0.0  # an exact duplicate is at distance 0
    assert np.all((D >= 0) & (D <= 1))
    # Off the diagonal, the matrix agrees with the X-versus-Y path.
    np.testing.assert_allclose(D, pairwise_task_distances(X, X.copy()), atol=1e-12)


def test_symmetric_distance_is_symmetric_and_matches_pairwise():
    X = embeddings(6, seed=6)
    D = pairwise_task_distances(X, X.copy())
    for i in range(6):
        for j in range(6):
            assert symmetric_distance(X[i], X[j]) == symmetric_distance(X[j], X[i])
            assert symmetric_distance(X[i], X[j]) == pytest.approx(D[i, j], abs=1e-12)


def test_invariant_to_a_common_coordinate_wise_scaling():
    # Paper, sec. 3.3: dividing by F_a + F_b cancels any positive per-filter scale.
    X, Y = embeddings(8, seed=7), embeddings(6, seed=8)
    scale = np.exp(np.random.RandomState(9).uniform(-6, 6, size=X.shape[1]))
    np.testing.assert_allclose(
        pairwise_task_distances(X * scale, Y * scale), pairwise_task_distances(X, Y), atol=1e-12
    )
    np.testing.assert_allclose(pairwise_task_distances(X * scale), pairwise_task_distances(X), atol=1e-12)
    assert symmetric_distance(X[0] * scale, Y[0] * scale) == pytest.approx(
        symmetric_distance(X[0], Y[0]), abs=1e-12
    )


def test_zeros_handled_without_nan_or_warnings():
    a = np.array([0.0, 1.0, 2.0, 0.0])
    b = np.array([0.0, 1.0, 0.0, 3.0])
    zero = np.zeros(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Coordinates where both are zero are left out.
        assert symmetric_distance(a, b) == pytest.approx(naive_symmetric_distance(a[1:], b[1:]))
        assert symmetric_distance(zero, zero) == 0.0
        assert symmetric_distance(zero, a) == 1.0
        D = pairwise_task_distances(np.vstack([a, b, zero, zero]))
        assert np.all(np.isfinite(D))
        assert D[2, 3] == 0.0 and D[0, 2] == D[1, 3] == 1.0
        # Extreme magnitudes neither overflow nor drop tiny non-zero entries.
        huge, tiny = np.finfo(float).max, 1e-320
        assert symmetric_distance([huge, huge], [huge, 0.0]) == pytest.approx(
            naive_symmetric_distance([1, 1], [1, 0])
        )
        assert symmetric_distance([1.0, tiny], [1.0, 0.0]) == pytest.approx(
            naive_symmetric_distance([1, 1], [1, 0])
        )


def test_disjoint_supports_are_at_distance_one():
    assert symmetric_distance([1.0, 0.0, 2.0], [0.0, 5.0, 0.0]) == 1.0
    assert symmetric_distance([1.0, 2.0], [1.0, 2.0]) == 0.0


@pytest.mark.parametrize(
    "a, b, match",
    [
        ([1.0, -1.0], [1.0, 1.0], "negative"),
        ([1.0, np.nan], [1.0, 1.0], "NaN"),
        ([1.0, 1.0], [np.inf, 1.0], "infinity"),
        ([1.0, 1.0], [1.0, 1.0, 1.0], "same length"),
        ([[1.0, 1.0]], [1.0, 1.0], "1-D"),
        ([], [], "0 feature"),
    ],
)
def test_symmetric_distance_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        symmetric_distance(a, b)


@pytest.mark.parametrize(
    "X, Y, match",
    [
        ([[1.0, -1.0]], None, "negative"),
        ([[1.0, 1.0]], [[1.0, -1e-9]], "negative"),
        ([[1.0, np.nan]], None, "NaN"),
        ([[1.0, 1.0]], [[np.inf, 1.0]], "infinity"),
        ([[1.0, 1.0]], [[1.0, 1.0, 1.0]], "same number of filters"),
        ([1.0, 1.0], None, "2D array"),
        (np.zeros((0, 3)), None, "0 sample"),
        ([["a", "b"]], None, "convert"),
    ],
)
def test_pairwise_bad_input(X, Y, match):
    with pytest.raises(ValueError, match=match):
        pairwise_task_distances(X, Y)


def test_on_fisher_embeddings():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 4))
    tasks = [(X, X[:, 0] > 0), (X, X[:, 0] > 0.1), (X, X[:, 3] > 0)]
    F = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    D = pairwise_task_distances(F)
    np.testing.assert_allclose(D, naive_pairwise(F, F), atol=1e-12)
    # Nearly the same task is nearer than a task on another feature.
    assert D[0, 1] < D[0, 2]


# ---------------------------------------------------------------- asymmetric distance
def _random_embeddings(seed, n=6, k=12):
    rng = np.random.RandomState(seed)
    return rng.gamma(0.5, size=(n, k)) * (rng.uniform(size=(n, k)) > 0.2)


def test_asymmetric_is_the_papers_formula_row_by_row():
    F = _random_embeddings(0)
    trivial = np.random.RandomState(1).uniform(0.5, 2.0, size=F.shape[1])
    matrix = pairwise_task_distances(F, kind="asymmetric", alpha=0.3, trivial=trivial)
    for i in range(len(F)):
        for j in range(len(F)):
            expected = symmetric_distance(F[i], F[j]) - 0.3 * symmetric_distance(F[i], trivial)
            assert matrix[i, j] == pytest.approx(expected, abs=1e-12)
            assert asymmetric_distance(F[i], F[j], trivial=trivial, alpha=0.3) == pytest.approx(
                expected, abs=1e-12
            )
    assert not np.allclose(matrix, matrix.T)  # sources are rows


def test_asymmetric_in_the_trivial_normalised_space_needs_no_trivial_embedding():
    F = _random_embeddings(2)
    trivial = np.random.RandomState(3).uniform(0.1, 10.0, size=F.shape[1])
    raw = pairwise_task_distances(F, F[:3], kind="asymmetric", trivial=trivial)
    normalised = pairwise_task_distances(F / trivial, F[:3] / trivial, kind="asymmetric")
    np.testing.assert_allclose(normalised, raw, atol=1e-12)


def test_asymmetric_brings_complex_sources_closer():
    target = np.array([1.0, 1.0, 1.0, 1.0])
    simple = np.array([1.0, 1.0, 1.2, 0.8])  # close to the trivial (all-ones) embedding
    complex_ = np.array([3.0, 0.2, 2.5, 0.1])
    sym = pairwise_task_distances(np.vstack([simple, complex_]), target[None, :])[:, 0]
    asym = pairwise_task_distances(
        np.vstack([simple, complex_]), target[None, :], kind="asymmetric", alpha=1.0
    )[:, 0]
    assert sym[1] - sym[0] > asym[1] - asym[0]


def test_distance_metric_callables_work_in_scikit_learn():
    from sklearn.metrics import pairwise_distances
    from sklearn.neighbors import NearestNeighbors

    F = _random_embeddings(4, n=8) + 0.01
    for kind in ("symmetric", "asymmetric"):
        metric = task_distance_metric(kind=kind, alpha=0.15)
        # Y given as a copy: with Y=None, scikit-learn mirrors the upper triangle.
        np.testing.assert_allclose(
            pairwise_distances(F, F.copy(), metric=metric), pairwise_task_distances(F, kind=kind), atol=1e-12
        )
    neighbours = NearestNeighbors(n_neighbors=3, algorithm="brute", metric=task_distance_metric()).fit(F)
    _, indices = neighbours.kneighbors(F)
    expected = np.argsort(pairwise_task_distances(F), axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.sort(expected, axis=1))
    assert pickle.loads(pickle.dumps(task_distance_metric("asymmetric", trivial=np.ones(12))))(
        F[0], F[1]
    ) == (pytest.approx(pairwise_task_distances(F[:1], F[1:2], kind="asymmetric")[0, 0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "euclidean"}, "'kind' parameter of pairwise_task_distances must be a str among"),
        ({"kind": "asymmetric", "alpha": -0.1}, "'alpha' parameter of pairwise_task_distances"),
        ({"kind": "asymmetric", "alpha": np.nan}, "'alpha' parameter"),
        ({"kind": "asymmetric", "alpha": np.inf}, "'alpha' parameter"),
        ({"kind": "asymmetric", "alpha": True}, "'alpha' parameter"),  # a bool is not a weight
        ({"kind": "asymmetric", "trivial": 1.0}, "'trivial' parameter"),
        ({"kind": "asymmetric", "trivial": np.ones(5)}, "trivial has 5 entries"),
        ({"kind": "asymmetric", "trivial": np.r_[np.zeros(1), np.ones(11)]}, "trivial must be positive"),
    ],
)
def test_bad_asymmetric_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairwise_task_distances(_random_embeddings(5), **kwargs)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: symmetric_distance(1.0, [1.0]), "'a' parameter of symmetric_distance must be an array-like"),
        (lambda: asymmetric_distance([1.0], [1.0], alpha=-1.0), "'alpha' parameter of asymmetric_distance"),
        (lambda: asymmetric_distance([1.0], [1.0, 2.0]), "source and target must have the same length"),
        (lambda: task_distance_metric("euclidean"), "'kind' parameter of task_distance_metric"),
        (
            lambda: task_distance_metric("asymmetric", alpha="0.15"),
            "'alpha' parameter of task_distance_metric",
        ),
    ],
)
def test_bad_arguments_of_the_other_functions(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_options_after_the_data_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        asymmetric_distance([1.0], [1.0], [1.0])
    with pytest.raises(TypeError, match="positional"):
        task_distance_metric("asymmetric", 0.15)
