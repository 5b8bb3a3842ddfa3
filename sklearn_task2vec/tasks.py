"""What a task is: coercion and validation of task inputs.

A task is a labelled dataset, given as one of

* an ``(inputs, labels)`` pair of numpy arrays or torch tensors, inputs either 2-D features
  ``(n, n_features)`` or images ``(n, channels, height, width)``, labels 1-D;
* a :class:`torch.utils.data.Dataset` whose items are ``(x, y)`` pairs;
* a :class:`torch.utils.data.DataLoader` yielding ``(inputs, labels)`` batches.

Labels may be any hashable class labels. Every problem is reported as a ``ValueError`` or
``TypeError`` that names the task by its index in the sequence.

The task builders at the end of the module cut whole libraries of tasks out of one labelled
dataset, as the paper does (sec. 4): one task per internal node of a taxonomy
(:func:`hierarchy_tasks`), one binary task per class (:func:`one_vs_rest_tasks`) or per
attribute (:func:`attribute_tasks`), and the toy family of the supplementary material
(:func:`unit_square_tasks`). Each returns a :class:`TaskLibrary`, a list of tasks that also
carries their names.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state, check_scalar
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset


def is_task_sequence(X):
    """Whether ``X`` is a sequence of tasks rather than one numeric array of examples.

    A list or tuple is a task sequence when an element is a Dataset, a DataLoader, or an
    ``(inputs, labels)`` pair whose inputs are arrays; a row of numbers is not.
    """
    if isinstance(X, (Dataset, DataLoader)) or _is_bare_pair(X):
        raise TypeError(
            f"X is one task ({_describe(X)}), not a sequence of tasks: pass a list of tasks, "
            f"e.g. [task], or fit(inputs, labels) for a single array task."
        )
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    return any(_looks_like_task(task) for task in X)


def _is_bare_pair(X):
    """An ``(inputs, labels)`` pair given where a sequence of tasks or an array was expected."""
    if not (isinstance(X, tuple) and len(X) == 2):
        return False
    try:
        inputs_shape, labels_shape = np.shape(X[0]), np.shape(X[1])
    except ValueError:  # ragged: not a pair of arrays
        return False
    return len(inputs_shape) >= 2 and len(labels_shape) == 1 and inputs_shape[0] == labels_shape[0]


def _looks_like_task(task):
    if isinstance(task, (Dataset, DataLoader)):
        return True
    if not (isinstance(task, (tuple, list)) and len(task) == 2 and not isinstance(task[0], str)):
        return False
    try:
        return np.ndim(task[0]) >= 1
    except ValueError:  # ragged nested sequences: inputs of a task, refused with its index later
        return True


def _numpy(values, where, what):
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{where}: {what} cannot be read as an array (ragged rows?): {exc}") from exc


def _describe(value):
    """``value`` in words: ``'a tuple of 3 items'``, ``'an object of type int'``."""
    name = type(value).__name__
    if isinstance(value, (tuple, list)):
        return f"a {name} of {len(value)} items"
    return f"an object of type {name}"


def _example_shape(inputs, where):
    """The shape of one example of ``inputs`` (without the batch axis), refusing scalars and ragged rows."""
    if isinstance(inputs, str):
        raise ValueError(f"{where}: inputs must be an array of examples, got a string.")
    shape = tuple(_numpy(inputs, where, "inputs").shape)
    if len(shape) == 0:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W "
            f"images), got a scalar of type {type(inputs).__name__}."
        )
    return shape[1:]


def _check_labels(labels, where, n_examples=None):
    labels = _numpy(labels, where, "labels")
    if labels.ndim != 1:
        raise ValueError(
            f"{where}: labels must be 1-D, one class label per example; got shape {labels.shape}."
        )
    if n_examples is not None and labels.shape[0] != n_examples:
        raise ValueError(f"{where}: inputs have {n_examples} examples but labels have {labels.shape[0]}.")
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
        array = _numpy(inputs, where, "inputs")
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

    def batches(self, batch_size, rng=None):
        """``(inputs, labels)`` batches, in a fixed order, or in a random one drawn from ``rng``."""
        if rng is None:
            for start in range(0, len(self), batch_size):
                yield self.inputs[start : start + batch_size], self.labels[start : start + batch_size]
            return
        order = rng.permutation(len(self))
        for start in range(0, len(self), batch_size):
            indices = order[start : start + batch_size]
            yield self.inputs[torch.from_numpy(indices)], self.labels[indices]


class LoaderTask:
    """A task streamed from a DataLoader, checked batch by batch."""

    def __init__(self, loader, where, dtype, max_samples):
        self.loader = loader
        self.where = where
        self.dtype = dtype
        self.max_samples = max_samples

    def batches(self, batch_size=None, rng=None):
        """The loader's batches, checked, in the loader's own order (``batch_size`` and ``rng``
        are the loader's business)."""
        seen = 0
        for batch in _read_batches(self.loader, self.where):
            where = f"{self.where} (batch from example {seen})"
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise TypeError(
                    f"{where}: its data must yield (x, y) pairs; got a batch that is {_describe(batch)}."
                )
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


def _read_batches(loader, where):
    """Iterate ``loader``, naming the task (and where it was) when reading or collating fails."""
    iterator = iter(loader)
    seen = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as exc:
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
            f"DataLoader; got {_describe(task)}."
        )
    inputs, labels = task
    _example_shape(inputs, where)
    if len(inputs) == 0:
        raise ValueError(f"{where} is empty: it has no examples.")
    labels = _check_labels(labels, where, len(inputs))
    inputs = check_inputs(inputs, where, dtype)
    if max_samples is not None and len(labels) > max_samples:
        keep = np.sort(rng.choice(len(labels), max_samples, replace=False))
        inputs, labels = inputs[torch.from_numpy(keep)], labels[keep]
    return ArrayTask(inputs, labels, where)


def example_shape(task, index):
    """The shape of one example of a task, without the batch axis (to choose the "auto" probe)."""
    where = f"task {index}"
    if isinstance(task, DataLoader):
        first = next(iter(_read_batches(task, where)), None)
        if first is None:
            raise ValueError(f"{where} is empty: it has no examples.")
        _check_pair(first, where, "a batch")
        return _example_shape(first[0], where)
    if isinstance(task, Dataset):
        if isinstance(task, IterableDataset):
            first = next(iter(task), None)
        elif len(task) == 0:
            first = None
        else:
            first = task[0]
        if first is None:
            raise ValueError(f"{where} is empty: it has no examples.")
        _check_pair(first, where, "an item")
        return tuple(np.shape(first[0]))
    if not (isinstance(task, Sequence) and not isinstance(task, str) and len(task) == 2):
        raise TypeError(
            f"{where} is not a task: expected an (inputs, labels) pair, a torch Dataset or "
            f"a DataLoader; got {_describe(task)}."
        )
    return _example_shape(task[0], where)


def _check_pair(item, where, what):
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"{where}: its data must yield (x, y) pairs; got {what} that is {_describe(item)}.")


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


# ======================================================================================
# Task builders: libraries of tasks cut out of one labelled dataset
# ======================================================================================


class TaskLibrary(list):
    """A list of tasks, with a name and a few facts for each, as returned by the task builders.

    It is a ``list`` of ``(inputs, labels)`` pairs (or of torch ``Subset`` datasets when the
    tasks were cut from a Dataset), so it goes straight to
    ``FisherTaskEmbedder().fit_transform(library)``: row ``i`` of the result embeds
    ``library[i]``, named ``library.names[i]``. A slice is a :class:`TaskLibrary` again.
    Changing the list in place (``append``, ``del``, ...) does not update ``names`` and
    ``info``: build a new library instead.

    Parameters
    ----------
    tasks : iterable of tasks
        The tasks, in order.
    names : iterable of hashable
        One name per task (a node of the hierarchy, a class, an attribute, ...).
    info : iterable of dict or None, default=None
        Facts about each task, which depend on the builder (see each builder's Returns).
        ``None``: an empty dict per task.
    hierarchy : dict or None, default=None
        The hierarchy the tasks were built from, for :meth:`taxonomic_distances`; each
        task's ``info`` then holds its ``"node"``.

    Attributes
    ----------
    tasks : list
        The tasks as a plain list.
    names : list
        The name of each task.
    info : list of dict
        Facts about each task.
    hierarchy : dict or None
        The hierarchy the tasks were built from, if any.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.tasks import TaskLibrary
    >>> task = (np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    >>> library = TaskLibrary([task, task], names=["first", "second"])
    >>> library
    TaskLibrary(2 tasks: 'first', 'second')
    >>> library[1:].names
    ['second']
    """

    def __init__(self, tasks, names, info=None, hierarchy=None):
        super().__init__(tasks)
        self.names = list(names)
        self.info = [{} for _ in self] if info is None else [dict(facts) for facts in info]
        self.hierarchy = hierarchy
        if not (len(self.names) == len(self.info) == len(self)):
            raise ValueError(
                f"TaskLibrary: {len(self)} tasks, {len(self.names)} names and {len(self.info)} info "
                f"dicts; give one name and one info dict per task."
            )

    @property
    def tasks(self):
        """The tasks as a plain list."""
        return list(self)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return TaskLibrary(
                super().__getitem__(index), self.names[index], self.info[index], self.hierarchy
            )
        return super().__getitem__(index)

    def __repr__(self):
        shown = ", ".join(repr(name) for name in self.names[:5])
        more = f", ... ({len(self) - 5} more)" if len(self) > 5 else ""
        return f"TaskLibrary({len(self)} tasks: {shown}{more})"

    def taxonomic_distances(self, between="nodes"):
        """Taxonomic distance between every pair of tasks, for plots against task distances.

        Parameters
        ----------
        between : {"nodes", "leaves"}, default="nodes"
            ``"nodes"``: edges on the path between the two tasks' nodes in the hierarchy.
            ``"leaves"``: the paper's ``D_tax`` (sec. 2), the fewest edges between a class
            (leaf) of one task and a class of the other; 0 when one task's node is under the
            other's, as they share classes. See :func:`taxonomic_distance`.

        Returns
        -------
        ndarray of shape (n_tasks, n_tasks), float64
            Symmetric, zero on the diagonal; ``inf`` between tasks of different trees of a
            forest.
        """
        if self.hierarchy is None:
            raise ValueError(
                "TaskLibrary.taxonomic_distances: this library was not built from a hierarchy "
                "(see hierarchy_tasks)."
            )
        taxonomy = _Taxonomy(self.hierarchy, "TaskLibrary.taxonomic_distances")
        _check_between(between, "TaskLibrary.taxonomic_distances")
        nodes = [facts["node"] for facts in self.info]
        distances = np.zeros((len(nodes), len(nodes)))
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                distances[i, j] = distances[j, i] = taxonomy.distance(nodes[i], nodes[j], between)
        return distances


class RelabelledSubset(Subset):
    """A :class:`~torch.utils.data.Subset` whose items carry given labels instead of the dataset's.

    Item ``i`` is ``(dataset[indices[i]][0], labels[i])``: the task builders cut tasks out of a
    Dataset this way, so a task's labels are the ones its builder chose (a child of a
    hierarchy's node, a binary label, ...).

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style dataset whose items are ``(x, y)`` pairs; ``y`` is ignored.
    indices : sequence of int
        The examples of ``dataset`` in the subset.
    labels : array-like of shape (len(indices),)
        The label of each example of the subset.
    """

    def __init__(self, dataset, indices, labels):
        super().__init__(dataset, indices)
        self.labels = np.asarray(labels)
        if len(self.labels) != len(self.indices):
            raise ValueError(f"RelabelledSubset: {len(self.indices)} indices but {len(self.labels)} labels.")

    def __getitem__(self, index):
        if isinstance(index, list):
            return self.__getitems__(index)
        return self.dataset[self.indices[index]][0], _python_scalar(self.labels[index])

    def __getitems__(self, indices):
        # DataLoader fetches whole batches through __getitems__ when a dataset has it, as Subset
        # does: keep the dataset's own batched fetch, and swap the labels.
        items = super().__getitems__(indices)
        return [(item[0], _python_scalar(self.labels[index])) for item, index in zip(items, indices)]


def _python_scalar(value):
    """A numpy scalar as the Python object it holds (so that labels print and collate plainly)."""
    return value.item() if isinstance(value, np.generic) else value


def _label_array(values):
    """``values`` as a 1-D array, of dtype object when numpy would turn mixed types into strings."""
    array = np.array(values)
    if array.ndim != 1 or array.tolist() != list(values):
        array = np.empty(len(values), dtype=object)
        for position, value in enumerate(values):
            array[position] = value
    return array


class _Taxonomy:
    """A validated hierarchy: each node's children, parent, depth and path, and the leaves under it.

    Internal nodes are the keys of the hierarchy; leaves are the children that are not keys.
    """

    def __init__(self, hierarchy, where):
        if not isinstance(hierarchy, Mapping):
            raise TypeError(
                f"{where}: hierarchy must be a dict mapping each parent to a list of its children, "
                f"got {_describe(hierarchy)}."
            )
        self.children = {}
        self.parent = {}
        for node, children in hierarchy.items():
            node = _python_scalar(node)
            if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
                raise TypeError(
                    f"{where}: the children of {node!r} must be a list of child names or class "
                    f"labels, got {_describe(children)}."
                )
            children = [_python_scalar(child) for child in children]
            if not children:
                raise ValueError(f"{where}: {node!r} has no children; a parent needs at least one.")
            for child in children:
                if not isinstance(child, Hashable):
                    raise TypeError(
                        f"{where}: the children of {node!r} must be hashable names or class labels, "
                        f"got {_describe(child)}."
                    )
                if child in self.parent:
                    raise ValueError(
                        f"{where}: {child!r} is a child of both {self.parent[child]!r} and {node!r}; "
                        f"a hierarchy is a tree, where each node and leaf has one parent."
                    )
                self.parent[child] = node
            self.children[node] = children
        roots = [node for node in self.children if node not in self.parent]
        self.depth, self.path, self.preorder = {}, {}, []
        stack = [(root, (root,)) for root in reversed(roots)]
        while stack:
            node, path = stack.pop()
            self.preorder.append(node)
            self.depth[node], self.path[node] = len(path) - 1, path
            stack.extend((child, path + (child,)) for child in reversed(self.children.get(node, ())))
        unreached = [node for node in self.children if node not in self.depth]
        if unreached:
            raise ValueError(f"{where}: the hierarchy has a cycle: {self._cycle_through(unreached[0])}.")
        self.leaves_under, self.nearest_leaf_depth = {}, {}
        for node in reversed(self.preorder):  # children before their parents
            if node in self.children:
                self.leaves_under[node] = tuple(
                    leaf for child in self.children[node] for leaf in self.leaves_under[child]
                )
                self.nearest_leaf_depth[node] = min(
                    self.nearest_leaf_depth[child] for child in self.children[node]
                )
            else:
                self.leaves_under[node] = (node,)
                self.nearest_leaf_depth[node] = self.depth[node]
        self.internal_nodes = [node for node in self.preorder if node in self.children]
        self.leaves = [node for node in self.preorder if node not in self.children]

    def _cycle_through(self, node):
        """``'a' -> 'b' -> 'a'``: the cycle of parents above ``node`` (a node no root reaches)."""
        ancestors = [node]
        while self.parent[ancestors[-1]] not in ancestors:
            ancestors.append(self.parent[ancestors[-1]])
        cycle = ancestors[ancestors.index(self.parent[ancestors[-1]]) :][::-1]
        parents = list(self.children)
        start = min(range(len(cycle)), key=lambda position: parents.index(cycle[position]))
        cycle = cycle[start:] + cycle[:start]  # from its node listed first in the hierarchy
        return " -> ".join(repr(name) for name in cycle + cycle[:1])

    def check_node(self, node, where):
        if node not in self.depth:
            raise ValueError(f"{where}: {node!r} is not a node or a leaf of the hierarchy.")

    def distance(self, node_a, node_b, between):
        """Edges between two nodes (``"nodes"``), or between their nearest leaves (``"leaves"``)."""
        path_a, path_b = self.path[node_a], self.path[node_b]
        if path_a[0] != path_b[0]:
            return math.inf
        shared = min(len(path_a), len(path_b))  # nodes the two paths share, from the root
        shared = next((depth for depth in range(shared) if path_a[depth] != path_b[depth]), shared)
        ancestor_depth = shared - 1  # of the lowest common ancestor
        if between == "nodes":
            return float(len(path_a) + len(path_b) - 2 * shared)
        if shared in (len(path_a), len(path_b)):
            return 0.0  # one node is under the other: they share their classes
        return float(self.nearest_leaf_depth[node_a] + self.nearest_leaf_depth[node_b] - 2 * ancestor_depth)


def taxonomic_distance(hierarchy, node_a, node_b, *, between="nodes"):
    """Taxonomic distance between two nodes (or leaves) of a hierarchy.

    Parameters
    ----------
    hierarchy : dict
        Parent -> list of children, as in :func:`hierarchy_tasks`.
    node_a, node_b : hashable
        Two nodes or leaves of ``hierarchy``.
    between : {"nodes", "leaves"}, default="nodes"
        ``"nodes"``: the number of edges on the path between the two nodes, up to their lowest
        common ancestor and down again. ``"leaves"``: the paper's ``D_tax`` (sec. 2), the
        smallest such distance between a leaf under ``node_a`` and a leaf under ``node_b``
        (the tasks' classes); 0 when one node is under the other, as they share classes. For
        disjoint nodes whose leaves are all one level below them (the paper's order tasks,
        whose leaves are species), ``"leaves"`` is ``"nodes"`` plus 2.

    Returns
    -------
    float
        The distance; ``inf`` when the nodes are in different trees of a forest.

    Examples
    --------
    >>> from sklearn_task2vec.tasks import taxonomic_distance
    >>> hierarchy = {"all": ["tops", "footwear"], "tops": [0, 2], "footwear": [5, 7, 9]}
    >>> taxonomic_distance(hierarchy, "tops", "footwear")
    2.0
    >>> taxonomic_distance(hierarchy, "tops", "footwear", between="leaves")
    4.0
    >>> taxonomic_distance(hierarchy, 0, 2)
    2.0
    """
    taxonomy = _Taxonomy(hierarchy, "taxonomic_distance")
    _check_between(between, "taxonomic_distance")
    for node in (node_a, node_b):
        taxonomy.check_node(_python_scalar(node), "taxonomic_distance")
    return taxonomy.distance(_python_scalar(node_a), _python_scalar(node_b), between)


def _check_between(between, where):
    if between not in ("nodes", "leaves"):
        raise ValueError(f"{where}: between must be 'nodes' or 'leaves', got {between!r}.")


def _check_builder_inputs(inputs, where):
    """``(inputs, n_examples)``: arrays as numpy (tensors kept), map-style Datasets as they are."""
    if isinstance(inputs, DataLoader):
        raise TypeError(
            f"{where}: inputs is a DataLoader; pass its dataset (loader.dataset), from which the "
            f"tasks are cut as Subsets."
        )
    if isinstance(inputs, IterableDataset):
        raise TypeError(
            f"{where}: inputs is an IterableDataset, which cannot be indexed; pass a map-style "
            f"Dataset or an array."
        )
    if isinstance(inputs, Dataset):
        try:
            return inputs, len(inputs)
        except TypeError as exc:
            raise TypeError(f"{where}: inputs is a Dataset without a length ({exc}).") from exc
    if isinstance(inputs, str):
        raise TypeError(f"{where}: inputs must be an array of examples or a Dataset, got a string.")
    if not isinstance(inputs, torch.Tensor):
        inputs = _numpy(inputs, where, "inputs")
    if inputs.ndim < 2:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W images), "
            f"got shape {tuple(inputs.shape)}."
        )
    return inputs, inputs.shape[0]


def _check_cap(max_examples, random_state):
    if max_examples is not None:
        check_scalar(max_examples, "max_examples", numbers.Integral, min_val=2)
    return check_random_state(random_state)


def _take(inputs, indices, task_labels):
    """The task made of the examples ``indices`` of ``inputs``, labelled ``task_labels``."""
    if isinstance(inputs, Dataset):
        return RelabelledSubset(inputs, indices.tolist(), task_labels)
    if isinstance(inputs, torch.Tensor):
        return inputs[torch.from_numpy(indices)], task_labels
    return inputs[indices], task_labels


def _stratified_subsample(class_codes, n_keep, rng, where):
    """Sorted positions of ``n_keep`` examples drawn at random, each class in proportion and kept.

    Every class first gets one example; the rest of ``n_keep`` is shared in proportion to the
    remaining class sizes, rounded by largest remainder, so the counts sum to ``n_keep`` exactly.
    """
    counts = np.bincount(class_codes)
    if n_keep < len(counts):
        raise ValueError(
            f"{where}: max_examples={n_keep} is fewer than its {len(counts)} classes; raise "
            f"max_examples to keep one example of each class at least."
        )
    share = (counts - 1) * (n_keep - len(counts)) / (counts.sum() - len(counts))
    quota = 1 + np.floor(share).astype(int)
    by_remainder = np.argsort(-(share - np.floor(share)), kind="stable")
    quota[by_remainder[: n_keep - quota.sum()]] += 1
    keep = [
        rng.choice(np.flatnonzero(class_codes == code), quota[code], replace=False)
        for code in range(len(counts))
    ]
    return np.sort(np.concatenate(keep))


def _capped(indices, class_codes, max_examples, rng, where):
    """``indices`` (and the positions kept) after capping them at ``max_examples`` by class."""
    if max_examples is None or len(indices) <= max_examples:
        return np.arange(len(indices))
    return _stratified_subsample(class_codes, max_examples, rng, where)


def hierarchy_tasks(
    inputs, labels, hierarchy, *, label_by="leaf", min_examples=2, max_examples=None, random_state=None
):
    """One task per internal node of a taxonomy: classify its examples among the classes under it.

    The paper's task libraries (sec. 4 and supplementary): an iNaturalist or CUB task classifies
    the species (leaves) of one taxonomic order or family, and a node with a single species
    gives no task. Here each internal node of ``hierarchy`` with at least two leaves under it
    gives a task made of every example whose label is a leaf under the node.

    Parameters
    ----------
    inputs : array-like of shape (n_examples, ...), torch.Tensor or torch.utils.data.Dataset
        The examples: 2-D features or N x C x H x W images, or a map-style Dataset of
        ``(x, y)`` items (whose ``y`` is ignored for ``labels``), for instance from
        :func:`sklearn_task2vec.datasets.dataset_with_labels`.
    labels : array-like of shape (n_examples,)
        The class label of each example: the leaves of ``hierarchy``. Examples whose label is
        not a leaf of the hierarchy are in no task.
    hierarchy : dict
        Parent name -> list of its children. A child is another parent (a key of the dict) or
        a leaf, i.e. a class label as it appears in ``labels``. It must be a tree (or a forest):
        each node and leaf has one parent and there is no cycle. Example:
        ``{"clothes": ["tops", "bottoms"], "tops": [0, 2, 4, 6], "bottoms": [1]}``.
    label_by : {"leaf", "child"}, default="leaf"
        The labels of a node's task. ``"leaf"`` (the paper's): each example keeps its own class
        label, so the "tops" task above has 4 classes. ``"child"``: each example is labelled by
        the child of the node whose subtree holds its class, so the "clothes" task above has 2
        classes, "tops" and "bottoms"; a node with a single child then gives no task.
    min_examples : int, default=2
        Nodes with fewer examples give no task: they are dropped, not refused, as a real
        taxonomy has many sparse nodes and the paper filtered those out (it kept orders with
        enough samples). The default drops nothing, since a task has two classes at least;
        raise it to keep only tasks large enough to embed well.
    max_examples : int or None, default=None
        Cap on each task's examples: a larger task keeps a random subset of this size, stratified
        so each class keeps its share (and one example at least). ``None``: no cap.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets drawn under ``max_examples``.

    Returns
    -------
    TaskLibrary
        The tasks, in depth-first order of their nodes (a node before its children, children in
        the order given). ``names`` are the nodes; each ``info`` dict holds ``"node"``,
        ``"path"`` (the nodes from the root down to it), ``"depth"`` (0 for a root),
        ``"leaves"`` (the classes under it) and ``"classes"`` (its task's labels: the leaves,
        or its children). :meth:`TaskLibrary.taxonomic_distances` compares the tasks' nodes.
        A task is an ``(inputs, labels)`` pair, or a :class:`RelabelledSubset` when ``inputs``
        is a Dataset.

    Raises
    ------
    ValueError
        When the hierarchy has a cycle, a node or leaf under two parents, a leaf that is no
        example's label, or a parent name that is also a label; when ``inputs`` and ``labels``
        differ in length; or when no node gives a task.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.tasks import hierarchy_tasks
    >>> inputs = np.arange(16.0).reshape(8, 2)
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 4])
    >>> hierarchy = {"all": ["low", "high"], "low": [0, 1], "high": [2, 3, 4]}
    >>> library = hierarchy_tasks(inputs, labels, hierarchy)
    >>> library.names
    ['all', 'low', 'high']
    >>> [facts["depth"] for facts in library.info]
    [0, 1, 1]
    >>> library[2][1]
    array([2, 3, 2, 4])
    >>> hierarchy_tasks(inputs, labels, hierarchy, label_by="child")[0][1].tolist()
    ['low', 'low', 'high', 'high', 'low', 'low', 'high', 'high']
    >>> library.taxonomic_distances()
    array([[0., 1., 1.],
           [1., 0., 2.],
           [1., 2., 0.]])
    """
    where = "hierarchy_tasks"
    taxonomy = _Taxonomy(hierarchy, where)
    inputs, n_examples = _check_builder_inputs(inputs, where)
    labels = _check_labels(labels, where, n_examples)
    if label_by not in ("leaf", "child"):
        raise ValueError(f"{where}: label_by must be 'leaf' or 'child', got {label_by!r}.")
    check_scalar(min_examples, "min_examples", numbers.Integral, min_val=1)
    rng = _check_cap(max_examples, random_state)
    if max_examples is not None and min_examples > max_examples:
        raise ValueError(
            f"{where}: min_examples={min_examples} is above max_examples={max_examples}: no task could be kept."
        )
    classes, codes = encode_labels(labels, where)
    class_index = {_python_scalar(label): code for code, label in enumerate(classes)}
    _check_hierarchy_against_labels(taxonomy, class_index, labels, where)

    tasks, names, info = [], [], []
    for node in taxonomy.internal_nodes:
        children = taxonomy.children[node]
        leaves = taxonomy.leaves_under[node]
        if len(leaves) < 2 or (label_by == "child" and len(children) < 2):
            continue
        # The task's classes as groups of leaves; class_group[code]: the group of a class code, or -1.
        groups = (
            [(leaf,) for leaf in leaves]
            if label_by == "leaf"
            else [taxonomy.leaves_under[child] for child in children]
        )
        class_group = np.full(len(classes), -1)
        for position, group in enumerate(groups):
            class_group[[class_index[leaf] for leaf in group]] = position
        indices = np.flatnonzero(class_group[codes] >= 0)
        if len(indices) < min_examples:
            continue
        task_codes = class_group[codes[indices]]
        kept = _capped(indices, task_codes, max_examples, rng, f"{where}, node {node!r}")
        indices, task_codes = indices[kept], task_codes[kept]
        task_labels = labels[indices] if label_by == "leaf" else _label_array(children)[task_codes]
        tasks.append(_take(inputs, indices, task_labels))
        names.append(node)
        info.append(
            {
                "node": node,
                "path": taxonomy.path[node],
                "depth": taxonomy.depth[node],
                "leaves": leaves,
                "classes": leaves if label_by == "leaf" else tuple(children),
            }
        )
    if not tasks:
        raise ValueError(
            f"{where}: no node of the hierarchy gives a task: a task needs a node with two leaves "
            f"(two children with label_by='child') and at least min_examples={min_examples} examples."
        )
    validated_hierarchy = {node: list(node_children) for node, node_children in taxonomy.children.items()}
    return TaskLibrary(tasks, names, info, hierarchy=validated_hierarchy)


def _check_hierarchy_against_labels(taxonomy, class_index, labels, where):
    """Refuse leaves that no example has (a typo, or ``"3"`` for ``3``) and parents named as labels."""
    clashes = [node for node in taxonomy.internal_nodes if node in class_index]
    if clashes:
        raise ValueError(
            f"{where}: {_listed(clashes)} {'is' if len(clashes) == 1 else 'are'} both a parent in the "
            f"hierarchy and a class label in labels; rename the parent."
        )
    missing = [leaf for leaf in taxonomy.leaves if leaf not in class_index]
    if missing:
        seen = _listed(list(class_index)[:5])
        raise ValueError(
            f"{where}: the hierarchy has leaves that are no example's label: {_listed(missing)}. "
            f"Leaves (the children that are not parents) must be class labels as they appear in "
            f"labels, which are {labels.dtype} values such as {seen}."
        )


def _listed(values, limit=5):
    """``"'a', 'b' and 3 more"``: a few values in words."""
    shown = ", ".join(repr(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def one_vs_rest_tasks(inputs, labels, *, classes=None, max_examples=None, random_state=None):
    """One binary task per class: tell the examples of that class from all the others.

    Parameters
    ----------
    inputs : array-like of shape (n_examples, ...), torch.Tensor or torch.utils.data.Dataset
        The examples, as in :func:`hierarchy_tasks`.
    labels : array-like of shape (n_examples,)
        The class label of each example; two classes at least.
    classes : sequence of labels or None, default=None
        The classes that get a task, in this order. ``None``: every class, sorted.
    max_examples : int or None, default=None
        Cap on each task's examples, stratified between the class and the rest (see
        :func:`hierarchy_tasks`). ``None``: every task has every example.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets drawn under ``max_examples``.

    Returns
    -------
    TaskLibrary
        One task per class, named by the class; its labels are 1 for the class and 0 for the
        rest. Each ``info`` dict holds ``"positive"``, the class.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.tasks import one_vs_rest_tasks
    >>> library = one_vs_rest_tasks(np.zeros((4, 2)), np.array(["cat", "dog", "cat", "eel"]))
    >>> library.names
    ['cat', 'dog', 'eel']
    >>> library[0][1]
    array([1, 0, 1, 0])
    """
    where = "one_vs_rest_tasks"
    inputs, n_examples = _check_builder_inputs(inputs, where)
    labels = _check_labels(labels, where, n_examples)
    rng = _check_cap(max_examples, random_state)
    all_classes, codes = encode_labels(labels, where)
    if len(all_classes) < 2:
        raise ValueError(f"{where}: labels have a single class; one-vs-rest tasks need two at least.")
    class_index = {_python_scalar(label): code for code, label in enumerate(all_classes)}
    chosen = list(class_index) if classes is None else [_python_scalar(label) for label in classes]
    unknown = [label for label in chosen if label not in class_index]
    if unknown:
        raise ValueError(f"{where}: classes {_listed(unknown)} are no example's label.")
    if not chosen:
        raise ValueError(f"{where}: classes is empty: no task to build.")
    tasks = []
    for label in chosen:
        binary = (codes == class_index[label]).astype(np.int64)
        kept = _capped(np.arange(n_examples), binary, max_examples, rng, f"{where}, class {label!r}")
        tasks.append(_take(inputs, kept, binary[kept]))
    return TaskLibrary(tasks, chosen, [{"positive": label} for label in chosen])


def attribute_tasks(inputs, attributes, names=None, *, max_examples=None, random_state=None):
    """One binary task per attribute: tell the examples that have it from those that do not.

    The paper's iMaterialist and DeepFashion tasks (sec. 4): each binary attribute, and each
    value of a binarised categorical attribute, is a task on the same images.

    Parameters
    ----------
    inputs : array-like of shape (n_examples, ...), torch.Tensor or torch.utils.data.Dataset
        The examples, as in :func:`hierarchy_tasks`.
    attributes : array-like of shape (n_examples, n_attributes)
        Whether each example has each attribute: booleans, or 0 and 1. NaN (or None) marks an
        unknown value: that example is left out of that attribute's task. An attribute that is
        the same for every known example defines no task and is dropped.
    names : sequence of hashable or None, default=None
        A name per attribute. ``None``: the columns of a DataFrame, else 0, 1, 2, ...
    max_examples : int or None, default=None
        Cap on each task's examples, stratified (see :func:`hierarchy_tasks`).
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets drawn under ``max_examples``.

    Returns
    -------
    TaskLibrary
        One task per attribute that varies, named by the attribute; its labels are 1 where the
        example has it, 0 where it has not. Each ``info`` dict holds ``"attribute"`` (its name)
        and ``"column"`` (its column in ``attributes``).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.tasks import attribute_tasks
    >>> attributes = np.array([[True, False], [False, False], [True, True]])
    >>> library = attribute_tasks(np.zeros((3, 2)), attributes, names=["red", "striped"])
    >>> library.names
    ['red', 'striped']
    >>> library[1][1]
    array([0, 0, 1])
    """
    where = "attribute_tasks"
    inputs, n_examples = _check_builder_inputs(inputs, where)
    if names is None:
        names = list(attributes.columns) if hasattr(attributes, "columns") else None
    try:
        values = np.asarray(attributes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{where}: attributes must be booleans or 0/1 numbers (NaN if unknown): {exc}"
        ) from exc
    if values.ndim != 2:
        raise ValueError(
            f"{where}: attributes must be 2-D, one column per attribute; got shape {values.shape} "
            f"(a single attribute is attributes.reshape(-1, 1))."
        )
    if values.shape[0] != n_examples:
        raise ValueError(
            f"{where}: inputs have {n_examples} examples but attributes have {values.shape[0]} rows."
        )
    names = list(range(values.shape[1])) if names is None else [_python_scalar(name) for name in names]
    if len(names) != values.shape[1]:
        raise ValueError(f"{where}: {len(names)} names for {values.shape[1]} attributes.")
    rng = _check_cap(max_examples, random_state)
    tasks, kept_names, info = [], [], []
    for column, name in enumerate(names):
        known = np.flatnonzero(~np.isnan(values[:, column]))
        column_values = values[known, column]
        if not np.isin(column_values, (0.0, 1.0)).all():
            bad = column_values[~np.isin(column_values, (0.0, 1.0))][0]
            raise ValueError(
                f"{where}: attribute {name!r} has the value {bad}; attributes are booleans or 0/1 "
                f"(NaN if unknown)."
            )
        if len(np.unique(column_values)) < 2:
            continue
        binary = column_values.astype(np.int64)
        kept = _capped(known, binary, max_examples, rng, f"{where}, attribute {name!r}")
        tasks.append(_take(inputs, known[kept], binary[kept]))
        kept_names.append(name)
        info.append({"attribute": name, "column": column})
    if not tasks:
        raise ValueError(f"{where}: no attribute varies between the examples: no task to build.")
    return TaskLibrary(tasks, kept_names, info)


def unit_square_tasks(n_tasks=64, *, grid_size=32, n_clusters_range=(3, 16), random_state=None):
    """The paper's toy task family: binary tasks on a grid of points, by k-means clusters.

    Supplementary material, "Example toy task embedding" (Fig. 4): "64 binary classification
    tasks by clustering a uniform grid of points in the XY plane into k in [3, 16] clusters
    using k-means and assigning a half of them to one category". Here each task draws ``k``
    uniformly from ``n_clusters_range``, runs k-means on the grid, and labels 1 the points of
    ``k // 2`` clusters drawn at random, 0 the others. All tasks share one domain, the grid,
    and differ only in their labels; more clusters make a more complex boundary.

    Parameters
    ----------
    n_tasks : int, default=64
        Number of tasks.
    grid_size : int, default=32
        Points per side of the uniform grid over the unit square ``[0, 1]^2``: each task has
        ``grid_size ** 2`` examples.
    n_clusters_range : tuple of two int, default=(3, 16)
        Smallest and largest number of clusters ``k``, both included (the paper's 3 and 16).
    random_state : int, RandomState instance or None, default=None
        Seeds ``k``, the k-means initialisations and the clusters labelled 1.

    Returns
    -------
    TaskLibrary
        ``n_tasks`` tasks, each ``(points, labels)``: the grid as a read-only float64 array of
        shape ``(grid_size ** 2, 2)``, shared by all tasks, and 0/1 labels. Each ``info`` dict
        holds ``"n_clusters"`` (k) and ``"positive_clusters"`` (the clusters labelled 1).

    Examples
    --------
    >>> from sklearn_task2vec.tasks import unit_square_tasks
    >>> library = unit_square_tasks(3, grid_size=8, random_state=0)
    >>> points, labels = library[0]
    >>> points.shape, sorted(set(labels.tolist()))
    ((64, 2), [0, 1])
    >>> all(3 <= facts["n_clusters"] <= 16 for facts in library.info)
    True
    """
    where = "unit_square_tasks"
    check_scalar(n_tasks, "n_tasks", numbers.Integral, min_val=1)
    check_scalar(grid_size, "grid_size", numbers.Integral, min_val=2)
    if not (
        isinstance(n_clusters_range, Sequence)
        and len(n_clusters_range) == 2
        and all(isinstance(k, numbers.Integral) for k in n_clusters_range)
        and 2 <= n_clusters_range[0] <= n_clusters_range[1] <= grid_size**2
    ):
        raise ValueError(
            f"{where}: n_clusters_range must be two integers (smallest, largest) with "
            f"2 <= smallest <= largest <= grid_size ** 2 = {grid_size**2}, got {n_clusters_range!r}."
        )
    rng = check_random_state(random_state)
    side = np.linspace(0.0, 1.0, grid_size)
    points = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
    points.flags.writeable = False  # one array shared by every task: guard it against edits
    tasks, names, info = [], [], []
    for index in range(n_tasks):
        n_clusters = int(rng.randint(n_clusters_range[0], n_clusters_range[1] + 1))
        kmeans = KMeans(n_clusters=n_clusters, n_init=1, random_state=rng.randint(2**31 - 1))
        # A grid this small clusters in milliseconds on one thread; OpenMP threads cost far more
        # than they save, the more so on a busy machine.
        with threadpool_limits(limits=1, user_api="openmp"):
            clusters = kmeans.fit_predict(points)
        positive = np.sort(rng.choice(n_clusters, n_clusters // 2, replace=False))
        tasks.append((points, np.isin(clusters, positive).astype(np.int64)))
        names.append(f"task {index} (k={n_clusters})")
        info.append({"n_clusters": n_clusters, "positive_clusters": tuple(positive.tolist())})
    return TaskLibrary(tasks, names, info)
