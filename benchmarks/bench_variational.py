"""What ``method="variational"`` costs, whether its stopping rule ends it, and how far its rows move.

On one task (``--n-examples`` random images, ``--n-classes`` random labels, a random-init
torchvision probe built once, :func:`~sklearn_task2vec.probes.build_named_probe`, so that every
run embeds with the same probe), through the public API
(``FisherTaskEmbedder(probe=body, ...).fit_transform([task])``, features pass, head, point
estimate and probe check included), each time as a ratio to one plain forward+backward pass of
the task (the reference of ``bench_fisher_speed.py``: the same body with a fresh ``fc``, all
parameter gradients):

* the default run (``variational_curvature="gauss_newton"``, ``variational_noise="per_example"``,
  the stopping rule of ``variational_tol``, at most ``variational_steps``) with two random
  states: time, steps taken, whether the stopping rule ended the run (else its cap did, with a
  ConvergenceWarning), and the relative L2 distance between the two rows;
* a long run of the same estimator, the rule off (``variational_tol=0``) for ``--long-steps``
  steps: the default rows' relative L2 distance to it, and the share of filters within 10%;
* the pathwise full-Hessian estimator (``variational_curvature="hessian"``) for
  ``--hessian-steps`` steps with the default rule, for comparison: its time and the row's
  relative standard error where it ended;
* the paper's approximation (``variational_noise="per_position"``) with the default rule: its
  cost, and the median ratio of its Fisher part to the default run's.

Steps taken and convergence are read by wrapping the package's variational routine (the
public API does not return them); the timings are of the public calls.

    python benchmarks/bench_variational.py --threads 2          # resnet18, 1024 x 3x32x32, 10 classes
    python benchmarks/bench_variational.py --threads 2 --hessian-steps 100
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from bench_fisher_speed import machine_info, median_time, plain_forward_backward, plain_model
from sklearn.exceptions import ConvergenceWarning

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _pipeline as pipeline
from sklearn_task2vec.probes import build_named_probe


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", default="resnet18", help="torchvision ResNet name (default: resnet18)")
    parser.add_argument("--image-size", type=int, default=32, help="height = width (default: 32)")
    parser.add_argument("--n-examples", type=int, default=1024, help="examples in the task (default: 1024)")
    parser.add_argument("--n-classes", type=int, default=10, help="classes (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--long-steps", type=int, default=128, help="steps of the long run (default: 128, eight epochs)"
    )
    parser.add_argument(
        "--hessian-steps",
        type=int,
        default=300,
        help="most steps of the 'hessian' run (default: 300, the estimator's default cap)",
    )
    parser.add_argument(
        "--plain-repeats", type=int, default=3, help="timed plain passes, median (default: 3)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images, labels and probe")
    return parser.parse_args(argv)


class RunRecord:
    """The last :class:`~sklearn_task2vec._fisher.VariationalResult` of the package's runs."""

    def __init__(self):
        self.result = None
        computed = pipeline.variational_fisher

        def recorded(*args, **kwargs):
            self.result = computed(*args, **kwargs)
            return self.result

        pipeline.variational_fisher = recorded


def relative_distance(row, reference):
    return np.linalg.norm(row - reference) / np.linalg.norm(reference)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn((args.n_examples, 3, args.image_size, args.image_size), generator=generator)
    labels = torch.randint(args.n_classes, (args.n_examples,), generator=generator).numpy()
    task = (images, labels)
    print(
        f"# method='variational': probe {args.probe} (random init, seed {args.seed}), {args.n_examples} "
        f"images 3x{args.image_size}x{args.image_size}, {args.n_classes} classes, batch {args.batch_size}, {device}"
    )
    for line in machine_info(device):
        print("# " + line)
    print("# load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    torch.manual_seed(args.seed)
    model = plain_model(args.probe, args.n_classes, device)
    plain = median_time(
        plain_forward_backward(model, images, labels, args.batch_size, device), device, args.plain_repeats
    )
    del model
    body = build_named_probe(args.probe, None, seed=args.seed)
    record = RunRecord()

    def run(**params):
        embedder = FisherTaskEmbedder(
            probe=body, method="variational", batch_size=args.batch_size, device=device, **params
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            start = time.perf_counter()
            row = embedder.fit_transform([task])[0]
            seconds = time.perf_counter() - start
        warned = any(issubclass(warning.category, ConvergenceWarning) for warning in caught)
        return embedder, row, seconds, record.result, warned

    print(f"\nplain fwd+bwd of the task (reference): {plain:.2f} s", flush=True)
    run(variational_steps=1, variational_tol=0.0, random_state=0)  # warm-up
    defaults, first, seconds, result, warned = run(random_state=0)
    _, second, seconds_1, result_1, warned_1 = run(random_state=1)
    print(
        f"default (gauss_newton, per_example, tol={defaults.variational_tol:g}, at most "
        f"{defaults.variational_steps} steps), random_state=0: {seconds:.1f} s, {seconds / plain:.2f}x; "
        f"{result.n_steps} steps, converged {result.converged}, ConvergenceWarning {warned}, "
        f"relative standard error {result.relative_error:.3f}"
    )
    print(
        f"  random_state=1: {seconds_1:.1f} s, {seconds_1 / plain:.2f}x; {result_1.n_steps} steps, converged "
        f"{result_1.converged}, ConvergenceWarning {warned_1}, relative standard error "
        f"{result_1.relative_error:.3f}"
    )
    print(f"  seed agreement (relative L2 between the two rows): {relative_distance(first, second):.3f}")

    _, long_row, long_seconds, long_result, _ = run(
        random_state=2, variational_tol=0.0, variational_steps=args.long_steps
    )
    print(
        f"long run (random_state=2, tol=0, {args.long_steps} steps): {long_seconds:.1f} s, "
        f"{long_seconds / plain:.2f}x; its relative standard error {long_result.relative_error:.3f}"
    )
    trivial = defaults.trivial_embedding_
    beta_over_n = defaults.variational_beta / args.n_examples

    def fisher_part(values):
        # The prior term is (beta / N) lambda^2, lambda^2 fixed at the trivial embedding.
        return values - beta_over_n * trivial

    for seed, row in ((0, first), (1, second)):
        within = np.abs(row / long_row - 1.0) <= 0.10
        part = relative_distance(fisher_part(row), fisher_part(long_row))
        print(
            f"  default (random_state={seed}) vs long run: relative L2 {relative_distance(row, long_row):.3f} "
            f"(Fisher part {part:.3f}), filters within 10%: {np.mean(within):.1%}"
        )
    point = run(random_state=0, variational_steps=0)[1]
    print(
        f"  the start (variational_steps=0: point estimate + prior term) vs long run: relative L2 "
        f"{relative_distance(point, long_row):.3f}"
    )

    _, hessian_row, hessian_seconds, hessian, hessian_warned = run(
        random_state=0, variational_curvature="hessian", variational_steps=args.hessian_steps
    )
    print(
        f"hessian (the pathwise estimator, default rule, at most {args.hessian_steps} steps): "
        f"{hessian_seconds:.1f} s, {hessian_seconds / plain:.2f}x; {hessian.n_steps} steps, converged "
        f"{hessian.converged}, ConvergenceWarning {hessian_warned}, relative standard error "
        f"{hessian.relative_error:.3f}; relative L2 to the gauss_newton long run "
        f"{relative_distance(hessian_row, long_row):.3f}"
    )

    _, position_row, position_seconds, position, _ = run(random_state=0, variational_noise="per_position")
    both = (fisher_part(position_row) > 0) & (fisher_part(first) > 0)
    ratio = np.median(fisher_part(position_row)[both] / fisher_part(first)[both])
    print(
        f"per_position (the paper's approximation), default rule: {position_seconds:.1f} s, "
        f"{position_seconds / plain:.2f}x, {position.n_steps} steps, converged {position.converged}; "
        f"median Fisher part / per_example's: {ratio:.3f} (over {both.sum()} filters with both positive)"
    )
    print("# load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
