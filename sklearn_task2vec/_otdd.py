"""The optimal transport dataset distance (OTDD) computed: plain functions on feature matrices.

Alvarez-Melis & Fusi, "Geometric Dataset Distances via Optimal Transport", NeurIPS 2020. The
public functions, their validation and the full description are in
:mod:`sklearn_task2vec.distances` (:func:`~sklearn_task2vec.distances.otdd_distance`). Here:

* :func:`labelled_features`: a task as a float64 feature matrix (its inputs, or a probe's
  features of them) with its examples sorted by class, and class codes;
* :func:`exact_label_distances`, :func:`gaussian_label_distances`: the squared 2-Wasserstein
  distances between the class-conditional feature distributions of two tasks;
* :func:`outer_transport_cost`: the exact optimal transport between two tasks with the
  ground cost ``||x - x'||^2 + W_2^2(alpha_y, alpha_y')``;
* :func:`sliced_transport_cost`: its sliced approximation on the augmented representation
  ``[x, mu_y, sigma_y]``;
* :func:`check_tasks` and :func:`otdd_matrix`: the checks across tasks (one feature space, the
  exact methods' size limit) and the distance between every pair of tasks of two lists.

The Python Optimal Transport library (``pot``, imported as ``ot``) is an optional dependency,
imported on first use by :func:`import_ot`.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial.distance import cdist

from ._heads import task_features
from ._probes import frozen_copy
from ._text import is_text
from ._utils import module_dtype
from .tasks import coerce_task, encode_labels

#: Most pairs (example of one task, example of the other) the exact and Gaussian methods take.
#: Their transport problem holds, per pair, a float64 cost, a float64 coupling entry and the
#: network simplex's arc (about 40 bytes in all: 1 GB at the limit, measured by
#: ``benchmarks/bench_otdd.py``), and its time grows faster than the number of pairs (on one
#: core of a shared machine, 1.5 s at 1,000 x 1,000 and a minute at 5,000 x 5,000).
EXACT_MAX_PAIRS = 25_000_000

#: Most float64 entries of one task's projected examples held at once by the sliced method
#: (2 MB; the one-dimensional solver makes about ten temporaries of that size).
_SLICED_CHUNK_ENTRIES = 1 << 18

#: Pivots the network simplex may take: never the limit in practice, but a solver that stops
#: early returns a coupling that is not optimal, which is refused.
_SIMPLEX_MAX_PIVOTS = 1 << 62


def import_ot():
    """The ``ot`` module (Python Optimal Transport), or an ImportError that says how to install it."""
    try:
        return importlib.import_module("ot")
    except ImportError as exc:
        raise ImportError(
            "The OTDD needs the Python Optimal Transport library: pip install 'sklearn-task2vec[ot]' "
            "(or pip install pot)."
        ) from exc


class LabelledFeatures(NamedTuple):
    """A task's examples as features sorted by class.

    ``features`` is ``(n, d)`` float64, ``bounds[c]:bounds[c + 1]`` the rows of class ``c``;
    ``where`` names the task in messages.
    """

    features: np.ndarray
    bounds: np.ndarray
    where: str

    @property
    def n_classes(self):
        return len(self.bounds) - 1

    def of_class(self, code):
        """The rows of class ``code``."""
        return self.features[self.bounds[code] : self.bounds[code + 1]]


def labelled_features(task, index, *, probe, batch_size, device, max_points, rng):
    """Task ``index`` (named ``"task {index}"``) as :class:`LabelledFeatures`.

    ``probe`` None: the inputs are the features and must be 2-D. Otherwise ``probe`` (a torch
    module, already a frozen copy on ``device``) maps each batch of inputs to ``(batch, d)``
    features. At most ``max_points`` examples are kept, drawn with ``rng`` (a RandomState).
    """
    where = f"task {index}"
    if isinstance(task, (tuple, list)) and len(task) == 2 and is_text(task[0]):
        raise TypeError(
            f"{where} holds text: the OTDD compares feature vectors; turn the texts into features "
            f"first (e.g. a text model's pooled hidden states) and pass (features, labels)."
        )
    dtype = torch.float64 if probe is None else module_dtype(probe)
    coerced = coerce_task(task, index, dtype=dtype, batch_size=batch_size, max_samples=max_points, rng=rng)
    if probe is None:
        inputs, labels = [], []
        for batch_inputs, batch_labels in coerced.batches(batch_size):
            inputs.append(batch_inputs)
            labels.append(np.asarray(batch_labels))
        features = torch.cat(inputs)
        if features.dim() != 2:
            raise ValueError(
                f"{where}: with probe=None the inputs are the features and must be 2-D "
                f"(n_examples, n_features); got shape {tuple(features.shape)}. Pass probe= (a torch "
                f"module mapping a batch of inputs to (batch, d) features) for images, or turn them "
                f"into features first."
            )
        labels = np.concatenate(labels)
    else:
        # (batch, length, d) hidden states come back pooled, one row per example.
        features, labels, *_ = task_features(probe, coerced, batch_size=batch_size, device=device)
    features = features.detach().cpu().double().numpy()
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{where}: the probe's features contain NaN or infinity.")
    if len(labels) < 2:
        raise ValueError(
            f"{where} has a single example: a distance between datasets needs two examples at least."
        )
    _, codes = encode_labels(labels, where)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    return LabelledFeatures(np.ascontiguousarray(features[order]), bounds, where)


def prepared_probe(probe, device):
    """A frozen copy of ``probe`` on ``device`` (the user's module is left as it is), or None."""
    return None if probe is None else frozen_copy(probe).to(device)


def squared_distances(first, second):
    """``||x - x'||^2`` between the rows of two matrices, each difference computed as such:
    exactly 0 between equal rows, no cancellation between close ones."""
    return cdist(first, second, "sqeuclidean")


def transport_cost(ot, cost, where):
    """The exact optimal transport cost between uniform weights on the rows and the columns of
    ``cost`` (``ot.emd2``, the network simplex); a solver that does not reach the optimum is an
    error, not a number."""
    n_rows, n_columns = cost.shape
    value, log = ot.emd2(
        np.full(n_rows, 1.0 / n_rows),
        np.full(n_columns, 1.0 / n_columns),
        cost,
        numItermax=_SIMPLEX_MAX_PIVOTS,
        log=True,
    )
    if log["result_code"] != 1:
        raise RuntimeError(f"{where}: the network simplex did not reach the optimum: {log['warning']}")
    return max(float(value), 0.0)


def exact_label_distances(ot, first, second):
    """``W_2^2(alpha_i, alpha'_j)`` between every class ``i`` of ``first`` and ``j`` of
    ``second``: the exact optimal transport between the two classes' examples (uniform weights,
    squared Euclidean cost)."""
    distances = np.empty((first.n_classes, second.n_classes))
    for i in range(first.n_classes):
        for j in range(second.n_classes):
            cost = squared_distances(first.of_class(i), second.of_class(j))
            distances[i, j] = transport_cost(
                ot, cost, f"{first.where} class {i} and {second.where} class {j}"
            )
    return distances


class GaussianMoments(NamedTuple):
    """Each class's mean, a factor ``F`` of its covariance ``Sigma = F^T F`` and the Bures
    self-fidelity ``||F F^T||_*`` (``tr Sigma`` up to rounding)."""

    means: np.ndarray
    factors: list
    self_fidelities: np.ndarray


def gaussian_moments(features):
    """:class:`GaussianMoments` of each class of ``features`` (:class:`LabelledFeatures`).

    The covariance is that of the class's examples with weights ``1/n_c`` (the moments of the
    empirical class distribution, so that a class of one example is a Dirac). Its factor is
    the centred examples over ``sqrt(n_c)`` (``n_c x d``), or, with more examples than
    features, the ``d x d`` triangular factor of their QR decomposition, the same Gram matrix.
    """
    means, factors = [], []
    for code in range(features.n_classes):
        examples = features.of_class(code)
        mean = examples.mean(axis=0)
        centred = (examples - mean) / np.sqrt(len(examples))
        if centred.shape[0] > centred.shape[1]:
            centred = np.linalg.qr(centred, mode="r")
        means.append(mean)
        factors.append(centred)
    return GaussianMoments(
        np.array(means), factors, np.array([_fidelity(factor, factor) for factor in factors])
    )


def _fidelity(first, second):
    """``tr (Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2})^{1/2}`` for ``Sigma_k = F_k^T F_k``: the nuclear
    norm of ``F_1 F_2^T``, whose singular values are those of ``Sigma_1^{1/2} Sigma_2^{1/2}``.

    Computed by a singular value decomposition, accurate to rounding relative to the largest
    singular value, where matrix square roots lose half the digits of the small eigenvalues.
    """
    return float(np.linalg.svd(first @ second.T, compute_uv=False).sum())


def gaussian_label_distances(first, second):
    """``W_2^2`` between the Gaussian approximations of every class of ``first`` and ``second``
    (:class:`GaussianMoments`): the Bures-Wasserstein closed form
    ``||mu_i - mu_j||^2 + tr Sigma_i + tr Sigma_j - 2 tr (Sigma_i^{1/2} Sigma_j Sigma_i^{1/2})^{1/2}``,
    debiased: each trace is the class's self-fidelity, so that a class is at distance 0 from
    itself in floating point too, then clipped at 0."""
    distances = np.empty((len(first.means), len(second.means)))
    for i, factor in enumerate(first.factors):
        for j, other in enumerate(second.factors):
            distances[i, j] = (
                first.self_fidelities[i] + second.self_fidelities[j] - 2.0 * _fidelity(factor, other)
            )
    distances += squared_distances(first.means, second.means)
    return np.maximum(distances, 0.0)


def outer_transport_cost(ot, first, second, label_distances):
    """``min_pi sum_ij pi_ij (||x_i - x'_j||^2 + W_2^2(alpha_{y_i}, alpha'_{y'_j}))`` over the
    couplings of the uniform weights on the examples of ``first`` and ``second``.

    Both tasks' examples are sorted by class, so the label term is added block by block, in
    place: no second matrix of the cost's size.
    """
    cost = squared_distances(first.features, second.features)
    for i in range(first.n_classes):
        rows = slice(first.bounds[i], first.bounds[i + 1])
        for j in range(second.n_classes):
            cost[rows, second.bounds[j] : second.bounds[j + 1]] += label_distances[i, j]
    return transport_cost(ot, cost, f"{first.where} and {second.where}")


def augmented_features(features):
    """Each example as ``[x, mu_y, sigma_y]``: its features, then the mean and the standard
    deviations (per feature, weights ``1/n_c``) of its class. The squared Euclidean distance
    between two such rows is ``||x - x'||^2`` plus the squared 2-Wasserstein distance between
    the diagonal Gaussians ``N(mu_y, diag sigma_y^2)`` and ``N(mu_y', diag sigma_y'^2)``."""
    blocks = []
    for code in range(features.n_classes):
        examples = features.of_class(code)
        moments = np.concatenate([examples.mean(axis=0), examples.std(axis=0)])
        blocks.append(np.hstack([examples, np.broadcast_to(moments, (len(examples), len(moments)))]))
    return np.vstack(blocks)


def orthonormal_directions(dimension, n_directions, rng):
    """``(dimension, n_directions)`` unit directions: the columns of independent uniformly random
    orthogonal matrices (Gaussian matrices' QR factors with their signs fixed), as many as
    needed. Each column is uniform on the sphere; within a matrix they are orthogonal, which
    lowers the sliced estimate's variance."""
    blocks, remaining = [], n_directions
    while remaining > 0:
        width = min(remaining, dimension)
        q, r = np.linalg.qr(rng.standard_normal((dimension, width)))
        blocks.append(q * np.where(np.diag(r) < 0, -1.0, 1.0))
        remaining -= width
    return np.hstack(blocks)


def sliced_transport_cost(ot, first, second, directions):
    """``D`` times the mean over ``directions`` of the squared 2-Wasserstein distance between
    the projections of the rows of ``first`` and ``second`` (augmented features, ``D``
    columns): the sliced approximation of the squared 2-Wasserstein distance between them.

    Each one-dimensional distance is exact (sorted values, uniform weights, ``ot.wasserstein_1d``);
    the factor ``D`` (the mean of ``(theta . v)^2`` over uniform unit ``theta`` is
    ``||v||^2 / D``) puts it on the scale of the exact method. Directions are projected in
    chunks of at most 2 MB per task.
    """
    dimension = first.shape[1]
    chunk = max(1, _SLICED_CHUNK_ENTRIES // max(len(first), len(second)))
    total = 0.0
    for start in range(0, directions.shape[1], chunk):
        block = directions[:, start : start + chunk]
        total += float(np.sum(ot.wasserstein_1d(first @ block, second @ block, p=2)))
    return max(dimension * total / directions.shape[1], 0.0)


def otdd_matrix(first, second, *, method, ot, n_projections, rng, symmetric):
    """The OTDD between every task of ``first`` and of ``second`` (lists of
    :class:`LabelledFeatures`, with the same number of features); ``symmetric``: ``second`` is
    ``first``, and only the pairs above the diagonal are computed (the diagonal is 0).

    ``method`` is ``"exact"``, ``"gaussian"`` or ``"sliced"``; ``rng`` draws the sliced
    method's directions, the same for every pair.
    """
    if method == "sliced":
        first_rows = [augmented_features(task) for task in first]
        second_rows = first_rows if symmetric else [augmented_features(task) for task in second]
        directions = orthonormal_directions(first_rows[0].shape[1], n_projections, rng)
    elif method == "gaussian":
        first_moments = [gaussian_moments(task) for task in first]
        second_moments = first_moments if symmetric else [gaussian_moments(task) for task in second]
    distances = np.zeros((len(first), len(second)))
    for i, task in enumerate(first):
        for j in range(i + 1 if symmetric else 0, len(second)):
            other = second[j]
            if method == "sliced":
                distances[i, j] = sliced_transport_cost(ot, first_rows[i], second_rows[j], directions)
                continue
            if method == "gaussian":
                label_distances = gaussian_label_distances(first_moments[i], second_moments[j])
            else:
                label_distances = exact_label_distances(ot, task, other)
            distances[i, j] = outer_transport_cost(ot, task, other, label_distances)
    if symmetric:
        distances += distances.T
    return distances


def check_tasks(first, second, *, method, symmetric):
    """Refuse tasks whose numbers of features differ and, for the exact and Gaussian methods, a
    pair of tasks too large for an exact transport problem (the largest pair compared)."""
    reference = first[0]
    for task in first + ([] if symmetric else second):
        if task.features.shape[1] != reference.features.shape[1]:
            raise ValueError(
                f"{task.where} has {task.features.shape[1]} features but {reference.where} has "
                f"{reference.features.shape[1]}: the OTDD compares tasks in one feature space (the "
                f"features of one probe)."
            )
    if method == "sliced" or (symmetric and len(first) < 2):
        return
    by_size = sorted(first, key=lambda task: len(task.features))
    if symmetric:
        largest = by_size[-2:]
    else:
        largest = [by_size[-1], max(second, key=lambda task: len(task.features))]
    n_first, n_second = (len(task.features) for task in largest)
    if n_first * n_second > EXACT_MAX_PAIRS:
        raise ValueError(
            f"{largest[0].where} and {largest[1].where} have {n_first} and {n_second} examples: "
            f"method={method!r} solves an exact transport problem over their {n_first * n_second:,} "
            f"pairs of examples, over the limit of {EXACT_MAX_PAIRS:,} (its cost matrix, coupling and "
            f"solver would take about {40 * n_first * n_second / 2**20:,.0f} MiB, and the solver's time grows "
            f"faster than the number of pairs). Use method='sliced', which scales to large sets, or "
            f"max_points= to compare random subsets of the examples."
        )
