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

``--seed-setting`` times instead the seed's search on images: ``TaskDiscovery()`` with its
defaults (the small CNN, 100 Adam steps per training, ``n_candidates=32``, ``TwoPointsDE``) on
the first 50 Fashion-MNIST test images (``apt-get install dataset-fashion-mnist``), with a
budget of ``--budget`` candidates (the seed's 4,000 by default; a smaller budget prints the
time extrapolated to 4,000, labelled as such). It prints the time, the trainings, the repeats
and the trainings stopped early, the same search with ``early_stopping=False`` (unless
``--skip-full``), and the arithmetic bound: the multiply-adds of the Adam steps actually
trained (forward and backward of 32 training images, forward of the 10 validation images)
over the peak FLOP/s of a 1024x1024 float32 matrix product measured in the same run:

    python benchmarks/bench_discovery.py --seed-setting --threads 2 --budget 4000
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time

import numpy as np
import torch

from sklearn_task2vec.datasets import load_digits_images, load_fashion_mnist
from sklearn_task2vec.discovery import TaskDiscovery, small_cnn, taskness_score

SEED_BUDGET = 4000

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


def matmul_peak(size=1024, repeats=10, rounds=5):
    """The best FLOP/s of a float32 matrix product over ``rounds`` timings (torch's threads)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    c = torch.empty(size, size)
    torch.mm(a, b, out=c)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b, out=c)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best


def flops_per_step(example_shape, batch_size=32, n_val=10):
    """FLOPs of one Adam step of the small CNN: forward and backward (weights' gradients, and the
    inputs' except the first layer's) of ``batch_size`` images, forward of ``n_val`` images."""
    network = small_cnn(example_shape)
    macs = []

    def count(layer, inputs, output):
        weight = layer.weight
        per_output = weight[0].numel() if isinstance(layer, torch.nn.Conv2d) else weight.shape[1]
        macs.append(output[0].numel() * per_output)

    hooks = [
        layer.register_forward_hook(count)
        for layer in network.modules()
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    with torch.no_grad():
        network(torch.zeros(1, *example_shape))
    for hook in hooks:
        hook.remove()
    forward = sum(macs)
    backward = 2 * forward - macs[0]
    return 2 * (batch_size * (forward + backward) + n_val * forward)


def seed_search(X, early_stopping, args):
    search = TaskDiscovery(
        budget=args.budget,
        early_stopping=early_stopping,
        score_params={"device": args.device},
        random_state=0,
    )
    start, cpu = time.perf_counter(), time.process_time()
    search.fit(X)
    return search, time.perf_counter() - start, time.process_time() - cpu


def bench_seed_setting(args):
    X = load_fashion_mnist(split="test").images[: args.n_examples]
    print(f"{len(X)} Fashion-MNIST test images {X.shape[1:]}, TaskDiscovery() defaults, budget {args.budget}")
    TaskDiscovery(budget=32, score_params={"device": args.device, "n_steps": 10}, random_state=1).fit(X)
    peak = matmul_peak()
    step_flops = flops_per_step(X.shape[1:])
    runs = [("defaults (early_stopping=True)", True)]
    if not args.skip_full:
        runs.append(("early_stopping=False", False))
    times, searches = {}, {}
    for name, early_stopping in runs:
        search, seconds, cpu = seed_search(X, early_stopping, args)
        times[early_stopping], searches[early_stopping] = seconds, search
        scale = SEED_BUDGET / args.budget
        extrapolated = "" if scale == 1 else f", {seconds * scale:.0f} s extrapolated to budget {SEED_BUDGET}"
        flops = search.n_steps_trained_ * step_flops
        print(
            f"  {name}: {seconds:.1f} s (process CPU {cpu:.1f} s){extrapolated}; "
            f"best task-ness {search.scores_[0]:.3f}; {search.n_trainings_} trainings for "
            f"{search.n_evaluations_} candidates ({search.n_evaluations_ - search.n_trainings_} repeats), "
            f"{search.n_stopped_early_} stopped early; {search.n_steps_trained_} Adam steps of one network "
            f"({search.n_steps_trained_ / (100 * search.n_trainings_):.2f} of full trainings)"
        )
        print(
            f"    arithmetic: {flops / 1e12:.1f} TFLOP at the measured matmul peak {peak / 1e9:.1f} GFLOP/s "
            f"= {flops / peak:.1f} s, {flops / peak / seconds:.0%} of the time taken"
        )
    if len(times) == 2:
        stopped, full = searches[True], searches[False]
        changed = stopped.history_ != full.history_
        print(
            f"  early stopping: {times[False] / times[True]:.2f}x faster; the same task found: "
            f"{np.array_equal(stopped.labels_, full.labels_)}; {changed.sum()} candidates recorded "
            f"differently, all lower: {bool(np.all(stopped.history_[changed] < full.history_[changed]))}"
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
    parser.add_argument("--seed-setting", action="store_true", help="the seed's search on Fashion-MNIST")
    parser.add_argument("--budget", type=int, default=SEED_BUDGET, help="budget of --seed-setting")
    parser.add_argument(
        "--skip-full", action="store_true", help="--seed-setting without early_stopping=False"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.seed_setting:
        print(
            f"{platform.node()} | {platform.processor() or platform.machine()} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads | {os.cpu_count()} CPUs | device {args.device} | load "
            f"{os.getloadavg()[0]:.1f}"
        )
        bench_seed_setting(args)
        return

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
