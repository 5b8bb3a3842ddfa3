"""How close a Fisher embedding of n examples is to a high-sample reference, per method.

To pick the cheapest setting for a given precision: the error of ``method="montecarlo"`` and
``method="exact"`` embeddings of the first ``n`` examples of a fixed task, against the
reference, for ``n = 64, 128, ..., n_max``.

Setup (defaults):

* probe: ``resnet18`` with random weights (torchvision's initialisation, seeded by ``--seed``),
  images 3 x 32 x 32, batch 64, CPU. The weights are saved once to a temporary ``state_dict``
  file passed as ``probe_weights``: every embedder then has the same probe, whatever its
  ``random_state`` (which seeds a named probe's initialisation under ``probe_weights=None``),
  and ``random_state`` varies only the Monte Carlo labels;
* task: ``n_max = 4096`` standard-normal images from a seeded ``torch.Generator``, labelled
  from the images by one of (``--labels``)

  - ``pixels`` (default): a random linear score of the pixels, cut at its median (2 classes)
    or deciles (10 balanced classes). Through a random probe the classes are not learnable
    (held-out accuracy at chance): the head memorises the task, the regime where the
    embedding depends most on ``n``;
  - ``teacher``: a random linear-softmax teacher on the probe's own standardised features,
    labels sampled from it: a learnable task with label noise, whose head converges as
    ``n`` grows;

* reference: ``method="exact"`` on all ``n_max`` examples, for each number of classes. For
  10 classes exact costs 9 backward directions per example, about 5x Monte Carlo, which at
  4,096 examples is about a minute on 2 cores, so no Monte Carlo average is needed;
* for each ``n``: the task ``(X[:n], y[:n])`` (nested subsets; the head is retrained on each)
  embedded with ``exact`` (deterministic: one run) and with ``montecarlo`` under
  ``random_state = 0 .. --seeds - 1`` (errors averaged over the seeds).

Reported per ``n``, against the reference: the relative L2 error
``||F_n - F_ref|| / ||F_ref||`` (raw Fisher, so dominated by the filters with the largest
values), the symmetric TASK2VEC distance ``d_sym(F_n, F_ref)``
(:func:`sklearn_task2vec.distances.symmetric_distance`: per-filter shares, blind to a common
scale factor), the seconds of one ``transform``, and for ``exact`` the norm ratio
``||F_n|| / ||F_ref||``. Against the reference, the error mixes the head's (retrained on
each subset: its weights, hence the embedding's scale, depend on ``n``), the subsample's and
the estimator's; the last columns isolate Monte Carlo label noise: ``montecarlo`` against
``exact`` on the same ``n`` examples (same head). Their log-log slopes are fitted over the
four largest sizes (label noise alone gives -1/2 for rel L2 and about -1 for ``d_sym``, which
is quadratic in small relative errors). For each ``--targets`` level, the smallest ``n`` from
which ``d_sym`` stays below it at every larger size; against the reference ``n_max`` itself
is left out (exact there is the reference).

About 6 minutes with the defaults on 2 shared CPU cores, most of it the 10-class exact runs.

    python benchmarks/bench_fisher_error.py                        # resnet18, n = 64 .. 4096
    python benchmarks/bench_fisher_error.py --labels teacher
    python benchmarks/bench_fisher_error.py --n-max 1024 --seeds 1 --classes 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch
import torchvision

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.distances import symmetric_distance

# Standard deviation of the teacher's logits: large enough for a learnable task (the Bayes
# classifier well above chance), small enough for label noise (classes overlap).
TEACHER_LOGIT_SCALE = 3.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-max", type=int, default=4096, help="examples of the reference (default: 4096)")
    parser.add_argument(
        "--n-min", type=int, default=64, help="smallest n; sizes double up to --n-max (default: 64)"
    )
    parser.add_argument(
        "--classes", type=int, nargs="+", default=[2, 10], help="tasks' numbers of classes (default: 2 10)"
    )
    parser.add_argument(
        "--labels",
        default="pixels",
        choices=("pixels", "teacher"),
        help="labels from a linear score of the pixels, or sampled from a teacher on the probe's "
        "features (default: pixels)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="montecarlo random_states averaged over (default: 3)"
    )
    parser.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=[1e-2, 1e-3],
        help="d_sym levels: print the smallest n reaching each (default: 1e-2 1e-3)",
    )
    parser.add_argument("--probe", default="resnet18", help="torchvision model name (default: resnet18)")
    parser.add_argument(
        "--image-size", type=int, default=32, help="height = width of the images (default: 32)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the images, labels and probe")
    args = parser.parse_args(argv)
    for name in ("n_max", "n_min", "seeds", "image_size", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.n_min > args.n_max:
        parser.error("--n-min must be <= --n-max")
    if min(args.classes) < 2:
        parser.error("--classes must be >= 2")
    return args


# ------------------------------------------------------------------- task
def subset_sizes(n_min, n_max):
    """``n_min, 2 n_min, 4 n_min, ...`` below ``n_max``, then ``n_max``."""
    sizes = []
    n = n_min
    while n < n_max:
        sizes.append(n)
        n *= 2
    return [*sizes, n_max]


def save_random_probe(name, seed, path):
    """Save a randomly initialised torchvision model ``name`` (seeded) as a state_dict file."""
    torch.manual_seed(seed)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)


def fitted_embedder(args, method, random_state, task, probe_weights):
    """A ``FisherTaskEmbedder`` fitted on ``[task]`` with the probe's weights from ``probe_weights``."""
    embedder = FisherTaskEmbedder(
        probe=args.probe,
        probe_weights=probe_weights,
        method=method,
        batch_size=args.batch_size,
        random_state=random_state,
        device="cpu",
    )
    return embedder.fit([task])


def pixel_labels(images, n_classes, generator):
    """Balanced classes cut at the quantiles of a random linear score of the pixels."""
    direction = torch.randn(images[0].numel(), generator=generator, dtype=torch.float64)
    score = (images.flatten(1).double() @ direction).numpy()
    edges = np.quantile(score, np.arange(1, n_classes) / n_classes)
    return np.searchsorted(edges, score)


def teacher_labels(features, n_classes, generator):
    """Labels sampled from a random linear-softmax teacher on standardised probe features."""
    weights = torch.randn(features.shape[1], n_classes, generator=generator, dtype=torch.float64)
    logits = features @ weights * (TEACHER_LOGIT_SCALE / features.shape[1] ** 0.5)
    return torch.multinomial(torch.softmax(logits, 1), 1, generator=generator).view(-1).numpy()


def probe_features(embedder, images, batch_size):
    """The fitted embedder's probe features of ``images``, standardised per feature."""
    with torch.no_grad():
        features = torch.cat(
            [
                embedder.probe_(images[start : start + batch_size])
                for start in range(0, len(images), batch_size)
            ]
        ).double()
    # Features that a random ReLU network never activates have zero spread: left at zero.
    return (features - features.mean(0)) / features.std(0).clamp_min(1e-12)


def make_task(args, class_counts, probe_weights):
    """Images and, per number of classes, their labels (``--labels``)."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.n_max, 3, args.image_size, args.image_size)
    images = torch.randn(shape, generator=generator)
    if args.labels == "pixels":
        return images, {c: pixel_labels(images, c, generator) for c in class_counts}
    embedder = fitted_embedder(args, "exact", 0, (images[:2], [0, 1]), probe_weights)
    features = probe_features(embedder, images, args.batch_size)
    return images, {c: teacher_labels(features, c, generator) for c in class_counts}


# ------------------------------------------------------------ measurement
def embed_subsets(embedder, images, labels, sizes):
    """``{n: (embedding of (images[:n], labels[:n]), seconds)}``."""
    results = {}
    for n in sizes:
        start = time.perf_counter()
        embedding = embedder.transform([(images[:n], labels[:n])])[0]
        results[n] = (embedding, time.perf_counter() - start)
    return results


def errors(embedding, reference):
    """(relative L2 error, d_sym) of ``embedding`` against ``reference``."""
    relative = np.linalg.norm(embedding - reference) / np.linalg.norm(reference)
    return relative, symmetric_distance(embedding, reference)


def log_log_slope(sizes, values):
    """Least-squares slope of log(value) against log(n); NaN with fewer than two positive values."""
    points = [(np.log(n), np.log(v)) for n, v in zip(sizes, values) if v > 0]
    if len(points) < 2:
        return float("nan")
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


def first_size_below(sizes, values, target):
    """The smallest n from which every value, at n and above, is below ``target``; "none"."""
    first = "none"
    for n, value in reversed(list(zip(sizes, values))):
        if value >= target:
            break
        first = str(n)
    return first


# ----------------------------------------------------------------- report
def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def report(n_classes, sizes, exact, montecarlo, targets, n_max):
    """Print the table of one number of classes: errors against the reference, per n."""
    reference = exact[n_max][0]
    columns = {name: [] for name in ("ex_sym", "mc_sym", "same_rel", "same_sym")}
    print()
    print(
        f"## {n_classes} classes; reference: exact on all {n_max} examples; montecarlo: mean over "
        f"random_state 0..{len(montecarlo) - 1}"
    )
    header = (
        f"{'n':>6} | {'exact vs reference':^37} | {'montecarlo vs reference':^28} | "
        f"{'montecarlo vs exact, same n':^20}"
    )
    sub = (
        f"{'':>6} | {'norm':>8} {'rel L2':>9} {'d_sym':>9} {'s':>7} | {'rel L2':>9} {'d_sym':>9} "
        f"{'s':>7} | {'rel L2':>9} {'d_sym':>10}"
    )
    print(header)
    print(sub)
    print("-" * len(sub))
    for n in sizes:
        exact_embedding, exact_seconds = exact[n]
        norm = np.linalg.norm(exact_embedding) / np.linalg.norm(reference)
        ex_rel, ex_sym = errors(exact_embedding, reference)
        mc = np.mean([errors(runs[n][0], reference) for runs in montecarlo], axis=0)
        same = np.mean([errors(runs[n][0], exact_embedding) for runs in montecarlo], axis=0)
        mc_seconds = np.mean([runs[n][1] for runs in montecarlo])
        for name, value in zip(columns, (ex_sym, mc[1], *same)):
            columns[name].append(value)
        print(
            f"{n:>6} | {norm:>8.3f} {ex_rel:>9.2e} {ex_sym:>9.2e} {exact_seconds:>7.2f} | "
            f"{mc[0]:>9.2e} {mc[1]:>9.2e} {mc_seconds:>7.2f} | {same[0]:>9.2e} {same[1]:>10.2e}"
        )
    top = sizes[-4:]
    print(
        f"montecarlo vs exact (same n), log-log slope over n = {top[0]}..{top[-1]}: "
        f"rel L2 {log_log_slope(top, columns['same_rel'][-4:]):+.2f}, "
        f"d_sym {log_log_slope(top, columns['same_sym'][-4:]):+.2f}"
    )
    below_max = sizes[:-1]
    for target in targets:
        print(
            f"d_sym < {target:g} from n =: exact vs reference "
            f"{first_size_below(below_max, columns['ex_sym'][:-1], target)}, montecarlo vs reference "
            f"{first_size_below(below_max, columns['mc_sym'][:-1], target)} (n < {n_max}); "
            f"montecarlo vs exact, same n {first_size_below(sizes, columns['same_sym'], target)}",
            flush=True,
        )


def run_classes(args, n_classes, images, labels, sizes, probe_weights):
    """Embed the subsets of the ``n_classes`` task with each method and print their table."""
    task = (images, labels)
    missing = [n for n in sizes if len(np.unique(labels[:n])) < n_classes]
    if missing:
        # Such a subset is a task with fewer classes: its head and Fisher differ in kind.
        print(f"# note: {n_classes} classes: the first n examples lack a class for n in {missing}")
    exact = embed_subsets(fitted_embedder(args, "exact", 0, task, probe_weights), *task, sizes)
    montecarlo = [
        embed_subsets(fitted_embedder(args, "montecarlo", seed, task, probe_weights), *task, sizes)
        for seed in range(args.seeds)
    ]
    report(n_classes, sizes, exact, montecarlo, args.targets, args.n_max)


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    sizes = subset_sizes(args.n_min, args.n_max)
    class_counts = sorted(set(args.classes))
    print(
        f"# Fisher embedding error against a high-sample reference: probe {args.probe} (random weights, "
        f"seed {args.seed}), images 3x{args.image_size}x{args.image_size}, labels: {args.labels}, "
        f"batch {args.batch_size}, n = {sizes[0]} .. {sizes[-1]}"
    )
    print(
        f"# CPU: {cpu_model()}; nproc: {os.cpu_count()}; torch {torch.__version__}, "
        f"threads: {torch.get_num_threads()}"
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        probe_weights = os.path.join(folder, f"{args.probe}.pt")
        save_random_probe(args.probe, args.seed, probe_weights)
        images, labels = make_task(args, class_counts, probe_weights)
        for n_classes in class_counts:
            run_classes(args, n_classes, images, labels[n_classes], sizes, probe_weights)
    print()
    print("norm: ||F_n|| / ||F_ref||; rel L2: ||F_n - F_ref|| / ||F_ref||; d_sym: symmetric TASK2VEC")
    print("distance; s: seconds of one transform of the n examples (montecarlo: mean over seeds).")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
