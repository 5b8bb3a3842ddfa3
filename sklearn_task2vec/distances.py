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

import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import check_array

__all__ = ["asymmetric_distance", "pairwise_task_distances", "symmetric_distance", "task_distance_metric"]

# Arrays of shape (block of m rows, block of t rows, n_features) alive at once in a block of
# the distance computation (float64 each): the sum, a, b, a weight and products.
_BLOCK_TEMPORARIES = 6


def _check_embeddings(X, name):
    """``X`` as a finite, non-negative 2-D float64 array of embeddings (one per row)."""
    X = check_array(X, dtype=np.float64, ensure_all_finite=True, input_name=name)
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


def _block_slices(n_rows_m, n_rows_t, n_features):
    """Slices of rows of M and of T whose pairwise block fits in sklearn's working_memory."""
    budget = get_config()["working_memory"] * 2**20  # MiB -> bytes
    per_pair = _BLOCK_TEMPORARIES * 8 * max(n_features, 1)
    pairs = max(1, int(budget // per_pair))
    step_m = max(1, min(n_rows_m, pairs))
    step_t = max(1, min(n_rows_t, pairs // step_m))
    for start_m in range(0, n_rows_m, step_m):
        for start_t in range(0, n_rows_t, step_t):
            yield slice(start_m, start_m + step_m), slice(start_t, start_t + step_t)


def _common_scale(M, T):
    """The power of two nearest above the largest entry (1 for all-zero inputs).

    Both arguments are divided by it (exactly, in binary floating point; ``d_sym`` does not
    change when both are scaled by the same number), so that ``M + T`` neither overflows nor
    is a subnormal number unless the entries span more than the float64 range.
    """
    largest = max(float(M.max()), float(T.max()))
    if largest <= 0.0:
        return 1.0
    return float(np.ldexp(1.0, min(int(np.ceil(np.log2(largest))), 1023)))


def _block(M, T):
    """``a = M / (M + T)``, ``b = T / (M + T)`` and ``M + T`` for every pair of rows of ``M``
    (p, f) and ``T`` (q, f): shapes (p, q, f); ``a = b = 0`` where ``M + T == 0`` (the
    coordinate is left out), and the sum there replaced by 1."""
    total = M[:, None, :] + T[None, :, :]
    if not (bool((M > 0).all()) or bool((T > 0).all())):
        total = torch.where(total > 0, total, 1.0)
    return M[:, None, :] / total, T[None, :, :] / total, total


def _cosine(a, b):
    """Cosine similarity of the pairs and its parts; 0 where a norm is 0 (``defined`` False)."""
    dot = torch.einsum("pqf,pqf->pq", a, b)
    squared_a = torch.einsum("pqf,pqf->pq", a, a)
    squared_b = torch.einsum("pqf,pqf->pq", b, b)
    denominator = torch.sqrt(squared_a * squared_b)
    defined = denominator > 0
    similarity = torch.where(defined, dot / torch.where(defined, denominator, 1.0), 0.0)
    return similarity, squared_a, squared_b, denominator, defined


class _SymmetricDistance(torch.autograd.Function):
    """``d_sym`` between every row of ``M`` (p, f) and of ``T`` (q, f), differentiable in M.

    Same conventions as :func:`sklearn_task2vec.distances.pairwise_task_distances`:
    coordinates where ``m + t == 0`` are left out, two zero vectors are at distance 0, a zero
    and a non-zero one at distance 1. The backward pass recomputes each block instead of
    storing the (p, q, f) temporaries: with ``s = m + t``, ``a = m / s``, ``b = t / s`` and
    ``cos = <a, b> / (|a| |b|)``,

    ``d cos / d m_i = (b_i / s_i) * ((b_i - a_i) / (|a| |b|) - cos * (a_i / |a|^2 - b_i / |b|^2))``

    (0 for a pair where ``a`` or ``b`` is zero, where the distance is constant).
    """

    @staticmethod
    def forward(ctx, M, T):
        scale = _common_scale(M, T)
        M, T = M / scale, T / scale
        ctx.save_for_backward(M, T)
        ctx.scale = scale
        distances = M.new_empty((M.shape[0], T.shape[0]))
        for rows_m, rows_t in _block_slices(M.shape[0], T.shape[0], M.shape[1]):
            a, b, _ = _block(M[rows_m], T[rows_t])
            similarity, squared_a, squared_b, _, _ = _cosine(a, b)
            block = 1.0 - similarity
            block = torch.where((squared_a == 0) & (squared_b == 0), 0.0, block)
            distances[rows_m, rows_t] = block.clamp(0.0, 1.0)
        return distances

    @staticmethod
    def backward(ctx, grad_output):
        M, T = ctx.saved_tensors
        grad_M = torch.zeros_like(M)
        for rows_m, rows_t in _block_slices(M.shape[0], T.shape[0], M.shape[1]):
            a, b, total = _block(M[rows_m], T[rows_t])
            similarity, squared_a, squared_b, denominator, defined = _cosine(a, b)
            # d cos / d m_i = (b_i / s_i) * (b_i * u - a_i * v), per pair:
            # u = 1 / (|a| |b|) + cos / |b|^2, v = 1 / (|a| |b|) + cos / |a|^2.
            inverse_norms = 1.0 / torch.where(defined, denominator, 1.0)
            u = torch.where(defined, inverse_norms + similarity / torch.where(defined, squared_b, 1.0), 0.0)
            v = torch.where(defined, inverse_norms + similarity / torch.where(defined, squared_a, 1.0), 0.0)
            grad = grad_output[rows_m, rows_t]
            weight = b / total
            # d distance = -d cos, summed over the tasks of the block.
            grad_M[rows_m] -= torch.einsum("pq,pqf->pf", grad * u, weight * b)
            grad_M[rows_m] += torch.einsum("pq,pqf->pf", grad * v, weight * a)
        return grad_M / ctx.scale, None


def _symmetric_distances(M, T):
    """Symmetric TASK2VEC distance matrix (rows of M x rows of T), float64 torch tensors."""
    return _SymmetricDistance.apply(M, T)


def _symmetric_block(X, Y):
    """d_sym between every row of the numpy arrays ``X`` and ``Y``, as numpy (no gradient)."""
    with torch.no_grad():
        return _symmetric_distances(torch.from_numpy(X), torch.from_numpy(Y)).numpy()


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
    return float(_symmetric_block(a[None, :], b[None, :])[0, 0])


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
    alpha * d_sym(F_a, t_0)`` (rows of ``X`` are the sources). Computed with torch
    (multi-threaded) over blocks of pairs, each block's temporaries bounded by
    scikit-learn's ``working_memory`` setting (:func:`sklearn.config_context`).

    Parameters
    ----------
    X : array-like of shape (n_tasks_x, n_filters)
        Non-negative, finite task embeddings, one per row (e.g. the output of
        :meth:`FisherTaskEmbedder.transform <sklearn_task2vec.FisherTaskEmbedder.transform>`).
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
    distances : ndarray of shape (n_tasks_x, n_tasks_y), float64
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
    distances = _symmetric_block(X, Y)
    if self_distances:
        distances = 0.5 * (distances + distances.T)
        np.fill_diagonal(distances, 0.0)
    if kind == "asymmetric":
        trivial = _check_trivial(trivial, X.shape[1])
        complexity = _symmetric_block(X, trivial[None, :])[:, 0]
        distances -= alpha * complexity[:, None]
    return distances


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
