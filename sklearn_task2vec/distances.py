"""Distances between TASK2VEC embeddings (Achille et al., ICCV 2019, sec. 3.3).

The raw Euclidean distance between two Fisher embeddings is a poor measure of task
similarity: the probe's parameters have different scales, and an embedding's norm grows
with the task's complexity and its number of samples. The paper therefore compares tasks
with the cosine distance between embeddings normalised coordinate by coordinate:

.. math::

    d_{sym}(F_a, F_b) = d_{cos}\\left(\\frac{F_a}{F_a + F_b}, \\frac{F_b}{F_a + F_b}\\right),

with element-wise division. Because both vectors are divided by the same ``F_a + F_b``,
the distance is unchanged when ``F_a`` and ``F_b`` are multiplied coordinate-wise by the same
positive vector (e.g. divided by the trivial embedding), and it only depends on the
proportion of each filter's Fisher that comes from each task.

Conventions for zeros: a coordinate where ``F_a + F_b == 0`` (a filter neither task uses)
contributes 0 to both normalised vectors, i.e. it is left out. Two embeddings whose
normalised vectors are both all zero (both embeddings zero) are at distance 0; when only
one of them is all zero (one embedding zero), the cosine is undefined and the distance is
taken as 1, the largest value the cosine distance takes on non-negative vectors.
"""

from __future__ import annotations

import functools
from numbers import Real

import numpy as np
from sklearn.utils._param_validation import StrOptions, validate_params

from ._kernels import symmetric_distance_matrix
from ._utils import StrictInterval, check_embeddings

__all__ = ["asymmetric_distance", "pairwise_task_distances", "symmetric_distance", "task_distance_metric"]

# Parameter constraints shared by several functions. alpha weighs a distance: finite and
# non-negative, as in Model2VecSelector. An array's content (shape, signs) is checked in the
# function, with the embeddings it must fit.
_ALPHA = [StrictInterval(Real, 0, None, closed="left")]
_TRIVIAL = ["array-like", None]
_KIND = [StrOptions({"symmetric", "asymmetric"})]


def _check_vector(v, name):
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D embedding vector, got an array of shape {v.shape}.")
    return check_embeddings(v.reshape(1, -1), name)[0]


def _check_vector_pair(first, second, names):
    """Two embedding vectors of the same length, checked like :func:`_check_vector`."""
    first, second = _check_vector(first, names[0]), _check_vector(second, names[1])
    if first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same length, got {first.shape[0]} and "
            f"{second.shape[0]}."
        )
    return first, second


@validate_params({"a": ["array-like"], "b": ["array-like"]}, prefer_skip_nested_validation=True)
def symmetric_distance(a, b):
    """Symmetric TASK2VEC distance between two task embeddings.

    Paper, sec. 3.3 (Achille et al., "TASK2VEC: Task Embedding for Meta-Learning",
    ICCV 2019): the cosine distance between the embeddings normalised element-wise by their
    sum,

    ``d_sym(F_a, F_b) = d_cos(F_a / (F_a + F_b), F_b / (F_a + F_b))``.

    Parameters
    ----------
    a, b : array-like of shape (n_filters,)
        Two non-negative, finite task embeddings from the same probe (e.g. rows of
        :meth:`FisherTaskEmbedder.transform <sklearn_task2vec.FisherTaskEmbedder.transform>`).

    Returns
    -------
    distance : float
        In ``[0, 1]``. Coordinates where ``a + b == 0`` are left out; 0 when both embeddings
        are zero, 1 when exactly one is.

    Raises
    ------
    ValueError
        If an input is not 1-D, is empty, the lengths differ, or an entry is negative,
        NaN or infinite.

    See Also
    --------
    pairwise_task_distances : The same distance between every pair of rows of two matrices.

    Notes
    -----
    The distance is unchanged when ``a`` and ``b`` are multiplied coordinate-wise by the same
    positive vector, which makes it insensitive to the different scales of the probe's
    parameters.

    Examples
    --------
    >>> from sklearn_task2vec.distances import symmetric_distance
    >>> symmetric_distance([1.0, 2.0, 0.0], [1.0, 2.0, 0.0])
    0.0
    >>> round(symmetric_distance([1.0, 0.0], [0.0, 1.0]), 6)
    1.0
    """
    a, b = _check_vector_pair(a, b, ("a", "b"))
    return float(symmetric_distance_matrix(a[None, :], b[None, :])[0, 0])


@validate_params(
    {"source": ["array-like"], "target": ["array-like"], "trivial": _TRIVIAL, "alpha": _ALPHA},
    prefer_skip_nested_validation=True,
)
def asymmetric_distance(source, target, *, trivial=None, alpha=0.15):
    """Asymmetric TASK2VEC distance from a source task (or model) to a target task.

    Paper, sec. 3.3: ``d_asym(t_a -> t_b) = d_sym(t_a, t_b) - alpha * d_sym(t_a, t_0)``, with
    ``t_0`` the trivial embedding. The second term measures the source's complexity (its
    distance from the trivial embedding) and brings complex sources closer: pre-training on a
    complex task often transfers better. It can be negative.

    ``t_0`` here is the prior precision ``lambda^2`` (``trivial_embedding_``), positive. It
    is the variational estimate's trivial row ``(beta / N) lambda^2`` up to the factor
    ``beta / N``; the point estimates' trivial row, a single-class task's, is 0 (their
    ``beta -> 0`` limit; see ``FisherTaskEmbedder.trivial_embedding_``), which cannot serve
    as ``t_0``: ``d_sym(t_a, 0)`` is 1 for every non-zero ``t_a``, a constant
    complexity. With ``t_0 = lambda^2`` the complexity of a point estimate ``F``, whose
    entries are far below ``lambda^2``, is ``1 - cos(F / lambda^2, 1)`` up to that ratio:
    how far the shape of ``F`` is from the prior's. An all-zero source, the point
    estimates' trivial embedding itself, has complexity 0 (the trivial embedding is at
    distance 0 from itself), not the 1 of the zero convention of :func:`symmetric_distance`.

    Parameters
    ----------
    source, target : array-like of shape (n_filters,)
        Non-negative, finite task embeddings from the same probe.
    trivial : array-like of shape (n_filters,) or None, default=None
        The trivial embedding (``FisherTaskEmbedder.trivial_embedding_``). ``None`` means all
        ones: the embeddings are then expected in the trivial-normalised space, i.e. divided
        by the trivial embedding (``FisherTaskEmbedder(normalize="trivial")``). Since
        ``d_sym`` is unchanged when both arguments are scaled coordinate-wise by the same
        positive vector, the two give the same value.
    alpha : float, default=0.15
        Weight of the complexity term, finite and non-negative; the paper's best value for a
        ResNet-34 probe.

    Returns
    -------
    distance : float

    Examples
    --------
    >>> from sklearn_task2vec.distances import asymmetric_distance, symmetric_distance
    >>> source, target = [2.0, 1.0, 4.0], [1.0, 1.0, 3.0]
    >>> d = asymmetric_distance(source, target, alpha=0.15)
    >>> bool(abs(d - (symmetric_distance(source, target) - 0.15 * symmetric_distance(source, [1.0] * 3))) < 1e-12)
    True
    """
    source, target = _check_vector_pair(source, target, ("source", "target"))
    return float(
        pairwise_task_distances(
            source[None, :], target[None, :], kind="asymmetric", alpha=alpha, trivial=trivial
        )[0, 0]
    )


def _check_trivial(trivial, n_filters):
    if trivial is None:
        return np.ones(n_filters)
    trivial = _check_vector(trivial, "trivial")
    if trivial.shape[0] != n_filters:
        raise ValueError(
            f"trivial has {trivial.shape[0]} entries but the embeddings have {n_filters} filters."
        )
    if np.any(trivial <= 0):
        raise ValueError("trivial must be positive: it is a prior precision per filter.")
    return trivial


@validate_params(
    {"X": ["array-like"], "Y": ["array-like", None], "kind": _KIND, "alpha": _ALPHA, "trivial": _TRIVIAL},
    prefer_skip_nested_validation=True,
)
def pairwise_task_distances(X, Y=None, *, kind="symmetric", alpha=0.15, trivial=None):
    """TASK2VEC distance between every pair of task embeddings.

    Paper, sec. 3.3 (Achille et al., ICCV 2019): ``d_sym(F_a, F_b) = d_cos(F_a / (F_a + F_b),
    F_b / (F_a + F_b))``, element-wise division, for every row ``F_a`` of ``X`` and ``F_b``
    of ``Y``; with ``kind="asymmetric"``, ``d_asym(F_a -> F_b) = d_sym(F_a, F_b) -
    alpha * d_sym(F_a, t_0)`` (rows of ``X`` are the sources). One fused, vectorised pass
    over the filters per pair (numba, over all cores, tiles of pairs kept in cache), no
    temporary larger than the result; with ``Y=None`` only one triangle is computed. On two
    cores, 2,000 x 2,000 float32 embeddings of width 10,000 take about 2.6 s
    (``benchmarks/bench_distances.py``).

    Parameters
    ----------
    X : array-like of shape (n_tasks_x, n_filters)
        Non-negative, finite task embeddings, one per row (e.g. the output of
        :meth:`FisherTaskEmbedder.transform <sklearn_task2vec.FisherTaskEmbedder.transform>`).
        float32 input (``X`` and ``Y``) is computed in float32, about 2.5x faster than float64
        and accurate to about 1e-6; anything else in float64.
    Y : array-like of shape (n_tasks_y, n_filters) or None, default=None
        Embeddings to compare with; ``None`` compares ``X`` with itself.
    kind : {"symmetric", "asymmetric"}, default="symmetric"
        Which distance.
    alpha : float, default=0.15
        Weight of the complexity term of the asymmetric distance, finite and non-negative.
    trivial : array-like of shape (n_filters,) or None, default=None
        The trivial embedding ``t_0`` of the asymmetric distance; ``None`` means all ones
        (embeddings in the trivial-normalised space, see :func:`asymmetric_distance`).

    Returns
    -------
    distances : ndarray of shape (n_tasks_x, n_tasks_y), float32 or float64
        ``distances[i, j] = d(X[i], Y[j])``. Symmetric distances are in ``[0, 1]``; when ``Y``
        is None that matrix is exactly symmetric with an exactly zero diagonal.

    Raises
    ------
    ValueError
        If an input is not 2-D, is empty, the numbers of columns differ, or an entry is
        negative, NaN or infinite; if ``kind`` is unknown, ``alpha`` negative or ``trivial``
        does not fit.

    See Also
    --------
    symmetric_distance : The distance between two embeddings.
    task_distance_metric : A callable for ``metric=`` in scikit-learn.

    Notes
    -----
    Coordinates where both embeddings are zero are left out; two zero embeddings are at
    distance 0, a zero and a non-zero one at distance 1. In the asymmetric distance's
    complexity term ``d_sym(F_a, t_0)``, an all-zero source (a single-class task's row with a
    point estimate) has complexity 0 (see :func:`asymmetric_distance`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.distances import pairwise_task_distances
    >>> F = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [0.0, 1.0, 1.0]])
    >>> pairwise_task_distances(F).round(3)
    array([[0.   , 0.   , 0.8  ],
           [0.   , 0.   , 0.825],
           [0.8  , 0.825, 0.   ]])
    """
    X = check_embeddings(X, "X")
    self_distances = Y is None
    Y = X if self_distances else check_embeddings(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X and Y must have the same number of filters (columns), got {X.shape[1]} and "
            f"{Y.shape[1]}: embeddings from different probes cannot be compared."
        )
    if X.dtype != Y.dtype:
        X, Y = X.astype(np.float64), Y.astype(np.float64)
    distances = symmetric_distance_matrix(X, None if self_distances else Y)
    if kind == "asymmetric":
        trivial = _check_trivial(trivial, X.shape[1]).astype(X.dtype)
        complexity = symmetric_distance_matrix(X, trivial[None, :])[:, 0]
        # An all-zero source is the point estimates' trivial embedding: complexity 0.
        complexity[~X.any(axis=1)] = 0.0
        distances -= alpha * complexity[:, None]
    return distances.astype(X.dtype, copy=False)


@validate_params({"kind": _KIND, "alpha": _ALPHA, "trivial": _TRIVIAL}, prefer_skip_nested_validation=True)
def task_distance_metric(kind="symmetric", *, alpha=0.15, trivial=None):
    """A TASK2VEC distance as a callable ``metric(u, v)`` for scikit-learn.

    For ``metric=`` in :func:`sklearn.metrics.pairwise_distances` or
    :class:`sklearn.neighbors.NearestNeighbors` (with ``algorithm="brute"``: the asymmetric
    distance is not a metric). For the asymmetric distance give ``pairwise_distances`` an
    explicit ``Y`` (a copy of ``X`` for all pairs): with ``Y=None`` it computes one triangle and
    mirrors it. :func:`pairwise_task_distances` is much faster for whole matrices. The
    callable pickles.

    Parameters
    ----------
    kind : {"symmetric", "asymmetric"}, default="symmetric"
    alpha : float, default=0.15
    trivial : array-like of shape (n_filters,) or None, default=None
        As in :func:`pairwise_task_distances`.

    Returns
    -------
    metric : callable
        ``metric(u, v)`` is the distance from ``u`` to ``v``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.metrics import pairwise_distances
    >>> from sklearn_task2vec.distances import pairwise_task_distances, task_distance_metric
    >>> F = np.array([[1.0, 2.0, 0.5], [2.0, 1.0, 0.5]])
    >>> bool(np.allclose(pairwise_distances(F, metric=task_distance_metric()), pairwise_task_distances(F)))
    True
    """
    if kind == "symmetric":
        return symmetric_distance
    return functools.partial(
        asymmetric_distance, alpha=alpha, trivial=None if trivial is None else np.asarray(trivial)
    )
