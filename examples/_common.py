"""
Shared helpers of the slow_* examples
=====================================

Not an example itself: the pieces that the ``slow_*.py`` scripts (the paper's experiments at
laptop scale) share, each in one place:

* :class:`SmallCNN` and :func:`pretrained_probe`: the project's own small probe, a CNN
  pretrained on Fashion-MNIST's ``t10k`` split, which the task libraries never touch;
* :func:`fashion_task_library`: the Fashion-MNIST task library (nodes of a richer hierarchy,
  one-vs-rest tasks and pairs of classes, cut with :mod:`sklearn_task2vec.task_library`), drawn
  from one half of the ``train`` split, and
  :func:`split_pools` to get the two halves (tasks / experts);
* :func:`task_embedder`, :func:`class_set_distance`, :func:`output_dir`, :func:`savefig`.

Nothing here downloads anything; matplotlib is imported only inside :func:`savefig`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist
from sklearn_task2vec.task_library import hierarchy_tasks, taxonomic_distance

EXAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = EXAMPLES_DIR / "output"
PROBE_FILE = "fashion_cnn_probe.pt"

#: Short class names, for plots and tables.
SHORT = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

#: A richer grouping of Fashion-MNIST's ten classes than ``FASHION_MNIST_HIERARCHY``: nine
#: internal nodes with two leaves or more, so nine hierarchy tasks at four depths.
FASHION_TREE = {
    "fashion": ["clothing", "accessories"],
    "clothing": ["upper", "long"],
    "upper": ["warm", "light"],
    "warm": [2, 4],  # pullover, coat
    "light": [0, 6],  # t-shirt, shirt
    "long": [1, 3],  # trouser, dress
    "accessories": ["footwear", 8],  # bag
    "footwear": [5, "closed"],  # sandal
    "closed": [7, 9],  # sneaker, ankle boot
}

#: Pairs of classes that are no node of FASHION_TREE: near (same branch) and far ones.
FASHION_PAIRS = [(0, 2), (2, 6), (4, 6), (0, 3), (3, 4), (5, 7), (5, 9), (1, 8), (8, 9), (0, 8)]


# ----------------------------------------------------------------------------- arguments
def base_parser(description):
    """An ArgumentParser with the options every slow_* script has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where PNGs, probe and caches go ({DEFAULT_OUTPUT})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument(
        "--max-examples", type=int, default=400, help="examples per task of the library (default %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS/OpenMP threads (default 1: the networks and tasks are small, and on a "
        "busy machine one thread is several times faster than two)",
    )
    return parser


def output_dir(args):
    """Create and return ``args.output_dir``; set the thread counts of torch and of BLAS/OpenMP."""
    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return args.output_dir


# ----------------------------------------------------------------------------- the probe
class SmallCNN(nn.Module):
    """28x28 grey images -> 64 features: three conv+BN+ReLU blocks, global pooling, a Linear+ReLU.

    176 filters in all (16 + 32 + 64 conv channels, 64 Linear units): the embedding's length.
    """

    def __init__(self, n_features=64):
        super().__init__()

        def block(n_in, n_out, pool):
            layers = [nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out), nn.ReLU()]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        self.features = nn.Sequential(block(1, 16, True), block(16, 32, True), block(32, 64, False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, n_features)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc(torch.flatten(self.pool(self.features(x)), 1)))


def pretrain_probe(*, n_examples=10000, epochs=2, batch_size=64, learning_rate=2e-3, seed=0, verbose=True):
    """Train :class:`SmallCNN` with a 10-class head on Fashion-MNIST's t10k split (Adam).

    The task libraries come from the train split, so the probe never saw their images.
    Returns the network without its head, in eval mode, and its history: per epoch, the mean
    training loss and the head's accuracy on 1,000 held-out t10k images.
    """
    test = load_fashion_mnist(split="test")
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(test.target))
    n_train = min(n_examples, len(order) - 1000)
    train_idx, val_idx = order[:n_train], order[-1000:]
    X = torch.from_numpy(test.images)
    y = torch.from_numpy(test.target)
    torch.manual_seed(seed)
    network = SmallCNN()
    head = nn.Linear(64, 10)
    model = nn.Sequential(network, head)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    history = []
    for epoch in range(epochs):
        model.train()
        perm = train_idx[rng.permutation(len(train_idx))]
        total = 0.0
        for first in range(0, len(perm), batch_size):
            batch = perm[first : first + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(X[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            accuracy = float((model(X[val_idx]).argmax(1) == y[val_idx]).float().mean())
        history.append((total / len(perm), accuracy))
        if verbose:
            print(
                f"  pretraining epoch {epoch + 1}/{epochs}: loss {total / len(perm):.3f}, "
                f"held-out accuracy {accuracy:.3f} ({time.perf_counter() - start:.0f} s)"
            )
    network.eval()
    return network, history


def pretrained_probe(folder, *, retrain=False, verbose=True, **pretrain_options):
    """The probe saved in ``folder`` (a state_dict), pretrained first if it is missing."""
    path = Path(folder) / PROBE_FILE
    network = SmallCNN()
    if path.exists() and not retrain:
        network.load_state_dict(torch.load(path, weights_only=True))
        if verbose:
            print(f"Loaded the pretrained probe from {path}")
    else:
        if verbose:
            print(f"Pretraining the probe on Fashion-MNIST t10k (saved to {path}) ...")
        network, _ = pretrain_probe(verbose=verbose, **pretrain_options)
        torch.save(network.state_dict(), path)
    network.eval()
    return network


# ----------------------------------------------------------------------------- the tasks
def split_pools(seed=0):
    """Fashion-MNIST's train split cut in two disjoint halves: ``(task pool, expert pool)``.

    Each is ``(images, labels)``. The task library is drawn from the first, the experts'
    training data from the second, so that no expert is tested on images it was trained on.
    """
    train = load_fashion_mnist(split="train")
    order = np.random.RandomState(seed).permutation(len(train.target))
    half = len(order) // 2
    first, second = np.sort(order[:half]), np.sort(order[half:])
    return (train.images[first], train.target[first]), (train.images[second], train.target[second])


def _balanced_one_vs_rest_task(images, labels, positive, max_examples, rng):
    """``positive`` (label 1) against the nine other classes in equal parts (label 0), half and half.

    Not :func:`~sklearn_task2vec.task_library.one_vs_rest_tasks`: its cap keeps the classes'
    proportions, one positive in ten here, and tasks that answering "rest" nearly solves would
    tell the experts apart poorly.
    """
    others = [label for label in range(10) if label != positive]
    quota = {positive: max_examples // 2, **dict.fromkeys(others, max(1, max_examples // 2 // len(others)))}
    draws = [
        rng.choice(np.flatnonzero(labels == label), count, replace=False) for label, count in quota.items()
    ]
    chosen = np.sort(np.concatenate(draws))
    return images[chosen], (labels[chosen] == positive).astype(np.int64)


def fashion_task_library(pool, *, max_examples=400, seed=0, families=("hierarchy", "one-vs-rest", "pair")):
    """The Fashion-MNIST task library: a list of dicts, one per task.

    ``name``, ``family`` (``"hierarchy"``, ``"one-vs-rest"`` or ``"pair"``), ``classes`` (the
    Fashion-MNIST classes it involves), ``task`` (``(images, labels)`` drawn from ``pool``).
    Hierarchy tasks (one per node of :data:`FASHION_TREE`, by
    :func:`~sklearn_task2vec.task_library.hierarchy_tasks`) and pairs of classes keep
    ``max_examples`` examples, each class in proportion; a one-vs-rest task about as many,
    half of them positives, the negatives spread over the nine other classes. The same
    arguments give the same tasks (so the embedding cache is hit by every script).
    """
    images, labels = pool
    rng = np.random.RandomState(seed)
    library = []
    if "hierarchy" in families:
        nodes = hierarchy_tasks(images, labels, FASHION_TREE, max_examples=max_examples, random_state=rng)
        for name, facts, task in zip(nodes.names, nodes.info, nodes):
            library.append({"name": name, "family": "hierarchy", "classes": facts["leaves"], "task": task})
    if "one-vs-rest" in families:
        for positive in range(10):
            library.append(
                {
                    "name": f"{SHORT[positive]}-vs-rest",
                    "family": "one-vs-rest",
                    "classes": tuple(range(10)),
                    "task": _balanced_one_vs_rest_task(images, labels, positive, max_examples, rng),
                }
            )
    if "pair" in families:
        for a, b in FASHION_PAIRS:
            name = f"{SHORT[a]}/{SHORT[b]}"
            # A pair of classes is a one-node hierarchy: capped by class like the hierarchy tasks.
            pair = hierarchy_tasks(
                images, labels, {name: [a, b]}, max_examples=max_examples, random_state=rng
            )
            library.append({"name": name, "family": "pair", "classes": (a, b), "task": pair[0]})
    return library


def ten_class_task(max_examples=400, seed=0):
    """The probe's own pretraining task (10 classes of the t10k split), subsampled."""
    test = load_fashion_mnist(split="test")
    library = hierarchy_tasks(
        test.images,
        test.target,
        {"fashion-10": list(range(10))},
        max_examples=max_examples,
        random_state=seed,
    )
    return library[0]


def class_set_distance(classes_a, classes_b, tree=FASHION_TREE):
    """The paper's D_tax between two tasks: fewest tree edges between a class of one and of the other."""
    if set(classes_a) & set(classes_b):
        return 0.0
    return float(min(taxonomic_distance(tree, a, b) for a, b in itertools.product(classes_a, classes_b)))


def top_group(classes, tree=FASHION_TREE):
    """The deepest node of ``tree`` whose leaves hold all of ``classes`` (for colour bars)."""
    # Between a node and a leaf, D_tax ("leaves") is 0 exactly when the leaf is under the node.
    holding = [
        node
        for node in tree
        if all(taxonomic_distance(tree, node, label, between="leaves") == 0 for label in classes)
    ]
    root = next(iter(tree))
    return max(holding, key=lambda node: taxonomic_distance(tree, root, node))


# ----------------------------------------------------------------------------- embedding
def task_embedder(probe, folder, seed=0):
    """FisherTaskEmbedder on ``probe`` in the trivial-normalised space, rows cached in ``folder/cache``."""
    return FisherTaskEmbedder(
        probe=probe, normalize="trivial", memory=Path(folder) / "embedding-cache", random_state=seed
    )


def class_names(classes):
    return ", ".join(FASHION_MNIST_CLASSES[c] for c in classes)


def savefig(figure_function, path, **kwargs):
    """Call ``figure_function(plt, **kwargs)`` with matplotlib's Agg backend and save to ``path``.

    matplotlib is optional (``pip install sklearn-task2vec[plot]``): without it, a note is
    printed and no file is written. Returns the path, or None.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed (pip install 'sklearn-task2vec[plot]'): {path} not written.")
        return None
    figure = figure_function(plt, **kwargs)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    print(f"Wrote {path}")
    return path
