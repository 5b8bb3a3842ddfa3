"""How long the TASK2VEC distance matrix takes, relative to a matrix product of the same shape.

``pairwise_task_distances(X)`` for ``X`` of shape (n_tasks, n_filters) evaluates
``d_sym = d_cos(F_a / (F_a + F_b), F_b / (F_a + F_b))`` for every pair: n_tasks^2 / 2 pairs
(one triangle) times n_filters coordinates, each with a division. The reference is
``X @ X.T`` in the same precision (numpy's BLAS, all cores), the cost of the cheapest pairwise
quantity (a plain cosine / Euclidean distance) at that shape; it does n_tasks^2 x n_filters
multiply-adds. Also timed: one row of the paper's asymmetric distance (``kind="asymmetric"``
adds one distance per task to the trivial embedding) and the float64 path on a smaller case.

Every figure is the median of ``--repeats`` runs after one warm-up run (which also compiles
the numba kernel, cached on disk afterwards).

    python benchmarks/bench_distances.py                          # 2000 x 10000, float32
    python benchmarks/bench_distances.py --n-tasks 500 --dtype float64
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numba
import numpy as np

from sklearn_task2vec.distances import pairwise_task_distances


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-tasks", type=int, default=2000, help="rows of X (default: 2000)")
    parser.add_argument("--n-filters", type=int, default=10000, help="columns of X (default: 10000)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"), help="default: float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, median kept (default: 3)")
    return parser.parse_args(argv)


def median_seconds(function, repeats):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    # Fisher-like: positive, log-normal over several orders of magnitude, some exact zeros.
    X = np.exp(rng.normal(scale=2.0, size=(args.n_tasks, args.n_filters))).astype(args.dtype)
    X[rng.random(X.shape) < 0.05] = 0.0

    ours = median_seconds(lambda: pairwise_task_distances(X), args.repeats)
    asymmetric = median_seconds(lambda: pairwise_task_distances(X, kind="asymmetric"), args.repeats)
    product = median_seconds(lambda: X @ X.T, args.repeats)
    coordinates = args.n_tasks * (args.n_tasks + 1) / 2 * args.n_filters

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba "
        f"{numba.__version__} ({numba.get_num_threads()} threads), numpy {np.__version__}"
    )
    print(f"X: {args.n_tasks} x {args.n_filters} {args.dtype}; median of {args.repeats}")
    print(f"{'':>30} {'seconds':>9} {'/ X @ X.T':>10}")
    print(f"{'X @ X.T (reference)':>30} {product:9.3f} {1.0:10.2f}")
    print(f"{'symmetric d_sym matrix':>30} {ours:9.3f} {ours / product:10.2f}")
    print(f"{'asymmetric d_asym matrix':>30} {asymmetric:9.3f} {asymmetric / product:10.2f}")
    print(f"d_sym: {coordinates / ours / 1e9:.2f} G pair-coordinates per second (one triangle)")


if __name__ == "__main__":
    main()
