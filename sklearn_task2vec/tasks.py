"""What a task is: coercion and validation of task inputs.

A task is a labelled dataset, given as one of

* an ``(inputs, labels)`` pair of numpy arrays or torch tensors, inputs either 2-D features
  ``(n, n_features)`` or images ``(n, channels, height, width)``, labels 1-D;
* a :class:`torch.utils.data.Dataset` whose items are ``(x, y)`` pairs;
* a :class:`torch.utils.data.DataLoader` yielding ``(inputs, labels)`` batches;
* a text task: ``(texts, labels)``, texts a list of strings (tokenized by the embedder's
  tokenizer) or a tokenizer's output (a mapping with ``input_ids`` and optionally
  ``attention_mask``), a text classification task; with ``labels=None``, a language-modelling
  task, whose labels are the next token at every position.

Labels may be any hashable class labels. Every problem is reported as a ``ValueError`` or
``TypeError`` that names the task by its index in the sequence.

The estimators take a list of tasks; :mod:`sklearn_task2vec.task_library` cuts whole libraries
of tasks out of one labelled dataset.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from numbers import Real

import numpy as np
import scipy.sparse
import torch
from sklearn.utils.multiclass import type_of_target
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    Subset,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from ._text import is_text, n_texts, token_batch, trim_padding


def is_task_sequence(X):
    """Whether ``X`` is a sequence of tasks rather than one numeric array of examples.

    A list or tuple is a task sequence when an element is a Dataset, a DataLoader, or an
    ``(inputs, labels)`` pair whose inputs are arrays; a row of numbers is not.
    """
    if isinstance(X, (Dataset, DataLoader)) or is_bare_pair(X):
        raise TypeError(
            f"X is one task ({describe(X)}), not a sequence of tasks: pass a list of tasks, "
            f"e.g. [task], or fit(inputs, labels) for a single array task."
        )
    if isinstance(X, Iterator):
        raise TypeError(
            f"X is an iterator ({type(X).__name__}), which can be read only once: pass the tasks "
            f"as a list, e.g. list(tasks)."
        )
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    return any(_looks_like_task(task) for task in X)


def is_bare_pair(X):
    """An ``(inputs, labels)`` pair given where a sequence of tasks or an array was expected."""
    if not (isinstance(X, tuple) and len(X) == 2):
        return False
    try:
        inputs_shape, labels_shape = np.shape(X[0]), np.shape(X[1])
    except ValueError:  # ragged: not a pair of arrays
        return False
    return len(inputs_shape) >= 2 and len(labels_shape) == 1 and inputs_shape[0] == labels_shape[0]


def check_fit_labels(X, y):
    """Check the labels ``y`` of one array task ``X`` before scikit-learn's validation: refuse
    missing values (None, NaN, pandas.NA) in ``y`` naming it, and ``y=None`` for an ``X``
    that is not a sequence of tasks, saying what was wrong with ``X`` as tasks when it is a
    list of pairs (a pair of scalars, a sparse matrix)."""
    if y is not None:
        if isinstance(y, (list, tuple)):
            _refuse_missing(y, "y")
        elif not isinstance(y, torch.Tensor) and not scipy.sparse.issparse(y):
            labels = np.asarray(y)
            if labels.dtype == object:
                _refuse_missing(labels.reshape(-1), "y")
        return
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return
    if all(isinstance(task, (list, tuple)) and len(task) == 2 for task in X):
        for index, (inputs, _) in enumerate(X):
            try:
                _example_shape(inputs, f"task {index}")
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"{exc} (X was read as a sequence of (inputs, labels) tasks; as one array of "
                    f"examples, it requires y to be passed, but the target y is None.)"
                ) from exc


def _looks_like_task(task):
    if isinstance(task, (Dataset, DataLoader)):
        return True
    if isinstance(task, (tuple, list)) and len(task) == 2 and scipy.sparse.issparse(task[0]):
        return True  # refused with its index when it is coerced
    if isinstance(task, (tuple, list)) and len(task) == 2 and is_text(task[0]):
        return True
    if not (isinstance(task, (tuple, list)) and len(task) == 2 and not isinstance(task[0], str)):
        return False
    try:
        return np.ndim(task[0]) >= 1
    except ValueError:  # ragged nested sequences: inputs of a task, refused with its index later
        return True


def as_numpy(values, where, what):
    """``values`` as a numpy array (a tensor detached to CPU); ragged rows are a ValueError naming
    ``where`` and ``what``."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if scipy.sparse.issparse(values):
        raise TypeError(
            f"{where}: {what} are a sparse {type(values).__name__}; the probe takes dense arrays: "
            f"pass {what}.toarray() (or a Dataset that densifies one example at a time)."
        )
    try:
        return np.asarray(values)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{where}: {what} cannot be read as an array (ragged rows?): {exc}") from exc


def describe(value):
    """``value`` in words: ``'a tuple of 3 items'``, ``'an object of type int'``."""
    name = type(value).__name__
    if isinstance(value, (tuple, list)):
        return f"a {name} of {len(value)} items"
    return f"an object of type {name}"


def _example_shape(inputs, where):
    """The shape of one example of ``inputs`` (without the batch axis), refusing scalars and ragged rows."""
    if isinstance(inputs, str):
        raise ValueError(f"{where}: inputs must be an array of examples, got a string.")
    shape = tuple(as_numpy(inputs, where, "inputs").shape)
    if len(shape) == 0:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W "
            f"images), got a scalar of type {type(inputs).__name__}."
        )
    return shape[1:]


def check_labels(labels, where, n_examples=None):
    """``labels`` as a 1-D numpy array, after refusing other shapes, NaN and infinity, and a
    length other than ``n_examples`` (when given)."""
    if isinstance(labels, (list, tuple)):
        _refuse_missing(labels, where)  # before numpy turns ["a", nan] into the string "nan"
    labels = as_numpy(labels, where, "labels")
    if labels.ndim != 1:
        raise ValueError(
            f"{where}: labels must be 1-D, one class label per example; got shape {labels.shape}."
        )
    if n_examples is not None and labels.shape[0] != n_examples:
        raise ValueError(f"{where}: inputs have {n_examples} examples but labels have {labels.shape[0]}.")
    if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
        raise ValueError(f"{where}: labels contain NaN or infinity.")
    if labels.dtype == object:
        _refuse_missing(labels, where)
    if _is_continuous(labels):
        raise ValueError(
            f"{where}: labels are continuous (type_of_target is 'continuous': floats that are not "
            f"whole numbers, e.g. {next(v for v in labels.tolist() if float(v) != int(v))!r}), a "
            f"regression target; a task is a classification: pass class labels (bin the target "
            f"first, e.g. with numpy.digitize)."
        )
    return labels


def _refuse_missing(labels, where):
    missing = [index for index, label in enumerate(labels) if is_missing(label)]
    if missing:
        raise ValueError(
            f"{where}: labels contain {len(missing)} missing values (None, NaN or pandas.NA), "
            f"the first at example {missing[0]}: drop those examples or give them a class."
        )


def is_missing(label):
    """Whether a label is a missing value: None, a float NaN, or pandas' NA or NaT."""
    if label is None:
        return True
    if isinstance(label, Real) and not isinstance(label, bool):
        return bool(label != label)  # NaN, whatever its float type
    pandas = sys.modules.get("pandas")  # no pandas imported: no pandas missing value can exist
    return pandas is not None and (label is pandas.NA or label is pandas.NaT)


def _is_continuous(labels):
    if (
        labels.dtype == object
        and len(labels)
        and all(isinstance(label, Real) and not isinstance(label, bool) for label in labels)
    ):
        labels = labels.astype(np.float64)
    return labels.dtype.kind == "f" and len(labels) > 0 and type_of_target(labels) == "continuous"


def check_inputs(inputs, where, dtype):
    """``inputs`` as a CPU tensor of ``dtype``, after refusing non-real or non-finite values.

    An integer ``dtype`` is that of a probe that takes integers (token ids): integers are kept
    exactly, and floating inputs must hold integers.
    """
    if isinstance(inputs, torch.Tensor):
        tensor = inputs.detach().cpu()
        if tensor.is_complex():
            raise ValueError(f"{where}: inputs must be real numbers, got dtype {tensor.dtype}.")
    else:
        array = as_numpy(inputs, where, "inputs")
        if array.dtype.kind not in "fiub":
            raise ValueError(
                f"{where}: inputs must be real numbers, got dtype {array.dtype}"
                + (" (complex numbers are not supported)." if array.dtype.kind == "c" else ".")
            )
        if array.dtype.kind == "u" and array.dtype.itemsize > 1:  # torch's unsigned types are partial
            array = array.astype(np.int64)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array, order="C")
        tensor = torch.from_numpy(array)  # converted to dtype by torch below
    if tensor.dim() < 2:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W "
            f"images), got shape {tuple(tensor.shape)}."
        )
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise ValueError(f"{where}: inputs contain NaN or infinity.")
    if not dtype.is_floating_point and tensor.is_floating_point() and not torch.equal(tensor, tensor.round()):
        raise ValueError(
            f"{where}: the probe takes integer inputs (e.g. token ids), but these inputs hold "
            f"numbers that are not integers."
        )
    return tensor.to(dtype)  # booleans become 0 and 1, as numpy's do


class ArrayTask:
    """A task held in memory as an inputs tensor and a labels array."""

    #: Its examples come in the same order at every pass (see :func:`loader_order`).
    order = "fixed"
    #: Every pass reads it anew (see :attr:`LoaderTask.rereadable`).
    rereadable = True

    def __init__(self, inputs, labels, where):
        self.inputs = inputs
        self.labels = labels
        self.where = where

    def __len__(self):
        return self.inputs.shape[0]

    def batches(self, batch_size, rng=None):
        """``(inputs, labels)`` batches, in a fixed order, or in a random one drawn from ``rng``."""
        if rng is None:
            for start in range(0, len(self), batch_size):
                # A copy: a probe may modify its input in place, which must change neither the
                # user's array nor the next pass's input.
                batch = self.inputs[start : start + batch_size].clone()
                yield batch, self.labels[start : start + batch_size]
            return
        order = rng.permutation(len(self))
        for start in range(0, len(self), batch_size):
            indices = order[start : start + batch_size]
            yield self.inputs[torch.from_numpy(indices)], self.labels[indices]


class TokenTask(ArrayTask):
    """A text task held in memory as a token batch (:mod:`~sklearn_task2vec._text`).

    Each batch is cut to its own longest text, so that no pass computes on columns that are
    padding for every example. ``language_modelling``: the labels are the next tokens (its
    ``labels`` are placeholders, one per example).
    """

    #: Its inputs are token batches, whose mask says which positions hold tokens.
    tokens = True

    def __init__(self, inputs, labels, where, language_modelling=False):
        super().__init__(inputs, labels, where)
        self.language_modelling = language_modelling

    def batches(self, batch_size, rng=None):
        for inputs, labels in super().batches(batch_size, rng):
            yield trim_padding(inputs), labels


class LoaderTask:
    """A task streamed from a DataLoader, checked batch by batch.

    With ``max_samples``, every pass reads the whole loader and keeps ``max_samples`` of its
    examples drawn uniformly at random with ``seed`` (reservoir sampling), in the loader's
    order: the same examples at each pass of a loader that yields the same data each time.
    """

    def __init__(self, loader, where, dtype, max_samples, seed=0):
        self.loader = loader
        self.where = where
        self.dtype = dtype
        self.max_samples = max_samples
        self.seed = seed
        #: How the loader orders its examples from one pass to the next (:func:`loader_order`).
        self.order = loader_order(loader)
        #: Whether every pass reads the task anew by construction: a map-style dataset read
        #: through torch's own samplers. An iterable dataset, or a sampler of the caller's, may be
        #: a one-shot stream, whose first batch (read to inspect the probe) a single pass would
        #: lose unseen: only a second pass shows it, so such a task is read twice.
        self.rereadable = not isinstance(loader.dataset, IterableDataset) and _torch_samplers(loader)
        self._examples_per_pass = None  # read by the first whole pass, to compare the others with

    def batches(self, batch_size=None, rng=None):
        """The loader's batches, checked, in the loader's own order (``rng`` is the loader's
        business); with ``max_samples``, the sample's examples in batches of the loader's
        batch size (else ``batch_size``)."""
        if self.max_samples is None:
            yield from self.all_batches()
            return
        inputs, labels = self._sample()
        size = self.loader.batch_size or batch_size or len(labels)
        for start in range(0, len(labels), size):
            yield inputs[start : start + size], labels[start : start + size]

    def all_batches(self):
        """All the loader's batches, checked, in its order (``max_samples`` not applied).

        Every whole pass must read as many examples as the first: a stream that can be read
        only once (its second pass reads nothing) or that changes from one pass to the next
        is refused, since an embedding reads a task several times (its features, its Fisher
        and, with a cache, its key), and would silently mix passes otherwise.
        """
        seen = 0
        for batch in _read_batches(self.loader, self.where):
            where = f"{self.where} (batch from example {seen})"
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise TypeError(
                    f"{where}: its data must yield (x, y) pairs; got a batch that is {describe(batch)}."
                )
            if is_text(batch[0]):
                raise TypeError(
                    f"{where}: its data yield text; a text task is a (texts, labels) pair (a list "
                    f"of strings, or a tokenizer's output), which the embedder tokenizes, not a "
                    f"Dataset or DataLoader."
                )
            inputs = check_inputs(batch[0], where, self.dtype)
            labels = check_labels(batch[1], where, inputs.shape[0])
            if len(labels):
                yield inputs, labels
            seen += len(labels)
        first = self._examples_per_pass
        if seen == 0 and first:
            raise ValueError(
                f"{self.where} can be read only once: its first pass read {first} examples and the "
                f"next none (a one-shot stream, such as an IterableDataset over a generator). An "
                f"embedding reads a task several times (its features, its Fisher and, with memory, "
                f"the cache's key): give a Dataset or DataLoader that can be iterated again, e.g. "
                f"a TensorDataset of its examples."
            )
        if seen == 0:
            raise ValueError(f"{self.where} is empty: it has no examples.")
        if first is not None and seen != first:
            raise ValueError(
                f"{self.where} read {first} examples in one pass and {seen} in another: an embedding "
                f"reads a task several times and needs the same examples at each pass."
            )
        self._examples_per_pass = seen

    def _sample(self):
        """``max_samples`` examples drawn uniformly at random in one pass (reservoir sampling,
        Vitter's algorithm R: the example at position ``i >= k`` replaces a random one of the
        ``k`` kept with probability ``k / (i + 1)``), as ``(inputs, labels)`` in loader order."""
        rng = np.random.RandomState(self.seed)
        size = self.max_samples
        kept_inputs, kept_labels, positions = [], [], []
        seen = 0
        for inputs, labels in self.all_batches():
            here = np.arange(seen, seen + len(labels))
            slots = np.where(here < size, here, rng.randint(0, here + 1))
            for offset in np.flatnonzero(slots < size):
                example = (inputs[offset].clone(), labels[offset : offset + 1], seen + offset)
                if slots[offset] == len(positions):
                    kept_inputs.append(example[0])
                    kept_labels.append(example[1])
                    positions.append(example[2])
                else:
                    slot = slots[offset]
                    kept_inputs[slot], kept_labels[slot], positions[slot] = example
            seen += len(labels)
        order = np.argsort(positions)
        inputs = torch.stack([kept_inputs[slot] for slot in order])
        return inputs, np.concatenate([kept_labels[slot] for slot in order])


def _torch_samplers(loader):
    """Whether ``loader`` draws its indices through torch's own sampler classes."""
    samplers = [loader.sampler, loader.batch_sampler]
    samplers.append(getattr(loader.batch_sampler, "sampler", None))
    return all(
        sampler is None or type(sampler).__module__ == "torch.utils.data.sampler" for sampler in samplers
    )


def loader_order(loader):
    """How a DataLoader orders its examples from one pass to the next.

    ``"permuted"``: the same examples in a new order at each pass (``shuffle=True``, a
    ``SubsetRandomSampler``); ``"random"``: other examples at each pass (a sampler that draws
    with replacement or a number of its own, a ``WeightedRandomSampler``, or ``drop_last``
    cutting a shuffled pass); ``"fixed"``: anything else (a sequential sampler, an iterable
    dataset, a batch sampler of unknown kind).
    """
    if isinstance(loader.dataset, IterableDataset):
        return "fixed"  # no sampler: the dataset's own order
    batch_sampler = loader.batch_sampler
    sampler = getattr(batch_sampler, "sampler", loader.sampler)
    if isinstance(sampler, WeightedRandomSampler):
        return "random"
    if isinstance(sampler, RandomSampler):
        if sampler.replacement or sampler.num_samples != len(sampler.data_source):
            return "random"
    elif not isinstance(sampler, SubsetRandomSampler):
        return "fixed"
    batch_size = getattr(batch_sampler, "batch_size", None)
    if getattr(batch_sampler, "drop_last", False) and batch_size and len(sampler) % batch_size:
        return "random"  # the examples dropped change with the order
    return "permuted"


class ExampleReadError(ValueError):
    """An example of a task that could not be read (its message names the task, the example
    and, for a folder of files, the file)."""


class _ReadableItems(Dataset):
    """A map-style dataset whose examples that cannot be read (an ``OSError``: a missing file;
    a ``ValueError``: an image that :func:`~sklearn_task2vec.datasets.read_image` refuses, a
    truncated or corrupt file, a decompression bomb) raise an :class:`ExampleReadError` naming
    the task, the example and its file."""

    def __init__(self, dataset, where):
        self.dataset = dataset
        self.where = where

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except (OSError, ValueError) as exc:
            file = example_file(self.dataset, index)
            raise ExampleReadError(
                f"{self.where}: could not read example {index}"
                + ("" if file is None else f" (file {file})")
                + f": {type(exc).__name__}: {exc}"
            ) from exc


def example_file(dataset, index):
    """The file that example ``index`` of a torchvision ``DatasetFolder`` (``ImageFolder``) is
    read from, through ``Subset`` s; None when the dataset does not say."""
    while isinstance(dataset, Subset):
        index = dataset.indices[index]
        dataset = dataset.dataset
    try:
        path = dataset.samples[index][0]
    except (AttributeError, TypeError, IndexError, KeyError):
        return None
    return path if isinstance(path, (str, os.PathLike)) else None


def _read_batches(loader, where):
    """Iterate ``loader``, naming the task (and where it was) when reading or collating fails."""
    iterator = iter(loader)
    seen = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except ExampleReadError:
            raise
        except (TypeError, ValueError, RuntimeError, IndexError, KeyError, OSError) as exc:
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            raise kind(
                f"{where}: could not read a batch from its data after {seen} examples "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        yield batch
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            try:
                seen += len(batch[1])
            except TypeError:
                pass


def coerce_task(task, index, *, dtype, batch_size, max_samples, rng, text=None):
    """A validated :class:`ArrayTask`, :class:`TokenTask` or :class:`LoaderTask` for the task at
    ``index``.

    ``max_samples`` examples at most are kept, chosen at random with ``rng`` where the
    task's size is known. ``text``: the :class:`~sklearn_task2vec._text.TextEncoding` that
    turns a text task's strings into tokens (None: text is refused).
    """
    where = f"task {index}"
    if isinstance(task, DataLoader):
        return LoaderTask(task, where, dtype, max_samples, _stream_seed(rng, max_samples))
    if isinstance(task, Dataset):
        if not isinstance(task, IterableDataset):
            if max_samples is not None and len(task) > max_samples:
                task = Subset(task, np.sort(rng.choice(len(task), max_samples, replace=False)))
            loader = DataLoader(_ReadableItems(task, where), batch_size=batch_size, shuffle=False)
            return LoaderTask(loader, where, dtype, None)  # subsampled above, by index
        loader = DataLoader(task, batch_size=batch_size, shuffle=False)
        return LoaderTask(loader, where, dtype, max_samples, _stream_seed(rng, max_samples))
    if not (isinstance(task, Sequence) and not isinstance(task, str) and len(task) == 2):
        raise TypeError(
            f"{where} is not a task: expected an (inputs, labels) pair, a torch Dataset or a "
            f"DataLoader; got {describe(task)}."
        )
    inputs, labels = task
    if is_text(inputs):
        return _text_task(inputs, labels, where, text, max_samples, rng)
    if labels is None:
        raise TypeError(
            f"{where}: its labels are None, which makes it a language-modelling task; those take "
            f"text (a list of strings or a tokenizer's output), not {describe(inputs)}."
        )
    _example_shape(inputs, where)
    if len(inputs) == 0:
        raise ValueError(f"{where} is empty: it has no examples.")
    labels = check_labels(labels, where, len(inputs))
    inputs = check_inputs(inputs, where, dtype)
    if max_samples is not None and len(labels) > max_samples:
        keep = np.sort(rng.choice(len(labels), max_samples, replace=False))
        inputs, labels = inputs[torch.from_numpy(keep)], labels[keep]
    return ArrayTask(inputs, labels, where)


def _text_task(texts, labels, where, text, max_samples, rng):
    """The :class:`TokenTask` of a text task: ``labels`` None makes it a language-modelling one."""
    count = n_texts(texts)
    language_modelling = labels is None
    if language_modelling:
        labels = np.zeros(count, dtype=np.int64)
    else:
        labels = check_labels(labels, where, count)
    tokens = token_batch(texts, text, where)
    if max_samples is not None and count > max_samples:
        keep = np.sort(rng.choice(count, max_samples, replace=False))
        tokens, labels = tokens[torch.from_numpy(keep)], labels[keep]
    if language_modelling and not (tokens[:, 1].sum(1) > 1).any():
        raise ValueError(
            f"{where}: no text of this language-modelling task has two tokens or more, so none has "
            f"a next token to predict."
        )
    return TokenTask(tokens, labels, where, language_modelling)


def _stream_seed(rng, max_samples):
    """The seed of a streamed task's reservoir sample (none without ``max_samples``)."""
    return None if max_samples is None else int(rng.randint(np.iinfo(np.int32).max))


def first_example(task, index, text=None):
    """The first example of a task with its batch axis (to choose and inspect the probe), as it
    comes: integers stay integers; a text task's first text as a token batch, tokenized with
    ``text`` (a :class:`~sklearn_task2vec._text.TextEncoding`)."""
    where = f"task {index}"
    if isinstance(task, (tuple, list)) and len(task) == 2 and is_text(task[0]):
        return token_batch(task[0], text, where, stop=1).numpy()
    if isinstance(task, DataLoader):
        first = next(iter(_read_batches(task, where)), None)
        if first is None:
            raise ValueError(f"{where} is empty: it has no examples.")
        _check_pair(first, where, "a batch")
        _example_shape(first[0], where)
        return as_numpy(first[0], where, "inputs")[:1]
    if isinstance(task, Dataset):
        if isinstance(task, IterableDataset):
            first = next(iter(task), None)
        elif len(task) == 0:
            first = None
        else:
            first = _ReadableItems(task, where)[0]
        if first is None:
            raise ValueError(f"{where} is empty: it has no examples.")
        _check_pair(first, where, "an item")
        return as_numpy(first[0], where, "inputs")[None]
    if not (isinstance(task, Sequence) and not isinstance(task, str) and len(task) == 2):
        raise TypeError(
            f"{where} is not a task: expected an (inputs, labels) pair, a torch Dataset or "
            f"a DataLoader; got {describe(task)}."
        )
    _example_shape(task[0], where)
    return as_numpy(task[0], where, "inputs")[:1]


def _check_pair(item, where, what):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{where}: its data must yield (x, y) pairs; got {what} that is {describe(item)}.")


def encode_labels(labels, where):
    """``(classes, codes)`` for any hashable labels; codes index into ``classes``.

    Classes are sorted where the labels can be sorted, else in order of first appearance.
    """
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError:
        # Labels that cannot be sorted (mixed types, enums, ...): classes in order of appearance.
        try:
            index = {}
            codes = np.array([index.setdefault(label, len(index)) for label in labels], dtype=np.intp)
        except TypeError as exc:
            raise ValueError(f"{where}: labels must be hashable class labels: {exc}") from exc
        classes = np.empty(len(index), dtype=object)
        for code, label in enumerate(index):
            classes[code] = label
        return classes, codes
    return classes, codes.reshape(-1)


def __getattr__(name):
    """The task-library names that this module held before they moved to ``task_library``.

    ``from sklearn_task2vec.tasks import hierarchy_tasks`` keeps working, and so do pickles of a
    ``TaskLibrary`` made then (they name this module). The import waits until a name is asked
    for, as ``task_library`` imports this module.
    """
    # Only the moved names import task_library: the import system itself asks modules for
    # attributes such as ``__path__`` while this package is still being imported.
    if name not in _MOVED_TO_TASK_LIBRARY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import task_library

    return getattr(task_library, name)


_MOVED_TO_TASK_LIBRARY = (
    "TaskLibrary",
    "RelabelledSubset",
    "hierarchy_tasks",
    "one_vs_rest_tasks",
    "attribute_tasks",
    "unit_square_tasks",
    "taxonomic_distance",
)


# temporary alias, removed when zoo moves to is_bare_pair
_is_bare_pair = is_bare_pair
