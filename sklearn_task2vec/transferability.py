"""Transferability scores: which pretrained model suits a task, from its features on the task.

TASK2VEC and MODEL2VEC (:mod:`sklearn_task2vec.selector`) choose an expert from the new
task's embedding, one probe pass per task whatever the number of experts. The scores here are
the alternatives in common use: each needs the new task pushed through **every** candidate
model, and scores that model from what comes out.

From the model's features of the task's examples and the labels:

* :func:`logme_score`: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning", ICML 2021; the fixed-point form of "Ranking and Tuning Pre-trained
  Models", JMLR 2022): the maximised log evidence, per example, of a Bayesian linear model of
  each class's indicator (or of a regression target) from the features.
* :func:`h_score`: H-score (Bao et al., "An Information-Theoretic Approach to Transferability
  in Task Transfer Learning", ICIP 2019): ``tr(cov(f)^-1 cov(E[f | y]))``.
* :func:`knn_score`: the leave-one-out accuracy of a k-nearest-neighbour classifier on the
  features (minus its mean squared error for a regression target), the "plain k-NN" that
  Sorkhei et al. ("k-NN as a Simple and Effective Estimator of Transferability", 2025) find
  a strong estimate.
* :func:`sfda_score`: SFDA (Shao et al., "Not All Models Are Equal: Predicting Model
  Transferability in a Self-challenging Fisher Space", ECCV 2022): a regularised Fisher
  discriminant's log-likelihood of the labels, after mixing each example towards the other
  classes by its confidence.
* :func:`nleep_score`: N-LEEP (Li et al., "Ranking Neural Checkpoints", CVPR 2021): LEEP with
  a Gaussian mixture on the principal components of the features as the source model.
* :func:`transrate_score`: TransRate (Huang et al., "Frustratingly Easy Transferability
  Estimation", ICML 2022): the coding rate of the features minus its average within classes.
* :func:`gbc_score`: GBC (Pándy et al., "Transferability Estimation using Bhattacharyya Class
  Separability", CVPR 2022): minus the total Bhattacharyya overlap of per-class Gaussians.
* :func:`parc_score`: PARC (Bolya et al., "Scalable Diverse Model Selection for Accessible
  Transfer Learning", NeurIPS 2021): the Spearman correlation of the examples' pairwise
  feature dissimilarities with their label dissimilarities.

From the model's *source* head (its classifier over the classes it was trained on):

* :func:`leep_score`: LEEP (Nguyen et al., "LEEP: A New Measure to Evaluate Transferability
  of Learned Representations", ICML 2020): the mean log-likelihood of the target labels under
  the "expected empirical predictor" built from the source model's class probabilities.
* :func:`nce_score`: NCE (Tran et al., "Transferability and Hardness of Supervised
  Classification Tasks", ICCV 2019): minus the conditional entropy of the target labels given
  the source labels.

Higher is better for all. LogME, H-score and k-NN also take a regression target (continuous
labels): their ``target`` parameter says which kind the labels are, ``"auto"`` reading it
from them (see :func:`logme_score`); the other scores compare classes and refuse labels with
non-integer values. :class:`TransferabilitySelector` chooses, for each task, the expert of
the highest score with the ``predict`` contract of
:class:`~sklearn_task2vec.Model2VecSelector`; :func:`sklearn_task2vec.zoo.transferability_scores`
computes the scores of a zoo of experts on a list of tasks (by the names of
:data:`SCORE_NAMES`), and :func:`~sklearn_task2vec.selector.weighted_kendall_tau` measures
how well a score ranks the experts (weighted Kendall's tau against their accuracy, as in the
LogME paper).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.spatial.distance
import scipy.special
import scipy.stats
from sklearn.base import BaseEstimator, _fit_context
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_array
from sklearn.utils._param_validation import StrOptions, validate_params
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from ._utils import StrictInterval, check_expert_names, python_scalar, validates_parameters
from .tasks import encode_labels

__all__ = [
    "SCORE_NAMES",
    "TransferabilitySelector",
    "gbc_score",
    "h_score",
    "knn_score",
    "leep_score",
    "logme_score",
    "nce_score",
    "nleep_score",
    "parc_score",
    "sfda_score",
    "transrate_score",
]

#: The names of the scores, as :func:`sklearn_task2vec.zoo.transferability_scores` and
#: :class:`TransferabilitySelector` take them.
SCORE_NAMES = ("logme", "leep", "nce", "h_score", "knn", "sfda", "nleep", "transrate", "gbc", "parc")
#: How far from 1 a row of source probabilities may sum (float32 softmax outputs over
#: thousands of classes are within 1e-6 of 1).
PROBABILITY_SUM_TOLERANCE = 1e-4
# Fixed-point iteration of LogME: the change of the log evidence per example at which it
# stops, and the most iterations (it usually stops within twenty; near a boundary of the
# parameter space, where the maximum is a limit, it creeps, and the closed-form limit is
# taken instead).
_EVIDENCE_TOLERANCE = 1e-11
_FIXED_POINT_MAX_ITER = 1000
# SFDA's regularisation strength, exp(-a * largest eigenvalue of the within-class covariance),
# with the constant a of Shao et al.'s code.
_SFDA_SHRINKAGE_DECAY = 5.0
# Rows of the distance matrix computed at once by knn_score (memory: this many times n_examples).
_KNN_BLOCK_ROWS = 1024
# Decimals to which PARC rounds the feature dissimilarities (in [0, 2]) before ranking them.
_PARC_DECIMALS = 12
# The least spread (in standard deviations) of an example's standardised features for PARC.
_PARC_FLAT_ROW = 1e-8
_TARGETS = StrOptions({"auto", "classification", "regression"})


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _checked_matrix(values, name, where):
    """``values`` as a finite 2-D float64 array, or a ValueError naming ``where`` and ``name``."""
    try:
        return check_array(values, dtype=np.float64, input_name=name, ensure_min_samples=2)
    except ValueError as exc:
        raise ValueError(f"{where}: {name}: {exc}") from exc


def _as_array(labels):
    return np.asarray(labels) if not isinstance(labels, np.ndarray) else labels


def _is_continuous(array):
    """Whether finite numeric 1-D labels have non-integer values (scikit-learn's ``type_of_target``
    calls them ``"continuous"``)."""
    return (
        array.ndim == 1
        and array.dtype.kind == "f"
        and bool(np.all(np.isfinite(array)))
        and type_of_target(array) == "continuous"
    )


def _checked_labels(labels, n_examples, name, where, *, min_classes=2, refuse_continuous=True):
    """``(codes, n_classes)`` of hashable ``labels``, one per example.

    ``refuse_continuous``: refuse float labels with non-integer values, which would make each
    distinct value a class of its own (a regression target given to a score of classes).
    """
    array = _as_array(labels)
    if array.ndim != 1:
        raise ValueError(f"{where}: {name} must be 1-D (one label per example), got shape {array.shape}.")
    if len(array) != n_examples:
        raise ValueError(f"{where}: {name} has {len(array)} labels for {n_examples} examples.")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {name} contains NaN or infinity, which are not class labels.")
    if array.dtype == object and any(label is None or label != label for label in array.tolist()):
        raise ValueError(f"{where}: {name} contains None or NaN, which are not class labels.")
    if refuse_continuous and _is_continuous(array):
        raise ValueError(
            f"{where}: {name} has non-integer values (a continuous target, in the sense of "
            f"sklearn.utils.multiclass.type_of_target); this score compares classes, and would make "
            f"each distinct value a class. Pass class labels (integers or strings)."
        )
    classes, codes = encode_labels(array, f"{where}: {name}")
    if len(classes) < min_classes:
        raise ValueError(
            f"{where}: {name} has a single class ({python_scalar(classes[0])!r}): a transferability "
            f"score compares how well models separate classes, and needs two at least."
        )
    return codes, len(classes)


def _target_kind(labels, where, target):
    """``"classification"`` or ``"regression"``: ``target`` itself, or read from the labels for
    ``"auto"``.

    ``"auto"``: numeric labels that ``type_of_target`` calls ``"continuous"`` (float values,
    some not integers) are a regression target; any other labels are classes, except
    integer-valued numbers with more distinct values than half the examples (most classes
    would have a single example: classes or a count?), which are refused as ambiguous.
    """
    if target != "auto":
        return target
    array = _as_array(labels)
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        return "classification"  # strings, objects, booleans; the shape is checked later
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: labels contains NaN or infinity.")
    if _is_continuous(array):
        return "regression"
    n_values = len(np.unique(array))
    if type_of_target(array) == "multiclass" and n_values > len(array) / 2:
        raise ValueError(
            f"{where}: labels are {n_values} distinct integer values for {len(array)} examples: "
            f"class labels (most classes would have a single example) or a numeric target? Say "
            f"which with target='classification' or target='regression'."
        )
    return "classification"


def _checked_regression_target(labels, n_examples, where):
    """The regression target as finite float64 values that vary, one per example."""
    array = _as_array(labels)
    if array.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D (one value per example), got shape {array.shape}.")
    if len(array) != n_examples:
        raise ValueError(f"{where}: labels has {len(array)} values for {n_examples} examples.")
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{where}: labels must be numbers for target='regression', got an array of dtype {array.dtype}."
        )
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: labels contains NaN or infinity.")
    if np.ptp(values) == 0:
        raise ValueError(
            f"{where}: labels is constant ({python_scalar(array[0])!r}): a regression target must vary "
            f"for a score to tell how well features predict it."
        )
    return values


def _checked_target(labels, n_examples, where, target):
    """``(kind, codes_or_values, n_classes)``: the labels as a classification target (integer
    codes and their number) or as a regression target (float values, ``n_classes=None``)."""
    kind = _target_kind(labels, where, target)
    if kind == "regression":
        return kind, _checked_regression_target(labels, n_examples, where), None
    # Continuous labels reach here only when the caller says they are classes.
    codes, n_classes = _checked_labels(labels, n_examples, "labels", where, refuse_continuous=False)
    return kind, codes, n_classes


def _one_hot(codes, n_classes):
    indicators = np.zeros((len(codes), n_classes))
    indicators[np.arange(len(codes)), codes] = 1.0
    return indicators


def _principal_components(features, n_components, where):
    """``features`` on their principal axes (scikit-learn's exact ``PCA``): the first
    ``n_components`` (an int, capped at the number of examples and of features) or as many as
    explain that fraction of the variance (a float in (0, 1)); axes without variance (beyond
    the rank, up to rounding) are left out."""
    variances = features.var(axis=0)
    if not np.any(variances > 0):
        raise ValueError(f"{where}: features are constant: they have no principal axis to keep.")
    if isinstance(n_components, Integral):
        n_components = min(n_components, *features.shape)
    pca = PCA(n_components=n_components, svd_solver="full")
    projected = pca.fit_transform(features)
    # numpy's matrix_rank cutoff, on the variances (squared singular values).
    cutoff = pca.explained_variance_[0] * (max(features.shape) * np.finfo(np.float64).eps) ** 2
    return projected[:, pca.explained_variance_ > cutoff]


# --------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------


def _log_evidence(alpha, beta, sigma2, z, residual, n_examples):
    """Log evidence ``log N(y; 0, F F^T / alpha + I / beta)`` of each column ``y``, from the SVD.

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
    precision = alpha + beta * sigma2[:, None]  # (k, n_columns)
    return (
        0.5 * n_examples * np.log(beta)
        + 0.5 * k * np.log(alpha)
        - 0.5 * np.log(precision).sum(axis=0)
        - 0.5 * (alpha * beta * z**2 / precision).sum(axis=0)
        - 0.5 * beta * residual
        - 0.5 * n_examples * np.log(2.0 * np.pi)
    )


def _fixed_point(sigma2, z, residual, n_examples):
    """``(alpha, beta)`` of each column by the fixed-point iteration of You et al. (2022, Alg. 2).

    ``gamma = sum beta s^2 / (alpha + beta s^2)``, ``alpha <- gamma / m^T m`` and
    ``beta <- (n - gamma) / ||F m - y||^2``, with the posterior mean ``m`` of the weights
    written on the singular vectors. All columns at once. A column stops when its evidence
    moves by less than ``_EVIDENCE_TOLERANCE`` per example, or when its precisions leave the
    finite numbers (its maximum is a limit, which the caller evaluates in closed form).
    """
    n_columns = z.shape[1]
    alpha, beta = np.ones(n_columns), np.ones(n_columns)
    evidence = _log_evidence(alpha, beta, sigma2, z, residual, n_examples)
    active = np.arange(n_columns)
    s2 = sigma2[:, None]
    # Near a boundary the precisions overflow: such a column is stopped, not an error.
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


def _maximised_evidence(sigma2, z, residual, squared_norms, n_examples):
    """The supremum over ``alpha, beta > 0`` of the log evidence of each column ``y`` (a class's
    indicator, or the regression target), ``squared_norms`` being their ``||y||^2``.

    The fixed point, or a limit on the boundary of the parameter space where that is higher:
    ``alpha -> inf`` (no weights, ``y`` is noise of variance ``||y||^2 / n``) and, when ``y``
    has no component outside the span of the features (always so when ``F`` has rank ``n``,
    e.g. fewer examples than features), ``beta -> inf``.
    """
    n_columns = z.shape[1]
    k = len(sigma2)
    # alpha -> inf: log N(y; 0, I / beta) at beta = n / ||y||^2.
    candidates = [-0.5 * n_examples * (np.log(2.0 * np.pi * squared_norms / n_examples) + 1.0)]
    if k:
        candidates.append(_fixed_point(sigma2, z, residual, n_examples)[2])
        # A residual below rounding of ||y||^2 is no residual.
        exact = residual <= 1e3 * np.finfo(np.float64).eps * n_examples * squared_norms
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
    return np.max(np.vstack([np.broadcast_to(c, (n_columns,)) for c in candidates]), axis=0)


@validate_params(
    {"features": ["array-like"], "labels": ["array-like"], "target": [_TARGETS]},
    prefer_skip_nested_validation=True,
)
def logme_score(features, labels, *, target="auto"):
    """LogME: the maximised log evidence per example of a Bayesian linear model of the labels.

    Classification: for each class ``c``, the indicator ``y = [labels == c]`` is modelled as
    ``y = F w + e`` with ``w ~ N(0, I / alpha)`` and ``e ~ N(0, I / beta)`` (You et al., ICML
    2021, sec. 4.2), so that ``p(y | F, alpha, beta) = N(y; 0, F F^T / alpha + I / beta)``
    (eq. 2, the marginal likelihood). Its logarithm, maximised over ``alpha, beta > 0`` by the
    fixed-point iteration on the singular value decomposition of ``F`` (You et al., "Ranking
    and Tuning Pre-trained Models", JMLR 2022, Algorithm 2), divided by the number of examples
    and averaged over the classes, is the score (ICML 2021, Algorithm 1). Regression: the same
    evidence of the one target vector ``y`` itself, as given (the paper models each target
    dimension alike, sec. 4.2; no standardisation, so the score of a target in other units
    differs by a constant, the same for every model).

    This is the marginal likelihood also when ``F`` has fewer examples than features or is
    rank-deficient (dead units): only the non-zero singular values enter, unlike thuml's
    ``LogME.py``, which counts ``D/2 log alpha`` for all ``D`` weights but only the non-zero
    singular values in ``log |A|`` and so overstates the evidence there. Where the maximum is
    a limit (``alpha -> inf``: the features explain nothing; ``beta -> inf``: a class
    indicator in the span of the features), the limit is taken; it is ``+inf`` when an
    indicator (or the target) is *exactly* a linear function of features of rank below the
    number of examples (the evidence is then unbounded).

    Features are used as given (no centring, no bias, as in the paper); the score depends on
    their scale only through the model, so compare models on their raw features.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        Classification: any hashable class labels, two classes at least. Regression: finite
        numbers that vary.
    target : {"auto", "classification", "regression"}, default="auto"
        What the labels are. ``"auto"``: a regression target when they are numbers that
        scikit-learn's :func:`~sklearn.utils.multiclass.type_of_target` calls
        ``"continuous"`` (floats, some not integers); class labels otherwise (strings,
        integers, integer-valued floats), except that integer-valued numbers with more
        distinct values than half the examples are refused as ambiguous (classes of a single
        example, or a count?): say which then.

    Returns
    -------
    score : float
        The maximised log evidence per example (averaged over the classes); higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, ``labels`` does not have one label per
        example, has a single class or a constant regression target, or ``target="auto"``
        cannot tell classes from a numeric target.

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
    >>> values = informative @ [2.0, 0.5, 0.0, 0.0, 0.0] + 0.1 * rng.normal(size=200)
    >>> bool(logme_score(informative, values) > logme_score(informative, rng.permutation(values)))
    True
    """
    where = "logme_score"
    features = _checked_matrix(features, "features", where)
    n_examples = features.shape[0]
    kind, target_values, n_classes = _checked_target(labels, n_examples, where, target)
    columns = _one_hot(target_values, n_classes) if kind == "classification" else target_values[:, None]
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    # numpy's matrix_rank cutoff: singular values below it are zero up to rounding.
    cutoff = singular.max(initial=0.0) * max(features.shape) * np.finfo(np.float64).eps
    keep = singular > cutoff
    left, sigma2 = left[:, keep], singular[keep] ** 2
    z = left.T @ columns
    residual = ((columns - left @ z) ** 2).sum(axis=0)
    evidence = _maximised_evidence(sigma2, z, residual, (columns**2).sum(axis=0), n_examples)
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
        The target labels: any hashable values (not floats with non-integer values, which
        are a regression target), two classes at least.

    Returns
    -------
    score : float
        LEEP, at most 0; higher is better.

    Raises
    ------
    ValueError
        If the probabilities are not finite, are negative or a row does not sum to 1, or the
        labels do not have one per example, have a single class or are continuous.

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
    return _leep(probabilities, codes, n_classes)


def _leep(probabilities, codes, n_classes):
    """LEEP (eq. 1-3 of Nguyen et al.) of checked probabilities and label codes."""
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
        The target labels: any hashable values (not floats with non-integer values, which
        are a regression target), two classes at least.

    Returns
    -------
    score : float
        NCE, between ``-H(Y)`` (source labels tell nothing) and 0 (they determine the target
        labels); higher is better.

    Raises
    ------
    ValueError
        If a label array is not 1-D, their lengths differ, the target has a single class, or
        either array has non-integer float values.

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
        "target": [_TARGETS],
    },
    prefer_skip_nested_validation=True,
)
def h_score(features, labels, *, shrinkage=None, target="auto"):
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))`` (Bao et al., ICIP 2019, eq. 3 / Definition 2).

    ``cov(f)`` is the covariance of the features over the examples and ``cov(E[f | y])`` the
    covariance of their conditional expectation given the label; both with the same
    normalisation, which cancels. Classification: ``E[f | y]`` is the class's mean feature
    vector (each example replaced by its class mean), as in the paper.

    Regression: the paper defines the score for classes only, and there is no published
    regression H-score that we know of. Here ``E[f | y]`` is estimated by the least-squares
    linear regression of the features on the target, ``mean(f) + cov(f, y) (y - mean(y)) /
    var(y)``; binning the target into classes is not done. With that estimate the score is
    ``cov(y, f) cov(f)^-1 cov(f, y) / var(y)``, the coefficient of determination (R²) of the
    least-squares fit of the target on the features: in [0, 1], 1 when the target is an
    affine function of the features.

    Regularisation: ``cov(f)`` is singular with fewer examples than features or with constant
    (dead) features. By default its inverse is the pseudo-inverse on its range, eigenvalues at
    most ``max(n_examples, n_features) * eps`` times the largest treated as zero (numpy's
    rank cutoff; thuml's ``HScore`` uses ``pinv`` alike). The conditional means lie in that
    range, so the score is the H-score of the features' own subspace. With ``shrinkage=s``,
    the inverse of ``(1 - s) cov(f) + s tr(cov(f)) / D I`` instead (the shrinkage of Ibrahim
    et al., "Newer is not always better", ICLR 2023, with a fixed ``s``), which tempers the
    noise of small eigenvalues when examples are few.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        Classification: any hashable class labels, two classes at least. Regression: finite
        numbers that vary.
    shrinkage : float in [0, 1] or None, default=None
        ``None``: the pseudo-inverse described above. A float: the shrinkage weight ``s``
        (``0`` is the plain inverse, which fails on a singular covariance).
    target : {"auto", "classification", "regression"}, default="auto"
        What the labels are, as in :func:`logme_score`.

    Returns
    -------
    score : float
        The H-score, non-negative (without shrinkage at most the number of classes minus one,
        or 1 for a regression target); higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, ``labels`` does not have one label per
        example, has a single class or a constant regression target, ``target="auto"``
        cannot tell classes from a numeric target, or ``shrinkage=0`` meets a singular
        covariance.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import h_score
    >>> features = [[0.0, 1.0], [0.2, -1.0], [1.0, 0.5], [1.2, -0.5]]
    >>> round(h_score(features, [0, 0, 1, 1]), 4)
    0.996
    >>> round(h_score(features, [0.1, 0.2, 1.0, 1.3]), 4)   # a regression target: R²
    0.9915
    """
    where = "h_score"
    features = _checked_matrix(features, "features", where)
    n_examples, n_features = features.shape
    kind, target_values, n_classes = _checked_target(labels, n_examples, where, target)
    centred = features - features.mean(axis=0)
    covariance = centred.T @ centred / n_examples
    # cov(E[f | y]) = B^T B for these rows B.
    if kind == "classification":
        counts = np.bincount(target_values, minlength=n_classes)
        class_means = _one_hot(target_values, n_classes).T @ centred / counts[:, None]
        # sum_c (n_c / n) mu_c mu_c^T: rows sqrt(n_c / n) mu_c.
        between = np.sqrt(counts / n_examples)[:, None] * class_means
    else:
        # cov(f, y) cov(y, f) / var(y): the one row cov(f, y) / sqrt(var(y)).
        deviation = target_values - target_values.mean()
        between = (deviation @ centred)[None, :] / (np.sqrt(n_examples) * np.linalg.norm(deviation))
    if shrinkage is not None:
        target_scale = np.trace(covariance) / n_features
        regularised = (1.0 - shrinkage) * covariance + shrinkage * target_scale * np.eye(n_features)
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
# k-NN
# --------------------------------------------------------------------------------------


def _nearest_neighbours(features, n_neighbors, metric, where):
    """``(n_examples, n_neighbors)`` indices of each example's nearest *other* examples, nearest
    first; equal distances in the order of the examples (a stable sort)."""
    n_examples = features.shape[0]
    if metric == "cosine":
        norms = np.linalg.norm(features, axis=1)
        if not np.all(norms > 0):
            raise ValueError(
                f"{where}: features of example {int(np.argmin(norms))} are all zero, whose cosine "
                f"similarity to others is undefined; use metric='euclidean'."
            )
        features = features / norms[:, None]
    neighbours = np.empty((n_examples, n_neighbors), dtype=np.intp)
    for start in range(0, n_examples, _KNN_BLOCK_ROWS):
        rows = np.arange(start, min(start + _KNN_BLOCK_ROWS, n_examples))
        if metric == "cosine":
            distances = 1.0 - features[rows] @ features.T
        else:
            distances = scipy.spatial.distance.cdist(features[rows], features, "sqeuclidean")
        distances[np.arange(len(rows)), rows] = np.inf  # leave the example itself out
        neighbours[rows] = np.argsort(distances, axis=1, kind="stable")[:, :n_neighbors]
    return neighbours


def _majority_votes(neighbour_codes, n_classes):
    """The class most common among each row's neighbours; a tie goes to the tied class whose
    first neighbour in the row (the nearest of its members) comes first."""
    n_rows, n_neighbors = neighbour_codes.shape
    rows = np.repeat(np.arange(n_rows), n_neighbors)
    votes = np.zeros((n_rows, n_classes))
    np.add.at(votes, (rows, neighbour_codes.ravel()), 1.0)
    first_position = np.full((n_rows, n_classes), n_neighbors)
    positions = np.tile(np.arange(n_neighbors), n_rows)
    np.minimum.at(first_position, (rows, neighbour_codes.ravel()), positions)
    # Lexicographic: votes first, then the earlier first position (n_neighbors - position < n + 1).
    return np.argmax(votes * (n_neighbors + 1) + (n_neighbors - first_position), axis=1)


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "n_neighbors": [StrictInterval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "target": [_TARGETS],
    },
    prefer_skip_nested_validation=True,
)
def knn_score(features, labels, *, n_neighbors=20, metric="cosine", target="auto"):
    """k-NN: how well each example's nearest neighbours in feature space predict its label.

    The leave-one-out estimate of a k-nearest-neighbour predictor on the model's features:
    each example is predicted from the ``n_neighbors`` other examples nearest to it.
    Classification: the majority class among them, and the score is the fraction of examples
    predicted right (the leave-one-out accuracy). Regression: the mean of their targets, and
    the score is minus the mean squared error (so that higher is better, as for every score
    here; its square root is the RMSE in the target's units).

    Sorkhei et al. ("k-NN as a Simple and Effective Estimator of Transferability",
    arXiv:2503.18528, 2025) find this plain k-NN evaluation, common for self-supervised
    features, a better predictor of transfer than the other scores over a large benchmark.
    The defaults here, cosine similarity and 20 neighbours with unweighted votes, follow the
    usual self-supervised k-NN evaluation (e.g. Caron et al., DINO, ICCV 2021, which weights
    the votes); leave-one-out over the given examples replaces a separate held-out split.

    Deterministic ties: neighbours at equal distance are taken in the order of the examples
    (the lower index first), and a class tie among the votes goes to the tied class whose
    nearest member among the neighbours is nearest.

    Cost: the distances from every example to every other, ``n_examples**2 * n_features``
    operations, in blocks of 1024 rows.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite (with ``"cosine"``, no
        example's features all zero).
    labels : array-like of shape (n_examples,)
        Classification: any hashable class labels, two classes at least. Regression: finite
        numbers that vary.
    n_neighbors : int, default=20
        Neighbours per prediction; at most ``n_examples - 1``.
    metric : {"cosine", "euclidean"}, default="cosine"
        ``"cosine"``: one minus the cosine similarity of the feature vectors (the usual
        choice for network features, whose norm varies with the input's contrast).
        ``"euclidean"``: the Euclidean distance.
    target : {"auto", "classification", "regression"}, default="auto"
        What the labels are, as in :func:`logme_score`.

    Returns
    -------
    score : float
        Classification: the leave-one-out accuracy, in [0, 1]. Regression: minus the
        leave-one-out mean squared error, at most 0. Higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array (or, with ``"cosine"``, an example's
        features are all zero), ``n_neighbors`` is not below the number of examples, or
        ``labels`` does not have one label per example, has a single class or a constant
        regression target, or ``target="auto"`` cannot tell classes from a numeric target.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import knn_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(2, size=100)
    >>> separated = rng.normal(size=(100, 3)) + 4.0 * labels[:, None]
    >>> knn_score(separated, labels, n_neighbors=5, metric="euclidean")
    1.0
    >>> round(knn_score(rng.normal(size=(100, 3)), labels, n_neighbors=5), 2)   # chance level
    0.45
    """
    where = "knn_score"
    features = _checked_matrix(features, "features", where)
    n_examples = features.shape[0]
    kind, target_values, n_classes = _checked_target(labels, n_examples, where, target)
    if n_neighbors >= n_examples:
        raise ValueError(
            f"{where}: n_neighbors={n_neighbors} needs {n_neighbors + 1} examples at least (each "
            f"example is predicted from {n_neighbors} others), got {n_examples}."
        )
    neighbours = _nearest_neighbours(features, n_neighbors, metric, where)
    if kind == "regression":
        predictions = target_values[neighbours].mean(axis=1)
        return float(-np.mean((predictions - target_values) ** 2))
    predictions = _majority_votes(target_values[neighbours], n_classes)
    return float(np.mean(predictions == target_values))


# --------------------------------------------------------------------------------------
# SFDA
# --------------------------------------------------------------------------------------


def _fisher_log_probabilities(features, codes, n_classes, shrinkage, where):
    """``(log p(y | x), shrinkage)``: the class log-probabilities of each example under the
    regularised Fisher discriminant of Shao et al. (sec. 3.2), and the shrinkage it used.

    The within-class covariance ``S_W = sum_c (n_c / n) cov_c`` is shrunk to
    ``S = (1 - s) S_W + s tr(S_W) / D I``, with ``s = exp(-5 lambda_max(S_W))`` unless given.
    Projected on the Fisher directions ``U`` (the generalised eigenvectors of the between-class
    covariance against ``S``, ``U^T S U = I``), each class ``c`` scores
    ``x~^T mu~_c - mu~_c^T mu~_c / 2 + log(n_c / n)`` with ``x~ = U^T x`` and ``mu~_c = U^T mu_c``,
    and the softmax of these scores is ``p(y | x)``. The directions beyond the first
    ``n_classes - 1`` have eigenvalue 0: the class means do not differ along them, so they
    add the same to every class's score, and the softmax is that of the full ``U U^T = S^-1``,
    ``x^T S^-1 mu_c - mu_c^T S^-1 mu_c / 2 + log(n_c / n)``, computed here.
    """
    n_examples, n_features = features.shape
    counts = np.bincount(codes, minlength=n_classes)
    means = _one_hot(codes, n_classes).T @ features / counts[:, None]
    deviations = features - means[codes]
    within = deviations.T @ deviations / n_examples
    eigenvalues, eigenvectors = np.linalg.eigh(within)
    if shrinkage is None:
        shrinkage = float(np.exp(-_SFDA_SHRINKAGE_DECAY * eigenvalues[-1]))
    regularised = (1.0 - shrinkage) * eigenvalues + shrinkage * eigenvalues.sum() / n_features
    if not regularised[0] > regularised[-1] * max(n_examples, n_features) * np.finfo(np.float64).eps:
        raise ValueError(
            f"{where}: the within-class covariance of the features is singular after shrinkage "
            f"{shrinkage:.3g} (fewer examples than features, dead features, or classes whose "
            f"examples coincide); pass a larger shrinkage."
        )
    # S^-1 mu_c for every class, on the eigenvectors of S_W (which S shares).
    whitened_means = eigenvectors @ ((eigenvectors.T @ means.T) / regularised[:, None])  # (D, C)
    logits = (
        features @ whitened_means
        - 0.5 * np.einsum("cd,dc->c", means, whitened_means)
        + np.log(counts / n_examples)
    )
    return scipy.special.log_softmax(logits, axis=1), shrinkage


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "shrinkage": [StrictInterval(Real, 0, 1, closed="both"), None],
    },
    prefer_skip_nested_validation=True,
)
def sfda_score(features, labels, *, shrinkage=None):
    """SFDA: a regularised Fisher discriminant's log-likelihood of the labels, self-challenged.

    Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space", ECCV 2022:

    1. Regularised Fisher discriminant analysis (sec. 3.2): the features are projected on the
       Fisher directions of the within-class covariance shrunk towards a multiple of the
       identity, ``(1 - s) S_W + s tr(S_W) / D I`` with ``s = exp(-a lambda_max(S_W))``,
       ``a = 5``: features with a large spread need little shrinkage, a cramped space more.
       ``p(y | x)`` is the softmax over the classes of ``x~^T mu~_c - |mu~_c|^2 / 2 + log
       pi_c`` in the projected space (``mu~_c`` the projected class mean, ``pi_c`` the class
       frequency).
    2. ConfMix, the self-challenging step (sec. 3.3): each example moves towards the mean of
       the *other* classes' means by how unsure the discriminant is of its class,
       ``x <- p x + (1 - p) mean_{c != y} mu_c`` with ``p`` its confidence in its own class
       ``y``; models whose features keep the classes apart under this push score higher.
    3. The discriminant is fitted again on the mixed features (same ``s``), and the score is
       the mean log-likelihood ``1/n sum_i log p(y_i | x_i)`` of the labels.

    As in the authors' code (TencentARC/SFDA): the confidence ``p`` is the entry of ``y`` in
    the softmax of the discriminant's class probabilities (a softened confidence), the
    covariances are the biased (``1/n``) ones, and the shrinkage of the second fit is the
    first's. Unlike it: ``lambda_max`` is exact (their code takes three power iterations) and
    the score keeps the log of the likelihood (their code averages the probabilities, "the log
    function is ignored in case of instability"; log-probabilities are computed stably here,
    and the two can rank models differently), and features constant over the examples (dead
    units, which add the same to every class's score) are left out rather than floored. The
    score depends on the features' scale through ``s``.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values (not floats with non-integer values), two
        classes at least.
    shrinkage : float in [0, 1] or None, default=None
        ``None``: ``exp(-5 lambda_max(S_W))``, as in the paper. A float: that shrinkage ``s``
        for both fits.

    Returns
    -------
    score : float
        The mean log-likelihood of the labels after ConfMix, at most 0; higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, the labels do not have one per example,
        have a single class or are continuous, or the shrunk within-class covariance is
        singular (``shrinkage=0``, or a negligible one, with fewer examples than features).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import sfda_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(3, size=150)
    >>> separated = rng.normal(size=(150, 4)) + 3.0 * np.eye(4)[labels]
    >>> bool(sfda_score(separated, labels) > sfda_score(rng.normal(size=(150, 4)), labels))
    True
    """
    where = "sfda_score"
    features = _checked_matrix(features, "features", where)
    codes, n_classes = _checked_labels(labels, features.shape[0], "labels", where)
    # A feature constant over the examples (a dead ReLU unit) adds the same to every class's
    # score, before and after ConfMix: left out, it cannot make S_W singular.
    features = features[:, np.ptp(features, axis=0) > 0]
    if features.shape[1] == 0:
        raise ValueError(f"{where}: features are constant over the examples: no class can be told apart.")
    log_probabilities, shrinkage = _fisher_log_probabilities(features, codes, n_classes, shrinkage, where)
    confidence = scipy.special.softmax(np.exp(log_probabilities), axis=1)[np.arange(len(codes)), codes]
    counts = np.bincount(codes, minlength=n_classes)
    means = _one_hot(codes, n_classes).T @ features / counts[:, None]
    other_means = (means.sum(axis=0) - means) / (n_classes - 1)
    mixed = confidence[:, None] * features + (1.0 - confidence[:, None]) * other_means[codes]
    log_probabilities, _ = _fisher_log_probabilities(mixed, codes, n_classes, shrinkage, where)
    return float(np.mean(log_probabilities[np.arange(len(codes)), codes]))


# --------------------------------------------------------------------------------------
# N-LEEP
# --------------------------------------------------------------------------------------


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "pca_variance": [StrictInterval(Real, 0, 1, closed="neither"), None],
        "mixture_components": [StrictInterval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def nleep_score(features, labels, *, pca_variance=0.8, mixture_components=None, random_state=None):
    """N-LEEP: LEEP with a Gaussian mixture on the features as the source model (Li et al., CVPR 2021).

    Li et al. ("Ranking Neural Checkpoints") replace LEEP's source head, which a
    model trained without labels or on another output type does not have, by a Gaussian
    mixture model fitted to the model's features of the target examples: the features are
    reduced by PCA to the principal components that keep ``pca_variance`` of their variance
    (80 % in the paper), a mixture of ``mixture_components`` full-covariance Gaussians is
    fitted to them by EM (scikit-learn's :class:`~sklearn.mixture.GaussianMixture`), and
    each example's posterior over the components plays the source probabilities
    ``theta(x)`` of :func:`leep_score`, whose formula (Nguyen et al., eq. 1-3) gives the
    score.

    The score keeps LEEP's log; the code of Shao et al. (TencentARC/SFDA), used in later
    benchmarks, averages the probabilities instead. The mixture, and so the score, depends on
    ``random_state`` (its k-means initialisation); fix it to compare models on equal terms.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite, not all constant.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values (not floats with non-integer values), two
        classes at least.
    pca_variance : float in (0, 1) or None, default=0.8
        The fraction of the features' variance the principal components keep (the fewest
        components that reach it). ``None``: no PCA.
    mixture_components : int or None, default=None
        Gaussians in the mixture; at most ``n_examples``. ``None``: five per class, the
        default of Shao et al.'s N-LEEP code.
    random_state : int, RandomState instance or None, default=None
        Seeds the mixture's initialisation.

    Returns
    -------
    score : float
        N-LEEP, at most 0; higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array or is constant, the labels do not have one
        per example, have a single class or are continuous, there are more mixture components
        than examples, or the mixture cannot be fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import nleep_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(2, size=200)
    >>> separated = rng.normal(size=(200, 3)) + 4.0 * labels[:, None]
    >>> noise = rng.normal(size=(200, 3))
    >>> bool(nleep_score(separated, labels, random_state=0) > nleep_score(noise, labels, random_state=0))
    True
    """
    where = "nleep_score"
    features = _checked_matrix(features, "features", where)
    n_examples = features.shape[0]
    codes, n_classes = _checked_labels(labels, n_examples, "labels", where)
    n_components = 5 * n_classes if mixture_components is None else mixture_components
    if n_components > n_examples:
        raise ValueError(
            f"{where}: a mixture of {n_components} Gaussians needs {n_components} examples at least, "
            f"got {n_examples}; pass fewer mixture_components."
        )
    if pca_variance is not None:
        features = _principal_components(features, pca_variance, where)
    mixture = GaussianMixture(n_components=n_components, random_state=random_state)
    try:
        posteriors = mixture.fit(features).predict_proba(features)
    except ValueError as exc:
        raise ValueError(f"{where}: the Gaussian mixture could not be fitted to the features: {exc}") from exc
    return _leep(posteriors, codes, n_classes)


# --------------------------------------------------------------------------------------
# TransRate
# --------------------------------------------------------------------------------------


def _coding_rate(features, eps):
    """``R(Z, eps) = 1/2 log det(I + Z^T Z / (n eps))`` of the rows ``Z``, from their singular values."""
    singular = np.linalg.svd(features, compute_uv=False)
    return 0.5 * float(np.sum(np.log1p(singular**2 / (features.shape[0] * eps))))


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "eps": [StrictInterval(Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def transrate_score(features, labels, *, eps=1e-4):
    """TransRate: the coding rate of the features minus their coding rate within classes.

    Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022: the mutual
    information between features and labels, estimated by the rate-distortion coding rate
    of Ma et al. (2007) and Yu et al. ("MCR²", NeurIPS 2020),
    ``TrR = R(Z, eps) - R(Z | Y, eps)``, with

    ``R(Z, eps) = 1/2 log det(I_D + Z^T Z / (n eps))`` and
    ``R(Z | Y, eps) = sum_c (n_c / n) R(Z_c, eps)``,

    ``Z`` the ``n`` examples' features centred on their overall mean, ``Z_c`` the rows of
    class ``c`` (not re-centred), ``R(Z_c, eps)`` with ``n_c`` in place of ``n``. This is the
    scaling ``1 / (n eps)`` of the code listed in the paper's appendix and of the authors'
    experiment code, with their ``eps = 1e-4``; the class weights ``n_c / n`` are those of
    MCR² and of the authors' experiment code (the short listing in the paper's appendix
    averages the classes equally, the same for balanced classes). With weights that sum to
    one, ``log det`` is concave, so the score is at least 0.

    Features are centred and not otherwise normalised (the authors' experiment code
    L2-normalises each example besides). The score is nearly unchanged by a common scale of
    the features when every class has more examples than features and ``eps`` is small
    against the features' variances (the scale's ``log`` cancels between the two rates);
    otherwise larger features score higher, so compare models whose features have similar
    scales, or normalise them first.

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values (not floats with non-integer values), two
        classes at least.
    eps : float > 0, default=1e-4
        The distortion ``eps``.

    Returns
    -------
    score : float
        TransRate, at least 0; higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array, or the labels do not have one per example,
        have a single class or are continuous.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import transrate_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(2, size=100)
    >>> separated = rng.normal(size=(100, 3)) + 3.0 * labels[:, None]
    >>> bool(transrate_score(separated, labels) > transrate_score(rng.normal(size=(100, 3)), labels))
    True
    """
    where = "transrate_score"
    features = _checked_matrix(features, "features", where)
    n_examples = features.shape[0]
    codes, n_classes = _checked_labels(labels, n_examples, "labels", where)
    centred = features - features.mean(axis=0)
    conditional = sum(
        np.count_nonzero(codes == c) / n_examples * _coding_rate(centred[codes == c], eps)
        for c in range(n_classes)
    )
    return _coding_rate(centred, eps) - conditional


# --------------------------------------------------------------------------------------
# GBC
# --------------------------------------------------------------------------------------


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "covariance": [StrOptions({"diagonal", "spherical"})],
        "pca_components": [StrictInterval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def gbc_score(features, labels, *, covariance="diagonal", pca_components=64):
    """GBC: minus the total Bhattacharyya overlap of the classes' Gaussians (Pándy et al., CVPR 2022).

    Pándy et al., "Transferability Estimation using Bhattacharyya Class Separability": each
    class ``c`` is modelled by a Gaussian ``N(mu_c, Sigma_c)`` of its examples' features
    (mean and biased variance, ``Sigma_c`` diagonal or spherical), two classes overlap by
    their Bhattacharyya coefficient ``BC(c_i, c_j) = exp(-D_B(c_i, c_j))`` with the
    Bhattacharyya distance

    ``D_B = 1/8 (mu_i - mu_j)^T Sigma^-1 (mu_i - mu_j) + 1/2 log(det Sigma / sqrt(det Sigma_i det Sigma_j))``,
    ``Sigma = (Sigma_i + Sigma_j) / 2``,

    and ``GBC = -sum_i sum_{j != i} BC(c_i, c_j)`` (every ordered pair, each overlap counted
    twice, as in the paper and the authors' code). Before that the features are reduced by
    PCA to ``pca_components`` dimensions (64 in the authors' source-selection configuration).

    ``"diagonal"`` covariances use each dimension's variance within the class;
    ``"spherical"`` ones their mean, ``sigma_c^2 I``, whose log-determinant term is ``D``
    times that of one dimension. The authors' code (google-research ``stable_transfer``)
    defaults to spherical, takes the log term once rather than ``D`` times there, and
    floors every variance at ``1e-4``; here a dimension without variance within a class is
    refused instead (its Gaussian is degenerate and the distance undefined).

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values (not floats with non-integer values), two
        classes at least, two examples of each class at least.
    covariance : {"diagonal", "spherical"}, default="diagonal"
        The form of each class's covariance.
    pca_components : int or None, default=64
        The principal components kept (at most the number of examples and of features;
        components without variance are left out). ``None``: the features as given.

    Returns
    -------
    score : float
        GBC, between ``-n_classes * (n_classes - 1)`` (the classes coincide) and 0 (they do
        not overlap); higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array or is constant, the labels do not have one
        per example, have a single class or are continuous, a class has a single example, or
        a class's examples do not vary along a dimension.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import gbc_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(3, size=150)
    >>> separated = rng.normal(size=(150, 4)) + 3.0 * np.eye(4)[labels]
    >>> bool(gbc_score(separated, labels) > gbc_score(rng.normal(size=(150, 4)), labels))
    True
    """
    where = "gbc_score"
    features = _checked_matrix(features, "features", where)
    codes, n_classes = _checked_labels(labels, features.shape[0], "labels", where)
    counts = np.bincount(codes, minlength=n_classes)
    if counts.min() < 2:
        rare = int(np.argmin(counts))
        label = python_scalar(_as_array(labels)[np.flatnonzero(codes == rare)[0]])
        raise ValueError(
            f"{where}: class {label!r} of labels has a single example; a class's Gaussian needs two "
            f"examples at least."
        )
    if pca_components is not None:
        features = _principal_components(features, pca_components, where)
    indicators = _one_hot(codes, n_classes)
    means = indicators.T @ features / counts[:, None]
    variances = indicators.T @ (features - means[codes]) ** 2 / counts[:, None]
    for c in range(n_classes):
        rows = features[codes == c]
        flat = np.flatnonzero(rows.max(axis=0) == rows.min(axis=0))
        degenerate = flat.size == features.shape[1] if covariance == "spherical" else flat.size > 0
        if not degenerate:
            continue
        label = python_scalar(_as_array(labels)[np.flatnonzero(codes == c)[0]])
        if covariance == "spherical":
            raise ValueError(
                f"{where}: the examples of class {label!r} coincide (after PCA when pca_components is "
                f"set): its Gaussian is degenerate."
            )
        raise ValueError(
            f"{where}: the examples of class {label!r} do not vary along feature dimension {flat[0]} "
            f"(after PCA when pca_components is set): its Gaussian is degenerate. Reduce the "
            f"features with pca_components, or use covariance='spherical'."
        )
    if covariance == "spherical":
        variances = np.repeat(variances.mean(axis=1, keepdims=True), features.shape[1], axis=1)
    log_variances = np.log(variances)
    total = 0.0
    for i in range(n_classes):
        pooled = (variances[i] + variances) / 2.0  # (n_classes, D): Sigma for the pairs (i, j)
        distance = ((means[i] - means) ** 2 / pooled).sum(axis=1) / 8.0 + 0.5 * (
            np.log(pooled) - 0.5 * (log_variances[i] + log_variances)
        ).sum(axis=1)
        total += np.exp(-np.delete(distance, i)).sum()
    return float(-total)


# --------------------------------------------------------------------------------------
# PARC
# --------------------------------------------------------------------------------------


@validate_params(
    {
        "features": ["array-like"],
        "labels": ["array-like"],
        "pca_components": [StrictInterval(Integral, 2, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def parc_score(features, labels, *, pca_components=32):
    """PARC: how well the examples' feature dissimilarities rank like their label dissimilarities.

    Bolya et al., "Scalable Diverse Model Selection for Accessible Transfer Learning",
    NeurIPS 2021: with the representation dissimilarity matrices ``1 - corr(f_i, f_j)`` of
    the features and ``1 - corr(y_i, y_j)`` of the one-hot labels (Pearson correlations
    between examples ``i`` and ``j``, across dimensions), PARC is the Spearman correlation of
    their entries above the diagonal. Before that the features are reduced by PCA to
    ``pca_components`` dimensions (32 in the paper) and standardised per dimension (zero
    mean, unit variance; a constant dimension is only centred), as in the authors' code.

    The score is the correlation itself, in [-1, 1]; the authors report it times 100. Their
    code uses a randomised PCA with one power iteration, where this one is exact, and
    computes the label dissimilarities (``0`` within a class, ``C / (C - 1)`` across) as
    correlations, whose rounding splits their ties at random for the rank correlation; here
    they are exact. The matrices
    have ``n_examples**2`` entries, which bounds the examples (the authors subsample above
    15,000).

    Parameters
    ----------
    features : array-like of shape (n_examples, n_features)
        The model's features of the target task's examples: finite, two dimensions at least
        (after PCA), no example equal in every (standardised) dimension.
    labels : array-like of shape (n_examples,)
        The target labels: any hashable values (not floats with non-integer values), two
        classes at least, and some class with two examples.
    pca_components : int >= 2 or None, default=32
        The principal components kept (at most the number of examples and of features;
        components without variance are left out). ``None``: the features as given.

    Returns
    -------
    score : float
        PARC, in [-1, 1]; higher is better.

    Raises
    ------
    ValueError
        If ``features`` is not a finite 2-D array or is constant, has (after PCA) a single
        dimension or an example whose standardised features are all equal, or the labels do
        not have one per example, have a single class or are continuous, or no two examples
        share a class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.transferability import parc_score
    >>> rng = np.random.RandomState(0)
    >>> labels = rng.randint(3, size=90)
    >>> separated = rng.normal(size=(90, 6)) + 3.0 * np.eye(6)[labels]
    >>> bool(parc_score(separated, labels) > parc_score(rng.normal(size=(90, 6)), labels))
    True
    """
    where = "parc_score"
    features = _checked_matrix(features, "features", where)
    n_examples = features.shape[0]
    codes, n_classes = _checked_labels(labels, n_examples, "labels", where)
    if np.bincount(codes).max() < 2:
        raise ValueError(
            f"{where}: no two examples share a class, so every label dissimilarity is the same and "
            f"their rank correlation with anything is undefined."
        )
    if pca_components is not None:
        features = _principal_components(features, pca_components, where)
    if features.shape[1] < 2:
        raise ValueError(
            f"{where}: features have a single dimension (after PCA when pca_components is set): "
            f"correlations between examples across dimensions need two at least."
        )
    centred = features - features.mean(axis=0)
    scale = centred.std(axis=0)
    standardised = centred / np.where(scale > 0, scale, 1.0)
    # A row equal in every dimension has no correlation; one nearly so (a spread below
    # _PARC_FLAT_ROW, in standard deviations) has one made of rounding errors.
    flat = np.flatnonzero(np.ptp(standardised, axis=1) <= _PARC_FLAT_ROW)
    if flat.size:
        raise ValueError(
            f"{where}: the standardised features of example {flat[0]} are equal in every dimension "
            f"(to {_PARC_FLAT_ROW:g} standard deviations): its correlation with other examples is "
            f"undefined."
        )
    first, second = np.triu_indices(n_examples, 1)
    # Dissimilarities equal up to rounding are ties (two dimensions give only 0 and 2).
    feature_dissimilarity = np.round(1.0 - np.corrcoef(standardised)[first, second], _PARC_DECIMALS)
    # One-hot rows correlate by 1 within a class and -1 / (C - 1) across: their dissimilarity
    # in closed form, as computed correlations would split its ties by rounding (1.5 +- 2e-16),
    # which a rank correlation counts.
    label_dissimilarity = np.where(codes[first] == codes[second], 0.0, n_classes / (n_classes - 1))
    if np.ptp(feature_dissimilarity) == 0:
        raise ValueError(
            f"{where}: every pair of examples has the same feature dissimilarity: their rank "
            f"correlation with the labels' is undefined."
        )
    return float(scipy.stats.spearmanr(feature_dissimilarity, label_dissimilarity)[0])


# --------------------------------------------------------------------------------------
# The selector
# --------------------------------------------------------------------------------------


class TransferabilitySelector(BaseEstimator):
    """Pick, for each task, the expert with the highest transferability score.

    Samples are tasks, one row per task; features are experts: ``X[i, j]`` is the score of
    expert ``j`` on task ``i`` (higher is better, as for every score of this module), e.g.
    one matrix of :func:`sklearn_task2vec.zoo.transferability_scores`. :meth:`predict` returns the chosen
    expert of each task, from ``classes_``, as :class:`~sklearn_task2vec.Model2VecSelector`'s
    does, so :data:`~sklearn_task2vec.selector.model_selection_scorer` scores either. Unlike
    MODEL2VEC, nothing is learned from solved tasks: ``fit`` records the experts and the
    number of columns.

    Parameters
    ----------
    experts : array-like of shape (n_experts,) or None, default=None
        Names of the experts, in the order of the columns of ``X``; they become
        ``classes_``. ``None``: ``0 .. n_experts - 1``.
    score_name : str or None, default=None
        The name of the score that ``X`` holds, one of :data:`SCORE_NAMES` (``"logme"``,
        ``"sfda"``, ...), as ``transferability_scores`` names it: a record of what the
        selector selects by, shown in its ``repr`` and kept with it when saved. It does not
        change the selection (every score is higher-is-better). ``None``: not named. (Not
        ``score``: scikit-learn reserves that name for an estimator's scoring method.)

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
    >>> selector = TransferabilitySelector(experts=["a", "b", "c"], score_name="logme").fit(scores)
    >>> selector
    TransferabilitySelector(experts=['a', 'b', 'c'], score_name='logme')
    >>> selector.predict(scores).tolist()
    ['b', 'a']
    """

    _parameter_constraints: dict = {
        "experts": ["array-like", None],
        "score_name": [StrOptions(set(SCORE_NAMES)), None],
    }

    def __init__(self, *, experts=None, score_name=None):
        self.experts = experts
        self.score_name = score_name

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
