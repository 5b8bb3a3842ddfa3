"""One task's embedding, stage by stage: features, head, Fisher (paper, sec. 3.1).

:func:`embed_task` is the whole per-task pipeline that
:class:`~sklearn_task2vec.FisherTaskEmbedder` runs for each task of a sequence (in a joblib
worker, possibly): one no-grad pass of the task through the frozen probe caches its features
(:func:`~sklearn_task2vec._heads.task_features`), a linear head is fitted on them
(:func:`task_head`), and the Fisher Information of the probe's filters is taken under that
head (:func:`~sklearn_task2vec._fisher.task_fisher`, or :func:`variational_embedding`). The
estimator keeps what is scikit-learn's: parameters, validation, the fan-out over tasks, the
cache and ``errors_``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from ._fisher import RetainedForwards, resolve_method, task_fisher, variational_fisher
from ._heads import Readout, run_without_gradient, task_features, train_head
from ._utils import autocast_context, draw_seeds, progress_bar, to_device
from .tasks import ArrayTask, encode_labels


@dataclasses.dataclass(frozen=True)
class EmbeddingSettings:
    """The estimator's settings that a task's row depends on (besides the probe and the seeds).

    Its ``repr`` is part of the embedding cache's key, so a field added here changes the key.
    """

    method: str
    batch_size: int
    max_samples: int | None
    head_epochs: int
    head_learning_rate: float
    head_weight_decay: float
    variational_beta: float
    variational_steps: int
    variational_tol: float
    variational_noise: str
    variational_curvature: str
    skip_layers: str | None
    autocast: str | None
    pooling: str = "mean"
    max_length: int | None = None
    label_draws: int = 1


class Seeds(NamedTuple):
    """The seeds of one embedding run, the same for every task (see :func:`embedding_seeds`).

    ``probe``: the random probe's weights (and a named probe's random initialisation);
    ``sampling``: the subsample of ``max_samples`` examples; ``fisher``: the Monte Carlo
    labels, the variational perturbations and their batch order.
    """

    probe: int
    sampling: int
    fisher: int


def embedding_seeds(random_state):
    """The :class:`Seeds` drawn from ``random_state``.

    Every task gets the same seeds, so a task's embedding depends on the task and
    ``random_state`` only, not on its position in the sequence or on the other tasks.
    """
    probe_seed, root = draw_seeds(random_state, 2)
    sampling, fisher = (int(seed) for seed in np.random.SeedSequence(root).generate_state(2))
    return Seeds(probe_seed, sampling, fisher)


class TaskHead(NamedTuple):
    """A task's classes and the head trained on them (:func:`task_head`).

    ``head`` is None for a task with a single class. ``fisher_task`` is what the Fisher pass
    runs on: the task itself, or with a probe stem (``skip_layers``) its examples' stem
    outputs. ``n_examples``: the examples in the task. ``retained``: the features pass's
    forwards kept for the Fisher pass (:class:`~sklearn_task2vec._fisher.RetainedForwards`),
    or None.
    """

    classes: np.ndarray
    head: torch.nn.Linear | None
    fisher_task: object
    n_examples: int
    retained: RetainedForwards | None = None


class TaskEmbedding(NamedTuple):
    """One task's result (:func:`embed_task`).

    ``row``: the embedding, before any normalisation; ``prior``: the row that
    ``normalize="trivial"`` divides it by (the prior precision ``lambda^2``, or the
    variational prior term ``(beta / N) lambda^2``); ``n_classes``: the task's classes (1: the
    row is the trivial embedding, :func:`single_class_embedding`); ``unconverged_error``: for a
    variational row whose stopping rule did not end its run, the row's estimated relative
    standard error, else None (not stored in the cache).
    """

    row: np.ndarray
    prior: np.ndarray
    n_classes: int
    unconverged_error: float | None = None


#: ``method="exact"`` is refused on tasks with more classes than this: it takes ``C - 1``
#: backward passes per batch and a ``(batch, C, C - 1)`` tensor of logit directions
#: (10,000 classes at batch 64: 10,000 times the passes of ``"montecarlo"`` and 24 GiB).
EXACT_CLASS_LIMIT = 1000


def fisher_method(method, n_classes, batch_size, where):
    """The Fisher estimator ``method`` stands for on a task with ``n_classes`` classes, after
    refusing ``"exact"`` above :data:`EXACT_CLASS_LIMIT` classes."""
    method = resolve_method(method, n_classes)
    if method == "exact" and n_classes > EXACT_CLASS_LIMIT:
        size = batch_size * n_classes * (n_classes - 1) * 4 / 2**30
        raise ValueError(
            f"{where}: method='exact' on {n_classes} classes takes {n_classes - 1} backward passes "
            f"per batch and a ({batch_size}, {n_classes}, {n_classes - 1}) float32 tensor "
            f"({size:.1f} GiB); it is refused above {EXACT_CLASS_LIMIT} classes. Use "
            f"method='montecarlo' (one backward pass per batch, unbiased) or 'auto'."
        )
    return method


LARGE_INPUTS_ADVICE = (
    "Inputs of very large magnitude do this: standardise them (e.g. with "
    "sklearn.preprocessing.StandardScaler)."
)


def check_fisher_row(row, where):
    """``row``, a task's Fisher embedding, after refusing a degenerate one: non-finite values
    (overflow in the probe) or zero for every filter (a saturated head: its predicted
    probabilities are exactly 0 or 1, so the expected Fisher, eq. 1, vanishes)."""
    row = np.asarray(row)
    advice = LARGE_INPUTS_ADVICE
    finite = np.isfinite(row)
    if not finite.all():
        raise ValueError(
            f"{where}: the Fisher embedding has {np.count_nonzero(~finite)} non-finite values (NaN or "
            f"infinity) among its {row.size} filters: the probe's activations or gradients "
            f"overflowed. {advice}"
        )
    if not row.any():
        raise ValueError(
            f"{where}: the Fisher embedding is zero for every filter: the head's predicted "
            f"probabilities are exactly 0 or 1 in floating point, so no label carries information "
            f"about the weights. {advice}"
        )
    return row


def task_head(probe, task, settings, device, *, retain=False):
    """Cache the probe's features of a coerced ``task`` and fit a head on them (sec. 3.1).

    ``probe`` is a :class:`~sklearn_task2vec._probes.RunnableProbe` on ``device``. ``retain``:
    keep the features pass's forwards for the Fisher pass where memory allows
    (:class:`~sklearn_task2vec._fisher.RetainedForwards`, passed on as the result's
    ``retained``). The head is
    a :class:`~sklearn_task2vec._heads.Readout`: a linear layer over the probe's features (a
    text classification task's: its pooled hidden states), or for a language-modelling task
    over every token's hidden state, predicting the next token over the whole vocabulary and
    started from the probe's own output layer.
    """
    tokens = getattr(task, "tokens", False)
    language_modelling = getattr(task, "language_modelling", False)
    if tokens and probe.stem is not None:
        raise ValueError(
            f"{task.where}: skip_layers does not apply to text tasks (the stem's output has no "
            f"attention mask). Use skip_layers=None."
        )
    # A task that may be a one-shot stream is read again by the Fisher pass: only a second pass
    # shows that it can be read only once (its first batch, read to inspect the probe, is then
    # lost). The memory rule needs the task's size.
    n_examples = most_examples(task)
    keeps = retain and task.rereadable and n_examples is not None
    retained = RetainedForwards(probe, n_examples) if keeps else None
    features = task_features(
        probe.module,
        task,
        batch_size=settings.batch_size,
        device=device,
        stem=probe.stem,
        autocast=settings.autocast,
        pooling=settings.pooling,
        run=run_without_gradient if retained is None else retained.run,
    )
    fisher_task = task
    if features.stem_outputs is not None:
        fisher_task = ArrayTask(features.stem_outputs, features.labels, task.where)
    start = None
    if language_modelling:
        start = language_model_output(probe.module, task.where)
        classes = np.arange(start.out_features)
        codes = features.labels
    else:
        classes, codes = encode_labels(features.labels, task.where)
    n_examples = len(task.labels) if language_modelling else len(features.labels)
    if len(classes) == 1:
        return TaskHead(classes, None, fisher_task, n_examples)
    if not torch.isfinite(features.features).all():
        raise ValueError(
            f"{task.where}: the probe's features overflowed (they hold NaN or infinity, although "
            f"the inputs are finite). {LARGE_INPUTS_ADVICE}"
        )
    if not torch.isfinite(features.features.square()).all():
        # The last layer's squared gradients are (p - y)^2 times these squares: they would overflow.
        raise ValueError(
            f"{task.where}: the probe's features are too large (up to "
            f"{float(features.features.abs().max()):.3g}): their squares, and so the Fisher's "
            f"squared gradients, overflow {features.features.dtype}. {LARGE_INPUTS_ADVICE}"
        )
    linear = train_head(
        features.features,
        codes,
        len(classes),
        max_iter=settings.head_epochs,
        learning_rate=settings.head_learning_rate,
        weight_decay=settings.head_weight_decay,
        start=start,
    )
    if not all(torch.isfinite(parameter).all() for parameter in linear.parameters()):
        raise ValueError(
            f"{task.where}: the head's training diverged (its weights are NaN or infinite). "
            f"{LARGE_INPUTS_ADVICE}"
        )
    head = Readout(linear, features.kind, pooling=settings.pooling, tokens=tokens)
    return TaskHead(classes, head, fisher_task, n_examples, retained)


def most_examples(task):
    """At most how many examples a pass over a coerced ``task`` reads, or None where that is not
    known (a DataLoader without a length or a batch size)."""
    if hasattr(task, "__len__"):
        return len(task)
    if task.max_samples is not None:
        return task.max_samples
    try:
        return len(task.loader) * task.loader.batch_size
    except TypeError:  # an iterable dataset without a length, or a batch sampler of its own
        return None


def language_model_output(module, where):
    """The output layer a language-modelling task's head starts from: the probe's
    ``output_layer`` (:class:`~sklearn_task2vec.probes.TransformersBody` of a causal language
    model), a Linear layer from the last hidden state to the vocabulary's logits."""
    layer = getattr(module, "output_layer", None)
    if not isinstance(layer, torch.nn.Linear):
        reason = getattr(module, "output_layer_missing", None)
        raise ValueError(
            f"{where} is a language-modelling task (its labels are None), which needs a causal "
            f"language model as the probe, whose output layer starts the task's head: "
            + (
                reason
                or "this probe has no output_layer (a torch.nn.Linear from its hidden states to the vocabulary)."
            )
        )
    return layer


def stem_task(probe, task, settings, device):
    """The task the Fisher pass runs on: ``task``, or with a probe stem (``skip_layers``) its
    examples' stem outputs, kept on the host. Only the stem runs (no features are needed)."""
    if probe.stem is None:
        return task
    outputs = []
    for inputs, _ in task.batches(settings.batch_size):
        with autocast_context(settings.autocast, device):
            outputs.append(run_without_gradient(probe.stem, to_device(inputs, device), task.where).cpu())
    return ArrayTask(torch.cat(outputs), task.labels, task.where)


def fisher_generator(seeds, device):
    """The generator of Monte Carlo labels and variational perturbations on ``device``."""
    return torch.Generator(device=device).manual_seed(seeds.fisher)


def embed_task(probe, task, settings, seeds, *, device, trivial, progress=False):
    """The TASK2VEC embedding of one coerced task: features, head, Fisher.

    Parameters
    ----------
    probe : RunnableProbe
        The prepared probe, on ``device`` (:func:`~sklearn_task2vec._probes.prepare_probe`).
    task : ArrayTask or LoaderTask
        The task, coerced (:func:`~sklearn_task2vec.tasks.coerce_task`).
    settings : EmbeddingSettings
    seeds : Seeds
    device : torch.device
    trivial : ndarray of shape (n_filters,)
        The prior precision ``lambda^2`` of the probe's filters (``trivial_embedding_``).
    progress : bool, default=False
        Show a progress bar named by the task and its phase: features and head, then the
        Fisher pass over the examples (or the variational steps).

    Returns
    -------
    TaskEmbedding
        ``row``: the Fisher diagonal averaged over the task's examples (sec. 3.1), or the
        variational estimate ``(beta / N) Lambda``.
    """
    bar = progress_bar(progress, desc=f"{task.where}: features and head", unit="ex", leave=False)
    try:
        return _embed_task(probe, task, settings, seeds, device=device, trivial=trivial, bar=bar)
    finally:
        if bar is not None:
            bar.close()


def _embed_task(probe, task, settings, seeds, *, device, trivial, bar):
    """:func:`embed_task`, naming its phases on ``bar`` (a tqdm bar or None)."""
    fitted = task_head(probe, task, settings, device, retain=True)
    n_classes = len(fitted.classes)
    if fitted.head is None:
        return single_class_embedding(settings, trivial, fitted.n_examples)
    method = fisher_method(settings.method, n_classes, settings.batch_size, task.where)
    if method == "variational" and getattr(task, "language_modelling", False):
        raise ValueError(
            f"{task.where}: method='variational' takes tasks with one label per example; a "
            f"language-modelling task has one per token. Use method='montecarlo' (or 'auto')."
        )
    if bar is not None:
        bar.reset(total=None if method == "variational" else fitted.n_examples)
        bar.set_description(f"{task.where}: {'variational' if method == 'variational' else 'Fisher'}")
    if method == "variational":
        row, prior, unconverged_error = variational_embedding(
            probe, fitted, settings, seeds, device=device, trivial=trivial
        )
        return TaskEmbedding(check_fisher_row(row, task.where), prior, n_classes, unconverged_error)
    total = task_fisher(
        probe,
        fitted.head,
        fitted.fisher_task,
        method=method,
        batch_size=settings.batch_size,
        generator=fisher_generator(seeds, device),
        label_draws=settings.label_draws,
        autocast=settings.autocast,
        progress=bar,
        retained=fitted.retained,
    )
    return TaskEmbedding(check_fisher_row(total / fitted.n_examples, task.where), trivial, n_classes)


def single_class_embedding(settings, trivial, n_examples):
    """The row of a task with a single class, the trivial embedding: the prior term of its
    method's estimate, on the scale of that method's rows.

    A one-class model predicts its class with probability 1 whatever the probe's weights:
    its loss is constant and its Fisher is 0. The variational estimate ``(beta / N) Lambda =
    F + (beta / N) lambda^2`` (sec. 3.1) then is its prior term ``(beta / N) lambda^2`` (the
    paper: "in case the task is trivial [...] the embedding will coincide with the prior"),
    with ``lambda^2`` the prior precision ``trivial`` (untrained: there is no data term to
    train it against) and ``N = n_examples``. The point estimates (``"exact"``,
    ``"montecarlo"``) are that estimate's ``beta -> 0`` limit, ``F``, so their trivial row is
    0 (the paper's "trivial zero embedding", supplementary sec. 1.2). Either way every task's
    row is at least the trivial row, filter by filter, up to estimation noise.

    ``prior``, what ``normalize="trivial"`` divides the row by, is the row itself for the
    variational estimate (the normalised trivial row is all ones, like every variational
    row's own prior term) and ``lambda^2`` for the point estimates (normalised: all zeros).
    """
    if resolve_method(settings.method, 1) == "variational":
        prior_term = settings.variational_beta / n_examples * trivial
        return TaskEmbedding(prior_term.copy(), prior_term, 1)
    return TaskEmbedding(np.zeros_like(trivial), trivial, 1)


def variational_embedding(probe, fitted, settings, seeds, *, device, trivial):
    """``method="variational"`` on a task with its head fitted: ``(row, prior term, error)``.

    ``error``: the row's estimated relative standard error when ``variational_steps`` ended
    the run before the stopping rule did (``variational_tol > 0``), else None.

    Starts the precisions at the second-order optimum of a point estimate
    (:func:`~sklearn_task2vec._fisher.variational_fisher` says why). ``fitted`` is the task's
    :class:`TaskHead`; its head is on ``device``.
    """
    code_of = {label: code for code, label in enumerate(fitted.classes)}
    order = np.random.RandomState(seeds.fisher)
    task = fitted.fisher_task

    def batches():
        for inputs, labels in task.batches(settings.batch_size, order):
            codes = torch.tensor([code_of[label] for label in labels], dtype=torch.long, device=device)
            yield to_device(inputs, device), codes

    point_method = resolve_method("auto", len(fitted.classes))
    point = task_fisher(
        probe,
        fitted.head,
        task,
        method=point_method,
        batch_size=settings.batch_size,
        generator=fisher_generator(seeds, device),
        label_draws=settings.label_draws,
        autocast=settings.autocast,
        retained=fitted.retained,
    )
    point = point / fitted.n_examples
    prior_term = settings.variational_beta / fitted.n_examples * trivial
    if settings.variational_steps == 0:
        # The start itself, the optimum of the objective's second-order model.
        return prior_term + point, prior_term, None
    with autocast_context(settings.autocast, device):
        result = variational_fisher(
            probe,
            fitted.head,
            batches,
            fitted.n_examples,
            prior=trivial,
            initial_precision=trivial + fitted.n_examples / settings.variational_beta * point,
            beta=settings.variational_beta,
            max_steps=settings.variational_steps,
            tol=settings.variational_tol,
            head_weight_decay=settings.head_weight_decay,
            generator=fisher_generator(seeds, device),
            noise=settings.variational_noise,
            curvature=settings.variational_curvature,
            label_method=point_method,
            fisher=point,
        )
    stopped_early = settings.variational_tol > 0 and not result.converged
    return result.estimate, result.prior_term, result.relative_error if stopped_early else None
