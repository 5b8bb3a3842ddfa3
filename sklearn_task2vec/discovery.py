"""Task discovery: which labellings of a fixed set of examples a network learns and generalises on.

A *task* here is a binary labelling of a fixed set of examples (images ``N x C x H x W`` or
2-D features). Two scores tell a task from a random labelling:

* the **task-ness score** of the task-discovery study (seed 002, "Real vs. Random Task
  Evaluation"): train a small network on 80% of the examples, record its validation loss
  after every step, smooth that curve with a rolling median of window 5 and take its minimum
  ``g``; with ``b`` the validation loss of a baseline that does not look at the inputs,

  .. math:: \\text{task-ness} = (b - g) / b,

  0 for a labelling no better than the baseline, up to 1 for one learnt perfectly;
* the **agreement score** of Atanov et al. (NeurIPS 2022, "Task Discovery: Finding the Tasks
  that Neural Networks Generalize on", eq. 1): two networks trained on the same labelling from
  different initialisations and data orders agree on the held-out examples when the labelling
  is a task, and not when it is random,

  .. math:: \\text{AS}(\\tau) = \\mathbb{E}_{x \\in D_\\text{val}}\\,
     [\\![\\, f_1(x) = f_2(x) \\,]\\!].

:class:`TaskDiscovery` searches the labellings with a fixed number of positives for the ones
that score best (the seed's "Discovery" with nevergrad's ``TwoPointsDE``), each new task kept
away from those found before. :func:`learnability_study` measures the seed's learnability
curves (label ablation, class ratio, number of positives, real against random).

Speed: a search scores thousands of labellings, each a small training. The scores take a
whole stack of labellings ``(n_labellings, n_samples)`` at once and train all their networks
in one batched training (weights stacked along a model axis; a plain Sequential such as the
seed's CNN runs as grouped channels-last convolutions and batched matrix products, any other
network through ``torch.func.vmap``), each labelling from the
same initialisations and data orders as when scored alone; :class:`TaskDiscovery` asks the
optimiser for ``n_candidates`` labellings at a time and scores them together, trains a
labelling proposed again (or its complement) only once, and stops the trainings that can no
longer change the search (``early_stopping``).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import itertools
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from numbers import Integral, Real
from time import perf_counter
from typing import NamedTuple

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context, clone, is_classifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import (
    HasMethods,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils.validation import check_array, validate_data
from torch import nn
from torch.func import stack_module_state

from ._population import population_forward, runs_stacked
from ._utils import (
    VERBOSE_CONSTRAINT,
    StrictInterval,
    draw_seeds,
    progress_bar,
    progress_enabled,
    python_scalar,
    resolve_device,
    with_context,
)
from .distances import pairwise_task_distances
from .embedder import FisherTaskEmbedder

__all__ = [
    "taskness_score",
    "agreement_score",
    "TaskDiscovery",
    "learnability_study",
    "small_cnn",
    "small_mlp",
    "label_similarity",
    "decode_labelling",
]

#: Window of the rolling median that smooths the validation-loss curve (seed 002).
SMOOTHING_WINDOW = 5
#: Most networks trained together in one batched training (labellings times seeds).
MAX_STACKED_MODELS = 256
#: Fewest networks in a batched training that runs beside others (see _populations_at_once).
MIN_MODELS_PER_THREAD = 4
BASELINES = ("prior", "blind", "mean")
#: Images at least this large (both sides) run the seed's CNN unpadded; the two 5x5
#: convolutions and 2x2 pools leave them at least one pixel.
UNPADDED_CNN_MIN_SIZE = 16
#: Early stopping of a search's trainings (task-ness): first checked after this many steps,
#: then every EARLY_STOPPING_EVERY steps.
EARLY_STOPPING_FIRST = 20
EARLY_STOPPING_EVERY = 5
#: A training is stopped once its smoothed validation loss has risen this fraction of the
#: baseline's loss above its minimum (the network overfits) ...
EARLY_STOPPING_RISE = 0.1
#: ... and its task-ness so far is more than this below the score it must reach.
EARLY_STOPPING_MARGIN = 0.05
# A search stops after this many candidates in a row scored NaN, or one batch if more.
_UNSCORABLE_LIMIT = 10
# The loss told to the optimiser for such a candidate: worse than any score's, below the 5e20 at
# which nevergrad clips a loss (NaN and infinity included) with a warning.
_UNSCORABLE_LOSS = 1e20
STUDIES = ("ablation", "class_ratio", "n_positives", "real_vs_random")


# ---------------------------------------------------------------------------- networks
def small_cnn(input_shape):
    """The seed's small CNN for binary tasks on images of shape ``(channels, height, width)``.

    conv 5x5x6, ReLU, 2x2 max-pool, conv 5x5x16, ReLU, 2x2 max-pool, fc 120, fc 84, fc 2, ReLU
    between. The seed's table (002, "Architecture Used") lists the layers of PyTorch's CIFAR-10
    tutorial network by its attribute names and in their order (conv1, pool, conv2, fc1, fc2,
    fc3), whose forward applies its one pool module after each convolution; on 32x32 CIFAR
    images that gives its 16x5x5 features. The convolutions are unpadded, as there, when the
    image is at least 16x16 pixels; smaller images (8x8 digits) are zero-padded ("same"), so
    that both pools keep a spatial extent (16x2x2 features for 8x8 digits).

    Parameters
    ----------
    input_shape : tuple of int
        ``(channels, height, width)``; height and width at least 4.

    Returns
    -------
    module : torch.nn.Sequential
        Maps ``(batch, channels, height, width)`` to ``(batch, 2)`` logits.
    """
    channels, height, width = (int(size) for size in input_shape)
    if height < 4 or width < 4:
        raise ValueError(f"small_cnn needs images of at least 4x4 pixels, got {height}x{width}.")
    padding = 0 if min(height, width) >= UNPADDED_CNN_MIN_SIZE else 2

    def pooled(size):
        return (size + 2 * padding - 4) // 2

    features_height, features_width = pooled(pooled(height)), pooled(pooled(width))
    return nn.Sequential(
        nn.Conv2d(channels, 6, 5, padding=padding),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5, padding=padding),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * features_height * features_width, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 2),
    )


def small_mlp(n_features):
    """The small CNN's fully connected part (fc 120, fc 84, fc 2, ReLU between) for 2-D features.

    Parameters
    ----------
    n_features : int

    Returns
    -------
    module : torch.nn.Sequential
        Maps ``(batch, n_features)`` to ``(batch, 2)`` logits.
    """
    return nn.Sequential(
        nn.Linear(int(n_features), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 2),
    )


def _default_network(example_shape):
    if len(example_shape) == 1:
        return small_mlp(example_shape[0])
    if len(example_shape) == 3:
        return small_cnn(example_shape)
    raise ValueError(
        f"X must be 2-D features (n_samples, n_features) or images (n_samples, channels, height, "
        f"width) for the default network, got examples of shape {tuple(example_shape)}."
    )


# ---------------------------------------------------------------------------- input checks
def _check_examples(X, where="X"):
    """``X`` as a finite float32 array of 2-D features or images, refused clearly otherwise."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    X = check_array(X, allow_nd=True, dtype=(np.float32, np.float64), input_name=where, ensure_min_samples=4)
    if X.ndim not in (2, 4):
        raise ValueError(
            f"{where} must be 2-D features (n_samples, n_features) or images (n_samples, channels, "
            f"height, width), got an array of shape {X.shape}."
        )
    return X.astype(np.float32, copy=False)


def _check_labellings(y, n_samples, where="y"):
    """``y`` (one labelling or a stack of them) as an int64 array ``(n_labellings, n_samples)`` of
    0/1 in canonical orientation, and whether one labelling was given.

    A labelling and its complement are the same task: each is flipped so that its smaller class
    is the positive one (on a tie, so that the first example is negative), which makes every
    score exactly invariant to complementing the labels.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    single = y.ndim == 1
    if y.ndim not in (1, 2) or y.shape[-1] != n_samples:
        raise ValueError(
            f"{where} must have shape (n_samples,) or (n_labellings, n_samples) with n_samples = "
            f"{n_samples} (the examples in X), got shape {y.shape}."
        )
    y = y.reshape(-1, n_samples)
    if y.shape[0] == 0:
        raise ValueError(f"{where} holds no labelling.")
    canonical = np.empty(y.shape, dtype=np.int64)
    for row, labels in enumerate(y):
        values, codes = np.unique(labels, return_inverse=True)
        name = where if single else f"{where}[{row}]"
        if len(values) != 2:
            raise ValueError(
                f"{name} must be a binary labelling (two distinct values), got {len(values)} distinct "
                f"value(s): {values[:5].tolist()}."
            )
        counts = np.bincount(codes, minlength=2)
        if counts.min() < 2:
            raise ValueError(
                f"{name} has {counts.min()} example(s) of class {python_scalar(values[counts.argmin()])!r}: each class "
                f"needs at least 2 (one to train on, one to validate on)."
            )
        canonical[row] = _canonical_orientation(codes)
    return canonical, single


def _canonical_orientation(labels):
    """A 0/1 labelling flipped so that its smaller class is positive (on a tie, so that the first
    example is negative): a labelling and its complement, the same task, become one array."""
    n_positive = int(np.count_nonzero(labels))
    flip = 2 * n_positive > len(labels) or (2 * n_positive == len(labels) and labels[0] == 1)
    return 1 - labels if flip else labels


class _Scoring(NamedTuple):
    """How labellings are scored: the network or classifier and its training."""

    estimator: object
    validation_fraction: float
    n_steps: int
    batch_size: int
    learning_rate: float
    n_seeds: int
    baseline: str
    cv: int
    device: torch.device


def _scoring(
    estimator, validation_fraction, n_steps, batch_size, learning_rate, n_seeds, baseline, cv, device
):
    if estimator is not None and not isinstance(estimator, nn.Module) and not is_classifier(estimator):
        raise TypeError(
            f"estimator must be None, a torch.nn.Module or a scikit-learn classifier, got "
            f"{type(estimator).__name__}."
        )
    if n_steps < SMOOTHING_WINDOW:
        raise ValueError(
            f"n_steps={n_steps}: the validation-loss curve is smoothed by a rolling median of "
            f"window {SMOOTHING_WINDOW}, so at least {SMOOTHING_WINDOW} steps are needed."
        )
    return _Scoring(
        estimator,
        float(validation_fraction),
        int(n_steps),
        int(batch_size),
        float(learning_rate),
        int(n_seeds),
        baseline,
        int(cv),
        resolve_device(device),
    )


_SCORE_CONSTRAINTS = {
    "X": ["array-like"],
    "y": ["array-like"],
    "estimator": [nn.Module, HasMethods(["fit", "predict"]), None],
    "validation_fraction": [StrictInterval(Real, 0, 1, closed="neither")],
    "n_steps": [StrictInterval(Integral, 1, None, closed="left")],
    "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
    "learning_rate": [StrictInterval(Real, 0, None, closed="neither")],
    "cv": [StrictInterval(Integral, 2, None, closed="left")],
    "device": [str, torch.device],
    "random_state": ["random_state"],
}


# ---------------------------------------------------------------------------- splits and baselines
def _stratified_split(labels, validation_fraction, seed):
    """Train and validation indices of one labelling, each class split in the same proportion.

    The split depends only on the labelling and ``seed``, so that a labelling is split the same
    way whether it is scored alone or in a stack.
    """
    rng = np.random.RandomState(seed)
    train, val = [], []
    for cls in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(np.clip(round(validation_fraction * len(members)), 1, len(members) - 1))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _baseline_loss(train_labels, val_labels, baseline):
    """Validation log loss of the seed's baselines, which do not look at the inputs.

    ``"prior"``, the statistically informed one, predicts the training split's positive rate for
    every example; ``"blind"`` predicts 1/2 (loss ln 2); ``"mean"`` is the mean of the two.
    """
    positive_rate = float(np.mean(train_labels))
    prior = -float(np.mean(val_labels * np.log(positive_rate) + (1 - val_labels) * np.log1p(-positive_rate)))
    blind = float(np.log(2.0))
    return {"prior": prior, "blind": blind, "mean": 0.5 * (prior + blind)}[baseline]


def _rolling_median_minimum(curves, n_trained=None, window=SMOOTHING_WINDOW):
    """Minimum over steps of each curve smoothed by a rolling median (``curves``: (n_models, n_steps)).

    ``n_trained`` (n_models,): steps each curve holds (a training stopped early); the windows
    that reach past them are left out.
    """
    smoothed = curves.unfold(1, window, 1).median(dim=-1).values
    if n_trained is not None:
        window_end = torch.arange(window, curves.shape[1] + 1, device=curves.device)
        smoothed = smoothed.masked_fill(window_end > n_trained.unsqueeze(1), torch.inf)
    return smoothed.min(dim=1).values


class _EarlyStopping(NamedTuple):
    """What the early stopping of a stack of labellings needs: per labelling, the task-ness it
    must reach to matter (``-inf``: never stopped) and its baseline's validation loss ``b``."""

    thresholds: np.ndarray
    baselines: np.ndarray


def _hopeless(curves, labelling, stopping, n_labellings):
    """Which labellings of the stack to stop, from their models' validation-loss curves so far.

    A labelling is stopped when every model of it overfits (its smoothed validation loss has
    risen ``EARLY_STOPPING_RISE * b`` above its minimum) and its task-ness so far, the mean over
    its models of ``(b - minimum) / b``, is more than ``EARLY_STOPPING_MARGIN`` below its
    threshold. The task-ness so far is a lower bound of the final one (a minimum over fewer
    steps); the rule bets that an overfitting network does not gain the margin back.
    """
    smoothed = curves.unfold(1, SMOOTHING_WINDOW, 1).median(dim=-1).values
    lowest = smoothed.min(dim=1).values
    b = torch.as_tensor(stopping.baselines, dtype=curves.dtype, device=curves.device)[labelling]
    rising = smoothed[:, -1] - lowest >= EARLY_STOPPING_RISE * b
    partial = (b - lowest) / b
    count = torch.zeros(n_labellings, dtype=curves.dtype, device=curves.device).index_add_(
        0, labelling, torch.ones_like(partial)
    )
    all_rising = torch.zeros_like(count).index_add_(0, labelling, rising.to(curves.dtype)) == count
    mean_partial = torch.zeros_like(count).index_add_(0, labelling, partial) / count.clamp(min=1)
    thresholds = torch.as_tensor(stopping.thresholds, dtype=curves.dtype, device=curves.device)
    return all_rising & (count > 0) & (mean_partial + EARLY_STOPPING_MARGIN < thresholds)


# ---------------------------------------------------------------------------- batched training
# Populations trained side by side in threads initialise their networks from torch's global
# generator, one seed at a time.
_INITIALISATION_LOCK = threading.Lock()


def _initialised(template, seed):
    """A copy of ``template`` with every resettable layer re-initialised from ``seed``."""
    module = copy.deepcopy(template)
    with _INITIALISATION_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in module.modules():
            if callable(getattr(layer, "reset_parameters", None)):
                layer.reset_parameters()
    return module


def _check_network(module, X):
    """A network that the batched training can stack: no buffers, one or two logits per example."""
    buffers = [name for name, _ in module.named_buffers()]
    if buffers:
        raise ValueError(
            f"estimator has buffers ({', '.join(buffers[:3])}): the scores train many copies of the "
            f"network at once with torch.func and cannot update buffers such as BatchNorm's running "
            f"statistics; use a network without them (e.g. GroupNorm or LayerNorm)."
        )
    if not any(True for _ in module.parameters()):
        raise ValueError("estimator has no parameters to train.")
    with torch.no_grad():
        out = module(torch.as_tensor(X[:2]))
    if out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1):
        return
    if out.dim() == 2 and out.shape[1] == 2:
        return
    raise ValueError(
        f"estimator must map a batch of examples to (batch, 2) logits or (batch,) / (batch, 1) "
        f"positive-class logits, got output of shape {tuple(out.shape)}."
    )


def _batch_positions(seed, n_train, batch_size, n_steps):
    """The training positions of each step: successive shuffles of the training split (``seed``)."""
    rng = np.random.RandomState(seed)
    batch_size = min(batch_size, n_train)
    n_epochs = -(-n_steps * batch_size // n_train) + 1
    stream = np.concatenate([rng.permutation(n_train) for _ in range(n_epochs)])
    return stream[: n_steps * batch_size].reshape(n_steps, batch_size)


def _train_population(template, X, labels, splits, seeds, scoring, stopping=None):
    """Train one network per (labelling, seed) together and return what the scores need.

    All labellings of the stack share their class counts, hence their split sizes. Model ``m``
    trains labelling ``m // n_seeds`` from initialisation and data order ``seeds[m % n_seeds]``;
    Adam's update is elementwise, so one Adam over the stacked weights is one Adam per model.
    With ``stopping`` (an :class:`_EarlyStopping`), the labellings that :func:`_hopeless` picks
    at the checkpoints leave the stack; the others train on unchanged.

    Returns
    -------
    val_losses : tensor (n_models, n_steps)
        Validation log loss after every step (NaN after a model's last step).
    val_predictions : tensor (n_models, n_val)
        Predicted class of every validation example after the last step (-1 for a model
        stopped early).
    n_trained : tensor (n_models,)
        Steps each model trained.
    """
    device = scoring.device
    n_labellings, n_seeds = len(labels), len(seeds)
    n_models = n_labellings * n_seeds
    model_labelling = torch.arange(n_models, device=device) // n_seeds
    model_seed = torch.arange(n_models, device=device) % n_seeds
    train_index = torch.as_tensor(np.stack([train for train, _ in splits]), device=device)
    val_index = torch.as_tensor(np.stack([val for _, val in splits]), device=device)
    targets = torch.as_tensor(labels, device=device)
    inputs = torch.as_tensor(X, device=device)

    networks = [_initialised(template, seed).to(device) for seed in seeds]
    stacked, _ = stack_module_state(networks)
    weights = {
        name: tensor.repeat(n_labellings, *([1] * (tensor.dim() - 1))).detach().requires_grad_()
        for name, tensor in stacked.items()
    }
    population = population_forward(template, inputs.shape[1:])
    optimizer = torch.optim.Adam(list(weights.values()), lr=scoring.learning_rate, fused=True)

    n_train = train_index.shape[1]
    positions = torch.as_tensor(
        np.stack([_batch_positions(seed, n_train, scoring.batch_size, scoring.n_steps) for seed in seeds]),
        device=device,
    )  # (n_seeds, n_steps, batch)
    model_train = train_index[model_labelling]
    model_targets = targets[model_labelling]
    model_val = val_index[model_labelling]
    val_inputs = inputs[model_val]
    val_targets = model_targets.gather(1, model_val)

    val_losses = torch.full((n_models, scoring.n_steps), torch.nan, device=device)
    n_trained = torch.full((n_models,), scoring.n_steps, dtype=torch.long, device=device)
    predictions = torch.full((n_models, val_index.shape[1]), -1, dtype=torch.long, device=device)
    alive = torch.arange(n_models, device=device)
    for step in range(scoring.n_steps):
        batch = model_train.gather(1, positions[model_seed, step])
        out = population(weights, inputs[batch])
        loss = nn.functional.cross_entropy(out.flatten(0, 1), model_targets.gather(1, batch).flatten())
        optimizer.zero_grad(set_to_none=True)
        # The mean over models times their number: each model's gradient is that of its own mean loss.
        (loss * len(alive)).backward()
        optimizer.step()
        with torch.no_grad():
            val_out = population(weights, val_inputs)
            val_losses[alive, step] = (
                nn.functional.cross_entropy(val_out.flatten(0, 1), val_targets.flatten(), reduction="none")
                .view(len(alive), -1)
                .mean(dim=1)
            )
        done = step + 1
        if stopping is None or done < EARLY_STOPPING_FIRST or done == scoring.n_steps:
            continue
        if (done - EARLY_STOPPING_FIRST) % EARLY_STOPPING_EVERY:
            continue
        stop = _hopeless(val_losses[alive, :done], model_labelling, stopping, n_labellings)[model_labelling]
        if not stop.any():
            continue
        n_trained[alive[stop]] = done
        keep = ~stop
        alive, model_labelling, model_seed = alive[keep], model_labelling[keep], model_seed[keep]
        model_train, model_targets = model_train[keep], model_targets[keep]
        val_inputs, val_targets = val_inputs[keep], val_targets[keep]
        if not len(alive):
            return val_losses.cpu(), predictions.cpu(), n_trained.cpu()
        weights, optimizer = _kept(weights, optimizer, keep, scoring.learning_rate)
    predictions[alive] = val_out.argmax(dim=-1)
    return val_losses.cpu(), predictions.cpu(), n_trained.cpu()


def _kept(weights, optimizer, keep, learning_rate):
    """The stacked weights of the models ``keep`` selects, and an Adam that goes on from the
    same moments and step count for them."""
    kept = {name: weight.detach()[keep].requires_grad_() for name, weight in weights.items()}
    kept_optimizer = torch.optim.Adam(list(kept.values()), lr=learning_rate, fused=True)
    for name, weight in weights.items():
        state = optimizer.state[weight]
        kept_optimizer.state[kept[name]] = {
            "step": state["step"].clone(),
            "exp_avg": state["exp_avg"][keep],
            "exp_avg_sq": state["exp_avg_sq"][keep],
        }
    return kept, kept_optimizer


def _network_scores(X, labels, kind, scoring, split_seed, seeds, thresholds=None):
    """Task-ness or agreement of each labelling (rows of ``labels``) with a torch network, and
    the steps each labelling trained.

    ``thresholds`` (task-ness only): the score each labelling must reach to matter; a training
    that :func:`_hopeless` finds cannot is stopped early, and its score is then the task-ness of
    the steps it trained, a lower bound of the full one.
    """
    template = scoring.estimator if scoring.estimator is not None else _default_network(X.shape[1:])
    template = copy.deepcopy(template).float().cpu()
    _check_network(template, X)
    splits = [_stratified_split(row, scoring.validation_fraction, split_seed) for row in labels]
    baselines = np.array(
        [_baseline_loss(row[train], row[val], scoring.baseline) for row, (train, val) in zip(labels, splits)]
    )
    scores = np.empty(len(labels))
    n_steps = np.full(len(labels), scoring.n_steps)
    # Labellings with the same class counts have splits of the same sizes and train together.
    groups = {}
    for row, (train, val) in enumerate(splits):
        groups.setdefault((len(train), len(val)), []).append(row)
    # Chunks bound the memory of one batched training and, where several train at once, share
    # the stack out among them; the models are independent, so chunking changes no score.
    n_seeds = len(seeds)
    at_once = _populations_at_once(template, X.shape[1:], scoring.device, len(labels) * n_seeds)
    chunks = []
    for rows in groups.values():
        per_chunk = min(max(1, MAX_STACKED_MODELS // n_seeds), -(-len(rows) // at_once))
        chunks += [rows[start : start + per_chunk] for start in range(0, len(rows), per_chunk)]

    def train(rows):
        stopping = None if thresholds is None else _EarlyStopping(thresholds[rows], baselines[rows])
        return _train_population(
            template, X, labels[rows], [splits[row] for row in rows], seeds, scoring, stopping
        )

    with _side_by_side(at_once) as map_chunks:
        trained = list(map_chunks(train, chunks))
    for rows, (val_losses, predictions, n_trained) in zip(chunks, trained):
        n_steps[rows] = n_trained.view(len(rows), n_seeds)[:, 0].numpy()
        if kind == "taskness":
            lowest = _rolling_median_minimum(val_losses, n_trained).view(len(rows), n_seeds).double().numpy()
            b = baselines[rows, None]
            scores[rows] = np.mean((b - lowest) / b, axis=1)
        else:
            predictions = predictions.view(len(rows), n_seeds, -1)
            for position, row in enumerate(rows):
                scores[row] = _mean_pairwise_agreement(predictions[position].numpy())
    return scores, n_steps


def _populations_at_once(template, example_shape, device, n_models):
    """How many batched trainings of ``n_models`` networks run side by side, one per torch
    thread: on a CPU, for networks that run stacked (no random numbers drawn in training),
    with at least MIN_MODELS_PER_THREAD networks each.

    The stacked networks' operations are small (6 and 16 channels per model for the seed's
    CNN): split across threads inside each operation, every one waits at a barrier for the
    slowest thread, and a core that another process holds stalls them all. Whole trainings
    side by side, each operation on one thread, keep every core busy and degrade gracefully
    on a shared machine.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2 or not runs_stacked(template, example_shape):
        return 1
    return max(1, min(threads, n_models // MIN_MODELS_PER_THREAD))


@contextmanager
def _side_by_side(at_once):
    """A ``map`` that runs its calls ``at_once`` at a time in threads, torch's operations on one
    thread each meanwhile (the number of threads restored after); the built-in ``map`` for 1."""
    if at_once == 1:
        yield map
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="task-discovery") as pool:
            yield pool.map
    finally:
        torch.set_num_threads(threads)


def _mean_pairwise_agreement(predictions):
    """Mean over pairs of runs of the fraction of examples on which the two predict the same class."""
    return float(np.mean([np.mean(a == b) for a, b in itertools.combinations(predictions, 2)]))


# ---------------------------------------------------------------------------- scikit-learn classifiers
def _seeded(estimator, seed):
    estimator = clone(estimator)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator


def _classifier_taskness(X, labels, scoring, split_seed):
    """Task-ness with a scikit-learn classifier: ``g`` its cross-validated held-out log loss."""
    if not hasattr(scoring.estimator, "predict_proba"):
        raise TypeError(
            f"estimator {type(scoring.estimator).__name__} has no predict_proba: task-ness needs its "
            f"held-out log loss."
        )
    flat = X.reshape(len(X), -1)
    folds = StratifiedKFold(n_splits=scoring.cv, shuffle=True, random_state=split_seed)
    scores = []
    for train, val in folds.split(flat, labels):
        model = _seeded(scoring.estimator, split_seed).fit(flat[train], labels[train])
        proba = model.predict_proba(flat[val])
        g = log_loss(labels[val], proba, labels=model.classes_)
        b = _baseline_loss(labels[train], labels[val], scoring.baseline)
        scores.append((b - g) / b)
    return float(np.mean(scores))


def _classifier_agreement(X, labels, scoring, split_seed, seeds):
    """Agreement with a scikit-learn classifier: runs differ by random_state and row order."""
    if "random_state" not in scoring.estimator.get_params():
        raise ValueError(
            f"estimator {type(scoring.estimator).__name__} has no random_state: the agreement score "
            f"compares runs from different random initialisations."
        )
    flat = X.reshape(len(X), -1)
    train, val = _stratified_split(labels, scoring.validation_fraction, split_seed)
    predictions = []
    for seed in seeds:
        order = np.random.RandomState(seed).permutation(train)
        model = _seeded(scoring.estimator, seed).fit(flat[order], labels[order])
        predictions.append(model.predict(flat[val]))
    return _mean_pairwise_agreement(np.asarray(predictions))


def _scores(X, y, kind, scoring, random_state, n_jobs=None, thresholds=None):
    """The scores of ``y``'s labellings (an array, one per labelling), and the steps each
    trained (None for a scikit-learn classifier); ``thresholds``: see :func:`_network_scores`."""
    X = _check_examples(X)
    labels, _ = _check_labellings(y, len(X))
    split_seed, *seeds = draw_seeds(random_state, 1 + scoring.n_seeds)
    if not isinstance(scoring.estimator, BaseEstimator):
        return _network_scores(X, labels, kind, scoring, split_seed, seeds, thresholds)
    if kind == "taskness":
        jobs = (joblib.delayed(_classifier_taskness)(X, row, scoring, split_seed) for row in labels)
    else:
        jobs = (joblib.delayed(_classifier_agreement)(X, row, scoring, split_seed, seeds) for row in labels)
    return np.asarray(joblib.Parallel(n_jobs=n_jobs)(jobs), dtype=float), None


def _one_or_all(y, scores):
    """A float for one labelling ``y``, the array for a stack of them."""
    return float(scores[0]) if np.ndim(y) == 1 else scores


_TASKNESS_CONSTRAINTS = {
    **_SCORE_CONSTRAINTS,
    "n_seeds": [StrictInterval(Integral, 1, None, closed="left")],
    "baseline": [StrOptions(set(BASELINES))],
}


@validate_params(_TASKNESS_CONSTRAINTS, prefer_skip_nested_validation=True)
def taskness_score(
    X,
    y,
    *,
    estimator=None,
    validation_fraction=0.2,
    n_steps=100,
    batch_size=32,
    learning_rate=1e-3,
    n_seeds=1,
    baseline="prior",
    cv=5,
    device="auto",
    random_state=None,
):
    """Task-ness of a binary labelling: how much better than a baseline a network generalises on it.

    Seed 002, "Real vs. Random Task Evaluation": ``b`` is the baseline's validation log loss,
    ``g`` the minimum of the network's validation-loss curve (one value per training step)
    smoothed by a rolling median of window 5, and the score is ``(b - g) / b``, averaged over
    ``n_seeds`` runs. Positive when the network beats the baseline, at most 1.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, channels, height, width)
        The examples, finite.
    y : array-like of shape (n_samples,) or (n_labellings, n_samples)
        A binary labelling (any two distinct values), or a stack of them scored together in one
        batched training (each gets the score it gets alone). On a CPU with several torch
        threads, a stack of networks that draw no random numbers in training (the defaults)
        trains as that many batched trainings side by side in threads, each operation on one
        thread (``torch.set_num_threads(1)`` while they run, restored after). A labelling and
        its complement score the same. Each class needs at least two examples.
    estimator : None, torch.nn.Module or scikit-learn classifier, default=None
        ``None``: :func:`small_cnn` for images, :func:`small_mlp` for 2-D features. A module
        mapping a batch to ``(batch, 2)`` logits or one positive-class logit, without buffers;
        it is copied and re-initialised from each seed (``reset_parameters`` of its layers). A
        scikit-learn classifier with ``predict_proba``: ``g`` is its held-out log loss over
        ``cv`` stratified folds (no training curve to smooth), ``b`` the baseline's on the
        same folds.
    validation_fraction : float in (0, 1), default=0.2
        Held-out share of each class (the seed's 80/20 split); the split is drawn from
        ``random_state``.
    n_steps : int, default=100
        Adam steps of each network (at least 5, the smoothing window); the validation loss is
        recorded after each.
    batch_size : int, default=32
        Training examples per step (capped at the training split's size).
    learning_rate : float, default=1e-3
        Adam's learning rate.
    n_seeds : int, default=1
        Runs from different initialisations and data orders whose scores are averaged (the
        seed's "mean taskness").
    baseline : {"prior", "blind", "mean"}, default="prior"
        The seed's baselines: ``"prior"``, the statistically informed classifier, predicts the
        training split's positive rate for every example; ``"blind"`` predicts 1/2; ``"mean"``
        averages their losses.
    cv : int, default=5
        Folds for a scikit-learn classifier; unused for networks.
    device : str or torch.device, default="auto"
        Where networks train: ``"auto"`` is CUDA when available, else the CPU. The
        initialisations and data orders do not depend on it: the scores differ between devices
        only through float rounding.
    random_state : int, RandomState instance or None, default=None
        Draws the split, the initialisations and the data orders; fix it for repeatable scores.

    Returns
    -------
    score : float, or ndarray of shape (n_labellings,) for a stack of labellings

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.discovery import taskness_score
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(100, 5)).astype(np.float32)
    >>> real = taskness_score(X, X[:, 0] > 0.5, random_state=0)
    >>> noise = taskness_score(X, rng.permutation(X[:, 0] > 0.5), random_state=0)
    >>> bool(real > 0.3 > noise)
    True
    """
    scoring = _scoring(
        estimator, validation_fraction, n_steps, batch_size, learning_rate, n_seeds, baseline, cv, device
    )
    return _one_or_all(y, _scores(X, y, "taskness", scoring, random_state)[0])


_AGREEMENT_CONSTRAINTS = {**_SCORE_CONSTRAINTS, "n_seeds": [StrictInterval(Integral, 2, None, closed="left")]}


@validate_params(_AGREEMENT_CONSTRAINTS, prefer_skip_nested_validation=True)
def agreement_score(
    X,
    y,
    *,
    estimator=None,
    validation_fraction=0.2,
    n_steps=100,
    batch_size=32,
    learning_rate=1e-3,
    n_seeds=2,
    device="auto",
    random_state=None,
):
    """Agreement score of a binary labelling (Atanov et al., NeurIPS 2022, eq. 1).

    Networks trained on the same labelling (80% of the examples) from different initialisations
    and data orders predict the held-out examples; the score is the fraction of held-out
    examples on which two runs predict the same class, averaged over the pairs of the
    ``n_seeds`` runs. 1 is full agreement. Atanov et al. use balanced labellings; with a
    skewed class ratio two runs that both predict the majority class agree too, so compare
    agreement only between labellings of the same ratio.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, channels, height, width)
        The examples, finite.
    y : array-like of shape (n_samples,) or (n_labellings, n_samples)
        A binary labelling or a stack of them (see :func:`taskness_score`).
    estimator : None, torch.nn.Module or scikit-learn classifier, default=None
        As in :func:`taskness_score`; a scikit-learn classifier needs a ``random_state``
        parameter (its runs differ by it and by the order of the training rows).
    validation_fraction, n_steps, batch_size, learning_rate, device, random_state
        As in :func:`taskness_score`; the predictions are those after the last step.
    n_seeds : int, default=2
        Independent runs compared pairwise (at least 2).

    Returns
    -------
    score : float in [0, 1], or ndarray of shape (n_labellings,) for a stack of labellings

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.discovery import agreement_score
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(100, 5)).astype(np.float32)
    >>> real = agreement_score(X, X[:, 0] > 0, random_state=0)
    >>> noise = agreement_score(X, rng.permutation(X[:, 0] > 0), random_state=0)
    >>> bool(real > noise)
    True
    """
    scoring = _scoring(
        estimator, validation_fraction, n_steps, batch_size, learning_rate, n_seeds, "prior", 2, device
    )
    return _one_or_all(y, _scores(X, y, "agreement", scoring, random_state)[0])


# ---------------------------------------------------------------------------- discovery
def _import_nevergrad():
    """The ``nevergrad`` module, or an ImportError saying how to install it."""
    try:
        return importlib.import_module("nevergrad")
    except ImportError as exc:
        raise ImportError(
            "TaskDiscovery searches labellings with nevergrad, which is not installed: "
            "pip install 'sklearn-task2vec[discovery]' (or pip install nevergrad)."
        ) from exc


def _n_positives(n_samples, positive_fraction):
    """Positives of a labelling of ``n_samples`` examples at ``positive_fraction`` (rounded half up)."""
    return int(np.floor(positive_fraction * n_samples + 0.5))


def decode_labelling(values, n_positive):
    """The seed's decoding of a candidate vector: its ``n_positive`` largest values are the positives."""
    labels = np.zeros(len(values), dtype=np.int64)
    labels[np.argsort(-np.asarray(values), kind="stable")[:n_positive]] = 1
    return labels


def label_similarity(first, second):
    """Absolute correlation (phi coefficient) of two binary labellings, in [0, 1].

    1 for equal or complementary labellings (the same task), about 0 for independent ones,
    whatever their class ratios; a constant labelling is at 0 from everything.
    """
    first = np.asarray(first, dtype=float) - np.mean(first)
    second = np.asarray(second, dtype=float) - np.mean(second)
    norm = np.sqrt(np.sum(first**2) * np.sum(second**2))
    return float(abs(np.sum(first * second)) / norm) if norm > 0 else 0.0


def _labelling_key(labels):
    """The key of a 0/1 labelling in a search's cache of scores: equal for the labelling and its
    complement (the scores are exactly invariant to complementing)."""
    return _canonical_orientation(np.asarray(labels, dtype=np.int64)).tobytes()


def _parent_objectives(optimizer, candidates):
    """The objective of each candidate's parent in nevergrad's differential evolution (the
    population member it replaces when better; -inf where there is none, as for the first
    generation and any other optimiser).

    A candidate whose objective stays below its parent's leaves the optimiser's state as it
    was, whatever its exact value: the parent stays, and the best so far too.
    """
    population = getattr(optimizer, "population", None)
    objectives = np.full(len(candidates), -np.inf)
    if not isinstance(population, dict):
        return objectives
    for position, candidate in enumerate(candidates):
        parent = population.get(candidate.heritage.get("lineage"))
        if parent is not None and parent is not candidate and parent.loss is not None:
            objectives[position] = 1.0 - float(parent.loss)
    return objectives


class TaskDiscovery(BaseEstimator):
    """Search the binary labellings of a set of examples for the ones a network generalises on.

    Seed 002, "Discovery": a candidate is a vector of ``n_samples`` values in [0, 1] whose
    ``positive_fraction * n_samples`` largest values mark the positive examples (the seed: 50
    images, ratio 1:4); a nevergrad optimiser (the seed's ``TwoPointsDE``) minimises
    ``1 - score`` over ``budget`` candidates. The seed's next step, several tasks each unlike
    those found before, is ``n_tasks`` searches in a row where a candidate's score is lowered by
    ``diversity`` times its largest similarity to a task already found.

    Candidates are asked ``n_candidates`` at a time (nevergrad's ``num_workers``) and scored
    together in one batched training (see :func:`taskness_score`), each with the score it gets
    alone under the same seeds. Work is shared across candidates in three more ways:

    * a labelling proposed again, or its complement (the same task, scored exactly the same), is
      not trained again: its cached score is told. Repeats count against ``budget``, which is
      the optimiser's number of candidates, as in the seed;
    * ``early_stopping``: with nevergrad's differential evolution (``TwoPointsDE`` and the other
      ``DifferentialEvolution`` variants) a candidate changes the optimiser's state only if its
      objective reaches its parent's, the population member it would replace (the best so far is
      at least the parent). The task-ness of its training so far is a lower bound of its final
      score (a minimum over fewer steps); from step 20 on, every 5 steps, a training is stopped
      when its smoothed validation loss has risen by 0.1 ``b`` above its minimum (the network
      overfits) and its task-ness so far is more than 0.05 below what it must reach. Its lower
      bound is told instead: the optimiser does the same as with the full score, unless the
      stopped training would have gained that much back. That is a bet: in the first 640
      candidates of a search on 50 Fashion-MNIST images with the seed's network, it saved 21%
      of the steps and was lost once in 338 stops (a slow learner that would have beaten its
      parent; see the discovery page of the documentation). ``early_stopping=False`` runs the
      seed's search unchanged;
    * on a CPU with several torch threads, the stack trains as that many populations side by
      side, each operation on one thread (see :func:`taskness_score`).

    Parameters
    ----------
    n_tasks : int, default=1
        Tasks to find, one search each.
    positive_fraction : float in (0, 1), default=0.2
        Share of positive examples of every candidate (0.2: the seed's 1:4).
    budget : int, default=4000
        Candidates evaluated per task (the seed's 4,000).
    scoring : {"taskness", "agreement"} or callable, default="taskness"
        :func:`taskness_score`, :func:`agreement_score`, or a callable ``(X, y) -> float``
        (``y`` of 0/1, higher is better), evaluated one candidate at a time. (Named like
        scikit-learn's ``scoring=``: an attribute ``score`` would hide the ``score`` method
        that scikit-learn looks for on estimators.)
    estimator : None, torch.nn.Module or scikit-learn classifier, default=None
        The network or classifier of the score (see :func:`taskness_score`); unused with a
        callable ``scoring``.
    score_params : dict or None, default=None
        Further keyword arguments of the score function (``n_steps``, ``n_seeds``,
        ``learning_rate``, ``device``...), except ``estimator`` and ``random_state``.
    optimizer : str, default="TwoPointsDE"
        A name in nevergrad's optimiser registry (``nevergrad.optimizers.registry``).
    n_candidates : int, default=32
        Candidates asked from the optimiser and scored together.
    early_stopping : bool, default=True
        Stop the trainings that are not expected to change the search (above); used with the task-ness of
        a torch network and an optimiser of the differential-evolution family, ignored
        otherwise. False trains every new labelling for all its steps.
    diversity : float >= 0, default=1.0
        Weight of the penalty that keeps each task away from those found before: a
        candidate's objective is its score minus ``diversity`` times its largest similarity
        to a found task (see ``diversity_measure``). 0 searches each task independently.
    diversity_measure : {"labels", "task2vec"}, default="labels"
        ``"labels"``: :func:`label_similarity`, the absolute correlation of the labellings (1
        for the same task or its complement). ``"task2vec"``: one minus the TASK2VEC symmetric
        distance (:func:`~sklearn_task2vec.distances.symmetric_distance`) between the tasks'
        embeddings by ``embedder``, computed for every new candidate once a task is found.
    embedder : FisherTaskEmbedder or None, default=None
        The embedder of ``diversity_measure="task2vec"`` (cloned), given the tasks as
        ``(X, labels)``; None: ``FisherTaskEmbedder(device="cpu")`` on ``X`` flattened to 2-D
        features (its random ReLU probe), seeded by ``random_state``.
    n_jobs : int or None, default=None
        Parallel jobs (joblib) for scores evaluated one candidate at a time: a callable, or a
        scikit-learn ``estimator``.
    random_state : int, RandomState instance or None, default=None
        Seeds the optimiser and the score's split, initialisations and data orders (the same
        for every candidate of a fit, so that the score is a function of the labelling).
    verbose : "auto" or int, default="auto"
        A progress bar on standard error per task searched, over the budget, with the best
        objective so far and the time left (estimated from the candidates scored so far), and
        after the first ``n_candidates`` candidates a line with the time the whole fit will
        take at their pace (an upper estimate: later candidates repeat and stop early).
        ``"auto"``: shown when standard error is a terminal; 0: never; above 0: always.

    Attributes
    ----------
    labels_ : ndarray of shape (n_tasks, n_samples)
        The tasks found, 1 for positive examples, 0 for negative ones.
    scores_ : ndarray of shape (n_tasks,)
        Their scores (without the diversity penalty).
    objectives_ : ndarray of shape (n_tasks,)
        Their objectives: score minus the diversity penalty.
    history_ : ndarray of shape (n_tasks, budget)
        The objective of every candidate, in the order evaluated; for a training stopped early,
        the objective of its steps so far (a lower bound, below its parent's).
    tasks_ : list of (ndarray, ndarray)
        The tasks as ``(X, labels)`` pairs, ready for
        :class:`~sklearn_task2vec.FisherTaskEmbedder`.
    score_seed_ : int
        The ``random_state`` of every score of the fit (its split, initialisations and data
        orders): ``taskness_score(X, y, random_state=score_seed_)`` scores another labelling
        comparably.
    n_evaluations_ : int
        Candidates evaluated, all tasks together; ``n_trainings_`` of them were new labellings
        (trained), the others repeats.
    n_stopped_early_ : int
        Trainings stopped early (``early_stopping``).
    n_steps_trained_ : int
        Optimiser steps of one network trained, all trainings together (``n_steps`` per full
        training and seed): the search's work.
    n_unscorable_ : int
        Candidates the scorer returned NaN for: skipped, with a warning (their objective is NaN
        in ``history_``). A search where ``max(n_candidates, 10)`` candidates in a row are
        unscorable stops with a ``ValueError``.
    n_features_in_ : int
        Features of ``X`` (for images, its channels).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.discovery import TaskDiscovery
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 3)).astype(np.float32)
    >>> search = TaskDiscovery(budget=16, n_candidates=8, score_params={"n_steps": 10}, random_state=0)
    >>> search.fit(X).labels_.shape
    (1, 40)
    >>> int(search.labels_.sum())
    8
    """

    _parameter_constraints: dict = {
        "n_tasks": [StrictInterval(Integral, 1, None, closed="left")],
        "positive_fraction": [StrictInterval(Real, 0, 1, closed="neither")],
        "budget": [StrictInterval(Integral, 1, None, closed="left")],
        "scoring": [StrOptions({"taskness", "agreement"}), callable],
        "estimator": [nn.Module, HasMethods(["fit", "predict"]), None],
        "score_params": [dict, None],
        "optimizer": [str],
        "n_candidates": [StrictInterval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "diversity": [StrictInterval(Real, 0, None, closed="left")],
        "diversity_measure": [StrOptions({"labels", "task2vec"})],
        "embedder": [HasMethods(["fit", "transform"]), None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": VERBOSE_CONSTRAINT,
    }

    def __init__(
        self,
        *,
        n_tasks=1,
        positive_fraction=0.2,
        budget=4000,
        scoring="taskness",
        estimator=None,
        score_params=None,
        optimizer="TwoPointsDE",
        n_candidates=32,
        early_stopping=True,
        diversity=1.0,
        diversity_measure="labels",
        embedder=None,
        n_jobs=None,
        random_state=None,
        verbose="auto",
    ):
        self.n_tasks = n_tasks
        self.positive_fraction = positive_fraction
        self.budget = budget
        self.scoring = scoring
        self.estimator = estimator
        self.score_params = score_params
        self.optimizer = optimizer
        self.n_candidates = n_candidates
        self.early_stopping = early_stopping
        self.diversity = diversity
        self.diversity_measure = diversity_measure
        self.embedder = embedder
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Search ``n_tasks`` labellings of ``X``, each unlike those found before.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, channels, height, width)
            The examples to label, finite.
        y : None
            Ignored: discovery looks for labels, it is not given them.

        Returns
        -------
        self : TaskDiscovery
        """
        nevergrad = _import_nevergrad()
        if self.optimizer not in nevergrad.optimizers.registry:
            raise ValueError(
                f"optimizer={self.optimizer!r} is not in nevergrad's optimizer registry "
                f"(e.g. 'TwoPointsDE', 'OnePlusOne', 'CMA', 'NGOpt')."
            )
        X = validate_data(self, X, allow_nd=True, dtype=(np.float32, np.float64), ensure_min_samples=4)
        X = _check_examples(X)
        n_positive = _n_positives(len(X), self.positive_fraction)
        if min(n_positive, len(X) - n_positive) < 2:
            raise ValueError(
                f"positive_fraction={self.positive_fraction} of {len(X)} examples gives {n_positive} "
                f"positive and {len(X) - n_positive} negative examples: each class needs at least 2."
            )
        score_labellings = self._scorer(X)
        similarities = self._similarity(X)
        rng = check_random_state(self.random_state)
        known = {}
        labels, scores, objectives, history = [], [], [], []
        self.n_trainings_ = self.n_stopped_early_ = self.n_unscorable_ = 0
        self.n_steps_trained_ = 0
        for task in range(self.n_tasks):
            found = self._search(
                nevergrad, X, n_positive, score_labellings, similarities, labels, known, rng, task
            )
            labels.append(found[0])
            scores.append(found[1])
            objectives.append(found[2])
            history.append(found[3])
        if self.n_unscorable_:
            warnings.warn(
                f"TaskDiscovery: {self.n_unscorable_} of {self.n_tasks * self.budget} candidates could not "
                f"be scored (the scorer returned NaN): they were skipped (NaN in history_).",
                UserWarning,
                stacklevel=2,
            )
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.scores_ = np.asarray(scores, dtype=float)
        self.objectives_ = np.asarray(objectives, dtype=float)
        self.history_ = np.asarray(history, dtype=float)
        self.n_evaluations_ = self.n_tasks * self.budget
        self.tasks_ = [(X, row) for row in self.labels_]
        return self

    def _scorer(self, X):
        """A function scoring a stack of labellings ``(k, n_samples)``, given the score each must
        reach to matter ``(k,)``: their scores ``(k,)`` and which trainings stopped early (their
        scores are lower bounds); a training stops early only with ``early_stopping`` and the
        task-ness of a torch network."""
        params = dict(self.score_params or {})
        for reserved in ("estimator", "random_state"):
            if reserved in params:
                raise ValueError(
                    f"score_params must not set {reserved!r}: it is TaskDiscovery's own parameter."
                )
        seed = self.score_seed_ = draw_seeds(self.random_state, 1)[0]
        if callable(self.scoring):
            score = self.scoring

            def score_labellings(stack, thresholds):
                jobs = (joblib.delayed(score)(X, row) for row in stack)
                return np.asarray(joblib.Parallel(n_jobs=self.n_jobs)(jobs), dtype=float), np.zeros(
                    len(stack), bool
                )

            return score_labellings
        function = taskness_score if self.scoring == "taskness" else agreement_score
        accepted = set(inspect.signature(function).parameters) - {"X", "y", "estimator", "random_state"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ValueError(
                f"score_params has {unknown}, which {function.__name__} does not take; it takes "
                f"{sorted(accepted)}."
            )
        arguments = inspect.signature(function).bind(
            X, None, estimator=self.estimator, random_state=seed, **params
        )
        arguments.apply_defaults()
        settings = dict(arguments.arguments)
        constraints = _TASKNESS_CONSTRAINTS if function is taskness_score else _AGREEMENT_CONSTRAINTS
        validate_parameter_constraints(
            {name: constraints[name] for name in settings if name not in ("X", "y")},
            settings,
            caller_name=function.__name__,
        )
        scoring = _scoring(
            self.estimator,
            settings["validation_fraction"],
            settings["n_steps"],
            settings["batch_size"],
            settings["learning_rate"],
            settings["n_seeds"],
            settings.get("baseline", "prior"),
            settings.get("cv", 2),
            settings["device"],
        )
        kind = self.scoring
        stops = self.early_stopping and kind == "taskness" and not isinstance(self.estimator, BaseEstimator)

        def score_labellings(stack, thresholds):
            scores, n_steps = _scores(
                X, stack, kind, scoring, seed, n_jobs=self.n_jobs, thresholds=thresholds if stops else None
            )
            if n_steps is None:
                return scores, np.zeros(len(stack), bool)
            self.n_steps_trained_ += int(n_steps.sum()) * scoring.n_seeds
            return scores, n_steps < scoring.n_steps

        return score_labellings

    def _similarity(self, X):
        """A function ``(stack, found) -> (k,)``: each labelling's largest similarity to a found one."""
        if self.diversity_measure == "labels":

            def labels_similarity(stack, found):
                return np.array([max(label_similarity(row, other) for other in found) for row in stack])

            return labels_similarity
        if self.embedder is None:
            embedder = FisherTaskEmbedder(device="cpu", random_state=self.score_seed_)
            inputs = X.reshape(len(X), -1)
        else:
            embedder, inputs = clone(self.embedder), X
        if "verbose" in embedder.get_params():
            embedder.set_params(verbose=0)  # the search's own bar says how far it is
        embeddings = {}

        def task2vec_similarity(stack, found):
            missing = {row.tobytes(): row for row in (*stack, *found) if row.tobytes() not in embeddings}
            if missing:
                tasks = [(inputs, row) for row in missing.values()]
                if not embeddings:  # the first call prepares the probe
                    embedder.fit(tasks)
                embeddings.update(zip(missing, embedder.transform(tasks)))
            rows = np.stack([embeddings[row.tobytes()] for row in stack])
            found_rows = np.stack([embeddings[row.tobytes()] for row in found])
            return 1.0 - pairwise_task_distances(rows, found_rows).min(axis=1)

        return task2vec_similarity

    def _refuse_unscorable(self, where, n_unscorable, n_evaluated):
        """The ValueError of a search stopped by ``n_unscorable`` candidates in a row scored NaN."""
        scorer = getattr(self.scoring, "__name__", repr(self.scoring))
        every = ", every one so far" if n_unscorable == n_evaluated else ""
        raise ValueError(
            f"{where}: the scorer ({scorer}) returned NaN for the last {n_unscorable} labellings (after "
            f"{n_evaluated} of {self.budget} candidates{every}): the search is stopped rather than spend "
            f"its budget on candidates it cannot compare. Check the scorer on one labelling of X (a "
            f"score must be a finite number, higher for better tasks)."
        )

    def _search(self, nevergrad, X, n_positive, score_labellings, similarities, found, known, rng, task):
        """One search: the best labelling, its score, objective and every candidate's objective."""
        parametrization = nevergrad.p.Array(shape=(len(X),), lower=0.0, upper=1.0)
        parametrization.random_state = np.random.RandomState(rng.randint(np.iinfo(np.int32).max))
        try:
            optimizer = nevergrad.optimizers.registry[self.optimizer](
                parametrization=parametrization, budget=self.budget, num_workers=self.n_candidates
            )
        except ValueError as exc:
            raise ValueError(
                f"nevergrad's {self.optimizer} cannot run with n_candidates={self.n_candidates} "
                f"candidates at a time ({exc}); use n_candidates=1 or another optimizer."
            ) from exc
        where = f"TaskDiscovery, task {task + 1} of {self.n_tasks}"
        bar = progress_bar(
            progress_enabled(self.verbose),
            total=self.budget,
            desc=f"task {task + 1}/{self.n_tasks}",
            unit="cand",
        )
        try:
            return self._search_loop(
                optimizer, n_positive, score_labellings, similarities, found, known, where, bar, task == 0
            )
        finally:
            if bar is not None:
                bar.close()

    def _search_loop(
        self, optimizer, n_positive, score_labellings, similarities, found, known, where, bar, estimate
    ):
        """The ask-score-tell loop of :meth:`_search`, reporting on ``bar`` (a tqdm bar or None),
        and after its first candidates the time the fit will take when ``estimate``.

        ``known`` caches the score of every labelling trained, by :func:`_labelling_key`: a
        labelling proposed again is not trained again. An entry holds the score and whether it
        is exact; a training stopped early left a lower bound, which stands for a later proposal
        only while that proposal's threshold is still out of its reach.
        """
        history = []
        best = (None, -np.inf, -np.inf)
        # Candidates in a row that could not be scored (NaN): a scorer that never scores stops
        # the search after one batch of them (at least _UNSCORABLE_LIMIT), not the whole budget.
        unscorable = 0
        unscorable_limit = max(self.n_candidates, _UNSCORABLE_LIMIT)
        while len(history) < self.budget:
            started = perf_counter()
            candidates = [optimizer.ask() for _ in range(min(self.n_candidates, self.budget - len(history)))]
            stack = np.stack([decode_labelling(candidate.value, n_positive) for candidate in candidates])
            keys = [_labelling_key(row) for row in stack]
            penalties = similarities(stack, found) if found and self.diversity > 0 else np.zeros(len(stack))
            # The score a candidate must reach to change the optimiser's state: its parent's
            # objective, plus the penalty it pays (-inf where the optimiser has no parent).
            thresholds = _parent_objectives(optimizer, candidates) + self.diversity * penalties
            train = {}
            for key, row, threshold in zip(keys, stack, thresholds):
                score, exact = known.get(key, (None, False))
                if exact or (score is not None and score + EARLY_STOPPING_MARGIN < threshold):
                    continue
                # A labelling twice in the batch trains once, stopped only below both thresholds.
                train[key] = (row, min(threshold, train[key][1]) if key in train else threshold)
            if train:
                try:
                    values, stopped = score_labellings(
                        np.stack([row for row, _ in train.values()]),
                        np.array([threshold for _, threshold in train.values()]),
                    )
                except Exception as error:
                    # with_context chains the error itself (or returns it, noted): no "from".
                    raise with_context(  # noqa: B904
                        error, f"{where}: scoring {len(train)} labellings after {len(history)} candidates"
                    )
                for key, value, early in zip(train, values, stopped):
                    known[key] = (float(value), not early)
                self.n_trainings_ += len(train)
                self.n_stopped_early_ += int(stopped.sum())
            for candidate, row, key, penalty in zip(candidates, stack, keys, penalties):
                objective = known[key][0] - self.diversity * penalty
                history.append(objective)
                if np.isnan(objective):
                    optimizer.tell(candidate, _UNSCORABLE_LOSS)
                    self.n_unscorable_ += 1
                    unscorable += 1
                    if unscorable >= unscorable_limit:
                        self._refuse_unscorable(where, unscorable, len(history))
                    continue
                unscorable = 0
                optimizer.tell(candidate, 1.0 - objective)
                if best[0] is None or objective > best[2]:
                    best = (row, known[key][0], objective)
            if bar is not None:
                if estimate and len(history) == len(candidates):
                    bar.write(self._time_estimate(len(candidates), perf_counter() - started), file=sys.stderr)
                bar.update(len(candidates))
                bar.set_postfix(best=f"{best[2]:.3f}")
        if best[0] is None:  # a budget smaller than the stopping bound, all of it unscorable
            self._refuse_unscorable(where, unscorable, len(history))
        return best[0], best[1], best[2], history

    def _time_estimate(self, n_scored, seconds):
        """The message that says how long the fit will take, from its first ``n_scored`` candidates."""
        total = self.n_tasks * self.budget
        estimate = seconds * total / n_scored
        duration = f"{estimate / 60:.0f} min" if estimate >= 120 else f"{estimate:.0f} s"
        return (
            f"TaskDiscovery: the first {n_scored} candidates took {seconds:.1f} s: about {duration} for "
            f"{total} candidates ({self.n_tasks} task(s) of budget {self.budget}), less as labellings "
            f"repeat and hopeless trainings stop early."
        )


# ---------------------------------------------------------------------------- learnability studies
def _draw_task(classes, positive_class, n_positive, n_negative, rng, what):
    """Indices of ``n_positive`` examples of ``positive_class`` and ``n_negative`` of the others,
    and their labels (1 for the positive class)."""
    positives = np.flatnonzero(classes == positive_class)
    negatives = np.flatnonzero(classes != positive_class)
    if n_positive > len(positives) or n_negative > len(negatives):
        raise ValueError(
            f"{what} needs {n_positive} examples of class {python_scalar(positive_class)!r} and {n_negative} of the "
            f"others; there are {len(positives)} and {len(negatives)}."
        )
    index = np.concatenate(
        [rng.choice(positives, n_positive, replace=False), rng.choice(negatives, n_negative, replace=False)]
    )
    labels = np.r_[np.ones(n_positive, dtype=np.int64), np.zeros(n_negative, dtype=np.int64)]
    order = rng.permutation(len(index))
    return index[order], labels[order]


def _ablated(labels, fraction, rng):
    """``labels`` with a ``fraction`` of them shuffled among themselves (the class counts kept)."""
    labels = labels.copy()
    chosen = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    labels[chosen] = labels[rng.permutation(chosen)]
    return labels


_STUDY_DEFAULTS = {
    "ablation": (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
    "class_ratio": (1, 3, 9, 19),
    "n_positives": (1, 3, 9, 19),
    "real_vs_random": (),
}


@validate_params(
    {
        "X": ["array-like"],
        "classes": ["array-like"],
        "study": [StrOptions(set(STUDIES))],
        "values": ["array-like", None],
        "positive_class": "no_validation",
        "n_samples": [StrictInterval(Integral, 4, None, closed="left")],
        "positive_fraction": [StrictInterval(Real, 0, 1, closed="neither")],
        "n_positives": [StrictInterval(Integral, 2, None, closed="left")],
        "n_repeats": [StrictInterval(Integral, 1, None, closed="left")],
        "scoring": [StrOptions({"taskness", "agreement"})],
        "estimator": [nn.Module, HasMethods(["fit", "predict"]), None],
        "score_params": [dict, None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def learnability_study(
    X,
    classes,
    *,
    study,
    values=None,
    positive_class=None,
    n_samples=400,
    positive_fraction=0.2,
    n_positives=20,
    n_repeats=3,
    scoring="taskness",
    estimator=None,
    score_params=None,
    random_state=None,
):
    """The seed's learnability studies on one-class-against-the-others tasks, as a table.

    Seed 002, "Learnability Studies" and "Real vs. Random Task Evaluation". A task takes
    ``positive_class`` against examples of the other classes drawn at random; every row scores
    ``n_repeats`` draws (each with its own examples) with :func:`taskness_score` or
    :func:`agreement_score`, and beside it the same examples under a random relabelling with
    the same class counts (``random_score``, the noise level).

    ``study``:

    * ``"ablation"``: one task of ``n_samples`` examples at ``positive_fraction``; ``values``
      are fractions of its labels shuffled among themselves (default 0 to 1); the seed finds
      generalisation up to 20%;
    * ``"class_ratio"``: ``n_samples`` examples; ``values`` are ``R`` of the ratio 1:R (default
      1, 3, 9, 19): the seed loses generalisation beyond 1:19 at 400 images;
    * ``"n_positives"``: ``n_positives`` positive examples and ``R * n_positives`` negative
      ones for each ``R`` in ``values``: whether the ratio or the number of positives matters;
    * ``"real_vs_random"``: for every class as the positive one (``values``: the classes,
      default all), ``n_repeats`` draws of ``n_samples`` examples at ``positive_fraction``,
      each against a random labelling of the same examples and class counts; ``roc_auc`` says
      how well the score tells real from random (1: every real task above every random one).

    Parameters
    ----------
    X : array-like of shape (n_examples, n_features) or (n_examples, channels, height, width)
        The pool of examples.
    classes : array-like of shape (n_examples,)
        Their classes.
    study : {"ablation", "class_ratio", "n_positives", "real_vs_random"}
    values : array-like or None, default=None
        The study's variable (see above); None for its default.
    positive_class : object or None, default=None
        The positive class; None for the first of the sorted classes. Unused by
        ``"real_vs_random"``.
    n_samples : int, default=400
        Examples per task (the seed's 400).
    positive_fraction : float in (0, 1), default=0.2
        Share of positives for ``"ablation"`` and ``"real_vs_random"``.
    n_positives : int, default=20
        Positives per task for ``"n_positives"``.
    n_repeats : int, default=3
        Draws per row.
    scoring : {"taskness", "agreement"}, default="taskness"
    estimator : None, torch.nn.Module or scikit-learn classifier, default=None
        As in :func:`taskness_score`.
    score_params : dict or None, default=None
        Further keyword arguments of the score (``n_steps``, ``n_seeds``, ``device``...).
    random_state : int, RandomState instance or None, default=None
        Draws the examples, the ablations, the random labellings and the scores' seeds.

    Returns
    -------
    table : :class:`~sklearn.utils.Bunch`
        One array per column, ``table.columns`` their names in order (``pandas.DataFrame({c:
        table[c] for c in table.columns})`` makes a data frame): the study's variable
        (``fraction``, ``ratio`` and ``n_samples``, ``ratio`` and ``n_samples``, or ``class``),
        ``score`` and ``score_std`` (mean and standard deviation over the draws),
        ``random_score`` and ``random_score_std``; for ``"real_vs_random"`` also ``roc_auc``
        (a float, not a column).
    """
    X = _check_examples(X)
    classes = np.asarray(classes)
    if classes.shape != (len(X),):
        raise ValueError(f"classes must have shape ({len(X)},) like X's first axis, got {classes.shape}.")
    params = dict(score_params or {})
    for reserved in ("estimator", "random_state"):
        if reserved in params:
            raise ValueError(f"score_params must not set {reserved!r}: it is a parameter of its own.")
    function = taskness_score if scoring == "taskness" else agreement_score
    rng = check_random_state(random_state)
    known = np.unique(classes)
    if positive_class is None:
        positive_class = known[0]
    elif study != "real_vs_random" and positive_class not in known:
        raise ValueError(
            f"positive_class={python_scalar(positive_class)!r} is not among the classes {known[:10].tolist()}."
        )
    values = list(_STUDY_DEFAULTS[study] if values is None else np.asarray(values).ravel())
    if study == "real_vs_random" and not values:
        values = list(known)

    def scored(index, stack):
        return np.atleast_1d(
            function(X[index], stack, estimator=estimator, random_state=rng.randint(2**31 - 1), **params)
        )

    def task_sizes(value):
        if study in ("ablation", "real_vs_random"):
            n_positive = _n_positives(n_samples, positive_fraction)
            return n_positive, n_samples - n_positive
        if study == "class_ratio":
            n_positive = _n_positives(n_samples, 1.0 / (float(value) + 1.0))
            return n_positive, n_samples - n_positive
        return n_positives, int(round(float(value) * n_positives))

    rows, real_scores, random_scores = [], [], []
    if study == "ablation":
        # One task, all its ablations scored together in one batched training.
        index, labels = _draw_task(classes, positive_class, *task_sizes(None), rng, "study='ablation'")
        stack = np.stack(
            [
                labelling
                for value in values
                for _ in range(n_repeats)
                for labelling in (_ablated(labels, float(value), rng), rng.permutation(labels))
            ]
        )
        pairs = iter(scored(index, stack).reshape(-1, 2))
    for value in values:
        scores, noise = [], []
        for _ in range(n_repeats):
            if study == "ablation":
                real, random = next(pairs)
            else:
                cls = value if study == "real_vs_random" else positive_class
                index, labels = _draw_task(
                    classes, cls, *task_sizes(value), rng, f"study={study!r}, value {value}"
                )
                real, random = scored(index, np.stack([labels, rng.permutation(labels)]))
            scores.append(real)
            noise.append(random)
        real_scores.extend(scores)
        random_scores.extend(noise)
        n_positive, n_negative = task_sizes(value)
        rows.append(
            (value, n_positive + n_negative, np.mean(scores), np.std(scores), np.mean(noise), np.std(noise))
        )

    variable = {
        "ablation": "fraction",
        "class_ratio": "ratio",
        "n_positives": "ratio",
        "real_vs_random": "class",
    }[study]
    columns = [variable, "n_samples", "score", "score_std", "random_score", "random_score_std"]
    table = Bunch(
        **{name: np.asarray([row[i] for row in rows]) for i, name in enumerate(columns)}, columns=columns
    )
    if study == "real_vs_random":
        truth = np.r_[np.ones(len(real_scores)), np.zeros(len(random_scores))]
        table.roc_auc = float(roc_auc_score(truth, np.r_[real_scores, random_scores]))
    return table
