"""What ``method="variational"`` costs, and how close its stopping rule lands to a long run.

On one task (``--n-examples`` random images, ``--n-classes`` random labels, a random-init
torchvision probe), through the public API (``FisherTaskEmbedder(...).fit_transform([task])``):

* the default run (``variational_noise="per_example"``, the stopping rule of
  ``variational_tol``, at most ``variational_steps``), timed, as a ratio to one plain
  forward+backward pass of the task (the reference of ``bench_fisher_speed.py``: the same
  body with a fresh ``fc``, all parameter gradients);
* a long run: the same settings with the rule off (``variational_tol=0``) for
  ``--long-steps`` steps, the reference the default run's row is compared with: relative L2
  error, and the share of filters within 10% of it (also for the rows' Fisher part, row minus
  prior term);
* the paper's approximation (``variational_noise="per_position"``) with the default rule:
  its cost, and the median ratio of its Fisher part to the default run's.

    python benchmarks/bench_variational.py                       # resnet18, 1024 x 3x32x32, 10 classes
    python benchmarks/bench_variational.py --long-steps 2000 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_fisher_speed import machine_info, median_time, plain_forward_backward, plain_model

from sklearn_task2vec import FisherTaskEmbedder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", default="resnet18", help="torchvision ResNet name (default: resnet18)")
    parser.add_argument("--image-size", type=int, default=32, help="height = width (default: 32)")
    parser.add_argument("--n-examples", type=int, default=1024, help="examples in the task (default: 1024)")
    parser.add_argument("--n-classes", type=int, default=10, help="classes (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument("--long-steps", type=int, default=640, help="steps of the long run (default: 640)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and labels")
    return parser.parse_args(argv)


def timed_rows(embedder, task):
    start = time.perf_counter()
    rows = embedder.fit_transform([task])
    return time.perf_counter() - start, rows[0]


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn((args.n_examples, 3, args.image_size, args.image_size), generator=generator)
    labels = torch.randint(args.n_classes, (args.n_examples,), generator=generator).numpy()
    task = (images, labels)
    print(
        f"# method='variational': probe {args.probe} (probe_weights=None), {args.n_examples} images "
        f"3x{args.image_size}x{args.image_size}, {args.n_classes} classes, batch {args.batch_size}, CPU"
    )
    for line in machine_info(device):
        print("# " + line)

    torch.manual_seed(args.seed)
    model = plain_model(args.probe, args.n_classes, device)
    plain = median_time(plain_forward_backward(model, images, labels, args.batch_size, device), device, 3)
    del model

    def embedder(**params):
        return FisherTaskEmbedder(
            probe=args.probe,
            probe_weights=None,
            method="variational",
            batch_size=args.batch_size,
            random_state=0,
            device=device,
            **params,
        )

    defaults = embedder()
    timed_rows(embedder(variational_steps=2), task)  # warm-up
    seconds, row = timed_rows(defaults, task)
    long_seconds, long_row = timed_rows(
        embedder(variational_tol=0.0, variational_steps=args.long_steps), task
    )
    position_seconds, position_row = timed_rows(embedder(variational_noise="per_position"), task)
    trivial = defaults.trivial_embedding_
    beta_over_n = defaults.variational_beta / args.n_examples

    def fisher_part(values):
        # The prior term is (beta / N) lambda^2, lambda^2 fixed at the trivial embedding.
        return values - beta_over_n * trivial

    print(f"\nplain fwd+bwd of the task (reference): {plain:.2f} s")
    print(
        f"default (per_example, tol={defaults.variational_tol:g}, at most {defaults.variational_steps} "
        f"steps): {seconds:.1f} s, {seconds / plain:.2f}x"
    )
    print(f"long run (tol=0, {args.long_steps} steps): {long_seconds:.1f} s, {long_seconds / plain:.2f}x")
    # Filters whose mean curvature estimate is not positive stay at the prior: their Fisher part
    # is exactly 0 and has no relative error.
    data = fisher_part(long_row) > 0
    print(
        f"  filters held at the prior: default {np.mean(fisher_part(row) <= 0):.1%}, long run "
        f"{np.mean(~data):.1%} (ratios below over the long run's other {data.sum()} filters)"
    )
    for name, ours, reference in (
        ("row", row, long_row),
        ("Fisher part", fisher_part(row), fisher_part(long_row)),
    ):
        relative = np.abs(ours[data] / reference[data] - 1.0)
        print(
            f"  default vs long run, {name}: relative L2 error "
            f"{np.linalg.norm(ours - reference) / np.linalg.norm(reference):.3f}, filters within 10%: "
            f"{np.mean(relative <= 0.10):.1%}, median |ratio - 1| {np.median(relative):.3f}"
        )
    both = data & (fisher_part(position_row) > 0) & (fisher_part(row) > 0)
    ratio = np.median(fisher_part(position_row)[both] / fisher_part(row)[both])
    print(
        f"per_position (the paper's approximation), default rule: {position_seconds:.1f} s, "
        f"{position_seconds / plain:.2f}x; median Fisher part / per_example's: {ratio:.3f} "
        f"(over {both.sum()} filters with both positive)"
    )


if __name__ == "__main__":
    main()
