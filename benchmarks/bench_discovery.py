"""Candidate evaluations per second of a task-discovery search, one at a time against batched.

Both figures come from the public API in the same run, on the same examples and settings:

* ``TaskDiscovery(n_candidates=1)``: the optimiser asks one labelling at a time and each is
  trained alone (one small network, ``n_steps`` Adam steps, the validation loss after each);
* ``TaskDiscovery(n_candidates=K)``: ``K`` labellings are asked together and their ``K``
  networks trained in one batched training (``torch.func.vmap`` over stacked weights).

Reported per search: candidates evaluated per second, and labellings trained per second (a
labelling the optimiser proposes again is not trained again), then their ratios. The same is
timed for ``taskness_score`` alone: a loop over ``K`` labellings against one call on the stack.

    python benchmarks/bench_discovery.py                       # 50 digit images (the seed's N = 50), small CNN
    python benchmarks/bench_discovery.py --features            # the same digits as 64 features, small MLP
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


def timed_search(X, n_candidates, budget, args):
    search = TaskDiscovery(
        budget=budget,
        n_candidates=n_candidates,
        score_params={"n_steps": args.n_steps, "device": args.device},
        random_state=0,
    )
    start = time.perf_counter()
    search.fit(X)
    seconds = time.perf_counter() - start
    return search.n_evaluations_ / seconds, search.n_trainings_ / seconds, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-examples", type=int, default=50)
    parser.add_argument("--features", action="store_true", help="2-D features (small MLP) instead of images")
    parser.add_argument("--n-steps", type=int, default=100)
    parser.add_argument("--n-candidates", type=int, default=64)
    parser.add_argument("--budget-one", type=int, default=24, help="budget of the one-at-a-time search")
    parser.add_argument("--budget-batched", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    digits = load_digits_images()
    X = (digits.data if args.features else digits.images)[: args.n_examples]
    print(
        f"{platform.node()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{os.cpu_count()} CPUs | device {args.device}"
    )
    print(
        f"X {X.shape}, {'small MLP' if args.features else 'small CNN'}, {args.n_steps} steps per "
        f"training, TwoPointsDE"
    )

    if importlib.util.find_spec("nevergrad") is None:
        print("\nnevergrad is not installed: the search is not timed, only taskness_score.")
    else:
        # Warm-up: first calls pay for torch's lazy initialisation.
        timed_search(X, args.n_candidates, args.n_candidates, args)
        one = timed_search(X, 1, args.budget_one, args)
        batched = timed_search(X, args.n_candidates, args.budget_batched, args)
        print(f"\n{'search':<28}{'evaluations/s':>15}{'trainings/s':>13}{'seconds':>9}")
        print(f"{'one at a time':<28}{one[0]:>15.1f}{one[1]:>13.1f}{one[2]:>9.1f}")
        print(
            f"{f'n_candidates={args.n_candidates}':<28}{batched[0]:>15.1f}{batched[1]:>13.1f}{batched[2]:>9.1f}"
        )
        print(f"{'ratio':<28}{batched[0] / one[0]:>14.1f}x{batched[1] / one[1]:>12.1f}x")

    rng = np.random.RandomState(0)
    positives = int(round(0.2 * len(X)))
    stack = np.stack([rng.permutation(np.arange(len(X)) < positives) for _ in range(args.n_candidates)])
    kwargs = {"n_steps": args.n_steps, "device": args.device, "random_state": 0}
    taskness_score(X, stack[:2], **kwargs)  # warm-up (the search's, when it was skipped)
    start = time.perf_counter()
    alone = [taskness_score(X, row, **kwargs) for row in stack]
    loop_seconds = time.perf_counter() - start
    start = time.perf_counter()
    together = taskness_score(X, stack, **kwargs)
    stack_seconds = time.perf_counter() - start
    print(
        f"\ntaskness_score on {args.n_candidates} labellings: a loop {loop_seconds:.2f} s, one stacked "
        f"call {stack_seconds:.2f} s ({loop_seconds / stack_seconds:.1f}x); largest difference "
        f"between the two {np.max(np.abs(np.asarray(alone) - together)):.1e}"
    )


if __name__ == "__main__":
    main()
