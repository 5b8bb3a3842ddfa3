"""TASK2VEC on scikit-learn's digits: task distances, nearest tasks, and norm versus difficulty.

Run with ``python -m sklearn_task2vec.demo`` (or ``make demo``). Ten classification tasks
are carved out of the 8x8 digits bundled with scikit-learn (no download), embedded with
:class:`~sklearn_task2vec.FisherTaskEmbedder` (2-D features go to the random ReLU probe),
and compared with the symmetric TASK2VEC distance of the paper (Achille et al., ICCV 2019,
sec. 3.3). The paper also finds that an embedding's norm grows with the task's difficulty;
the demo sets each task's L1 norm beside the test error of a logistic regression on the
raw pixels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from .distances import pairwise_task_distances
from .embedder import FisherTaskEmbedder

#: (short name, description, classes, label of each class: None keeps the digit itself).
TASKS = [
    ("0v1", "0 vs 1", [0, 1], None),
    ("3v8", "3 vs 8", [3, 8], None),
    ("1v7", "1 vs 7", [1, 7], None),
    ("4v9", "4 vs 9", [4, 9], None),
    ("5v6", "5 vs 6", [5, 6], None),
    ("2v3", "2 vs 3", [2, 3], None),
    ("even", "even vs odd", list(range(10)), lambda digit: digit % 2),
    ("lo/hi", "0-4 vs 5-9", list(range(10)), lambda digit: int(digit >= 5)),
    ("3v5v8", "3 vs 5 vs 8", [3, 5, 8], None),
    ("all10", "all ten digits", list(range(10)), None),
]


def digit_tasks():
    """``[(short name, description, (inputs, labels)), ...]`` for the tasks in :data:`TASKS`.

    Inputs are the 64 pixels scaled to ``[0, 1]``.
    """
    digits = load_digits()
    pixels = digits.data / 16.0
    tasks = []
    for name, description, classes, relabel in TASKS:
        keep = np.isin(digits.target, classes)
        labels = digits.target[keep]
        if relabel is not None:
            labels = np.array([relabel(digit) for digit in labels])
        tasks.append((name, description, (pixels[keep], labels)))
    return tasks


def raw_task_error(inputs, labels, random_state):
    """Test error of a logistic regression on the raw task, over a stratified 50/50 split."""
    X_train, X_test, y_train, y_test = train_test_split(
        inputs, labels, test_size=0.5, stratify=labels, random_state=random_state
    )
    model = LogisticRegression(max_iter=2000).fit(X_train, y_train)
    return 1.0 - model.score(X_test, y_test)


def format_matrix(matrix, names, digits=2):
    """The rows of ``matrix`` as aligned text, with ``names`` as row and column labels."""
    width = max(max(len(name) for name in names), digits + 3)
    lines = [" " * width + " " + " ".join(f"{name:>{width}}" for name in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:>{width}} " + " ".join(f"{value:>{width}.{digits}f}" for value in row))
    return lines


def main(argv=None):
    """Run the demo and print its report.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments (``None``: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_task2vec.demo",
        description="TASK2VEC task distances and embedding norms on scikit-learn's digits.",
    )
    parser.add_argument(
        "--random-state", type=int, default=0, help="seed of the probe, heads and splits (default 0)"
    )
    parser.add_argument(
        "--method",
        choices=["auto", "exact", "montecarlo"],
        default="auto",
        help="Fisher estimator (default auto: exact up to 3 classes, Monte Carlo above)",
    )
    args = parser.parse_args(argv)

    tasks = digit_tasks()
    names = [name for name, _, _ in tasks]
    print("TASK2VEC on scikit-learn's digits (8x8 pixels scaled to [0, 1], random ReLU probe)")
    print()
    print("Tasks:")
    for name, description, (inputs, labels) in tasks:
        print(f"  {name:<6} {description:<15} {len(labels):>5} examples, {len(np.unique(labels)):>2} classes")

    start = time.perf_counter()
    embedder = FisherTaskEmbedder(method=args.method, random_state=args.random_state)
    embeddings = embedder.fit_transform([task for _, _, task in tasks])
    elapsed = time.perf_counter() - start
    print(f"\nEmbedded {len(tasks)} tasks into {embeddings.shape[1]} filters in {elapsed:.1f} s.")

    distances = pairwise_task_distances(embeddings)
    print("\nSymmetric TASK2VEC distance d_sym (paper, sec. 3.3):")
    for line in format_matrix(distances, names):
        print("  " + line)

    print("\nNearest tasks (d_sym):")
    for i, name in enumerate(names):
        order = [j for j in np.argsort(distances[i], kind="stable") if j != i][:3]
        nearest = ", ".join(f"{names[j]} ({distances[i, j]:.2f})" for j in order)
        print(f"  {name:<6} -> {nearest}")

    norms = embeddings.sum(axis=1)  # L1 norm: the entries are non-negative
    errors = np.array([raw_task_error(*task, args.random_state) for _, _, task in tasks])
    print("\nEmbedding norm vs difficulty (logistic regression on raw pixels, 50/50 stratified split):")
    print(f"  {'task':<6} {'L1 norm':>10} {'test error':>11}")
    for name, norm, error in zip(names, norms, errors):
        print(f"  {name:<6} {norm:>10.4g} {error:>11.3f}")
    rho, p_value = spearmanr(norms, errors)
    print(f"  Spearman correlation(norm, error) = {rho:+.2f} (p = {p_value:.2g}, {len(names)} tasks)")
    return distances


if __name__ == "__main__":
    main()
