"""The task-specific head: features of the frozen probe, cached once, and a linear classifier on them.

Paper, sec. 3.1: "we use a single probe network pre-trained on ImageNet as a feature
extractor and re-train only the classifier layer on any given task". Only the head is
trained, so the probe runs once over the task to cache its features ``z``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._utils import autocast_context, module_dtype, to_device

# Most logits held at once while a head is trained (256 MiB in float32).
_CHUNK_ELEMENTS = 1 << 26


def channel_fix(channels, probe_channels):
    """What to do with images of ``channels`` channels for a probe that takes ``probe_channels``."""
    if channels == 1 and probe_channels == 3:
        return (
            "repeat the gray channel with sklearn_task2vec.datasets.to_rgb(images) (images.repeat(1, 3, 1, 1) "
            "for a tensor, np.repeat(images, 3, axis=1) for an array); for a torchvision Dataset, add "
            "transforms.Grayscale(num_output_channels=3) to its transform"
        )
    return f"give it images with {probe_channels} channels, or pass a probe module that takes {channels}"


def run_without_gradient(module, inputs, where):
    """``module(inputs)`` without gradients; a failure is a ValueError naming the task, except
    running out of memory (a ``torch.OutOfMemoryError``, named by the embedder's boundary)."""
    return run_probe(module, inputs, where, gradient=False)


def run_probe(module, inputs, where, *, gradient):
    """``module(inputs)`` with gradients on or off; its failures as in :func:`run_without_gradient`."""
    try:
        with torch.set_grad_enabled(gradient):
            return module(inputs)
    except torch.cuda.OutOfMemoryError:
        raise  # not the inputs' fault: it stays catchable as what it is
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{where}: {probe_input_error(module, inputs, exc)}") from exc


def probe_input_error(module, inputs, error):
    """What to say when ``module`` fails on ``inputs`` with ``error``: their shape and dtype,
    and the fix for images with a channel count the probe's first convolution does not take."""
    first = next((layer for layer in module.modules() if isinstance(layer, nn.Conv2d)), None)
    fix = ""
    if first is not None and inputs.dim() == 4 and inputs.shape[1] != first.in_channels:
        fix = f" The probe takes {first.in_channels}-channel images: {channel_fix(inputs.shape[1], first.in_channels)}."
    return f"the probe cannot take inputs of shape {tuple(inputs.shape)} (dtype {inputs.dtype}): {error}{fix}"


def probe_features(probe, inputs, where, run=run_without_gradient):
    """``run(probe, inputs, where)`` (by default without gradients), checked to be a ``(batch,
    d)`` feature matrix or a ``(batch, length, d)`` sequence of hidden states."""
    features = run(probe, inputs, where)
    if (
        not isinstance(features, torch.Tensor)
        or features.dim() not in (2, 3)
        or features.shape[0] != inputs.shape[0]
    ):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"{where}: the probe must map a batch of {inputs.shape[0]} inputs to a (batch, d) "
            f"feature matrix (or a (batch, length, d) sequence of hidden states), got {shape}."
        )
    return features


#: How a text classification task pools a probe's hidden states into its head's features.
POOLINGS = ("mean", "first", "last")


class Readout(nn.Module):
    """A task's head over the probe's output: the logits of every label slot of each example.

    ``kind`` says what the slots are:

    * ``"features"``: the probe gives ``(n, d)`` features; one slot per example.
    * ``"pooled"``: the probe gives ``(n, length, d)`` hidden states (a text probe); one slot
      per example, their ``pooling`` over the example's tokens: ``"mean"`` (padding excluded),
      ``"first"`` (BERT's ``[CLS]``) or ``"last"`` (its last token, which a causal language
      model has read the whole text to compute).
    * ``"next_token"``: a language-modelling task on ``(n, length, d)`` hidden states; slot
      ``t`` predicts token ``t + 1`` of the example, where there is one.

    ``tokens``: the inputs are token batches (:mod:`~sklearn_task2vec._text`), whose mask says
    which positions are tokens; otherwise every position is one. ``forward(outputs, inputs)``
    returns the logits ``(n, slots, classes)`` and which slots hold a label ``(n, slots)``.
    """

    def __init__(self, linear, kind="features", *, pooling="mean", tokens=False):
        super().__init__()
        self.linear = linear
        self.kind = kind
        self.pooling = pooling
        self.tokens = tokens

    def forward(self, outputs, inputs):
        slots, valid = head_inputs(outputs, inputs, self.kind, pooling=self.pooling, tokens=self.tokens)
        return self.linear(slots), valid


def readout_kind(outputs, language_modelling, where):
    """The :class:`Readout` kind of a task whose probe output is ``outputs``."""
    if language_modelling:
        if outputs.dim() != 3:
            raise ValueError(
                f"{where}: a language-modelling task needs a probe that gives a hidden state per "
                f"token, (batch, length, d); this one gives {tuple(outputs.shape)}."
            )
        return "next_token"
    return "features" if outputs.dim() == 2 else "pooled"


def head_inputs(outputs, inputs, kind, *, pooling="mean", tokens=False):
    """``(slots, valid)``: the head's inputs ``(n, n_slots, d)`` read off the probe's
    ``outputs`` for each example, and which of them hold a label ``(n, n_slots)`` (see
    :class:`Readout`)."""
    if kind == "features":
        return outputs.unsqueeze(1), torch.ones(
            outputs.shape[:1] + (1,), dtype=torch.bool, device=outputs.device
        )
    length = outputs.shape[1]
    if tokens:
        mask = inputs[:, 1, :length].bool()
    else:
        mask = torch.ones(outputs.shape[:2], dtype=torch.bool, device=outputs.device)
    if kind == "next_token":
        # Right-padded: token t + 1 exists exactly where the mask is set at t + 1. Contiguous:
        # a linear layer applied to a strided 3-D view runs as a batched product with its
        # weight broadcast over the batch, several times slower over a large vocabulary.
        return outputs[:, :-1].contiguous(), mask[:, 1:]
    n_tokens = mask.sum(1)
    if pooling == "mean":
        # where, not a product with the mask: padding's hidden states may be anything.
        pooled = torch.where(mask.unsqueeze(2), outputs, 0).sum(1) / n_tokens.unsqueeze(1).to(outputs.dtype)
    elif pooling == "first":
        pooled = outputs[:, 0]
    else:
        pooled = outputs[torch.arange(len(outputs), device=outputs.device), n_tokens - 1]
    return pooled.unsqueeze(1), torch.ones(pooled.shape[:1] + (1,), dtype=torch.bool, device=outputs.device)


def next_tokens(inputs, valid):
    """The labels of a language-modelling task's valid slots: each slot's next token id."""
    ids = inputs[:, 0, 1:] if inputs.dim() == 3 else inputs[:, 1:]
    return ids[valid]


class TaskFeatures(NamedTuple):
    """What one pass of a task through a probe gives (:func:`task_features`).

    ``features``: the head's inputs at every labelled slot, ``(n_slots, d)``, on the device, in
    the probe's precision (one slot per example, except for a language-modelling task: one per
    token that has a next token); ``labels``: their labels in order (a language-modelling
    task's: the next token ids); ``stem_outputs``: with a stem, its output for every example,
    on the host (the input of the Fisher pass), else None; ``kind``: the :class:`Readout` kind.
    """

    features: torch.Tensor
    labels: np.ndarray
    stem_outputs: torch.Tensor | None
    kind: str


def task_features(
    module, task, *, batch_size, device, stem=None, autocast=None, pooling="mean", run=run_without_gradient
):
    """One pass of a task's batches through ``module`` (after ``stem``, if given).

    ``task`` is a coerced task (:func:`~sklearn_task2vec.tasks.coerce_task`), read once in
    its own order; ``autocast`` is a reduced precision for the pass (see
    :func:`~sklearn_task2vec._utils.autocast_context`); ``pooling`` that of a text
    classification task (:class:`Readout`). The features come back in the module's own
    precision whatever autocast computed them in, so that the head is trained in it, and
    without gradient history. ``run(module, inputs, where)`` runs ``module`` on a batch: by
    default without gradients; the Fisher pass's
    :meth:`~sklearn_task2vec._fisher.RetainedForwards.run` keeps the forwards it can reuse.
    """
    features, labels, stem_outputs, kind = [], [], [], None
    language_modelling = getattr(task, "language_modelling", False)
    tokens = getattr(task, "tokens", False)
    for inputs, batch_labels in task.batches(batch_size):
        inputs = to_device(inputs, device)
        with autocast_context(autocast, device):
            if stem is not None:
                inputs = run_without_gradient(stem, inputs, task.where)
                stem_outputs.append(inputs.cpu())
            outputs = probe_features(module, inputs, task.where, run)
        kind = kind or readout_kind(outputs, language_modelling, task.where)
        slots, valid = head_inputs(outputs, inputs, kind, pooling=pooling, tokens=tokens)
        features.append(slots[valid].detach())
        if language_modelling:
            labels.append(next_tokens(inputs, valid).cpu().numpy())
        else:
            labels.append(np.asarray(batch_labels))
    dtype = module_dtype(module)
    return TaskFeatures(
        torch.cat(features).to(dtype),
        np.concatenate(labels),
        torch.cat(stem_outputs) if stem_outputs else None,
        kind,
    )


def train_head(features, codes, n_classes, *, max_iter, learning_rate, weight_decay, start=None):
    """A linear softmax head ``d -> n_classes`` fitted to convergence on cached features.

    Minimises the mean cross-entropy plus ``weight_decay / 2 * ||W - W_0||^2`` (the bias is
    not penalised) with full-batch L-BFGS and a strong-Wolfe line search, from ``W_0``: zero,
    or the weights of ``start``, a Linear layer (a language model's own output layer, which a
    language-modelling task's head starts from and is held near). The problem is convex, so
    the head is the regularised optimum, whatever the order of the examples. Each iteration
    is one pass over the cached features, so ``max_iter`` counts epochs. The Fisher is then
    taken at a minimum, where it matches the Hessian (sec. 3). The head is returned frozen.
    """
    n_features = features.shape[1]
    head = nn.Linear(n_features, n_classes, dtype=features.dtype, device=features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    anchor = None
    if start is not None:
        with torch.no_grad():
            head.weight.copy_(start.weight)
            if start.bias is not None:
                head.bias.copy_(start.bias)
        anchor = head.weight.detach().clone()
    targets = torch.as_tensor(codes, dtype=torch.long, device=features.device)
    if max_iter > 0:
        optimizer = torch.optim.LBFGS(
            head.parameters(),
            lr=learning_rate,
            max_iter=max_iter,
            history_size=10,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        # The logits of many slots over a large vocabulary are computed a chunk at a time.
        step = max(1, _CHUNK_ELEMENTS // n_classes)

        def objective():
            optimizer.zero_grad(set_to_none=True)
            shift = head.weight if anchor is None else head.weight - anchor
            penalty = 0.5 * weight_decay * shift.pow(2).sum()
            if step >= len(targets):
                loss = F.cross_entropy(head(features), targets) + penalty
                loss.backward()
                return loss
            penalty.backward()
            loss = penalty.detach()
            for begin in range(0, len(targets), step):
                chunk = slice(begin, begin + step)
                part = F.cross_entropy(head(features[chunk]), targets[chunk], reduction="sum") / len(targets)
                part.backward()
                loss = loss + part.detach()
            return loss

        with torch.enable_grad():
            optimizer.step(objective)
    head.requires_grad_(False)
    return head
