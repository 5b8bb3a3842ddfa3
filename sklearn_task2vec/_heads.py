"""The task-specific head: features of the frozen probe, cached once, and a linear classifier on them.

Paper, sec. 3.1: "we use a single probe network pre-trained on ImageNet as a feature
extractor and re-train only the classifier layer on any given task". Only the head is
trained, so the probe runs once over the task to cache its features ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def run_without_gradient(module, inputs, where):
    """``module(inputs)`` without gradients; a failure is a ValueError naming the task."""
    try:
        with torch.no_grad():
            return module(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"{where}: the probe cannot take inputs of shape {tuple(inputs.shape)} "
            f"(dtype {inputs.dtype}): {exc}"
        ) from exc


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
