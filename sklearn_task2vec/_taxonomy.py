"""The taxonomy behind a hierarchy of tasks: a validated tree of class labels and its distances.

A hierarchy is a dict mapping each parent to the list of its children; the children that are
not parents are the leaves, the class labels. :class:`Taxonomy` checks that it is a tree (or a
forest) and measures the taxonomic distance between its nodes, for
:func:`~sklearn_task2vec.task_library.hierarchy_tasks` and
:func:`~sklearn_task2vec.task_library.taxonomic_distance`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping

from ._utils import python_scalar
from .tasks import describe


class Taxonomy:
    """A validated hierarchy: each node's children, parent, depth and path, and the leaves under it.

    Internal nodes are the keys of the hierarchy; leaves are the children that are not keys.

    Parameters
    ----------
    hierarchy : mapping
        Parent -> iterable of its children, which are parents again or leaves (class labels).
    where : str
        What to name in error messages (the public function that was called).
    """

    def __init__(self, hierarchy, where):
        if not isinstance(hierarchy, Mapping):
            raise TypeError(
                f"{where}: hierarchy must be a dict mapping each parent to a list of its children, "
                f"got {describe(hierarchy)}."
            )
        self.children = {}
        self.parent = {}
        for node, children in hierarchy.items():
            node = python_scalar(node)
            if isinstance(children, (str, bytes)) or not isinstance(children, Iterable):
                raise TypeError(
                    f"{where}: the children of {node!r} must be a list of child names or class "
                    f"labels, got {describe(children)}."
                )
            children = [python_scalar(child) for child in children]
            if not children:
                raise ValueError(f"{where}: {node!r} has no children; a parent needs at least one.")
            for child in children:
                if not isinstance(child, Hashable):
                    raise TypeError(
                        f"{where}: the children of {node!r} must be hashable names or class labels, "
                        f"got {describe(child)}."
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
        """Refuse ``node`` unless it is a node or a leaf of the hierarchy."""
        if node not in self.depth:
            raise ValueError(f"{where}: {node!r} is not a node or a leaf of the hierarchy.")

    def distance(self, node_a, node_b, between):
        """Edges between two nodes (``"nodes"``), or between their nearest leaves (``"leaves"``).

        ``inf`` between nodes of different trees of a forest.
        """
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
