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

import numba
import numpy as np
import torch
from sklearn.utils import check_array

__all__ = ["asymmetric_distance", "pairwise_task_distances", "symmetric_distance", "task_distance_metric"]

# Rows of M and of T per tile of the distance kernel: two tiles of 32 rows of 10,000 float32
# filters (2.5 MiB) stay in a core's cache while their 32 x 32 pairs are computed.
_TILE_ROWS = 32

# Reassociation lets LLVM vectorise the sums over filters; no assumption about NaN or inf.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


def _check_embeddings(X, name):
    """``X`` as a finite, non-negative 2-D float array of embeddings (one per row).

    float32 stays float32 (computed in float32, like scikit-learn's pairwise distances);
    anything else becomes float64.
    """
    X = check_array(X, dtype=[np.float64, np.float32], ensure_all_finite=True, input_name=name)
    if np.any(X < 0):
        raise ValueError(
            f"{name} has negative entries: task embeddings are Fisher Information diagonals, "
            f"which are non-negative."
        )
    return X


def _check_vector(v, name):
    v = np.asarray(v)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D embedding vector, got an array of shape {v.shape}.")
    return _check_embeddings(v.reshape(1, -1), name)[0]


def _column_scales(M, T):
    """Per filter, the power of two nearest above its largest entry in ``M`` and ``T`` (1 for
    a filter that is zero everywhere).

    Both arguments are divided by it, exactly in binary floating point; ``d_sym`` does not
    change when both are scaled coordinate-wise by the same positive vector. Every entry is
    then at most 1, so ``M + T`` cannot overflow, and a filter's entries are only as small as
    they are relative to that filter's largest one (the float32 range is ample).
    """
    largest = np.maximum(M.max(axis=0), T.max(axis=0)).astype(np.float64)
    exponents = np.ceil(np.log2(np.where(largest > 0, largest, 1.0)))
    return np.ldexp(1.0, np.clip(exponents, -1022, 1023).astype(int)).astype(M.dtype)


@numba.njit(fastmath=_FASTMATH, inline="always")
def _share_sums(a, b):
    """``<s_a, s_b>``, ``|s_a|^2`` and ``|s_b|^2`` of the shares ``s_a = a / (a + b)`` and
    ``s_b = b / (a + b)`` of two scaled rows, in one pass over the filters.

    A filter with ``a + b == 0`` gives 0 to both shares (it is left out).
    """
    one = a.dtype.type(1)
    dot = a.dtype.type(0)
    squared_a = a.dtype.type(0)
    squared_b = a.dtype.type(0)
    for k in range(a.shape[0]):
        total = a[k] + b[k]
        inverse = one / (total + (total == 0))
        share_a = a[k] * inverse
        share_b = b[k] * inverse
        dot += share_a * share_b
        squared_a += share_a * share_a
        squared_b += share_b * share_b
    return np.float64(dot), np.float64(squared_a), np.float64(squared_b)


@numba.njit(fastmath=_FASTMATH, inline="always")
def _cosine_distance_of_shares(a, b):
    """``d_cos(a / (a + b), b / (a + b))`` for two scaled rows; two zero share vectors are at
    distance 0, a zero and a non-zero one at 1 (module docstring)."""
    dot, squared_a, squared_b = _share_sums(a, b)
    norms = np.sqrt(squared_a * squared_b)
    if norms > 0:
        return min(max(1.0 - dot / norms, 0.0), 1.0)
    return 0.0 if squared_a == 0 and squared_b == 0 else 1.0


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _symmetric_distance_tiles(M, T, tiles, upper_only, distances):
    """Fill ``distances[i, j] = d_sym(M[i], T[j])`` over the given tiles of pairs.

    ``tiles`` lists (first row of M, first row of T) of ``_TILE_ROWS`` x ``_TILE_ROWS``
    blocks; the tiles are shared among numba's threads. ``upper_only`` (``T`` is ``M``)
    skips the pairs ``j < i``.
    """
    for tile in numba.prange(tiles.shape[0]):
        start_m, start_t = tiles[tile, 0], tiles[tile, 1]
        for i in range(start_m, min(start_m + _TILE_ROWS, M.shape[0])):
            first_j = max(i, start_t) if upper_only else start_t
            for j in range(first_j, min(start_t + _TILE_ROWS, T.shape[0])):
                distances[i, j] = _cosine_distance_of_shares(M[i], T[j])


def _symmetric_matrix(X, Y=None):
    """d_sym between every row of ``X`` and of ``Y`` (``None``: of ``X``, computing one
    triangle, mirrored, with an exactly zero diagonal), float64, for float32 or float64
    numpy inputs. One fused pass per pair: no (pairs, filters) temporary."""
    self_distances = Y is None
    scales = _column_scales(X, X if self_distances else Y)
    M = np.ascontiguousarray(X / scales)
    T = M if self_distances else np.ascontiguousarray(Y / scales)
    starts_m, starts_t = np.arange(0, M.shape[0], _TILE_ROWS), np.arange(0, T.shape[0], _TILE_ROWS)
    tiles = np.array([(m, t) for m in starts_m for t in starts_t if not (self_distances and t < m)])
    distances = np.zeros((M.shape[0], T.shape[0]))
    _symmetric_distance_tiles(M, T, tiles.reshape(-1, 2).astype(np.int64), self_distances, distances)
    if self_distances:
        upper = np.triu(distances, k=1)
        distances = upper + upper.T
    return distances


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _symmetric_distance_gradient(M, T, grad_output, grad_M):
    """``grad_M[i] = sum_j grad_output[i, j] * d d_sym(M[i], T[j]) / d M[i]`` (scaled rows).

    With ``s = m + t``, ``a = m / s``, ``b = t / s``, ``cos = <a, b> / (|a| |b|)`` and
    ``d_sym = 1 - cos``:

    ``d d_sym / d m_k = (b_k / s_k) * (a_k * v - b_k * u)``, where
    ``u = 1 / (|a| |b|) + cos / |b|^2`` and ``v = 1 / (|a| |b|) + cos / |a|^2``;

    0 where ``a`` or ``b`` is all zero (the distance is constant there) and on a filter with
    ``s_k = 0``. Each row of ``M`` belongs to one thread: two passes over the filters per
    pair (the sums, then the gradient), no (pairs, filters) temporary.
    """
    one = M.dtype.type(1)
    for i in numba.prange(M.shape[0]):
        for j in range(T.shape[0]):
            weight = grad_output[i, j]
            if weight == 0:
                continue
            dot, squared_a, squared_b = _share_sums(M[i], T[j])
            norms = np.sqrt(squared_a * squared_b)
            if norms == 0:
                continue
            cosine = dot / norms
            u = M.dtype.type(weight * (1.0 / norms + cosine / squared_b))
            v = M.dtype.type(weight * (1.0 / norms + cosine / squared_a))
            for k in range(M.shape[1]):
                total = M[i, k] + T[j, k]
                inverse = one / (total + (total == 0))
                share_a = M[i, k] * inverse
                share_b = T[j, k] * inverse
                grad_M[i, k] += share_b * inverse * (share_a * v - share_b * u)


class _SymmetricDistance(torch.autograd.Function):
    """``d_sym`` between every row of ``M`` (p, f) and of ``T`` (q, f), differentiable in M.

    Both passes are fused numba kernels over pairs of rows: the forward pass is
    :func:`_symmetric_matrix`, the backward pass :func:`_symmetric_distance_gradient`, on the
    same power-of-two column scaling (the gradient is divided by the scales at the end).
    """

    @staticmethod
    def forward(ctx, M, T):
        ctx.save_for_backward(M, T)
        return torch.from_numpy(_symmetric_matrix(M.numpy(), T.numpy())).to(M.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        M, T = (tensor.numpy() for tensor in ctx.saved_tensors)
        scales = _column_scales(M, T)
        grad_M = np.zeros(M.shape, dtype=M.dtype)
        _symmetric_distance_gradient(
            np.ascontiguousarray(M / scales),
            np.ascontiguousarray(T / scales),
            np.ascontiguousarray(grad_output.numpy(), dtype=np.float64),
            grad_M,
        )
        return torch.from_numpy(grad_M / scales), None


def _symmetric_distances(M, T):
    """Symmetric TASK2VEC distance matrix (rows of M x rows of T), float64 torch tensors,
    differentiable in ``M`` (the selector's prototypes)."""
    return _SymmetricDistance.apply(M, T)


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
    a = _check_vector(a, "a")
    b = _check_vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape[0]} and {b.shape[0]}.")
    return float(_symmetric_matrix(a[None, :], b[None, :])[0, 0])


def asymmetric_distance(source, target, trivial=None, alpha=0.15):
    """Asymmetric TASK2VEC distance from a source task (or model) to a target task.

    Paper, sec. 3.3: ``d_asym(t_a -> t_b) = d_sym(t_a, t_b) - alpha * d_sym(t_a, t_0)``, with
    ``t_0`` the trivial embedding. The second term measures the source's complexity (its
    distance from the trivial embedding) and brings complex sources closer: pre-training on a
    complex task often transfers better. It can be negative.

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
        Weight of the complexity term; the paper's best value for a ResNet-34 probe.

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
    source = _check_vector(source, "source")
    target = _check_vector(target, "target")
    if source.shape != target.shape:
        raise ValueError(
            f"source and target must have the same length, got {source.shape[0]} and {target.shape[0]}."
        )
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
        Weight of the complexity term of the asymmetric distance.
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
        negative, NaN or infinite; if ``kind`` is unknown or ``trivial`` does not fit.

    See Also
    --------
    symmetric_distance : The distance between two embeddings.
    task_distance_metric : A callable for ``metric=`` in scikit-learn.

    Notes
    -----
    Coordinates where both embeddings are zero are left out; two zero embeddings are at
    distance 0, a zero and a non-zero one at distance 1.

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
    if kind not in ("symmetric", "asymmetric"):
        raise ValueError(f"kind must be 'symmetric' or 'asymmetric', got {kind!r}.")
    X = _check_embeddings(X, "X")
    self_distances = Y is None
    Y = X if self_distances else _check_embeddings(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X and Y must have the same number of filters (columns), got {X.shape[1]} and "
            f"{Y.shape[1]}: embeddings from different probes cannot be compared."
        )
    if X.dtype != Y.dtype:
        X, Y = X.astype(np.float64), Y.astype(np.float64)
    distances = _symmetric_matrix(X, None if self_distances else Y)
    if kind == "asymmetric":
        trivial = _check_trivial(trivial, X.shape[1]).astype(X.dtype)
        complexity = _symmetric_matrix(X, trivial[None, :])[:, 0]
        distances -= alpha * complexity[:, None]
    return distances.astype(X.dtype, copy=False)


def task_distance_metric(kind="symmetric", alpha=0.15, trivial=None):
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
    if kind != "asymmetric":
        raise ValueError(f"kind must be 'symmetric' or 'asymmetric', got {kind!r}.")
    return functools.partial(
        asymmetric_distance, alpha=alpha, trivial=None if trivial is None else np.asarray(trivial)
    )
