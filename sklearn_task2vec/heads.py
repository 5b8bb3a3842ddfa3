"""The task-specific head: features of the frozen probe, cached once, and a linear classifier on them.

Paper, sec. 3.1: "we use a single probe network pre-trained on ImageNet as a feature
extractor and re-train only the classifier layer on any given task". Only the head is
trained, so the probe runs once over the task to cache its features ``z``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def probe_features(probe, inputs, where):
    """``probe(inputs)`` without gradients, checked to be a ``(batch, d)`` feature matrix."""
    try:
        with torch.no_grad():
            features = probe(inputs)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"{where}: the probe cannot take inputs of shape {tuple(inputs.shape)} "
            f"(dtype {inputs.dtype}): {exc}"
        ) from exc
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] != inputs.shape[0]:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"{where}: the probe must map a batch of {inputs.shape[0]} inputs to a (batch, d) "
            f"feature matrix, got {shape}."
        )
    return features


def train_head(features, codes, n_classes, *, epochs, learning_rate, weight_decay, batch_size, generator):
    """A linear softmax head ``d -> n_classes`` trained by Adam on cached features.

    The head starts at zero (the problem is convex, so no random start is needed) and sees
    the examples in an order drawn from ``generator`` each epoch. It is returned frozen.
    """
    n_examples, n_features = features.shape
    head = nn.Linear(n_features, n_classes, dtype=features.dtype, device=features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    targets = torch.as_tensor(codes, dtype=torch.long, device=features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n_examples, generator=generator).to(features.device)
            for start in range(0, n_examples, batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(head(features[batch]), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    head.requires_grad_(False)
    return head
