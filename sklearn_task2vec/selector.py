"""Model selection with TASK2VEC and MODEL2VEC (Achille et al., ICCV 2019, sec. 3.3-3.4).

Given a collection of *experts* (pre-trained feature extractors) and a new task, pick the
expert that will do best on the task from the task's embedding alone.
:class:`Model2VecSelector` is a scikit-learn classifier whose samples are tasks (rows of
non-negative task embeddings, e.g. the output of
:class:`~sklearn_task2vec.FisherTaskEmbedder`) and whose classes are the experts.

* **Asymmetric TASK2VEC** (sec. 3.3, ``max_iter=0``): each expert is represented by the
  embedding ``F_j`` of the task it was trained on, and a task ``t`` goes to the expert with
  the smallest asymmetric distance
  ``d_asym(F_j -> t) = d_sym(F_j, t) - alpha * d_sym(F_j, t_0)``, ``t_0`` the trivial
  embedding.
* **MODEL2VEC** (sec. 3.4, supplementary sec. 4.3, ``max_iter > 0``): the experts'
  embeddings ``m_j = F_j + b_j`` and the temperature ``gamma`` are learned from tasks whose
  best expert (or whose error under every expert) is known, by minimising the cross-entropy
  of ``p(j | t) = softmax_j(-gamma * d_asym(m_j -> t))``.

The module also has the paper's metric (Table 1), :func:`relative_error_increase`, and a
scorer for it, :data:`model_selection_scorer`, to which scikit-learn's metadata routing
passes the error matrix; and the LogME paper's measure of how well a score ranks the
experts, :func:`weighted_kendall_tau`, with its bootstrap confidence interval over tasks,
:func:`weighted_kendall_tau_interval`.
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
import scipy.special
import scipy.stats
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import validate_params
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from ._kernels import symmetric_distances
from ._utils import StrictInterval, check_expert_names, validates_parameters
from .provenance import EmbeddingProvenance, check_provenance

__all__ = [
    "Model2VecSelector",
    "ModelSelectionScorer",
    "model_selection_scorer",
    "relative_error_increase",
    "soft_labels",
    "weighted_kendall_tau",
    "weighted_kendall_tau_interval",
    "WeightedTauResult",
]

# Standard deviation, in log space, of the random multiplicative perturbation of the experts'
# starting embeddings for the restarts after the first (n_init > 1).
_INIT_SPREAD = 2.0
# Candidate values of the softmax temperature for its initial (or, with max_iter=0, final)
# value when gamma is learned: the best of this grid for the training cross-entropy.
_GAMMA_GRID = np.logspace(-2.0, 4.0, 61)
# Smallest starting temperature when it is learned (max_iter > 0).
_GAMMA_START_MIN = 1.0


# --------------------------------------------------------------------------------------
# Labels and metric
# --------------------------------------------------------------------------------------


@validate_params(
    {"errors": ["array-like"], "temperature": [StrictInterval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def soft_labels(errors, *, temperature=20.0):
    """The paper's soft labels: which experts are (nearly) the best on each task.

    Supplementary sec. 4.3: ``p_hat_i = softmax(-temperature * (err_i - mean(err_i)) /
    std(err_i))`` per task ``i`` (row), so that experts that perform almost as well as the
    best one keep some of the probability. A large temperature gives the one-hot best
    expert; 0 gives uniform labels.

    Parameters
    ----------
    errors : array-like of shape (n_tasks, n_experts)
        Test error of every expert on every task.
    temperature : float, default=20.0
        The paper's ``alpha`` (20 in its experiments), finite and non-negative.

    Returns
    -------
    labels : ndarray of shape (n_tasks, n_experts)
        Rows sum to 1. A task whose experts all have the same error gets uniform labels
        (its standard deviation is 0).

    Examples
    --------
    >>> from sklearn_task2vec.selector import soft_labels
    >>> soft_labels([[0.1, 0.3, 0.3]], temperature=1.0).round(3)
    array([[0.807, 0.097, 0.097]])
    """
    errors = check_array(errors, dtype=np.float64, input_name="errors")
    centred = errors - errors.mean(axis=1, keepdims=True)
    spread = errors.std(axis=1, keepdims=True)
    standardised = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    logits = -temperature * standardised
    logits -= logits.max(axis=1, keepdims=True)
    labels = np.exp(logits)
    return labels / labels.sum(axis=1, keepdims=True)


def _names_are_integers(experts):
    return any(isinstance(name, Integral) for name in experts.tolist())


def _expert_columns(labels, experts, n_experts, what, *, named=True):
    """Column indices of ``labels``: expert names, or column indices when no name is an integer.

    The one rule of this module: with named experts a label is looked up among the names; an
    integer label is a column index unless some expert's name is an integer (then integers
    are names, and reading them as indices would be ambiguous). ``named=False``: ``experts``
    are the classes found in the labels themselves, which are looked up, never read as indices.
    """
    integer_labels = np.issubdtype(labels.dtype, np.integer) or (
        np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0)
    )
    if experts is None or (named and integer_labels and not _names_are_integers(experts)):
        if np.issubdtype(labels.dtype, np.number) and not integer_labels:
            raise ValueError(f"{what} must hold column indices (integers) or expert names, got {labels[:3]}.")
        if not integer_labels:
            shown = [str(label) for label in labels[:3].tolist()]
            raise ValueError(
                f"{what} holds expert names ({', '.join(shown)}, ...) but no names were given: "
                f"pass experts=... (the names of the columns of errors, in order, e.g. "
                f"experts=selector.classes_), or pass column indices 0 .. {n_experts - 1}."
            )
        columns = labels.astype(np.intp)
        if np.any((columns < 0) | (columns >= n_experts)):
            raise ValueError(f"{what} has column indices outside [0, {n_experts - 1}].")
        return columns
    index = {name: column for column, name in enumerate(experts.tolist())}
    unknown = sorted({label for label in labels.tolist() if label not in index}, key=str)
    if unknown:
        if not named:
            hint = ""
        elif _names_are_integers(experts):
            hint = (
                " Some expert names are integers, so integer labels are read as names, not as column indices."
            )
        else:
            hint = f" Pass expert names or column indices 0 .. {n_experts - 1}."
        raise ValueError(
            f"{what} has labels that are not experts: {unknown[:10]}. The experts are "
            f"{experts.tolist()[:20]}.{hint}"
        )
    return np.array([index[label] for label in labels.tolist()], dtype=np.intp)


@validate_params(
    {"errors": ["array-like"], "chosen": ["array-like"], "experts": ["array-like", None]},
    prefer_skip_nested_validation=True,
)
def relative_error_increase(errors, chosen, *, experts=None):
    """Relative error increase of a model selection over the oracle (paper, Table 1).

    ``(mean_i errors[i, chosen[i]] - mean_i min_j errors[i, j]) / mean_i min_j errors[i, j]``:
    0 when the best expert is chosen for every task; lower is better.

    Parameters
    ----------
    errors : array-like of shape (n_tasks, n_experts)
        Test error of every expert on every task (finite).
    chosen : array-like of shape (n_tasks,)
        The expert chosen for each task: its column index (0 .. n_experts - 1), or, with
        ``experts``, its name (e.g. the ``predict`` of a :class:`Model2VecSelector` fitted
        with ``experts=names``).
    experts : array-like of shape (n_experts,) or None, default=None
        Names of the columns of ``errors``, in order (e.g. ``selector.classes_``). Integer
        ``chosen`` are still read as column indices unless an expert's name is itself an
        integer, in which case ``chosen`` must hold names.

    Returns
    -------
    increase : float
        The relative increase of the mean error (0.1 means 10% more error than the oracle).

    Raises
    ------
    ValueError
        If the shapes do not match, an index is out of range, or the oracle's mean error is
        not positive.

    Examples
    --------
    >>> from sklearn_task2vec.selector import relative_error_increase
    >>> errors = [[0.1, 0.3], [0.2, 0.1]]
    >>> relative_error_increase(errors, [0, 1])
    0.0
    >>> round(relative_error_increase(errors, [1, 1]), 6)   # (0.2 - 0.1) / 0.1
    1.0
    >>> relative_error_increase(errors, ["small", "large"], experts=["small", "large"])
    0.0
    """
    errors = check_array(errors, dtype=np.float64, input_name="errors")
    chosen = np.asarray(chosen)
    if chosen.ndim != 1 or chosen.shape[0] != errors.shape[0]:
        raise ValueError(
            f"chosen must be 1-D with one expert per task ({errors.shape[0]}), got shape {chosen.shape}."
        )
    if experts is not None:
        experts = check_expert_names(experts)
        if len(experts) != errors.shape[1]:
            raise ValueError(
                f"experts must name every column of errors ({errors.shape[1]}), got {len(experts)} names."
            )
    chosen = _expert_columns(chosen, experts, errors.shape[1], "chosen")
    oracle = errors.min(axis=1).mean()
    if not oracle > 0:
        raise ValueError(
            f"The oracle's mean error is {oracle}: the relative increase is only defined for "
            f"a positive mean error."
        )
    selected = errors[np.arange(errors.shape[0]), chosen].mean()
    return float((selected - oracle) / oracle)


@validate_params({"scores": ["array-like"], "errors": ["array-like"]}, prefer_skip_nested_validation=True)
def weighted_kendall_tau(scores, errors):
    """Weighted Kendall's tau between each task's expert scores and the experts' accuracy.

    The LogME paper's measure of a transferability score (You et al., ICML 2021, sec. 5.1):
    for each task (row), :func:`scipy.stats.weightedtau` between the experts' scores and their
    accuracies ``1 - errors``, with scipy's default hyperbolic weights, averaged over the
    orderings by either argument, so that swapping two good experts costs more than swapping
    two bad ones. 1: the score orders the experts as their accuracy does; -1: reversed.

    Parameters
    ----------
    scores : array-like of shape (n_tasks, n_experts)
        Any score of every expert on every task, higher for better experts (a transferability
        score, or minus a distance): finite.
    errors : array-like of shape (n_tasks, n_experts)
        Test error of every expert on every task.

    Returns
    -------
    tau : ndarray of shape (n_tasks,)
        The weighted tau of each task; NaN for a task whose scores or errors are all equal
        (there is no order to compare).

    Raises
    ------
    ValueError
        If the shapes differ or a value is not finite.

    Examples
    --------
    >>> from sklearn_task2vec.selector import weighted_kendall_tau
    >>> weighted_kendall_tau([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    array([ 1., -1.])
    """
    scores = check_array(scores, dtype=np.float64, input_name="scores")
    errors = check_array(errors, dtype=np.float64, input_name="errors")
    if scores.shape != errors.shape:
        raise ValueError(
            f"scores and errors must have the same shape (tasks x experts), got {scores.shape} and "
            f"{errors.shape}."
        )
    tau = np.full(scores.shape[0], np.nan)
    for row, (task_scores, task_errors) in enumerate(zip(scores, errors)):
        if np.ptp(task_scores) > 0 and np.ptp(task_errors) > 0:
            tau[row] = scipy.stats.weightedtau(task_scores, 1.0 - task_errors).statistic
    return tau


@dataclasses.dataclass(frozen=True)
class WeightedTauResult:
    """The mean weighted Kendall's tau of a score over tasks, with its confidence interval.

    Attributes
    ----------
    tau : float
        The mean of the tasks' weighted taus, over the tasks that have one.
    confidence_interval : tuple of float
        ``(low, high)``: the percentile bootstrap interval of that mean at
        ``confidence_level``, from resampling the tasks with replacement.
    confidence_level : float
    per_task : ndarray of shape (n_tasks,)
        Each task's weighted tau (:func:`weighted_kendall_tau`), NaN where it has none.
    n_bootstrap : int
        Resamples of the tasks.
    """

    tau: float
    confidence_interval: tuple
    confidence_level: float
    per_task: np.ndarray
    n_bootstrap: int

    def __repr__(self):
        low, high = self.confidence_interval
        return (
            f"WeightedTauResult(tau={self.tau:.4f}, confidence_interval=({low:.4f}, {high:.4f}), "
            f"confidence_level={self.confidence_level:g}, n_tasks={int(np.sum(~np.isnan(self.per_task)))})"
        )


@validate_params(
    {
        "scores": ["array-like"],
        "errors": ["array-like"],
        "n_bootstrap": [StrictInterval(Integral, 1, None, closed="left")],
        "confidence_level": [StrictInterval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def weighted_kendall_tau_interval(
    scores, errors, *, n_bootstrap=1000, confidence_level=0.95, random_state=None
):
    """Mean weighted Kendall's tau over tasks with its percentile bootstrap confidence interval.

    The tasks on which a score is judged are a sample of the tasks it will meet: the mean of
    their :func:`weighted_kendall_tau` (the LogME paper's measure, You et al., ICML 2021, sec.
    5.1) would change with another sample of tasks. The interval says by how much: the tasks
    are resampled with replacement ``n_bootstrap`` times, the mean recomputed on each
    resample, and the interval is the ``(1 - confidence_level) / 2`` and
    ``(1 + confidence_level) / 2`` quantiles of those means (Efron's percentile bootstrap).
    Tasks whose tau is NaN (all scores or all errors equal: no order to compare) are left
    out, of the mean and of the resamples. The interval is about the tasks only: each task's
    tau is taken as exact (for the resampling of a task's own examples, see
    :func:`~sklearn_task2vec.zoo.selection_stability`).

    Parameters
    ----------
    scores : array-like of shape (n_tasks, n_experts)
        Any score of every expert on every task, higher for better experts: finite.
    errors : array-like of shape (n_tasks, n_experts)
        Test error of every expert on every task.
    n_bootstrap : int, default=1000
        Resamples of the tasks.
    confidence_level : float, default=0.95
        In (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the resamples.

    Returns
    -------
    result : WeightedTauResult
        The mean tau, its interval, and each task's tau.

    Raises
    ------
    ValueError
        For any reason of :func:`weighted_kendall_tau`, or if fewer than two tasks have a tau
        (one task's tau has no spread to resample).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.selector import weighted_kendall_tau_interval
    >>> rng = np.random.RandomState(0)
    >>> errors = rng.uniform(size=(30, 5))
    >>> scores = -errors + rng.normal(scale=0.2, size=(30, 5))  # a noisy but useful score
    >>> result = weighted_kendall_tau_interval(scores, errors, random_state=0)
    >>> result
    WeightedTauResult(tau=0.6723, confidence_interval=(0.5592, 0.7767), confidence_level=0.95, n_tasks=30)
    """
    per_task = weighted_kendall_tau(scores, errors)
    defined = per_task[~np.isnan(per_task)]
    if len(defined) < 2:
        raise ValueError(
            f"{len(defined)} of the {len(per_task)} tasks have a weighted tau (a task whose scores or "
            f"errors are all equal has none): a confidence interval over tasks needs two at least."
        )
    resamples = check_random_state(random_state).randint(len(defined), size=(n_bootstrap, len(defined)))
    means = defined[resamples].mean(axis=1)
    tail = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return WeightedTauResult(
        float(defined.mean()), (float(low), float(high)), float(confidence_level), per_task, n_bootstrap
    )


class ModelSelectionScorer:
    """Scorer of a model selector: minus :func:`relative_error_increase` (higher is better).

    Use the instance :data:`model_selection_scorer` as ``scoring=`` in
    :class:`~sklearn.model_selection.GridSearchCV`, :func:`~sklearn.model_selection.cross_validate`,
    etc. It needs the error matrix of the scored tasks, which scikit-learn's metadata routing
    passes to it: the scorer requests ``errors`` for ``score`` (enable routing with
    ``sklearn.set_config(enable_metadata_routing=True)`` and pass ``errors=`` to the
    search's ``fit``; the rows are split with the tasks).

    The estimator's predictions are mapped to columns of the error matrix through its
    ``classes_`` (a :class:`Model2VecSelector` fitted with ``errors`` has the experts, in
    column order, as its classes); failing that, predictions must be column indices.

    The call is ``scorer(estimator, X, y_true, errors=...)``; ``y_true`` is not used.
    """

    def __call__(self, estimator, X, y_true=None, errors=None):
        if errors is None:
            raise ValueError(
                "model_selection_scorer needs the error matrix of the scored tasks: call it "
                "with errors=..., or enable metadata routing "
                "(sklearn.set_config(enable_metadata_routing=True)) and pass errors=... to "
                "fit of the search or cross-validation."
            )
        errors = check_array(errors, dtype=np.float64, input_name="errors")
        predictions = np.asarray(estimator.predict(X))
        return -relative_error_increase(errors, _columns(estimator, predictions, errors.shape[1]))

    def get_metadata_routing(self):
        """Metadata this scorer requests: ``errors`` for ``score``.

        Returns
        -------
        routing : MetadataRequest
            The request, for scikit-learn's metadata routing.
        """
        request = MetadataRequest(owner=self)
        request.score.add_request(param="errors", alias=True)
        return request

    def __repr__(self):
        return "model_selection_scorer"


def _columns(estimator, predictions, n_experts):
    classes = getattr(estimator, "classes_", None)
    if classes is not None and len(classes) == n_experts:
        index = {label: column for column, label in enumerate(np.asarray(classes).tolist())}
        try:
            return np.array([index[label] for label in predictions.tolist()], dtype=np.intp)
        except KeyError as error:
            raise ValueError(f"Predicted expert {error.args[0]!r} is not in classes_.") from None
    if np.issubdtype(predictions.dtype, np.integer):
        return predictions
    raise ValueError(
        "Cannot map the predictions to columns of errors: the estimator's classes_ must list "
        "the experts in column order, or its predictions must be column indices."
    )


#: Scorer for :class:`Model2VecSelector` (and any model selector): minus the relative error
#: increase over the oracle, with the error matrix routed to it (see :class:`ModelSelectionScorer`).
model_selection_scorer = ModelSelectionScorer()


# --------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------


def _is_fitted(selector):
    return hasattr(selector, "classes_")


class Model2VecSelector(ClassifierMixin, BaseEstimator):
    """Pick the expert for a task from its TASK2VEC embedding (asymmetric TASK2VEC / MODEL2VEC).

    Samples are tasks, given by their (non-negative) TASK2VEC embeddings, one row per task;
    classes are experts. Each expert ``j`` has an embedding ``m_j`` in task space and a task
    ``t`` goes to the expert with the smallest asymmetric distance (paper, sec. 3.3)

    ``d_asym(m_j -> t) = d_sym(m_j, t) - alpha * d_sym(m_j, t_0)``,

    ``t_0`` the trivial embedding, with probabilities ``p(j | t) = softmax_j(-gamma *
    d_asym(m_j -> t))``. With ``max_iter=0``, ``m_j`` is the embedding ``F_j`` of the task
    expert ``j`` was trained on (``model_embeddings``): the plain asymmetric TASK2VEC
    selector. With ``max_iter > 0`` the expert embeddings (MODEL2VEC, ``m_j = F_j + b_j``,
    sec. 3.4) and, when ``gamma=None``, the temperature are learned by full-batch Adam on the
    cross-entropy against the best expert of each training task (``y``) or, given the error
    matrix, against the paper's soft labels (:func:`soft_labels`, supplementary sec. 4.3).

    Parameters
    ----------
    alpha : float, default=0.15
        Weight of the distance to the trivial embedding in ``d_asym`` (the paper's 0.15 for
        a ResNet-34 probe). Larger values favour experts trained on more complex tasks.
    gamma : float or None, default=None
        Temperature of the softmax over ``-d_asym``. ``None`` learns it (log-parametrised,
        positive). With ``max_iter=0`` it is the best value of a log-spaced grid from 1e-2 to
        1e4 for the training cross-entropy (a calibration of ``predict_proba``); with
        ``max_iter > 0`` training starts from that value or from 1, whichever is larger (from
        a temperature near 0, training would make the predictions uniform rather than move
        the experts when the starting embeddings point to the wrong experts). A positive
        float fixes it. It does not change ``predict``.
    model_embeddings : array-like of shape (n_experts, n_features) or None, default=None
        Task embeddings ``F_j`` of the tasks the experts were trained on, one row per expert
        (in the order of ``experts`` / of the columns of ``errors``), in the same space as
        ``X``. ``None`` when unknown; a row of zeros marks one unknown expert (the paper's
        ``F_j = 0``). Training starts an unknown expert at the mean embedding of its training
        tasks (weighted by the soft labels when ``errors`` is given; the mean of all training
        tasks when it is never the best), i.e. from a nearest-centroid selector. Required when
        ``max_iter=0``. Experts whose training task is unknown (a generic pre-trained
        network) need ``max_iter > 0``: with ``max_iter=0`` a zero row stays zero, at the
        same distance ``1 - alpha`` from every task, a fallback chosen only when every other
        expert is farther, not an embedding of what the expert is good at.
    trivial_embedding : array-like of shape (n_features,) or None, default=None
        The trivial embedding ``t_0`` (e.g.
        :attr:`FisherTaskEmbedder.trivial_embedding_ <sklearn_task2vec.FisherTaskEmbedder>`),
        strictly positive. ``None`` is the all-ones vector. The selector works in the
        trivial-normalised space ``embedding / t_0``, where ``t_0`` is all ones; ``d_sym`` is
        unchanged by this coordinate-wise rescaling, so the distances are exactly those of the
        original space.
    label_temperature : float, default=20.0
        The paper's soft-label ``alpha``: sharpness of the soft labels computed from
        ``errors`` (:func:`soft_labels`). Unused without ``errors``.
    learning_rate : float, default=0.05
        Adam's step size (the paper's 0.05).
    weight_decay : float, default=5e-4
        Adam's weight decay (the paper's 5e-4), applied to the log-biases ``delta_j``, so it
        pulls each ``m_j`` back towards its starting point ``F_j``. Not applied to ``gamma``.
    max_iter : int, default=81
        Number of full-batch epochs (the paper stops after 81). 0: no training, the plain
        asymmetric TASK2VEC selector (requires ``model_embeddings``).
    n_init : int, default=40
        Number of training runs; the one with the lowest final training loss is kept. The
        first starts from the starting embeddings described above, the others from these
        multiplied coordinate-wise by independent log-normal factors (standard deviation 2 in
        log space). The loss of ``d_asym`` over ``m_j`` has local minima; restarts find better
        ones (on scikit-learn's 3-blob check, one run from the class means reaches 80%
        training accuracy, the best of 40 about 91%). The runs are trained together, as one
        batch; time and memory grow linearly with ``n_init``. Unused with ``max_iter=0``.
    experts : array-like of shape (n_experts,) or None, default=None
        Names of the experts, in the order of the columns of ``errors`` and of the rows of
        ``model_embeddings``; they become ``classes_`` (in this order), so that ``predict``
        returns names. ``y`` may then hold names or column indices (``errors.argmin(axis=1)``)
        unless a name is itself an integer, in which case integers are names; pass the
        predictions to :func:`relative_error_increase` with ``experts=selector.classes_``.
        ``None``: the experts are ``0 .. n_experts - 1`` when ``errors`` or
        ``model_embeddings`` give their number, else the classes of ``y`` (sorted), like any
        classifier.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts' perturbations. Results are deterministic for a fixed value.
    provenance : EmbeddingProvenance or None, default=None
        How the rows of ``X`` (and ``model_embeddings``) were made: the ``provenance_`` of the
        :class:`~sklearn_task2vec.FisherTaskEmbedder` that embedded them. A selector that knows
        it refuses rows made otherwise (another probe, seed, normalisation or setting) when
        they come with their record: ``predict(X, provenance=embedder.provenance_)`` in Python,
        and always in ``task2vec recommend``, whose files carry their record. ``None``: unknown;
        rows are then checked only for their width.

    Attributes
    ----------
    classes_ : ndarray of shape (n_experts,)
        The experts.
    provenance_ : EmbeddingProvenance or None
        The ``provenance`` of the rows the selector was fitted on (saved with it).
    model_embeddings_ : ndarray of shape (n_experts, n_features)
        The experts' embeddings ``m_j`` (learned with ``max_iter > 0``), in the space of
        ``X`` (not trivial-normalised).
    gamma_ : float
        The softmax temperature.
    loss_ : float
        Training cross-entropy of the kept run after training (or of the start, with
        ``max_iter=0``).
    n_iter_ : int
        Number of epochs run.
    n_features_in_ : int
        Number of features (embedding coordinates) seen during fit.
    feature_names_in_ : ndarray of str
        Names of the features, when ``X`` has string column names.

    See Also
    --------
    sklearn_task2vec.distances.pairwise_task_distances : The symmetric distance ``d_sym``.
    relative_error_increase : The paper's model-selection metric.
    model_selection_scorer : That metric as a scorer, with the errors routed to it.

    Notes
    -----
    Positive parametrisation: ``m_j = F_j * exp(delta_j)`` coordinate-wise, ``delta_j``
    learned from 0 in the first run (from the restart's perturbation in the others), so that
    ``m_j`` starts exactly at ``F_j`` (the selector with ``max_iter=0``) and stays a valid,
    non-negative embedding; the additive bias of the
    paper is ``b_j = m_j - F_j = F_j * (exp(delta_j) - 1)``. Adam's steps on ``delta`` are
    relative changes of ``m_j``, whatever the scale of the embeddings' coordinates. A
    coordinate where ``F_j`` is exactly 0 stays 0 (such coordinates, where the task put no
    Fisher information, are where ``d_sym`` leaves a coordinate out when the task is 0 too).

    Cost: each epoch computes ``d_sym`` for ``n_init * n_experts * n_tasks`` pairs of
    ``n_features``-vectors and its gradient, with fused kernels on all CPU cores (no
    temporary of size pairs x features): about 5 s for 22 tasks, 9 experts and 2,000
    features with the defaults on 2 cores.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.selector import Model2VecSelector
    >>> experts = np.array([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]])
    >>> tasks = np.array([[0.9, 0.2, 0.1], [0.1, 0.2, 0.8], [0.2, 1.2, 0.1]])
    >>> selector = Model2VecSelector(model_embeddings=experts, max_iter=0)
    >>> selector.fit(tasks, [0, 2, 1]).predict(tasks)
    array([0, 2, 1])
    """

    # StrictInterval, not Interval: True is an Integral to Python, but n_init=True is a mistake.
    _parameter_constraints: dict = {
        "alpha": [StrictInterval(Real, 0, None, closed="left")],
        "gamma": [StrictInterval(Real, 0, None, closed="neither"), None],
        "model_embeddings": ["array-like", None],
        "trivial_embedding": ["array-like", None],
        "label_temperature": [StrictInterval(Real, 0, None, closed="left")],
        "learning_rate": [StrictInterval(Real, 0, None, closed="neither")],
        "weight_decay": [StrictInterval(Real, 0, None, closed="left")],
        "max_iter": [StrictInterval(Integral, 0, None, closed="left")],
        "n_init": [StrictInterval(Integral, 1, None, closed="left")],
        "experts": ["array-like", None],
        "random_state": ["random_state"],
        "provenance": [EmbeddingProvenance, None],
    }

    def __init__(
        self,
        *,
        alpha=0.15,
        gamma=None,
        model_embeddings=None,
        trivial_embedding=None,
        label_temperature=20.0,
        learning_rate=0.05,
        weight_decay=5e-4,
        max_iter=81,
        n_init=40,
        experts=None,
        random_state=None,
        provenance=None,
    ):
        self.alpha = alpha
        self.gamma = gamma
        self.model_embeddings = model_embeddings
        self.trivial_embedding = trivial_embedding
        self.label_temperature = label_temperature
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.n_init = n_init
        self.experts = experts
        self.random_state = random_state
        self.provenance = provenance

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Task embeddings are Fisher Information diagonals: non-negative.
        tags.input_tags.positive_only = True
        return tags

    # ----------------------------------------------------------------------------------
    # fit
    # ----------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, errors=None):
        """Fit the experts' embeddings (and ``gamma``) on tasks with a known best expert.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features)
            Task embeddings, one per row: finite and non-negative.
        y : array-like of shape (n_tasks,)
            The best expert of each task. With ``experts``, a name from ``experts`` or a
            column index ``0 .. n_experts - 1`` (e.g. ``errors.argmin(axis=1)``); integers are
            read as names instead when some expert's name is an integer. With ``errors`` or
            ``model_embeddings`` and no ``experts``, a column index. Otherwise any labels,
            which become the experts.
        errors : array-like of shape (n_tasks, n_experts) or None, default=None
            Test error of every expert (column, in the order of ``experts``) on every task.
            When given, training targets the soft labels of these errors (with
            ``label_temperature``) instead of the one-hot ``y``. With metadata routing
            enabled, request it with ``set_fit_request(errors=True)``.

        Returns
        -------
        self : Model2VecSelector
            The fitted selector.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_non_negative(X, f"{type(self).__name__} (X)")
        check_classification_targets(y)
        n_tasks, n_features = X.shape

        trivial = self._check_trivial(n_features)
        model_embeddings = self._check_model_embeddings(n_features)
        if self.max_iter == 0 and model_embeddings is None:
            raise ValueError(
                "max_iter=0 is the plain asymmetric TASK2VEC selector: it needs "
                "model_embeddings, the embeddings of the tasks the experts were trained on. "
                "Pass model_embeddings, or use max_iter > 0 to learn the experts' embeddings."
            )
        if errors is not None:
            errors = check_array(errors, dtype=np.float64, input_name="errors")
            if errors.shape[0] != n_tasks:
                raise ValueError(
                    f"errors must have one row per task: X has {n_tasks} tasks, errors has "
                    f"shape {errors.shape}."
                )

        classes = self._experts(y, errors, model_embeddings)
        n_experts = len(classes)
        if n_experts < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes (experts) to choose from, "
                f"got {n_experts} class."
            )
        if errors is not None and errors.shape[1] != n_experts:
            raise ValueError(
                f"errors must have one of its columns per expert ({n_experts} experts), got "
                f"shape {errors.shape}."
            )
        if model_embeddings is not None and model_embeddings.shape[0] != n_experts:
            raise ValueError(
                f"model_embeddings must have one of its rows per expert ({n_experts} experts), "
                f"got shape {model_embeddings.shape}."
            )
        best = _expert_columns(y, classes, n_experts, "y", named=self.experts is not None)
        if errors is not None:
            targets = soft_labels(errors, temperature=self.label_temperature)
        else:
            targets = np.eye(n_experts)[best]

        tasks = X / trivial
        known = None if model_embeddings is None else model_embeddings / trivial
        start = known if self.max_iter == 0 else self._start(tasks, targets, known)
        embeddings, gamma, loss = self._train(start, torch.from_numpy(tasks), torch.from_numpy(targets))

        self.classes_ = classes
        self.model_embeddings_ = embeddings * trivial
        self.gamma_ = gamma
        self.loss_ = loss
        self.n_iter_ = int(self.max_iter)
        self.provenance_ = self.provenance
        self._normalised_embeddings = embeddings
        self._trivial = trivial
        return self

    def _check_trivial(self, n_features):
        if self.trivial_embedding is None:
            return np.ones(n_features)
        trivial = np.asarray(self.trivial_embedding)
        if trivial.ndim != 1 or trivial.shape[0] != n_features:
            raise ValueError(
                f"trivial_embedding must be a 1-D vector with one entry per feature "
                f"({n_features}), got shape {trivial.shape}."
            )
        trivial = check_array(trivial[None, :], dtype=np.float64, input_name="trivial_embedding")[0]
        if np.any(trivial <= 0):
            raise ValueError("trivial_embedding must be strictly positive (it divides the embeddings).")
        return trivial

    def _check_model_embeddings(self, n_features):
        if self.model_embeddings is None:
            return None
        embeddings = check_array(self.model_embeddings, dtype=np.float64, input_name="model_embeddings")
        if embeddings.shape[1] != n_features:
            raise ValueError(
                f"model_embeddings must have as many features as X ({n_features}), got "
                f"{embeddings.shape[1]}: embeddings from different probes cannot be compared."
            )
        check_non_negative(embeddings, f"{type(self).__name__} (model_embeddings)")
        return embeddings

    def _experts(self, y, errors, model_embeddings):
        if self.experts is not None:
            return check_expert_names(self.experts)
        if errors is not None:
            return np.arange(errors.shape[1])
        if model_embeddings is not None:
            return np.arange(model_embeddings.shape[0])
        return np.unique(y)

    def _start(self, tasks, targets, known):
        """Starting expert embeddings (trivial-normalised): ``F_j``, or the (soft) class mean.

        An unknown expert (no ``model_embeddings``, or a row of zeros) starts at the mean of
        the training tasks weighted by its labels, or of all of them when its weights are 0.
        """
        weights = targets.sum(axis=0)
        centroids = np.where(
            weights[:, None] > 0,
            targets.T @ tasks / np.where(weights > 0, weights, 1.0)[:, None],
            tasks.mean(axis=0),
        )
        if known is None:
            return centroids
        start = known.copy()
        unknown = ~np.any(start > 0, axis=1)
        start[unknown] = centroids[unknown]
        return start

    def _train(self, start, tasks, target):
        """Train n_init runs as one batch; return the kept run's embeddings, gamma and loss."""
        n_experts, n_features = start.shape
        ones = torch.ones((1, n_features), dtype=torch.float64)  # the trivial embedding
        n_runs = self.n_init if self.max_iter > 0 else 1
        rng = check_random_state(self.random_state)
        spread = rng.normal(scale=_INIT_SPREAD, size=(n_runs - 1, n_experts, n_features))

        support = torch.from_numpy(start > 0)
        log_start = torch.from_numpy(np.log(np.where(start > 0, start, 1.0)))
        delta = torch.zeros((n_runs, n_experts, n_features), dtype=torch.float64)
        delta[1:] = torch.from_numpy(spread)
        delta.requires_grad_(self.max_iter > 0)

        def embeddings():
            return torch.where(support, torch.exp(log_start + delta), 0.0)

        def distances(m):
            flat = m.reshape(n_runs * n_experts, n_features)
            d_tasks = symmetric_distances(flat, tasks)
            d_trivial = symmetric_distances(flat, ones)
            return (d_tasks - self.alpha * d_trivial).reshape(n_runs, n_experts, -1).transpose(1, 2)

        def losses(d, log_gamma):  # d: (runs, tasks, experts); one mean cross-entropy per run
            logits = -torch.exp(log_gamma)[:, None, None] * d
            return -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean(-1)

        with torch.no_grad():
            d = distances(embeddings())
            if self.gamma is None:
                grid = torch.from_numpy(np.log(_GAMMA_GRID))
                per_gamma = torch.stack([losses(d, g.expand(n_runs)) for g in grid])
                log_gamma = grid[per_gamma.argmin(dim=0)].clone()
                if self.max_iter > 0:
                    # A starting temperature near 0 (predictions near uniform) is a trap when
                    # the starting embeddings point to the wrong experts: training would
                    # shrink gamma further instead of moving the experts.
                    log_gamma = log_gamma.clamp_min(float(np.log(_GAMMA_START_MIN)))
            else:
                log_gamma = torch.full((n_runs,), float(np.log(self.gamma)), dtype=torch.float64)
        learn_gamma = self.gamma is None and self.max_iter > 0
        log_gamma.requires_grad_(learn_gamma)

        if self.max_iter > 0:
            groups = [{"params": [delta], "weight_decay": self.weight_decay}]
            if learn_gamma:
                groups.append({"params": [log_gamma], "weight_decay": 0.0})
            optimizer = torch.optim.Adam(groups, lr=self.learning_rate)
            for _ in range(self.max_iter):
                optimizer.zero_grad()
                loss = losses(distances(embeddings()), log_gamma).sum()
                loss.backward()
                optimizer.step()

        with torch.no_grad():
            final = embeddings()
            run_losses = losses(distances(final), log_gamma)
            best = int(torch.argmin(run_losses))  # ties: the earliest run (the unperturbed one)
            return final[best].numpy().copy(), float(torch.exp(log_gamma[best])), float(run_losses[best])

    # ----------------------------------------------------------------------------------
    # predict
    # ----------------------------------------------------------------------------------

    def _distances(self, X, provenance):
        """``d_asym(m_j -> t)`` for every task (row of X) and expert: (n_tasks, n_experts).

        ``provenance``: the record of the rows, checked against ``provenance_`` when given.
        """
        check_is_fitted(self)
        if provenance is not None:
            # Rows without a record are the usual Python case (transform returns an array):
            # only their width is checked, by validate_data.
            check_provenance(
                provenance,
                # A selector pickled by an older version has no provenance_.
                getattr(self, "provenance_", None),
                given_name="the rows",
                expected_name="the selector",
                override="pass no provenance=",
            )
        X = validate_data(self, X, reset=False, dtype=np.float64)
        check_non_negative(X, f"{type(self).__name__} (X)")
        m = torch.from_numpy(self._normalised_embeddings)
        with torch.no_grad():
            d_tasks = symmetric_distances(m, torch.from_numpy(X / self._trivial))
            d_trivial = symmetric_distances(m, torch.ones((1, X.shape[1]), dtype=torch.float64))
        return (d_tasks - self.alpha * d_trivial).T.numpy()

    def _logits(self, X, provenance):
        """``-gamma_ * d_asym(m_j -> t)``, the input of the softmax of ``p(j | t)``."""
        return self._distances(X, provenance) * -self.gamma_

    # Offered once fitted. scikit-learn 1.9's check_decision_proba_consistency fits any
    # unfitted estimator that offers decision_function and predict_proba on blobs with a
    # negative entry, without applying the positive_only tag that this estimator honestly
    # carries (and must enforce: check_fit_non_negative). The property it checks holds by
    # construction (predict_proba is a softmax of the same distances) and is tested in
    # tests/test_selector.py::test_decision_proba_consistency_on_non_negative_tasks.
    @available_if(_is_fitted)
    @validates_parameters
    def decision_function(self, X, *, provenance=None):
        """Minus the asymmetric distance from each expert to each task.

        Available once the selector is fitted.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features)
            Task embeddings (finite, non-negative).
        provenance : EmbeddingProvenance or None, default=None
            How the rows of ``X`` were made (``embedder.provenance_``): refused, naming each
            setting that differs, when the selector knows its own (``provenance_``) and they
            differ; a ``ProvenanceWarning`` when it does not. ``None``: only the width of the
            rows is checked.

        Returns
        -------
        scores : ndarray of shape (n_tasks, n_experts) or (n_tasks,)
            ``-d_asym(m_j -> t)``, higher for better experts. With two experts, the score of
            the second, ``d_asym(m_0 -> t) - d_asym(m_1 -> t)`` (scikit-learn's convention
            for binary classifiers).
        """
        distances = self._distances(X, provenance)
        if len(self.classes_) == 2:
            return distances[:, 0] - distances[:, 1]
        return -distances

    @validates_parameters
    def predict(self, X, *, provenance=None):
        """The expert closest to each task (smallest ``d_asym``).

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features)
            Task embeddings (finite, non-negative).
        provenance : EmbeddingProvenance or None, default=None
            How the rows of ``X`` were made (``embedder.provenance_``): refused, naming each
            setting that differs, when the selector knows its own (``provenance_``) and they
            differ; a ``ProvenanceWarning`` when it does not. ``None``: only the width of the
            rows is checked.

        Returns
        -------
        experts : ndarray of shape (n_tasks,)
            The chosen expert of each task, from ``classes_``.
        """
        distances = self._distances(X, provenance)
        return self.classes_[np.argmin(distances, axis=1)]

    @validates_parameters
    def predict_log_proba(self, X, *, provenance=None):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features)
            Task embeddings (finite, non-negative).
        provenance : EmbeddingProvenance or None, default=None
            How the rows of ``X`` were made (``embedder.provenance_``): refused, naming each
            setting that differs, when the selector knows its own (``provenance_``) and they
            differ; a ``ProvenanceWarning`` when it does not. ``None``: only the width of the
            rows is checked.

        Returns
        -------
        log_probabilities : ndarray of shape (n_tasks, n_experts)
            ``log softmax_j(-gamma_ * d_asym(m_j -> t))``.
        """
        return scipy.special.log_softmax(self._logits(X, provenance), axis=1)

    @validates_parameters
    def predict_proba(self, X, *, provenance=None):
        """Probability that each expert is the best for each task.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features)
            Task embeddings (finite, non-negative).
        provenance : EmbeddingProvenance or None, default=None
            How the rows of ``X`` were made (``embedder.provenance_``): refused, naming each
            setting that differs, when the selector knows its own (``provenance_``) and they
            differ; a ``ProvenanceWarning`` when it does not. ``None``: only the width of the
            rows is checked.

        Returns
        -------
        probabilities : ndarray of shape (n_tasks, n_experts)
            ``softmax_j(-gamma_ * d_asym(m_j -> t))``, columns in the order of ``classes_``.
        """
        return scipy.special.softmax(self._logits(X, provenance), axis=1)
