"""Fused numba kernels of the symmetric TASK2VEC distance and its differentiable torch op.

``d_sym(F_a, F_b) = d_cos(F_a / (F_a + F_b), F_b / (F_a + F_b))`` (Achille et al., ICCV 2019,
sec. 3.3), for every pair of rows of two matrices, with the conventions for zeros of
:mod:`sklearn_task2vec.distances`. :func:`symmetric_distance_matrix` is the numpy entry point
of the public distances, :func:`symmetric_distances` the autograd op through which
:class:`~sklearn_task2vec.Model2VecSelector` learns its experts' embeddings. Inputs are not
checked here: the callers validate them.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

__all__ = ["symmetric_distance_matrix", "symmetric_distances"]

# Rows of M and of T per tile of the distance kernel: two tiles of 32 rows of 10,000 float32
# filters (2.5 MiB) stay in a core's cache while their 32 x 32 pairs are computed.
_TILE_ROWS = 32

# Reassociation lets LLVM vectorise the sums over filters; no assumption about NaN or inf.
_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}


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
    distance 0, a zero and a non-zero one at 1 (see :mod:`sklearn_task2vec.distances`)."""
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


def symmetric_distance_matrix(X, Y=None):
    """``d_sym`` between every row of ``X`` and of ``Y``, as a float64 numpy array.

    Parameters
    ----------
    X : ndarray of shape (n_x, n_filters), float32 or float64
        Non-negative, finite rows (not checked).
    Y : ndarray of shape (n_y, n_filters) of the dtype of ``X``, or None, default=None
        ``None``: the distances between the rows of ``X``; one triangle is computed and
        mirrored, with an exactly zero diagonal.

    Returns
    -------
    distances : ndarray of shape (n_x, n_y), float64
        Computed in the dtype of the inputs, one fused pass per pair: no (pairs, filters)
        temporary.
    """
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
    :func:`symmetric_distance_matrix`, the backward pass :func:`_symmetric_distance_gradient`,
    on the same power-of-two column scaling (the gradient is divided by the scales at the end).
    """

    @staticmethod
    def forward(ctx, M, T):
        ctx.save_for_backward(M, T)
        return torch.from_numpy(symmetric_distance_matrix(M.numpy(), T.numpy())).to(M.dtype)

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


def symmetric_distances(M, T):
    """``d_sym`` between every row of ``M`` and of ``T``, differentiable in ``M``.

    Parameters
    ----------
    M : torch.Tensor of shape (p, n_filters), float64, on CPU
        Non-negative rows (the selector's expert embeddings); the gradient flows to it.
    T : torch.Tensor of shape (q, n_filters), float64, on CPU
        Non-negative rows (tasks, or the trivial embedding); no gradient.

    Returns
    -------
    distances : torch.Tensor of shape (p, q), float64
    """
    return _SymmetricDistance.apply(M, T)
