"""Transferability scores: which pretrained model suits a task, from its features on the task.

TASK2VEC and MODEL2VEC (:mod:`sklearn_task2vec.selector`) choose an expert from the new
task's embedding, one probe pass per task whatever the number of experts. The scores here are
the alternatives in common use: each needs the new task pushed through **every** candidate
model, and scores that model from what comes out.

* :func:`logme_score`: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning", ICML 2021; the fixed-point form of "Ranking and Tuning Pre-trained
  Models", JMLR 2022): the maximised log evidence, per example, of a Bayesian linear model of
  each class's indicator from the features, averaged over the classes.
* :func:`leep_score`: LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability
  of Learned Representations", ICML 2020): the mean log-likelihood of the target labels under
  the "expected empirical predictor" built from the source model's class probabilities.
* :func:`nce_score`: NCE (Tran et al., "Transferability and Hardness of Supervised
  Classification Tasks", ICCV 2019): minus the conditional entropy of the target labels given
  the source labels.
* :func:`h_score`: H-score (Bao et al., "An Information-Theoretic Approach to Transferability
  in Task Transfer Learning", ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``.

Higher is better for all four. :class:`TransferabilitySelector` chooses, for each task, the
expert of the highest score with the ``predict`` contract of
:class:`~sklearn_task2vec.Model2VecSelector`; :func:`sklearn_task2vec.zoo.transferability_scores`
computes the scores of a zoo of experts on a list of tasks, and
:func:`~sklearn_task2vec.selector.weighted_kendall_tau` measures how well a score ranks the
experts (weighted Kendall's tau against their accuracy, as in the LogME paper).
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_array
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils import StrictInterval, check_expert_names, validates_parameters
from .tasks import encode_labels

__all__ = ["TransferabilitySelector", "h_score", "leep_score", "logme_score", "nce_score"]

#: How far from 1 a row of source probabilities may sum (float32 softmax outputs over
#: thousands of classes are within 1e-6 of 1).
PROBABILITY_SUM_TOLERANCE = 1e-4
# Fixed-point iteration of LogME: the change of the log evidence per example at which it
# stops, and the most iterations (it usually stops within twenty; near a boundary of the
# parameter space, where the maximum is a limit, it creeps, and the closed-form limit is
# taken instead).
_EVIDENCE_TOLERANCE = 1e-11
_FIXED_POINT_MAX_ITER = 1000


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _checked_matrix(values, name, where):
    """``values`` as a finite 2-D float64 array, or a ValueError naming ``where`` and ``name``."""
    try:
        return check_array(values, dtype=np.float64, input_name=name, ensure_min_samples=2)
    except ValueError as exc:
        raise ValueError(f"{where}: {name}: {exc}") from exc


def _checked_labels(labels, n_examples, name, where, *, min_classes=2):
    """``(codes, n_classes)`` of hashable ``labels``, one per example."""
    array = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    if array.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-D (one label per example), got shape {array.shape}.")
    if len(array) != n_examples:
        raise ValueError(f"{where}: {name} has {len(array)} labels for {n_examples} examples.")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {name} contains NaN or infinity, which are not class labels.")
    if array.dtype == object and any(label is None or label != label for label in array.tolist()):
        raise ValueError(f"{where}: {name} contains None or NaN, which are not class labels.")
    classes, codes = encode_labels(array, f"{where}: {name}")
    if len(classes) < min_classes:
        raise ValueError(
            f"{where}: {name} has a single class ({classes[0]!r}): a transferability score compares "
            f"how well models separate classes, and needs two at least."
        )
    return codes, len(classes)


def _one_hot(codes, n_classes):
    indicators = np.zeros((len(codes), n_classes))
    indicators[np.arange(len(codes)), codes] = 1.0
    return indicators


# --------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------


def _log_evidence(alpha, beta, sigma2, z, residual, n_examples):
    """Log evidence ``log N(y; 0, F F^T / alpha + I / beta)`` of each class, from the SVD.

    ``F = U S V^T`` with the ``k`` non-zero singular values ``S``; ``z = U^T y`` and
    ``residual = ||y - U z||^2``. The covariance has eigenvalues ``s_i^2 / alpha + 1 / beta``
    on the span of ``U`` and ``1 / beta`` on the ``n - k`` others, whence (LogME, eq. 2,
    written on the eigenbasis):
    ``n/2 log beta + k/2 log alpha - 1/2 sum log(alpha + beta s^2) - 1/2 sum alpha beta z^2 /
    (alpha + beta s^2) - beta residual / 2 - n/2 log 2 pi``. Only the ``k`` non-zero
    singular values carry a ``log alpha``: a zero direction of ``F^T F`` adds ``log alpha`` to
    ``D log alpha`` and to ``log |A|`` alike.
    """
    k = len(sigma2)
    precision = alpha + beta * sigma2[:, None]  # (k, n_classes)
    return (
        0.5 * n_examples * np.log(beta)
        + 0.5 * k * np.log(alpha)
        - 0.5 * np.log(precision).sum(axis=0)
        - 0.5 * (alpha * beta * z**2 / precision).sum(axis=0)
        - 0.5 * beta * residual
        - 0.5 * n_examples * np.log(2.0 * np.pi)
    )


def _fixed_point(sigma2, z, residual, n_examples):
    """``(alpha, beta)`` of each class by the fixed-point iteration of You et al. (2022, Alg. 2).

    ``gamma = sum beta s^2 / (alpha + beta s^2)``, ``alpha <- gamma / m^T m`` and
    ``beta <- (n - gamma) / ||F m - y||^2``, with the posterior mean ``m`` of the weights
    written on the singular vectors. All classes at once. A class stops when its evidence
    moves by less than ``_EVIDENCE_TOLERANCE`` per example, or when its precisions leave the
    finite numbers (its maximum is a limit, which the caller evaluates in closed form).
    """
    n_classes = z.shape[1]
    alpha, beta = np.ones(n_classes), np.ones(n_classes)
    evidence = _log_evidence(alpha, beta, sigma2, z, residual, n_examples)
    active = np.arange(n_classes)
    s2 = sigma2[:, None]
    # Near a boundary the precisions overflow: such a class is stopped, not an error.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(_FIXED_POINT_MAX_ITER):
            a, b, zz = alpha[active], beta[active], z[:, active]
            precision = a + b * s2
            gamma = (b * s2 / precision).sum(axis=0)
            weights_norm2 = (b**2 * s2 * zz**2 / precision**2).sum(axis=0)
            misfit = (a**2 * zz**2 / precision**2).sum(axis=0) + residual[active]
            new_alpha = gamma / weights_norm2
            new_beta = (n_examples - gamma) / misfit
            finite = np.isfinite(new_alpha) & np.isfinite(new_beta) & (new_alpha > 0) & (new_beta > 0)
            new_evidence = _log_evidence(new_alpha, new_beta, sigma2, zz, residual[active], n_examples)
            finite &= np.isfinite(new_evidence)
            moved = np.abs(new_evidence - evidence[active])
            updated = active[finite]
            alpha[updated], beta[updated] = new_alpha[finite], new_beta[finite]
            evidence[updated] = new_evidence[finite]
            active = active[finite & (moved > _EVIDENCE_TOLERANCE * n_examples)]
            if not active.size:
                break
    return alpha, beta, evidence


def _maximised_evidence(sigma2, z, residual, counts, n_examples):
    """The supremum over ``alpha, beta > 0`` of each class's log evidence.

    The fixed point, or a limit on the boundary of the parameter space where that is higher:
    ``alpha -> inf`` (no weights, ``y`` is noise of variance ``||y||^2 / n``) and, when ``y``
    has no component outside the span of the features (always so when ``F`` has rank ``n``,
    e.g. fewer examples than features), ``beta -> inf``.
    """
    n_classes = z.shape[1]
    k = len(sigma2)
    # alpha -> inf: log N(y; 0, I / beta) at beta = n / ||y||^2.
    candidates = [-0.5 * n_examples * (np.log(2.0 * np.pi * counts / n_examples) + 1.0)]
    if k:
        candidates.append(_fixed_point(sigma2, z, residual, n_examples)[2])
        # ||y||^2 is the class count: a residual below rounding of it is no residual.
        exact = residual <= 1e3 * np.finfo(np.float64).eps * n_examples * counts
        if k == n_examples:
            # beta -> inf: log N(y; 0, F F^T / alpha), maximised at alpha = k / sum(z^2 / s^2).
            quadratic = (z**2 / sigma2[:, None]).sum(axis=0)
            limit = (
                0.5 * k * (np.log(k / quadratic) - 1.0)
                - 0.5 * np.log(sigma2).sum()
                - 0.5 * n_examples * np.log(2.0 * np.pi)
            )
            candidates.append(limit)
        elif exact.any():
            # y in the span of features of rank k < n: the evidence grows without bound with beta.
            candidates.append(np.where(exact, np.inf, -np.inf))
    return np.max(np.vstack([np.broadcast_to(c, (n_classes,)) for c in candidates]), axis=0)


@validate_params({"features": ["array-like"], "labels": ["array-like"]}, prefer_skip_nested_validation=True)
def logme_score(features, labels):
    """LogME: the maximised log evidence per example of a Bayesian linear model of the labels.

    For each class ``c``, the indicator ``y = [labels == c]`` is modelled as ``y = F w + e``
    with ``w ~ N(0, I / alpha)`` and ``e ~ N(0, I / beta)`` (You et al., ICML 2021, sec. 4.2),
    so that ``p(y | F, alpha, beta) = N(y; 0, F F^T / alpha + I / beta)`` (eq. 2, the
    marginal likelihood). Its logarithm, maximised over ``alpha, beta > 0`` by the fixed-point
    iteration on the singular value decomposition of ``F`` (You et al., "Ranking and Tuning
    Pre-trained Models", JMLR 2022, Algorithm 2), divided by the number of examples and
    averaged over the classes, is the score (ICML 2021, Algorithm 1).

    This is the marginal likelihood also when ``F`` has fewer examples than features or is
    rank-deficient (dead units): only the non-zero singular values enter, unlike thuml's
    ``LogME.py``, which counts ``D/2 log alpha`` for all ``D`` weights but only the non-zero
    singular values in ``log |A|`` and so overstates the evidence there. Where the maximum is
    a limit (``alpha -> inf``: the features explain nothing; ``beta -> inf``: a class
    indicator in the span of the features), the limit is taken; it is ``+inf`` when an
    indicator is *exactly* a linear function of features of rank below the number of
    examples (the evidence is then unbounded).

    Features are used as given (no centring, no bias, as in the paper); the score depends on
    their scale only through the model, so compare models on their raw features.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values, two classes at least.

    Returns
    -------
    score : float
        The mean over classes of the maximised log evidence per example; higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, ``labels`` does not have one label per
        example or has a single class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import logme_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(2, size=200)
    >>> informative = np.c_[labels + 0.1 * rng.normal(size=200), rng.normal(size=(200, 4))]
    >>> noise = rng.normal(size=(200, 5))
    >>> bool(logme_score(informative, labels) > logme_score(noise, labels))
    True
    """
    where = "logme_score"
    features = _checked_matrix(features, "features", where)
    codes, n_classes = _checked_labels(labels, features.shape[0], "labels", where)
    n_examples = features.shape[0]
    indicators = _one_hot(codes, n_classes)
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    # numpy's matrix_rank cutoff: singular values below it are zero up to rounding.
    cutoff = singular.max(initial=0.0) * max(features.shape) * np.finfo(np.float64).eps
    keep = singular > cutoff
    left, sigma2 = left[:, keep], singular[keep] ** 2
    z = left.T @ indicators
    residual = ((indicators - left @ z) ** 2).sum(axis=0)
    counts = indicators.sum(axis=0)
    evidence = _maximised_evidence(sigma2, z, residual, counts, n_examples)
    return float(np.mean(evidence) / n_examples)


# --------------------------------------------------------------------------------------
# LEEP, NCE, H-score
# --------------------------------------------------------------------------------------


@validate_params(
    {"source_probabilities": ["array-like"], "labels": ["array-like"]}, prefer_skip_nested_validation=True
)
def leep_score(source_probabilities, labels):
    """LEEP: the log expected empirical prediction of the target labels (Nguyen et al., ICML 2020).

    With ``theta(x_i)`` the source model's probabilities over its ``Z`` source classes for
    target example ``i``: the empirical joint ``P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z``
    (eq. 1), the empirical conditional ``P(y | z) = P(y, z) / P(z)`` (eq. 2), and

    ``LEEP = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z`` (eq. 3).

    A source class that no example gives any probability (``P(z) = 0``) contributes nothing.

    Parameters
    ----------
    source_probabilities : array-like of shape (n_examples, n_source_classes)
        The source model's predicted class probabilities on the target examples (e.g. the
        softmax of its source head's logits): non-negative rows that sum to 1 (within 1e-4,
        the module's ``PROBABILITY_SUM_TOLERANCE``).
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values, two classes at least.

    Returns
    -------
    score : float
        LEEP, at most 0; higher is better.

    Raises
    ------
    ValueError
        If the probabilities are not finite, are negative or a row does not sum to 1, or the
        labels do not have one per example or have a single class.

    Examples
    --------
    >>> from sklearn_task2vec.transferability import leep_score
    >>> probabilities = [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]]
    >>> round(leep_score(probabilities, ["cat", "cat", "dog", "dog"]), 4)
    -0.3426
    """
    where = "leep_score"
    probabilities = _checked_matrix(source_probabilities, "source_probabilities", where)
    codes, n_classes = _checked_labels(labels, probabilities.shape[0], "labels", where)
    if np.any(probabilities < 0):
        raise ValueError(
            f"{where}: source_probabilities has negative entries; pass probabilities (a softmax)."
        )
    sums = probabilities.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"{where}: source_probabilities must have rows that sum to 1 (probabilities over the "
            f"source classes); row {bad[0]} sums to {sums[bad[0]]:.6g} ({bad.size} rows do not). "
            f"Pass the softmax of the source logits, not the logits."
        )
    n_examples = probabilities.shape[0]
    joint = _one_hot(codes, n_classes).T @ probabilities / n_examples  # (n_classes, Z), eq. 1
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # eq. 2
    expected = np.einsum("iz,iz->i", probabilities, conditional[codes])  # eq. 3, inside the log
    return float(np.mean(np.log(expected)))


@validate_params(
    {"source_labels": ["array-like"], "labels": ["array-like"]}, prefer_skip_nested_validation=True
)
def nce_score(source_labels, labels):
    """NCE: minus the conditional entropy of the target labels given the source labels.

    Tran et al., ICCV 2019 (eq. 2-4): with the empirical joint distribution ``P(y, z)`` of
    target labels ``y`` and source labels ``z`` on the same examples,
    ``NCE = -H(Y | Z) = sum_{y, z} P(y, z) log P(y | z)``. As in the LEEP paper (sec. 5),
    the source labels of target examples are the source model's predictions (the arg-max of
    its source head).

    Parameters
    ----------
    source_labels : array-like of shape (n_examples,)
        The source label of each target example: any hashable values.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values, two classes at least.

    Returns
    -------
    score : float
        NCE, between ``-H(Y)`` (source labels tell nothing) and 0 (they determine the target
        labels); higher is better.

    Raises
    ------
    ValueError
        If a label array is not 1-D, their lengths differ, or the target has a single class.

    Examples
    --------
    >>> from sklearn_task2vec.transferability import nce_score
    >>> nce_score(["a", "a", "b", "b"], [0, 0, 1, 1])   # the source labels determine the target's
    0.0
    >>> round(nce_score(["a", "a", "a", "a"], [0, 0, 1, 1]), 4)   # -H(Y) = -log 2
    -0.6931
    """
    where = "nce_score"
    target = np.asarray(labels) if not isinstance(labels, np.ndarray) else labels
    if target.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D (one label per example), got shape {target.shape}.")
    source_codes, n_source = _checked_labels(
        source_labels, len(target), "source_labels", where, min_classes=1
    )
    codes, n_classes = _checked_labels(labels, len(target), "labels", where)
    n_examples = len(codes)
    joint = np.bincount(codes * n_source + source_codes, minlength=n_classes * n_source).reshape(
        n_classes, n_source
    )
    joint = joint / n_examples
    source_marginal = joint.sum(axis=0)
    seen = joint > 0
    ratio = np.divide(joint, source_marginal, out=np.ones_like(joint), where=seen)
    return float(np.sum(joint[seen] * np.log(ratio[seen])))


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "shrinkage": [StrictInterval(Real, 0, 1, closed="both"), None],
    },
    prefer_skip_nested_validation=True,
)
def h_score(features, labels, *, shrinkage=None):
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))`` (Bao et al., ICIP 2019, eq. 3 / Definition 2).

    ``cov(f)`` is the covariance of the features over the examples and ``cov(E[f | y])`` the
    covariance of the class-conditional means (each example replaced by its class's mean
    feature vector); both with the same normalisation, which cancels.

    Regularisation: ``cov(f)`` is singular with fewer examples than features or with constant
    (dead) features. By default its inverse is the pseudo-inverse on its range, eigenvalues at
    most ``max(n_examples, n_features) * eps`` times the largest treated as zero (numpy's
    rank cutoff; thuml's ``HScore`` uses ``pinv`` alike). The class means lie in that range,
    so the score is the H-score of the features' own subspace. With ``shrinkage=s``, the
    inverse of ``(1 - s) cov(f) + s tr(cov(f)) / D I`` instead (the shrinkage of Ibrahim et
    al., "Newer is not always better", ICLR 2023, with a fixed ``s``), which tempers the
    noise of small eigenvalues when examples are few.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values, two classes at least.
    shrinkage : float in [0, 1] or None, default=None
        ``None``: the pseudo-inverse described above. A float: the shrinkage weight ``s``
        (``0`` is the plain inverse, which fails on a singular covariance).

    Returns
    -------
    score : float
        The H-score, non-negative (at most the number of classes minus one without
        shrinkage); higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, ``labels`` does not have one label per
        example or has a single class, or ``shrinkage=0`` meets a singular covariance.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import h_score
    >>> features = [[0.0, 1.0], [0.2, -1.0], [1.0, 0.5], [1.2, -0.5]]
    >>> round(h_score(features, [0, 0, 1, 1]), 4)
    0.996
    """
    where = "h_score"
    features = _checked_matrix(features, "features", where)
    codes, n_classes = _checked_labels(labels, features.shape[0], "labels", where)
    n_examples, n_features = features.shape
    centred = features - features.mean(axis=0)
    covariance = centred.T @ centred / n_examples
    counts = np.bincount(codes, minlength=n_classes)
    class_means = _one_hot(codes, n_classes).T @ centred / counts[:, None]
    # cov(E[f | y]) = sum_c (n_c / n) mu_c mu_c^T = B^T B with B's rows sqrt(n_c / n) mu_c.
    between = np.sqrt(counts / n_examples)[:, None] * class_means
    if shrinkage is not None:
        target = np.trace(covariance) / n_features
        regularised = (1.0 - shrinkage) * covariance + shrinkage * target * np.eye(n_features)
        try:
            solved = np.linalg.solve(regularised, between.T)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{where}: the covariance of the features is singular with shrinkage={shrinkage}; "
                f"use shrinkage=None (pseudo-inverse) or a positive shrinkage."
            ) from None
        return float(np.sum(between.T * solved))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    cutoff = eigenvalues.max(initial=0.0) * max(n_examples, n_features) * np.finfo(np.float64).eps
    keep = eigenvalues > cutoff
    projected = between @ eigenvectors[:, keep]
    return float(np.sum(projected**2 / eigenvalues[keep]))


# --------------------------------------------------------------------------------------
# The selector
# --------------------------------------------------------------------------------------


class TransferabilitySelector(BaseEstimator):
    """Pick, for each task, the expert with the highest transferability score.

    Samples are tasks, one row per task; features are experts: ``X[i, j]`` is the score of
    expert ``j`` on task ``i`` (higher is better), e.g. one matrix of
    :func:`sklearn_task2vec.zoo.transferability_scores`. :meth:`predict` returns the chosen
    expert of each task, from ``classes_``, as :class:`~sklearn_task2vec.Model2VecSelector`'s
    does, so :data:`~sklearn_task2vec.selector.model_selection_scorer` scores either. Unlike
    MODEL2VEC, nothing is learned from solved tasks: ``fit`` records the experts and the
    number of columns.

    Parameters
    ----------
    experts : array-like of shape (n_experts,) or None, default=None
        Names of the experts, in the order of the columns of ``X``; they become
        ``classes_``. ``None``: ``0 .. n_experts - 1``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_experts,)
        The experts, in column order.
    n_features_in_ : int
        The number of experts (columns of ``X``).

    Examples
    --------
    >>> from sklearn_task2vec.transferability import TransferabilitySelector
    >>> scores = [[-0.7, -0.5, -0.9], [-0.2, -0.6, -0.4]]   # e.g. LogME, 2 tasks x 3 experts
    >>> selector = TransferabilitySelector(experts=["a", "b", "c"]).fit(scores)
    >>> selector.predict(scores).tolist()
    ['b', 'a']
    """

    _parameter_constraints: dict = {"experts": ["array-like", None]}

    def __init__(self, *, experts=None):
        self.experts = experts

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the experts (the columns of the score matrix).

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_experts)
            Scores of every expert on some tasks: finite.
        y : None
            Ignored; there for the Pipeline API.

        Returns
        -------
        self : TransferabilitySelector
            The fitted selector.
        """
        X = validate_data(self, X, dtype=np.float64)
        if self.experts is None:
            self.classes_ = np.arange(X.shape[1])
            return self
        experts = check_expert_names(self.experts)
        if len(experts) != X.shape[1]:
            raise ValueError(
                f"experts must name each of the {X.shape[1]} columns of X (the experts), got "
                f"{len(experts)} names."
            )
        self.classes_ = experts
        return self

    @validates_parameters
    def decision_function(self, X):
        """The scores themselves, checked: higher for better experts.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_experts)
            Scores of every expert on each task: finite.

        Returns
        -------
        scores : ndarray of shape (n_tasks, n_experts)
            ``X`` as float64.
        """
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    @validates_parameters
    def predict(self, X):
        """The expert of the highest score for each task (ties: the first in column order).

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_experts)
            Scores of every expert on each task: finite.

        Returns
        -------
        experts : ndarray of shape (n_tasks,)
            The chosen expert of each task, from ``classes_``.
        """
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]
