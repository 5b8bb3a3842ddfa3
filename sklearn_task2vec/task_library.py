"""Task libraries: many tasks cut out of one labelled dataset, as the paper builds them (sec. 4).

* :func:`hierarchy_tasks`: one task per internal node of a taxonomy of the classes, and
  :func:`taxonomic_distance` between its nodes;
* :func:`one_vs_rest_tasks`: one binary task per class;
* :func:`attribute_tasks`: one binary task per attribute;
* :func:`unit_square_tasks`: the toy family of the paper's supplementary material.

Each returns a :class:`TaskLibrary`, a list of tasks (see :mod:`sklearn_task2vec.tasks`) that
also carries their names, ready for ``FisherTaskEmbedder().fit_transform(library)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Integral

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions, validate_params
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from ._taxonomy import Taxonomy
from ._utils import StrictInterval, python_scalar
from .tasks import as_numpy, check_labels, encode_labels

__all__ = [
    "RelabelledSubset",
    "TaskLibrary",
    "attribute_tasks",
    "hierarchy_tasks",
    "one_vs_rest_tasks",
    "taxonomic_distance",
    "unit_square_tasks",
]

# Parameter constraints shared by several functions.
_BETWEEN = [StrOptions({"nodes", "leaves"})]
# The examples a task is cut from: arrays, tensors or a map-style Dataset. A DataLoader passes
# as array-like and an IterableDataset as a Dataset: _check_builder_inputs tells them what to
# pass instead.
_INPUTS = ["array-like", Dataset]
# A cap on a task's examples: two at least, as a task has two classes.
_MAX_EXAMPLES = [StrictInterval(Integral, 2, None, closed="left"), None]


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
    >>> from sklearn_task2vec.task_library import TaskLibrary
    >>> task = (np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    >>> library = TaskLibrary([task, task], names=["first", "second"])
    >>> library
    TaskLibrary(2 tasks: 'first', 'second')
    >>> library[1:].names
    ['second']
    """

    def __init__(self, tasks, names, info=None, *, hierarchy=None):
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
                super().__getitem__(index), self.names[index], self.info[index], hierarchy=self.hierarchy
            )
        return super().__getitem__(index)

    def __repr__(self):
        shown = ", ".join(repr(name) for name in self.names[:5])
        more = f", ... ({len(self) - 5} more)" if len(self) > 5 else ""
        return f"TaskLibrary({len(self)} tasks: {shown}{more})"

    @validate_params({"between": _BETWEEN}, prefer_skip_nested_validation=True)
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
        taxonomy = Taxonomy(self.hierarchy, "TaskLibrary.taxonomic_distances")
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
        return self.dataset[self.indices[index]][0], python_scalar(self.labels[index])

    def __getitems__(self, indices):
        # DataLoader fetches whole batches through __getitems__ when a dataset has it, as Subset
        # does: keep the dataset's own batched fetch, and swap the labels.
        items = super().__getitems__(indices)
        return [(item[0], python_scalar(self.labels[index])) for item, index in zip(items, indices)]


def _label_array(values):
    """``values`` as a 1-D array, of dtype object when numpy would turn mixed types into strings."""
    array = np.array(values)
    if array.ndim != 1 or array.tolist() != list(values):
        array = np.empty(len(values), dtype=object)
        for position, value in enumerate(values):
            array[position] = value
    return array


@validate_params(
    {
        "hierarchy": "no_validation",  # Taxonomy names what is wrong with the tree
        "node_a": [Hashable],
        "node_b": [Hashable],
        "between": _BETWEEN,
    },
    prefer_skip_nested_validation=True,
)
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
    >>> from sklearn_task2vec.task_library import taxonomic_distance
    >>> hierarchy = {"all": ["tops", "footwear"], "tops": [0, 2], "footwear": [5, 7, 9]}
    >>> taxonomic_distance(hierarchy, "tops", "footwear")
    2.0
    >>> taxonomic_distance(hierarchy, "tops", "footwear", between="leaves")
    4.0
    >>> taxonomic_distance(hierarchy, 0, 2)
    2.0
    """
    taxonomy = Taxonomy(hierarchy, "taxonomic_distance")
    for node in (node_a, node_b):
        taxonomy.check_node(python_scalar(node), "taxonomic_distance")
    return taxonomy.distance(python_scalar(node_a), python_scalar(node_b), between)


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
    if not isinstance(inputs, torch.Tensor):
        inputs = as_numpy(inputs, where, "inputs")
    if inputs.ndim < 2:
        raise ValueError(
            f"{where}: inputs must have one row per example (2-D features or N x C x H x W images), "
            f"got shape {tuple(inputs.shape)}."
        )
    return inputs, inputs.shape[0]


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


@validate_params(
    {
        "inputs": _INPUTS,
        "labels": ["array-like"],
        "hierarchy": "no_validation",  # Taxonomy names what is wrong with the tree
        "label_by": [StrOptions({"leaf", "child"})],
        "min_examples": [StrictInterval(Integral, 1, None, closed="left")],
        "max_examples": _MAX_EXAMPLES,
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
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
    >>> from sklearn_task2vec.task_library import hierarchy_tasks
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
    taxonomy = Taxonomy(hierarchy, where)
    inputs, n_examples = _check_builder_inputs(inputs, where)
    labels = check_labels(labels, where, n_examples)
    rng = check_random_state(random_state)
    if max_examples is not None and min_examples > max_examples:
        raise ValueError(
            f"{where}: min_examples={min_examples} is above max_examples={max_examples}: no task could be kept."
        )
    classes, codes = encode_labels(labels, where)
    class_index = {python_scalar(label): code for code, label in enumerate(classes)}
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


@validate_params(
    {
        "inputs": _INPUTS,
        "labels": ["array-like"],
        "classes": ["array-like", None],
        "class_names": ["array-like", None],
        "max_examples": _MAX_EXAMPLES,
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def one_vs_rest_tasks(
    inputs, labels, *, classes=None, class_names=None, max_examples=None, random_state=None
):
    """One binary task per class: tell the examples of that class from all the others.

    Parameters
    ----------
    inputs : array-like of shape (n_examples, ...), torch.Tensor or torch.utils.data.Dataset
        The examples, as in :func:`hierarchy_tasks`.
    labels : array-like of shape (n_examples,)
        The class label of each example; two classes at least.
    classes : sequence of labels or None, default=None
        The classes that get a task, in this order. ``None``: every class, sorted.
    class_names : sequence of str or None, default=None
        The dataset's names of its integer labels, ``class_names[label]`` (e.g. the
        ``target_names`` of :func:`~sklearn_task2vec.datasets.load_fashion_mnist`), to name
        the tasks. ``None``: the tasks are named by their labels.
    max_examples : int or None, default=None
        Cap on each task's examples, stratified between the class and the rest (see
        :func:`hierarchy_tasks`). ``None``: every task has every example.
    random_state : int, RandomState instance or None, default=None
        Seeds the subsets drawn under ``max_examples``.

    Returns
    -------
    TaskLibrary
        One task per class, named by the class (by its name, with ``class_names``); its labels
        are 1 for the class and 0 for the rest. Each ``info`` dict holds ``"positive"``, the
        class label.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec.task_library import one_vs_rest_tasks
    >>> library = one_vs_rest_tasks(np.zeros((4, 2)), np.array(["cat", "dog", "cat", "eel"]))
    >>> library.names
    ['cat', 'dog', 'eel']
    >>> library[0][1]
    array([1, 0, 1, 0])
    >>> one_vs_rest_tasks(np.zeros((3, 2)), [0, 1, 0], class_names=["cat", "dog"]).names
    ['cat', 'dog']
    """
    where = "one_vs_rest_tasks"
    inputs, n_examples = _check_builder_inputs(inputs, where)
    labels = check_labels(labels, where, n_examples)
    rng = check_random_state(random_state)
    all_classes, codes = encode_labels(labels, where)
    if len(all_classes) < 2:
        raise ValueError(f"{where}: labels have a single class; one-vs-rest tasks need two at least.")
    class_index = {python_scalar(label): code for code, label in enumerate(all_classes)}
    chosen = list(class_index) if classes is None else [python_scalar(label) for label in classes]
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
    names = chosen if class_names is None else _class_names(class_names, chosen, where)
    return TaskLibrary(tasks, names, [{"positive": label} for label in chosen])


def _class_names(class_names, labels, where):
    """``class_names[label]`` for each label, refused where a label is no position of the list."""
    class_names = [str(name) for name in np.asarray(class_names).ravel().tolist()]
    unnamed = [
        label for label in labels if not (isinstance(label, Integral) and 0 <= label < len(class_names))
    ]
    if unnamed:
        raise ValueError(
            f"{where}: class_names names the labels 0 .. {len(class_names) - 1} by position, but labels "
            f"{_listed(unnamed)} are not among them."
        )
    return [class_names[label] for label in labels]


@validate_params(
    {
        "inputs": _INPUTS,
        "attributes": ["array-like"],
        "names": ["array-like", None],
        "max_examples": _MAX_EXAMPLES,
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def attribute_tasks(inputs, attributes, *, names=None, max_examples=None, random_state=None):
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
    >>> from sklearn_task2vec.task_library import attribute_tasks
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
    names = list(range(values.shape[1])) if names is None else [python_scalar(name) for name in names]
    if len(names) != values.shape[1]:
        raise ValueError(f"{where}: {len(names)} names for {values.shape[1]} attributes.")
    rng = check_random_state(random_state)
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


@validate_params(
    {
        "n_tasks": [StrictInterval(Integral, 1, None, closed="left")],
        "grid_size": [StrictInterval(Integral, 2, None, closed="left")],
        "n_clusters_range": "no_validation",  # checked against grid_size below
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
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
    >>> from sklearn_task2vec.task_library import unit_square_tasks
    >>> library = unit_square_tasks(3, grid_size=8, random_state=0)
    >>> points, labels = library[0]
    >>> points.shape, sorted(set(labels.tolist()))
    ((64, 2), [0, 1])
    >>> all(3 <= facts["n_clusters"] <= 16 for facts in library.info)
    True
    """
    where = "unit_square_tasks"
    if not (
        isinstance(n_clusters_range, Sequence)
        and len(n_clusters_range) == 2
        and all(isinstance(k, Integral) for k in n_clusters_range)
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
