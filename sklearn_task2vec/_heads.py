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
    try:
        with torch.no_grad():
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


def probe_features(probe, inputs, where):
    """``probe(inputs)`` without gradients, checked to be a ``(batch, d)`` feature matrix."""
    features = run_without_gradient(probe, inputs, where)
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != inputs.shape[0]:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"{where}: the probe must map a batch of {inputs.shape[0]} inputs to a (batch, d) "
            f"feature matrix, got {shape}."
        )
    return features


class TaskFeatures(NamedTuple):
    """What one pass of a task through a probe gives (:func:`task_features`).

    ``features``: ``(n, d)`` on the device, in the probe's precision; ``labels``: the task's
    labels in order; ``stem_outputs``: with a stem, its output for every example, on the host
    (the input of the Fisher pass), else None.
    """

    features: torch.Tensor
    labels: np.ndarray
    stem_outputs: torch.Tensor | None


def task_features(module, task, *, batch_size, device, stem=None, autocast=None):
    """One no-grad pass of a task's batches through ``module`` (after ``stem``, if given).

    ``task`` is a coerced task (:func:`~sklearn_task2vec.tasks.coerce_task`), read once in
    its own order; ``autocast`` is a reduced precision for the pass (see
    :func:`~sklearn_task2vec._utils.autocast_context`). The features come back in the
    module's own precision whatever autocast computed them in, so that the head is trained
    in it.
    """
    features, labels, stem_outputs = [], [], []
    for inputs, batch_labels in task.batches(batch_size):
        inputs = to_device(inputs, device)
        with autocast_context(autocast, device):
            if stem is not None:
                inputs = run_without_gradient(stem, inputs, task.where)
                stem_outputs.append(inputs.cpu())
            features.append(probe_features(module, inputs, task.where))
        labels.append(np.asarray(batch_labels))
    dtype = module_dtype(module)
    return TaskFeatures(
        torch.cat(features).to(dtype),
        np.concatenate(labels),
        torch.cat(stem_outputs) if stem_outputs else None,
    )


def train_head(features, codes, n_classes, *, max_iter, learning_rate, weight_decay):
    """A linear softmax head ``d -> n_classes`` fitted to convergence on cached features.

    Minimises the mean cross-entropy plus ``weight_decay / 2 * ||W||^2`` (the bias is not
    penalised) with full-batch L-BFGS and a strong-Wolfe line search, starting from zero:
    the problem is convex, so the head is the regularised optimum, whatever the order of the
    examples. Each iteration is one pass over the cached features, so ``max_iter`` counts
    epochs. The Fisher is then taken at a minimum, where it matches the Hessian (sec. 3).
    The head is returned frozen.
    """
    n_features = features.shape[1]
    head = nn.Linear(n_features, n_classes, dtype=features.dtype, device=features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
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

        def objective():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(head(features), targets)
            loss = loss + 0.5 * weight_decay * head.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(objective)
    head.requires_grad_(False)
    return head
