"""What a task is: coercion and validation of task inputs.

A task is a labelled dataset, given as one of

* an ``(inputs, labels)`` pair of numpy arrays or torch tensors, inputs either 2-D features
  ``(n, n_features)`` or images ``(n, channels, height, width)``, labels 1-D;
* a :class:`torch.utils.data.Dataset` whose items are ``(x, y)`` pairs;
* a :class:`torch.utils.data.DataLoader` yielding ``(inputs, labels)`` batches.

Labels may be any hashable class labels. Every problem is reported as a ``ValueError`` or
``TypeError`` that names the task by its index in the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset


def is_task_sequence(X):
    """Whether ``X`` is a sequence of tasks rather than one numeric array of examples.

    A list or tuple is a task sequence when an element is a Dataset, a DataLoader, or an
    ``(inputs, labels)`` pair whose inputs are arrays; a row of numbers is not.
    """
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    return any(_looks_like_task(task) for task in X)


def _looks_like_task(task):
    if isinstance(task, (Dataset, DataLoader)):
        return True
    return (
        isinstance(task, (tuple, list))
        and len(task) == 2
        and np.ndim(task[0]) >= 1
        and not isinstance(task[0], str)
    )


def _numpy(values):
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _check_labels(labels, where, n_examples=None):
    labels = _numpy(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"{where}: labels must be 1-D, one class label per example; got shape {labels.shape}."
        )
    if n_examples is not None and labels.shape[0] != n_examples:
        raise ValueError(
            f"{where}: inputs have {n_examples} examples but labels have {labels.shape[0]}."
        )
    if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
        raise ValueError(f"{where}: labels contain NaN or infinity.")
    return labels


def check_inputs(inputs, where, dtype):
    """``inputs`` as a CPU tensor of ``dtype``, after refusing non-real or non-finite values."""
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach().cpu()
        if tensor.is_complex() or not (tensor.is_floating_point() or _is_integer(tensor)):
            raise ValueError(f"{where}: inputs must be real numbers, got dtype {tensor.dtype}.")
        tensor = tensor.to(dtype)
    else:
        array = np.asarray(inputs)
        if array.dtype.kind not in "fiub":
            raise ValueError(
                f"{where}: inputs must be real numbers, got dtype {array.dtype}"
                + (" (complex numbers are not supported)." if array.dtype.kind == "c" else ".")
            )
        array = np.asarray(array, dtype=torch.empty((), dtype=dtype).numpy().dtype)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array, order="C")
        tensor = torch.from_numpy(array)
    if tensor.dim() < 2:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W "
            f"images), got shape {tuple(tensor.shape)}."
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{where}: inputs contain NaN or infinity.")
    return tensor


def _is_integer(tensor):
    return not tensor.is_floating_point() and not tensor.is_complex() and tensor.dtype != torch.bool


class ArrayTask:
    """A task held in memory as an inputs tensor and a labels array."""

    def __init__(self, inputs, labels, where):
        self.inputs = inputs
        self.labels = labels
        self.where = where

    def __len__(self):
        return self.inputs.shape[0]

    def batches(self, batch_size):
        """``(inputs, labels)`` batches in a fixed order."""
        for start in range(0, len(self), batch_size):
            yield self.inputs[start : start + batch_size], self.labels[start : start + batch_size]


class LoaderTask:
    """A task streamed from a DataLoader, checked batch by batch."""

    def __init__(self, loader, where, dtype, max_samples):
        self.loader = loader
        self.where = where
        self.dtype = dtype
        self.max_samples = max_samples

    def batches(self, batch_size=None):
        seen = 0
        for batch in self.loader:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise TypeError(
                    f"{self.where}: its data must yield (x, y) pairs; got a batch of type "
                    f"{type(batch).__name__}."
                )
            where = f"{self.where} (batch from example {seen})"
            inputs = check_inputs(batch[0], where, self.dtype)
            labels = _check_labels(batch[1], where, inputs.shape[0])
            if self.max_samples is not None and seen + len(labels) > self.max_samples:
                keep = self.max_samples - seen
                inputs, labels = inputs[:keep], labels[:keep]
            if len(labels):
                yield inputs, labels
            seen += len(labels)
            if self.max_samples is not None and seen >= self.max_samples:
                return
        if seen == 0:
            raise ValueError(f"{self.where} is empty: it has no examples.")


def coerce_task(task, index, *, dtype, batch_size, max_samples, rng):
    """A validated :class:`ArrayTask` or :class:`LoaderTask` for the task at ``index``.

    ``max_samples`` examples at most are kept, chosen at random with ``rng`` where the
    task's size is known.
    """
    where = f"task {index}"
    if isinstance(task, DataLoader):
        return LoaderTask(task, where, dtype, max_samples)
    if isinstance(task, Dataset):
        if max_samples is not None and not isinstance(task, IterableDataset):
            if len(task) > max_samples:
                task = Subset(task, np.sort(rng.choice(len(task), max_samples, replace=False)))
        loader = DataLoader(task, batch_size=batch_size, shuffle=False)
        return LoaderTask(loader, where, dtype, max_samples)
    if not (isinstance(task, Sequence) and not isinstance(task, str) and len(task) == 2):
        raise TypeError(
            f"{where} is not a task: expected an (inputs, labels) pair, a torch Dataset or a "
            f"DataLoader; got {type(task).__name__}."
        )
    inputs, labels = task
    if np.ndim(inputs) == 0 or len(inputs) == 0:
        raise ValueError(f"{where} is empty: it has no examples.")
    labels = _check_labels(labels, where, len(inputs))
    inputs = check_inputs(inputs, where, dtype)
    if max_samples is not None and len(labels) > max_samples:
        keep = np.sort(rng.choice(len(labels), max_samples, replace=False))
        inputs, labels = inputs[torch.from_numpy(keep)], labels[keep]
    return ArrayTask(inputs, labels, where)


def example_shape(task, index):
    """The shape of one example of a task, without the batch axis (to choose the "auto" probe)."""
    if isinstance(task, DataLoader):
        first = next(iter(task))
        return tuple(np.shape(first[0]))[1:]
    if isinstance(task, IterableDataset):
        return tuple(np.shape(next(iter(task))[0]))
    if isinstance(task, Dataset):
        return tuple(np.shape(task[0][0]))
    if not _looks_like_task(task):
        raise TypeError(
            f"task {index} is not a task: expected an (inputs, labels) pair, a torch Dataset or "
            f"a DataLoader; got {type(task).__name__}."
        )
    return tuple(np.shape(task[0]))[1:]


def encode_labels(labels, where):
    """``(classes, codes)`` for any hashable labels; codes index into the sorted classes."""
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            f"{where}: labels cannot be sorted into classes (mixed types?): {exc}"
        ) from exc
    return classes, codes.reshape(-1)
