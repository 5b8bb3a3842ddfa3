"""Candidate evaluations per second of a task-discovery search, one at a time against batched.

Both figures come from the public API in the same run, on the same examples and settings:

* ``TaskDiscovery(n_candidates=1)``: the optimiser asks one labelling at a time and each is
  trained alone (one small network, ``n_steps`` Adam steps, the validation loss after each);
* ``TaskDiscovery(n_candidates=K)``: ``K`` labellings are asked together and their ``K``
  networks trained in one batched training (stacked weights, one population forward).

Three scorers, on the seed's 50 images (the first 50 digits): the seed's small CNN on the
1x8x8 images (``cnn``), its fully connected part on the same pixels as 64 features (``mlp``),
and a linear head on those fixed features, ``torch.nn.Linear(64, 2)`` (``linear``).

Reported per scorer and search: candidates evaluated per second, and labellings trained per
second (a labelling the optimiser proposes again is not trained again), then their ratios.
The same is timed for ``taskness_score`` alone: a loop over ``K`` labellings against one call
on the stack.

    python benchmarks/bench_discovery.py                          # all three scorers, CPU
    python benchmarks/bench_discovery.py --networks cnn --threads 1
    python benchmarks/bench_discovery.py --device cuda --n-candidates 256
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time

import numpy as np
import torch

from sklearn_task2vec.datasets import load_digits_images
from sklearn_task2vec.discovery import TaskDiscovery, taskness_score

NETWORKS = {
    "cnn": "the seed's small CNN on 1x8x8 images",
    "mlp": "the seed's small MLP on 64 features",
    "linear": "a linear head on 64 fixed features",
}


def examples_and_estimator(network, n_examples):
    digits = load_digits_images()
    if network == "cnn":
        return digits.images[:n_examples], None
    X = digits.data[:n_examples]
    return X, (None if network == "mlp" else torch.nn.Linear(X.shape[1], 2))


def timed_search(X, estimator, n_candidates, budget, args):
    search = TaskDiscovery(
        budget=budget,
        n_candidates=n_candidates,
        estimator=estimator,
        score_params={"n_steps": args.n_steps, "device": args.device},
        random_state=0,
    )
    start = time.perf_counter()
    search.fit(X)
    seconds = time.perf_counter() - start
    return search.n_evaluations_ / seconds, search.n_trainings_ / seconds, seconds


def bench_search(X, estimator, args):
    # Warm-up: first calls pay for torch's lazy initialisation and the kernels' first shapes.
    timed_search(X, estimator, args.n_candidates, args.n_candidates, args)
    timed_search(X, estimator, 1, 2, args)
    one = timed_search(X, estimator, 1, args.budget_one, args)
    batched = timed_search(X, estimator, args.n_candidates, args.budget_batched, args)
    print(f"  {'search':<26}{'evaluations/s':>15}{'trainings/s':>13}{'seconds':>9}")
    print(f"  {'one at a time':<26}{one[0]:>15.1f}{one[1]:>13.1f}{one[2]:>9.1f}")
    print(
        f"  {f'n_candidates={args.n_candidates}':<26}{batched[0]:>15.1f}{batched[1]:>13.1f}{batched[2]:>9.1f}"
    )
    print(f"  {'ratio':<26}{batched[0] / one[0]:>14.1f}x{batched[1] / one[1]:>12.1f}x")


def bench_scores(X, estimator, args):
    rng = np.random.RandomState(0)
    positives = int(round(0.2 * len(X)))
    stack = np.stack([rng.permutation(np.arange(len(X)) < positives) for _ in range(args.n_candidates)])
    kwargs = {"estimator": estimator, "n_steps": args.n_steps, "device": args.device, "random_state": 0}
    taskness_score(X, stack, **kwargs)  # warm-up of the stack's shapes
    taskness_score(X, stack[0], **kwargs)
    start = time.perf_counter()
    alone = [taskness_score(X, row, **kwargs) for row in stack]
    loop_seconds = time.perf_counter() - start
    start = time.perf_counter()
    together = taskness_score(X, stack, **kwargs)
    stack_seconds = time.perf_counter() - start
    print(
        f"  taskness_score on {args.n_candidates} labellings: a loop {loop_seconds:.2f} s, one "
        f"stacked call {stack_seconds:.2f} s ({loop_seconds / stack_seconds:.1f}x); largest "
        f"difference between the two {np.max(np.abs(np.asarray(alone) - together)):.1e}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--n-examples", type=int, default=50)
    parser.add_argument("--n-steps", type=int, default=100)
    parser.add_argument("--n-candidates", type=int, default=64)
    parser.add_argument("--budget-one", type=int, default=24, help="budget of the one-at-a-time search")
    parser.add_argument("--budget-batched", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"{platform.node()} | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads | {os.cpu_count()} CPUs | device {args.device}"
    )
    print(f"{args.n_examples} digits, {args.n_steps} steps per training, TwoPointsDE")
    searching = importlib.util.find_spec("nevergrad") is not None
    if not searching:
        print("nevergrad is not installed: the search is not timed, only taskness_score.")
    for network in args.networks:
        X, estimator = examples_and_estimator(network, args.n_examples)
        print(f"\n{network}: {NETWORKS[network]}, X {X.shape}")
        if searching:
            bench_search(X, estimator, args)
        bench_scores(X, estimator, args)


if __name__ == "__main__":
    main()
