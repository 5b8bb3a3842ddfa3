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

Beside them, a distance between the datasets themselves that needs neither a probe's Fisher
nor any training: the optimal transport dataset distance (OTDD; Alvarez-Melis & Fusi,
"Geometric Dataset Distances via Optimal Transport", NeurIPS 2020), :func:`otdd_distance` and
:func:`pairwise_otdd_distances`. It compares the examples of two tasks, features and labels,
by optimal transport, each label being the distribution of the features of its class; it
needs the Python Optimal Transport library (``pip install 'sklearn-task2vec[ot]'``).
"""

from __future__ import annotations

import functools
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions, validate_params

from ._kernels import symmetric_distance_matrix
from ._otdd import check_tasks, import_ot, labelled_features, otdd_matrix, prepared_probe
from ._utils import StrictInterval, check_embeddings, draw_seeds, resolve_device
from .tasks import is_bare_pair

__all__ = [
    "asymmetric_distance",
    "otdd_distance",
    "pairwise_otdd_distances",
    "pairwise_task_distances",
    "symmetric_distance",
    "task_distance_metric",
]

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


_OTDD_PARAMETERS = {
    "method": [StrOptions({"exact", "gaussian", "sliced"})],
    "probe": [torch.nn.Module, None],
    "max_points": [StrictInterval(Integral, 2, None, closed="left"), None],
    "n_projections": [StrictInterval(Integral, 1, None, closed="left")],
    "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
    "device": [str, torch.device],
    "random_state": ["random_state"],
}


@validate_params(
    {"task_a": "no_validation", "task_b": "no_validation", **_OTDD_PARAMETERS},
    prefer_skip_nested_validation=True,
)
def otdd_distance(
    task_a,
    task_b,
    *,
    method="exact",
    probe=None,
    max_points=None,
    n_projections=256,
    batch_size=64,
    device="auto",
    random_state=None,
):
    """Optimal transport dataset distance (OTDD) between two tasks.

    Alvarez-Melis & Fusi, "Geometric Dataset Distances via Optimal Transport", NeurIPS 2020,
    sec. 3: a task is the distribution of its labelled examples ``z = (x, y)``, and a label
    ``y`` is represented by ``alpha_y``, the distribution of the features of its class. Two
    labelled examples are at the squared distance (the paper's ``d_Z``, with ``p = 2``)

    ``d_Z((x, y), (x', y'))^2 = ||x - x'||^2 + W_2^2(alpha_y, alpha'_y')``,

    and the OTDD is the optimal transport cost between the two tasks with that cost,

    ``d_OT(A, B) = min_pi sum_ij pi_ij d_Z(z_i, z'_j)^2``

    over the couplings ``pi`` of the uniform weights on the examples of ``A`` and of ``B``.
    That is the squared 2-Wasserstein distance between the tasks on the feature-label space;
    its square root is a distance (symmetric, triangle inequality). Labels are compared only
    through their examples: the labels' names (and whether the tasks share them) do not matter,
    and tasks with disjoint label sets are compared as well.

    ``method`` says how ``W_2^2(alpha_y, alpha'_y')`` and the outer problem are computed:

    * ``"exact"``: the label distances are exact optimal transport problems between the two
      classes' examples, the outer problem an exact one (``ot.emd2``, the network simplex)
      over all pairs of examples, each class pair's examples' squared distances and the
      tasks' computed as differences (``O(n m d)``). The network simplex's time grows faster
      than the ``n m`` pairs (one core of a shared machine, 32 features, 10 classes: 0.14 s
      at 200 x 200, 1.5 s at 1,000 x 1,000, a minute at 5,000 x 5,000); its memory is about
      40 bytes per pair (the cost, the coupling, the solver's arcs). Pairs of tasks whose
      product of sizes is over 25,000,000 (5,000 x 5,000 examples, 1 GB) are refused rather
      than run out of memory.
    * ``"gaussian"``: each class is approximated by a Gaussian with its mean ``mu`` and
      covariance ``Sigma``, and the label distance is the 2-Wasserstein distance between
      Gaussians in closed form (the paper's fast approximation, sec. 4),
      ``||mu - mu'||^2 + tr Sigma + tr Sigma' - 2 tr (Sigma^{1/2} Sigma' Sigma^{1/2})^{1/2}``;
      the outer problem is exact as above, with the same limit. Cheaper than ``"exact"`` when
      classes are large: ``O(n_classes^2 d^3)`` for the label distances instead of an exact
      problem per pair of classes (0.7 s at 1,000 x 1,000, 30 s at 5,000 x 5,000 above).
    * ``"sliced"``: for large tasks. Each example becomes ``[x, mu_y, sigma_y]``: its
      features, the mean and the per-feature standard deviations of its class, a ``D = 3d``
      vector whose squared Euclidean distances are ``||x - x'||^2`` plus the 2-Wasserstein
      distance between the *diagonal* Gaussians of the two classes (exact for those:
      ``||mu - mu'||^2 + ||sigma - sigma'||^2``), i.e. the OTDD's ground cost with
      diagonal-Gaussian label distances. The outer problem is then the sliced Wasserstein
      distance: the mean over ``n_projections`` random unit directions of the exact
      one-dimensional ``W_2^2`` between the projected tasks, times ``D``. The directions are
      orthonormal sets (columns of random orthogonal matrices); with a multiple of ``D`` of
      them, the value is never above the diagonal-Gaussian OTDD (each direction's
      one-dimensional problem costs at most what the optimal coupling's projection costs) and
      equals it when the tasks differ by a translation. Otherwise it is often far below it in
      high dimension (a fifth of the exact OTDD for 32 features, ``D = 96``): compare tasks
      with one method, not values across methods. Time
      ``O(n_projections (n d + n log n))``, memory ``O(n d)`` (above: 2.3 s and 60 MB at
      5,000 x 5,000, 10 s and 85 MB at 20,000 x 20,000, 256 directions).

    A task is at distance 0 from itself by construction, for every method: squared distances
    between examples are computed as differences (exactly 0 between equal examples), the
    network simplex finds the identity coupling, and the Gaussian label distance is debiased,
    each trace replaced by the class's own fidelity term (``W^2(a, b) - W^2(a, a) / 2 -
    W^2(b, b) / 2``, which is ``W^2(a, b)`` in exact arithmetic), computed from a
    factorisation of the covariance, not matrix square roots, so that a class is at distance
    0 from itself in floating point too (entropic solvers and square roots of singular
    covariances leave a self-distance well above 0).

    Parameters
    ----------
    task_a, task_b : task
        Two tasks, as the estimators take them (:mod:`sklearn_task2vec.tasks`): an
        ``(inputs, labels)`` pair, a torch Dataset or a DataLoader. With ``probe=None`` the
        inputs are the features: a 2-D array ``(n_examples, n_features)``, two examples at
        least; images need ``probe=``. Text tasks are refused: turn them into features first.
    method : {"exact", "gaussian", "sliced"}, default="exact"
        How the distance is computed (above).
    probe : torch.nn.Module or None, default=None
        Maps a batch of inputs to ``(batch, d)`` features (a frozen copy runs, in eval mode,
        without gradients, in batches of ``batch_size``); e.g. a pretrained network cut before
        its classifier, or an expert's module (:class:`~sklearn_task2vec.zoo.Expert`).
        ``None``: the inputs are the features.
    max_points : int or None, default=None
        At most this many examples of each task, drawn at random without replacement (with the
        same seed for each task, so that a task compared with itself is compared with the same
        subset). The distance of the subsets estimates the distance of the tasks. ``None``:
        every example.
    n_projections : int, default=256
        Directions of the sliced method (ignored by the others). The estimate's spread shrinks
        as ``1 / sqrt(n_projections)``.
    batch_size : int, default=64
        Examples per batch read from the task (and per forward pass of the probe).
    device : str or torch.device, default="auto"
        Where the probe runs; ``"auto"`` is CUDA when available, else CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsampling (``max_points``) and the sliced method's directions; the exact
        and Gaussian methods on whole tasks draw nothing.

    Returns
    -------
    distance : float
        ``d_OT(task_a, task_b) >= 0``, in squared feature units.

    Raises
    ------
    ValueError
        If a task has a single example, NaN or infinite inputs, inputs that are not 2-D
        features without a probe, or a number of features other than the other task's; if
        the exact or Gaussian method is asked for tasks over its size limit (the message
        points to ``method="sliced"`` and ``max_points``).
    TypeError
        If a task is not a task.
    ImportError
        If the Python Optimal Transport library is not installed.

    See Also
    --------
    pairwise_otdd_distances : The OTDD between every pair of tasks of a list, for
        ``metric="precomputed"`` in scikit-learn.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.distances import otdd_distance
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> otdd_distance((X, y), (X, y))
    0.0
    >>> otdd_distance((X, y), (X + 1.0, y))  # moved by 1: 1 for the features, 1 for the labels
    2.0
    >>> otdd_distance((X, y), (X + 1.0, y), method="gaussian")
    2.0
    >>> otdd_distance((X, y), (X, np.array(["b", "b", "a", "a"])))  # the labels' names do not matter
    0.0
    """
    return float(
        _otdd_distances(
            [task_a],
            [task_b],
            ("a",),
            ("b",),
            method=method,
            probe=probe,
            max_points=max_points,
            n_projections=n_projections,
            batch_size=batch_size,
            device=device,
            random_state=random_state,
        )[0, 0]
    )


@validate_params(
    {"tasks": [list, tuple], "other_tasks": [list, tuple, None], **_OTDD_PARAMETERS},
    prefer_skip_nested_validation=True,
)
def pairwise_otdd_distances(
    tasks,
    other_tasks=None,
    *,
    method="exact",
    probe=None,
    max_points=None,
    n_projections=256,
    batch_size=64,
    device="auto",
    random_state=None,
):
    """OTDD between every pair of tasks: a matrix for ``metric="precomputed"``.

    :func:`otdd_distance` for every task of ``tasks`` and of ``other_tasks`` (or of ``tasks``
    again), each task read (and put through the probe) once. scikit-learn's ``metric=``
    callables compare two rows of numbers, not two datasets, so the OTDD enters scikit-learn
    as this precomputed matrix: e.g. ``NearestNeighbors(metric="precomputed").fit(D)``,
    ``AgglomerativeClustering(metric="precomputed", linkage="average").fit(D)`` or
    ``sklearn.manifold.MDS(dissimilarity="precomputed")``. Its entries are squared
    2-Wasserstein distances: take ``np.sqrt(D)`` where a metric is required (the square root
    satisfies the triangle inequality). The sliced method uses the same directions for every
    pair, and with ``max_points`` each task is subsampled once, for all its pairs.

    Parameters
    ----------
    tasks : list of tasks
        The rows, as :func:`otdd_distance` takes each task.
    other_tasks : list of tasks or None, default=None
        The columns; ``None``: ``tasks`` again, and only one triangle is computed.
    method, probe, max_points, n_projections, batch_size, device, random_state
        As in :func:`otdd_distance`.

    Returns
    -------
    distances : ndarray of shape (n_tasks, n_other_tasks)
        ``distances[i, j] = d_OT(tasks[i], other_tasks[j])``; with ``other_tasks=None``,
        exactly symmetric with a zero diagonal.

    Raises
    ------
    ValueError, TypeError, ImportError
        As :func:`otdd_distance`, naming the task (``"task 2"``, ``"task 0 of other_tasks"``);
        also if a list is empty or is one ``(inputs, labels)`` pair rather than a list of tasks.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neighbors import NearestNeighbors
    >>> from sklearn_task2vec.distances import pairwise_otdd_distances
    >>> rng = np.random.RandomState(0)
    >>> X, y = rng.normal(size=(40, 3)), np.repeat([0, 1], 20)
    >>> tasks = [(X, y), (X + 0.1, y), (X + 1.0, y)]  # moved by v: 2 ||v||^2 (features and labels)
    >>> D = pairwise_otdd_distances(tasks, method="gaussian")
    >>> D.round(2)
    array([[0.  , 0.06, 6.  ],
           [0.06, 0.  , 4.86],
           [6.  , 4.86, 0.  ]])
    >>> NearestNeighbors(n_neighbors=2, metric="precomputed").fit(D).kneighbors(return_distance=False)
    array([[1, 2],
           [0, 2],
           [1, 0]])
    """
    for name, value in (("tasks", tasks), ("other_tasks", other_tasks)):
        if value is not None and is_bare_pair(value):
            raise TypeError(
                f"{name} must be a list of tasks, e.g. [(inputs, labels), ...]; got one (inputs, labels) "
                f"pair: use otdd_distance for two tasks."
            )
        if value is not None and len(value) == 0:
            raise ValueError(f"{name} is empty: give one task at least.")
    return _otdd_distances(
        tasks,
        other_tasks,
        range(len(tasks)),
        None if other_tasks is None else [f"{j} of other_tasks" for j in range(len(other_tasks))],
        method=method,
        probe=probe,
        max_points=max_points,
        n_projections=n_projections,
        batch_size=batch_size,
        device=device,
        random_state=random_state,
    )


def _otdd_distances(
    tasks,
    other_tasks,
    indices,
    other_indices,
    *,
    method,
    probe,
    max_points,
    n_projections,
    batch_size,
    device,
    random_state,
):
    """The OTDD matrix of ``tasks`` against ``other_tasks`` (None: ``tasks``, one triangle),
    naming each task ``"task {index}"`` by ``indices`` and ``other_indices``."""
    ot = import_ot()
    device = resolve_device(device)
    subsample_seed, direction_seed = draw_seeds(random_state, 2)
    module = prepared_probe(probe, device)

    def read(task, index):
        return labelled_features(
            task,
            index,
            probe=module,
            batch_size=batch_size,
            device=device,
            max_points=max_points,
            rng=np.random.RandomState(subsample_seed),
        )

    first = [read(task, index) for task, index in zip(tasks, indices)]
    symmetric = other_tasks is None
    second = first if symmetric else [read(task, index) for task, index in zip(other_tasks, other_indices)]
    check_tasks(first, second, method=method, symmetric=symmetric)
    return otdd_matrix(
        first,
        second,
        method=method,
        ot=ot,
        n_projections=n_projections,
        rng=np.random.RandomState(direction_seed),
        symmetric=symmetric,
    )
