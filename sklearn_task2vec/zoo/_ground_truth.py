"""The ground truth of model selection: the test error of every expert on every task."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from numbers import Integral, Real
from typing import NamedTuple

import joblib
import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import HasMethods, validate_params

from .._cache import cache_folder, load_checked, save_checked
from .._heads import task_features
from .._probes import frozen_copy
from .._utils import (
    StrictInterval,
    draw_seeds,
    module_digest,
    module_dtype,
    python_scalar,
    resolve_device,
    update_digest,
)
from ..task_library import TaskLibrary
from ..tasks import coerce_task, encode_labels, is_bare_pair
from ..transferability import (
    SCORE_NAMES,
    gbc_score,
    h_score,
    knn_score,
    leep_score,
    logme_score,
    nce_score,
    nleep_score,
    parc_score,
    sfda_score,
    transrate_score,
)
from ._expert import Expert, check_experts


@validate_params(
    {
        "experts": [list, tuple],
        "tasks": [list, tuple],
        "test_size": [StrictInterval(Real, 0, 1, closed="neither")],
        "task_names": ["array-like", None],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
        "cache": [str, os.PathLike, joblib.Memory, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def error_matrix(
    experts,
    tasks,
    *,
    test_size=0.3,
    task_names=None,
    classifier=None,
    batch_size=64,
    cache=None,
    device="auto",
    random_state=None,
):
    """Test error of every expert on every task: the brute-force ground truth of model selection.

    For each task, one stratified split into training and test examples, shared by all the
    experts; for each expert, its frozen features of the task's examples (in batches, under
    ``torch.no_grad``, eval mode) and a classifier (by default a logistic regression on
    standardised features) trained on the training examples' features; the entry is its
    error on the test examples. This is the paper's ground truth (sec. 4.2, supplementary
    sec. 4.1: a linear classifier on each expert for each task), scaled down; its rows go to
    ``Model2VecSelector.fit(embeddings, errors.argmin(axis=1), errors=errors)`` and to
    :data:`~sklearn_task2vec.selector.model_selection_scorer`.

    Parameters
    ----------
    experts : list of Expert
        The experts (columns), e.g. from :func:`train_expert` or :func:`load_expert`.
    tasks : list of tasks
        The tasks (rows): ``(inputs, labels)`` pairs, torch Datasets or DataLoaders (a
        DataLoader must yield its examples in the same order each time), e.g. a
        :class:`~sklearn_task2vec.task_library.TaskLibrary`.
    test_size : float, default=0.3
        Fraction of each task's examples in its test split, in (0, 1). Every class needs two
        examples at least, and each split one per class.
    task_names : sequence of str or None, default=None
        Names of the tasks, for error messages. ``None``: a TaskLibrary's names, else
        ``"task 0"``, ``"task 1"``, ...
    classifier : scikit-learn classifier or None, default=None
        Trained on each (task, expert)'s training features (a fresh clone each time).
        ``None``: ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``.
    batch_size : int, default=64
        Examples per forward pass.
    cache : str, path-like, joblib.Memory or None, default=None
        A folder (or a ``joblib.Memory``'s location) where each (expert, task)'s features are
        stored, keyed by the expert's weights and architecture and by the task's content, so
        that a later call (more experts, another classifier or split) computes only what is
        missing. Reading a DataLoader or Dataset task for its key costs one more pass over it
        per call. A damaged file is detected by checksum, reported and recomputed. A change to
        a module's code that keeps its class name, ``repr`` and weights is not detected: clear
        the folder then. ``None``: nothing is stored (within the call, a task listed twice is
        still read once per expert).
    device : str or torch.device, default="auto"
        Where the experts run; ``"auto"`` is CUDA when available, else CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits (one per task). The matrix is the same for the same value.

    Returns
    -------
    errors : ndarray of shape (n_tasks, n_experts)
        ``errors[i, j]``: the test error of expert ``j`` on task ``i``, in [0, 1].

    Raises
    ------
    ValueError
        If a list is empty, a task has a single class or too few examples of a class to
        split, or an expert cannot take a task's inputs (the message names both).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, error_matrix
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 2)).astype(np.float32)
    >>> first = Expert(nn.Linear(2, 1, bias=False), "first")
    >>> second = Expert(nn.Linear(2, 1, bias=False), "second")
    >>> _ = first.module.weight.data.copy_(torch.tensor([[1.0, 0.0]]))   # sees feature 0 only
    >>> _ = second.module.weight.data.copy_(torch.tensor([[0.0, 1.0]]))  # sees feature 1 only
    >>> tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]
    >>> errors = error_matrix([first, second], tasks, random_state=0)
    >>> errors.round(2)
    array([[0.11, 0.44],
           [0.39, 0.  ]])
    >>> errors.argmin(axis=1)   # the best expert of each task
    array([0, 1])
    """
    classifier = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        if classifier is None
        else classifier
    )
    pairs = _expert_task_features(
        experts, tasks, task_names, test_size, batch_size, cache, device, random_state
    )
    errors = np.empty((len(tasks), len(experts)))
    for pair in pairs:
        model = clone(classifier)
        try:
            model.fit(pair.features[pair.train], pair.codes[pair.train])
            predictions = model.predict(pair.features[pair.test])
        except ValueError as exc:
            raise ValueError(f"{pair.where}: the classifier failed: {exc}") from exc
        errors[pair.row, pair.column] = float(np.mean(predictions != pair.codes[pair.test]))
    return errors


# What transferability_scores computes when not told: the four classic scores.
DEFAULT_SCORES = ("logme", "leep", "nce", "h_score")
_NEEDS_HEAD = {"leep", "nce"}
# The scores of features and labels, by name, with their defaults (N-LEEP also takes a seed).
_FEATURE_SCORES = {
    "logme": functools.partial(logme_score, target="classification"),
    "h_score": functools.partial(h_score, target="classification"),
    "knn": functools.partial(knn_score, target="classification"),
    "sfda": sfda_score,
    "transrate": transrate_score,
    "gbc": gbc_score,
    "parc": parc_score,
}


@validate_params(
    {
        "experts": [list, tuple],
        "tasks": [list, tuple],
        "scores": [list, tuple],
        "test_size": [StrictInterval(Real, 0, 1, closed="neither")],
        "task_names": ["array-like", None],
        "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
        "cache": [str, os.PathLike, joblib.Memory, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def transferability_scores(
    experts,
    tasks,
    *,
    scores=DEFAULT_SCORES,
    test_size=0.3,
    task_names=None,
    batch_size=64,
    cache=None,
    device="auto",
    random_state=None,
):
    """Transferability scores of every expert on every task: LogME, LEEP, NCE, H-score and others.

    Each score of :mod:`sklearn_task2vec.transferability`, computed on each task's
    *training* split (the examples whose labels a user of a new task has) from the same
    per-(expert, task) features as :func:`error_matrix`: with the same ``test_size`` and
    ``random_state`` the splits are the same, so a score is judged against errors on examples
    it never saw, and with the same ``cache`` the features are read back, not recomputed.
    LEEP and NCE read the expert's source head (the ``head`` of its :class:`Expert`) applied
    to those features: its softmax is LEEP's ``theta(x)``, its arg-max NCE's source label.
    The others read the features and the labels (as classes), each with its function's
    defaults; N-LEEP's mixture is seeded per task from ``random_state`` (the same seed for
    every expert on a task, so that experts are compared under one draw).

    Parameters
    ----------
    experts : list of Expert
        The experts (columns). LEEP and NCE need each to have a ``head``.
    tasks : list of tasks
        The tasks (rows), as :func:`error_matrix` takes them.
    scores : sequence of str, default=("logme", "leep", "nce", "h_score")
        Which scores to compute, by the names of
        :data:`~sklearn_task2vec.transferability.SCORE_NAMES`: ``"logme"``, ``"leep"``,
        ``"nce"``, ``"h_score"``, ``"knn"``, ``"sfda"``, ``"nleep"``, ``"transrate"``,
        ``"gbc"``, ``"parc"``. The default, the four classic ones, keeps the cost of a call
        low (N-LEEP fits a Gaussian mixture per expert and task).
    test_size : float, default=0.3
        Fraction of each task's examples held out (not scored), as in :func:`error_matrix`.
    task_names : sequence of str or None, default=None
        Names of the tasks, for error messages.
    batch_size : int, default=64
        Examples per forward pass.
    cache : str, path-like, joblib.Memory or None, default=None
        The feature store of :func:`error_matrix`; shared with it.
    device : str or torch.device, default="auto"
        Where the experts run.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits, as in :func:`error_matrix`, and N-LEEP's mixtures.

    Returns
    -------
    scores : dict of str to ndarray of shape (n_tasks, n_experts)
        For each requested score, ``scores[name][i, j]``: expert ``j``'s score on task ``i``;
        higher is better. A row goes to
        :class:`~sklearn_task2vec.transferability.TransferabilitySelector`.

    Raises
    ------
    ValueError
        If a score name is unknown or repeated, LEEP or NCE is asked for an expert without a
        head (or whose head does not take its features), a score refuses a task's features
        (the message names the expert and the task), or for any reason of
        :func:`error_matrix`.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, transferability_scores
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 2)).astype(np.float32)
    >>> first = Expert(nn.Linear(2, 1, bias=False), "first")
    >>> second = Expert(nn.Linear(2, 1, bias=False), "second")
    >>> _ = first.module.weight.data.copy_(torch.tensor([[1.0, 0.0]]))   # sees feature 0 only
    >>> _ = second.module.weight.data.copy_(torch.tensor([[0.0, 1.0]]))  # sees feature 1 only
    >>> tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]
    >>> logme = transferability_scores([first, second], tasks, scores=["logme"], random_state=0)["logme"]
    >>> logme.argmax(axis=1)   # each task's best-scoring expert
    array([0, 1])
    """
    experts = check_experts(experts)
    names = _check_score_names(scores, experts)
    pairs = _expert_task_features(
        experts, tasks, task_names, test_size, batch_size, cache, device, random_state
    )
    result = {name: np.empty((len(tasks), len(experts))) for name in names}
    for pair in pairs:
        training = _TrainingSplit.of(pair, names)
        for name, value in training.scores(names).items():
            result[name][pair.row, pair.column] = value
    return result


@validate_params(
    {
        "experts": [list, tuple],
        "tasks": [list, tuple],
        "scores": [list, tuple],
        "n_resamples": [StrictInterval(Integral, 1, None, closed="left")],
        "subsample": [StrictInterval(Real, 0, 1, closed="neither")],
        "test_size": [StrictInterval(Real, 0, 1, closed="neither")],
        "task_names": ["array-like", None],
        "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
        "cache": [str, os.PathLike, joblib.Memory, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def selection_stability(
    experts,
    tasks,
    *,
    scores=DEFAULT_SCORES,
    n_resamples=100,
    subsample=0.5,
    test_size=0.3,
    task_names=None,
    batch_size=64,
    cache=None,
    device="auto",
    random_state=None,
):
    """How often each score's chosen expert changes when a task's examples are resampled.

    A score picks, for a new task, the expert with the highest score on the task's labelled
    examples, the training split of :func:`transferability_scores` (same ``test_size`` and
    ``random_state``: same splits, and with the same ``cache`` the same features, read back).
    Another draw of examples from the same task could pick another expert. For each task this
    function draws ``n_resamples`` subsamples of its training split, stratified and without
    replacement (a fraction ``subsample`` of each class's examples, rounded up, so that every
    class stays), the same subsamples for every expert; it scores every expert on each and
    returns how often the best-scoring expert differs from the one chosen on the split itself.
    The experts' features are computed once: a subsample costs only the scores, no forward
    pass.

    Why subsamples and not bootstrap resamples: a bootstrap resample repeats examples (about
    63 % of them are distinct), and repeated examples are not a sample any score assumes.
    Given at least as many features as distinct examples, each class indicator is exactly a
    linear function of the features on the resample, whose rank (the number of distinct
    examples) is below its number of rows: LogME's evidence is then unbounded (``+inf``) for
    every such expert, and the tie goes to the first of them on every resample. k-NN finds
    an example's copies as its nearest neighbours. Examples kept distinct avoid both. Half of the examples (the default) is the
    classical half-sample: the mean of a half-sample drawn without replacement varies about
    its split's mean as much as a bootstrap resample's does (variance ``s^2 / n`` both;
    McCarthy, "The bootstrap and finite population sampling", 1969; Politis & Romano,
    "Large sample confidence regions based on subsamples", Ann. Statist. 1994), so the
    frequencies keep the bootstrap's scale. A score whose ranking of the experts depends on
    the number of examples may choose otherwise on half of them: a change rate counts that
    too.

    0 means the choice does not depend on which examples the task happens to have; a
    frequency near ``1 - 1/k`` means the score cannot tell ``k`` experts apart on this task.
    A score's ranking quality over tasks (its weighted Kendall's tau and its interval, see
    :func:`~sklearn_task2vec.selector.weighted_kendall_tau_interval`) and this per-task
    stability answer different questions: how well it ranks, and how much a given task's
    sample decides its choice.

    Parameters
    ----------
    experts : list of Expert
        The experts. LEEP and NCE need each to have a ``head``.
    tasks : list of tasks
        The tasks, as :func:`error_matrix` takes them.
    scores : sequence of str, default=("logme", "leep", "nce", "h_score")
        Which scores, by the names :func:`transferability_scores` takes. Each subsample costs
        one evaluation of each: N-LEEP fits a Gaussian mixture each time.
    n_resamples : int, default=100
        Subsamples per task.
    subsample : float, default=0.5
        Fraction of each class's training examples in a subsample, in (0, 1), rounded up
        (one example of each class at least).
    test_size : float, default=0.3
        Fraction of each task's examples held out (neither scored nor subsampled), as in
        :func:`transferability_scores`.
    task_names : sequence of str or None, default=None
        Names of the tasks, for error messages.
    batch_size : int, default=64
        Examples per forward pass.
    cache : str, path-like, joblib.Memory or None, default=None
        The feature store of :func:`error_matrix`; shared with it.
    device : str or torch.device, default="auto"
        Where the experts run.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits, as in :func:`transferability_scores`; each task's subsamples are
        drawn from its split's seed, so the result is the same for the same value.

    Returns
    -------
    changes : dict of str to ndarray of shape (n_tasks,)
        For each requested score, ``changes[name][i]``: the fraction of task ``i``'s subsamples
        on which the score's best expert is not the one it picks on the training split
        itself, in [0, 1]. Ties go to the first expert, on the split and on every subsample.

    Raises
    ------
    ValueError
        For any reason of :func:`transferability_scores`.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, selection_stability
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 2)).astype(np.float32)
    >>> first = Expert(nn.Linear(2, 1, bias=False), "first")
    >>> second = Expert(nn.Linear(2, 1, bias=False), "second")
    >>> _ = first.module.weight.data.copy_(torch.tensor([[1.0, 0.0]]))   # sees feature 0 only
    >>> _ = second.module.weight.data.copy_(torch.tensor([[0.0, 1.0]]))  # sees feature 1 only
    >>> tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]   # each task's expert is unambiguous
    >>> selection_stability([first, second], tasks, scores=["logme"], n_resamples=20, random_state=0)
    {'logme': array([0., 0.])}
    """
    experts = check_experts(experts)
    names = _check_score_names(scores, experts)
    pairs = _expert_task_features(
        experts, tasks, task_names, test_size, batch_size, cache, device, random_state
    )
    chosen = {name: np.empty((len(tasks), len(experts))) for name in names}
    resampled = {name: np.empty((len(tasks), len(experts), n_resamples)) for name in names}
    for pair in pairs:
        training = _TrainingSplit.of(pair, names)
        for name, value in training.scores(names).items():
            chosen[name][pair.row, pair.column] = value
        # Seeded by the task alone: every expert is scored on the same subsamples.
        rng = np.random.default_rng([pair.seed, _RESAMPLE_STREAM])
        for draw in range(n_resamples):
            rows = stratified_subsample(training.labels, subsample, rng)
            for name, value in training.scores(names, rows).items():
                resampled[name][pair.row, pair.column, draw] = value
    return {
        name: np.mean(resampled[name].argmax(axis=1) != chosen[name].argmax(axis=1)[:, None], axis=1)
        for name in names
    }


# The subsamples of selection_stability are drawn from a task's split seed and this stream
# number, apart from the split's own draws.
_RESAMPLE_STREAM = 1


def _check_score_names(scores, experts):
    """``scores`` as a list of distinct known names, after checking the experts have the heads
    that LEEP and NCE read."""
    names = list(scores)
    unknown = [name for name in names if name not in SCORE_NAMES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(
            f"scores must list distinct names among {list(SCORE_NAMES)}, one at least; got {names!r}."
        )
    if _NEEDS_HEAD.intersection(names):
        headless = [expert.name for expert in experts if expert.head is None]
        if headless:
            raise ValueError(
                f"LEEP and NCE need each expert's source head (its classifier over its training "
                f"task's classes); these experts have none: {headless[:10]}. train_expert keeps "
                f"the head, save_expert and load_expert keep it too (experts saved in format "
                f"version 1 have none); or ask only for scores of the features, e.g. "
                f"scores=['logme', 'h_score']."
            )
    return names


class _TrainingSplit(NamedTuple):
    """What the scores read of one (expert, task) pair: the training split's features, labels
    and, for LEEP and NCE, the expert's source-head probabilities (None if not asked for); the
    task's seed (N-LEEP's) and the pair's name in messages."""

    features: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray | None
    seed: int
    where: str

    @classmethod
    def of(cls, pair, names):
        features = pair.features[pair.train]
        probabilities = None
        if _NEEDS_HEAD.intersection(names):
            probabilities = _source_probabilities(pair.expert, features, pair.where)
        return cls(features, pair.codes[pair.train], probabilities, pair.seed, pair.where)

    def scores(self, names, rows=None):
        """Each score of ``names`` on the split, or on its examples ``rows``."""
        features, labels, probabilities = self.features, self.labels, self.probabilities
        if rows is not None:
            features, labels = features[rows], labels[rows]
            probabilities = None if probabilities is None else probabilities[rows]
        calls = {
            name: functools.partial(_FEATURE_SCORES[name], features, labels)
            for name in names
            if name in _FEATURE_SCORES
        }
        if "nleep" in names:
            calls["nleep"] = functools.partial(nleep_score, features, labels, random_state=self.seed)
        if probabilities is not None:
            calls["leep"] = functools.partial(leep_score, probabilities, labels)
            calls["nce"] = functools.partial(nce_score, probabilities.argmax(axis=1), labels)
        computed = {}
        for name in names:
            try:
                computed[name] = calls[name]()
            except ValueError as exc:
                raise ValueError(f"{self.where}: {exc}") from exc
        return computed


def stratified_subsample(labels, fraction, rng):
    """Indices of a stratified subsample of ``labels``' examples (integer codes), without
    replacement: ``ceil(fraction * count)`` of each class's ``count`` examples, sorted."""
    return np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(labels == code), size=math.ceil(fraction * count), replace=False)
                for code, count in enumerate(np.bincount(labels))
                if count
            ]
        )
    )


def _source_probabilities(expert, features, where):
    """The softmax of the expert's source head on its features, in float64."""
    head = expert.head
    parameter = next(head.parameters(), None)
    inputs = torch.from_numpy(np.ascontiguousarray(features))
    inputs = inputs.to(torch.float32 if parameter is None else parameter.dtype)
    try:
        with torch.no_grad():
            logits = head.eval()(inputs.to("cpu" if parameter is None else parameter.device))
    except RuntimeError as exc:
        raise ValueError(
            f"{where}: the expert's head does not take its {features.shape[1]} features: {exc}"
        ) from exc
    if logits.ndim != 2 or logits.shape[0] != len(features):
        raise ValueError(
            f"{where}: the expert's head must give (n_examples, n_source_classes) logits, got shape "
            f"{tuple(logits.shape)}."
        )
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


class _ExpertTaskFeatures(NamedTuple):
    """One (expert, task) pair: the expert's features of the task and the task's split."""

    row: int
    column: int
    expert: Expert
    where: str
    features: np.ndarray
    codes: np.ndarray
    train: np.ndarray
    test: np.ndarray
    seed: int  # the task's seed, drawn from random_state: its split's and N-LEEP's; its subsamples'


def _expert_task_features(experts, tasks, task_names, test_size, batch_size, cache, device, random_state):
    """Every (expert, task) pair's features and split, expert by expert: what
    :func:`error_matrix` and :func:`transferability_scores` share (the same splits for the same
    ``random_state``, the same feature store)."""
    experts = check_experts(experts)
    if is_bare_pair(tasks):
        raise TypeError(
            "tasks must be a list of tasks, e.g. [(inputs, labels), ...]; got one (inputs, labels) pair."
        )
    if not tasks:
        raise ValueError("tasks is empty: give one task at least.")
    labels = _task_labels(tasks, task_names)
    device = resolve_device(device)
    store = _FeatureStore(cache)
    split_seeds = draw_seeds(random_state, len(tasks))
    return _pairs_of(
        experts, labels, test_size, split_seeds, _FeatureReader(tasks, labels, batch_size, device, store)
    )


def _pairs_of(experts, labels, test_size, split_seeds, reader):
    splits = [None] * len(labels)
    for column, expert in enumerate(experts):
        for row, task_label in enumerate(labels):
            features, task_labels = reader.features(expert, row)
            if splits[row] is None:
                splits[row] = _split(task_labels, test_size, split_seeds[row], task_label)
            codes, first_labels, train, test = splits[row]
            if not np.array_equal(task_labels, first_labels):
                raise ValueError(
                    f"{task_label} gave its examples in another order (or other labels) to expert "
                    f"{expert.name!r} than before: pass a Dataset, or a DataLoader with shuffle=False."
                )
            where = f"expert {expert.name!r} on {task_label}"
            if not np.all(np.isfinite(features)):
                raise ValueError(f"{where}: the expert's features contain NaN or infinity.")
            yield _ExpertTaskFeatures(
                row, column, expert, where, features, codes, train, test, split_seeds[row]
            )
        reader.forget_expert()


def _task_labels(tasks, task_names):
    """How each task is named in messages: ``"task 0"`` or ``"task 0 ('birds')"``."""
    if task_names is None and isinstance(tasks, TaskLibrary):
        task_names = tasks.names
    if task_names is None:
        return [f"task {index}" for index in range(len(tasks))]
    task_names = list(task_names)
    if len(task_names) != len(tasks):
        raise ValueError(f"task_names has {len(task_names)} names for {len(tasks)} tasks.")
    return [f"task {index} ({name!r})" for index, name in enumerate(task_names)]


def _split(task_labels, test_size, seed, task_label):
    """``(codes, labels, train, test)``: the task's stratified split, after checking it is possible."""
    classes, codes = encode_labels(task_labels, task_label)
    counts = np.bincount(codes, minlength=len(classes))
    if len(classes) < 2:
        raise ValueError(
            f"{task_label} has a single class ({python_scalar(classes[0])!r}): there is nothing to classify."
        )
    if counts.min() < 2:
        rare = python_scalar(classes[int(np.argmin(counts))])
        raise ValueError(
            f"{task_label}: class {rare!r} has a single example; each class needs two at least, one for "
            f"the training split and one for the test split."
        )
    n_test = math.ceil(test_size * len(codes))
    n_train = len(codes) - n_test
    if min(n_test, n_train) < len(classes):
        raise ValueError(
            f"{task_label} has {len(codes)} examples: with test_size={test_size} its splits have {n_train} "
            f"and {n_test}, and each needs one example of each of its {len(classes)} classes."
        )
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros((len(codes), 1)), codes))
    return codes, task_labels, train, test


class _FeatureReader:
    """Features of (expert, task) pairs: from memory, from the disk store, or computed.

    In memory, the features of the current expert are kept by task object, so that a task
    listed twice is read once; the disk store (when given) is keyed by content.
    """

    def __init__(self, tasks, labels, batch_size, device, store):
        self.tasks, self.labels = tasks, labels
        self.batch_size, self.device, self.store = batch_size, device, store
        self.task_keys = {}  # (task row, dtype) -> (content key, labels), for the disk store
        self.expert = None

    def forget_expert(self):
        """Release the current expert's device copy and features."""
        self.expert = self.module = None
        self.memory = {}

    def _prepare(self, expert):
        if self.expert is not expert:
            self.expert = expert
            self.module = None  # moved to the device only when a feature has to be computed
            self.dtype = module_dtype(expert.module)
            self.expert_key = None if self.store.folder is None else module_digest(expert.module)
            self.memory = {}

    def features(self, expert, row):
        """``(features, labels)`` of task ``row`` under ``expert``: float numpy arrays and labels."""
        self._prepare(expert)
        task = self.tasks[row]
        if id(task) in self.memory:
            return self.memory[id(task)]
        if self.store.folder is None:
            result = self._compute(row)
        else:
            if (row, self.dtype) not in self.task_keys:
                self.task_keys[row, self.dtype] = self._task_key(row)
            task_key, labels = self.task_keys[row, self.dtype]
            features = self.store.load(self.expert_key, task_key)
            if features is None:
                features, computed_labels = self._compute(row)
                if np.array_equal(computed_labels, labels):  # else the caller reports the order change
                    self.store.save(self.expert_key, task_key, features)
                labels = computed_labels
            result = features, labels
        self.memory[id(task)] = result
        return result

    def _coerced(self, row):
        # coerce_task names the task "task {index}" in its messages: give it the name as well.
        return coerce_task(
            self.tasks[row],
            self.labels[row].removeprefix("task "),
            dtype=self.dtype,
            batch_size=self.batch_size,
            max_samples=None,
            rng=None,
        )

    def _task_key(self, row):
        """A hash of the task's examples and labels at the expert's dtype, and its labels."""
        digest, labels = hashlib.sha256(), []
        for inputs, batch_labels in self._coerced(row).batches(self.batch_size):
            update_digest(digest, inputs.numpy())
            update_digest(digest, np.asarray(batch_labels))
            labels.append(np.asarray(batch_labels))
        return digest.hexdigest(), np.concatenate(labels)

    def _compute(self, row):
        if self.module is None:
            self.module = frozen_copy(self.expert.module).to(self.device)
        try:
            features, labels, *_ = task_features(
                self.module, self._coerced(row), batch_size=self.batch_size, device=self.device
            )
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"expert {self.expert.name!r}: {exc}") from exc
        return features.cpu().numpy(), labels


class _FeatureStore:
    """Features on disk, one ``.npz`` per (expert, task) with a checksum, written atomically;
    features whose file cannot be written are kept, with a warning."""

    def __init__(self, cache):
        folder = cache_folder(cache, "cache")
        self.folder = None if folder is None else folder / "features"

    def _path(self, expert_key, task_key):
        return self.folder / expert_key / f"{task_key}.npz"

    def load(self, expert_key, task_key):
        stored = load_checked(
            self._path(expert_key, task_key), f"{expert_key} {task_key}", ("features",), "features"
        )
        return None if stored is None else stored[0]

    def save(self, expert_key, task_key, features):
        save_checked(
            self._path(expert_key, task_key),
            f"{expert_key} {task_key}",
            "the features are kept",
            features=features,
        )
