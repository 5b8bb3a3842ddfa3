"""Time and peak memory of the OTDD's three methods as the tasks grow.

For each size ``n`` (default 200, 1,000, 5,000, 20,000) two synthetic tasks of ``n`` examples,
``--n-features`` Gaussian features (default 32) and ``--n-classes`` classes (default 10); the
second task's classes are moved and stretched. Each method runs once per size through the
public API, ``otdd_distance(task_a, task_b, method=...)`` (``n_projections=256`` for the sliced
method), after one warm-up call on a tiny task (which imports POT). The exact and Gaussian
methods refuse pairs of tasks above ``EXACT_MAX_PAIRS`` (25,000,000 pairs of examples: 5,000 x
5,000) with a message pointing to ``method="sliced"``; the table shows that refusal and how
long it took to come.

Measured in this process:

* seconds: wall-clock time of the call;
* peak extra: the resident memory's high-water mark during the call minus the resident memory
  right before it (the mark is reset before each call through ``/proc/self/clear_refs``,
  Linux >= 4.0; the output says whether the reset worked: without it, a peak is a floor).

One BLAS thread by default (``--threads``): the network simplex and the pairwise squared
distances run on one core anyway, and a shared machine's spare cores come and go.

About 2 minutes with the defaults on 2 CPU cores, most of it the exact and Gaussian methods at
5,000 x 5,000.

    python benchmarks/bench_otdd.py
    python benchmarks/bench_otdd.py --sizes 200 1000 --methods exact sliced
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import platform
import resource
import time

import numpy as np

MIB = 2**20
METHODS = ("exact", "gaussian", "sliced")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[200, 1000, 5000, 20000], help="examples per task"
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n-features", type=int, default=32, help="features per example (default: 32)")
    parser.add_argument("--n-classes", type=int, default=10, help="classes per task (default: 10)")
    parser.add_argument("--n-projections", type=int, default=256, help="sliced directions (default: 256)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS and torch threads (default: 1, steady on a shared machine)",
    )
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.n_features < 1 or args.n_classes < 1 or args.n_projections < 1:
        parser.error("sizes must be >= 2, the other counts >= 1")
    return args


def synthetic_tasks(n_examples, n_features, n_classes, seed=0):
    """Two tasks of Gaussian classes; the second's classes moved and stretched."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    labels_a = rng.integers(n_classes, size=n_examples)
    labels_b = rng.integers(n_classes, size=n_examples)
    task_a = (centres[labels_a] + rng.normal(size=(n_examples, n_features)), labels_a)
    scales = rng.uniform(0.5, 2.0, size=(n_classes, 1))
    task_b = (
        centres[labels_b] + 0.5 + scales[labels_b] * rng.normal(size=(n_examples, n_features)),
        labels_b,
    )
    return task_a, task_b


def resident_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def reset_peak():
    """Reset this process's RSS high-water mark to its current RSS; whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def measured(function):
    """``(result or the ValueError, seconds, peak extra bytes, whether the peak was reset)``."""
    gc.collect()
    before = resident_bytes()
    was_reset = reset_peak()
    start = time.perf_counter()
    try:
        result = function()
    except ValueError as error:
        result = error
    return result, time.perf_counter() - start, peak_bytes() - before, was_reset


def main(argv=None):
    args = parse_args(argv)
    import ot
    import torch
    from threadpoolctl import threadpool_limits

    from sklearn_task2vec.distances import otdd_distance

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    warm_a, warm_b = synthetic_tasks(20, args.n_features, args.n_classes)
    for method in args.methods:
        otdd_distance(warm_a, warm_b, method=method, random_state=0)

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
        f"POT {ot.__version__}; {args.n_features} features, {args.n_classes} classes, "
        f"{args.n_projections} sliced directions, {args.threads} thread(s)"
    )
    print(f"{'n':>7} {'method':>9} {'seconds':>9} {'peak extra MiB':>15}  distance")
    resets = []
    for n_examples in args.sizes:
        task_a, task_b = synthetic_tasks(n_examples, args.n_features, args.n_classes)
        for method in args.methods:
            result, seconds, extra, was_reset = measured(
                functools.partial(
                    otdd_distance,
                    task_a,
                    task_b,
                    method=method,
                    n_projections=args.n_projections,
                    random_state=0,
                )
            )
            resets.append(was_reset)
            shown = f"refused: {str(result)[:70]}..." if isinstance(result, ValueError) else f"{result:.4f}"
            print(f"{n_examples:>7} {method:>9} {seconds:>9.2f} {extra / MIB:>15.1f}  {shown}")
    print(f"peak reset before each call: {'yes' if all(resets) else 'no (peaks are floors)'}")


if __name__ == "__main__":
    main()
