"""
Which task distance predicts transfer? TASK2VEC, OTDD and the domain embedding on Fashion-MNIST
===============================================================================================

A distance between tasks is useful for model selection if the expert trained on a task near
the new one transfers well to it. This example measures that for five distances on the zoo
of ``slow_model_selection.py``: its 8 experts, each the small CNN probe fine-tuned on one
Fashion-MNIST task (the source task ``a``, 2,000 images from one half of the train split),
and its 29 tasks of 1,200 images (the targets ``b``, from the other half).

* Transfer: the test error of expert ``a`` on task ``b`` as the zoo measures it
  (:func:`~sklearn_task2vec.zoo.error_matrix`: a logistic regression on the expert's frozen
  features, 70/30 split), relative to the error of the generic probe on ``b`` (the network
  every expert started from): below 1, the expert's fine-tuning on ``a`` helped ``b``.
* Distances from ``a`` to ``b``:

  - TASK2VEC, symmetric and asymmetric (``alpha = 0.15``; Achille et al., ICCV 2019, sec.
    3.3), between the two tasks' embeddings by the probe
    (:func:`~sklearn_task2vec.distances.pairwise_task_distances`);
  - OTDD, exact (on ``--otdd-points`` examples of each task: its outer problem over all
    1,200 x 2,000 pairs of examples takes seconds per pair of tasks) and sliced (all the
    examples) (Alvarez-Melis & Fusi, NeurIPS 2020;
    :func:`~sklearn_task2vec.distances.pairwise_otdd_distances`), on the probe's 64 features
    of the images and the labels;
  - the domain embedding of ``slow_task_vs_domain.py``: the Euclidean distance between the
    mean probe features of the two tasks' images, which sees no labels.

* Scores of each distance: Spearman's correlation between the distance and the relative
  error, (1) within each target, over its 8 source experts (what choosing an expert for a
  new task needs), averaged over the targets, and (2) pooled over all 232 pairs; each with a
  95 % percentile bootstrap interval over the targets (the pairs of one target are not
  independent, so the targets are resampled, not the pairs). The 8 sources are fixed: the
  intervals do not cover another choice of experts.
* Cost of each distance for a new task: seconds to compare it with the 8 source tasks,
  measured on ``TIMED_TASKS`` tasks, nothing cached (the sources' embeddings and features
  are computed once, beforehand): TASK2VEC embeds the new task (probe features, head and
  Fisher passes); OTDD and the domain embedding read its probe features and compare.

Reuses ``slow_model_selection.py``'s probe, experts, embeddings and feature cache from
``<output-dir>`` (it computes what is missing). Run:
``python examples/slow_distance_transfer.py [--otdd-points 500] [--n-bootstrap 2000]``.

Not run by the documentation build (the file name starts with ``slow_``). Run time: 76 min on
a shared 2-core machine under load average 15 to 18, one thread at ``nice -n 10``, from the
cache of ``slow_model_selection.py`` (the two OTDDs 12 min, the timing most of the rest; the
intervals' loop has been made faster since).
"""

import time

import _common
import numpy as np
import slow_model_selection as selection
import torch
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.metrics import pairwise_distances

from sklearn_task2vec.distances import pairwise_otdd_distances, pairwise_task_distances
from sklearn_task2vec.zoo import error_matrix

#: Tasks compared again with the sources without any cache, to time each distance per new task.
TIMED_TASKS = 3
TIMING_REPEATS = 2
OTDD_METHODS = {"OTDD exact": "exact", "OTDD sliced": "sliced"}


def probe_features(probe, images, batch_size=256):
    """The probe's features of ``images``, in batches, without gradients: an (n, 64) array."""
    probe = probe.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                probe(torch.from_numpy(images[start : start + batch_size])).numpy()
                for start in range(0, len(images), batch_size)
            ]
        ).astype(np.float64)


def otdd_distances(method, target_features, source_features, args):
    """OTDD from each source task to each target task, ``(n_targets, n_sources)``, on features."""
    return pairwise_otdd_distances(
        target_features,
        source_features,
        method=method,
        max_points=args.otdd_points if method == "exact" else None,
        random_state=args.seed,
    )


def domain_distances(target_features, source_features):
    """Euclidean distance between the tasks' mean features (the domain embedding)."""
    means = [
        np.stack([features.mean(axis=0) for features, _ in tasks])
        for tasks in (target_features, source_features)
    ]
    return pairwise_distances(*means)


def spearman_scores(distances, relative_error, rng, n_bootstrap):
    """``(within, within interval, pooled, pooled interval)``: Spearman's rho between
    ``distances`` and ``relative_error`` (both ``(n_targets, n_sources)``), within each target
    and averaged, and over all pairs; percentile intervals from resampling the targets (a
    target whose errors are all equal has no within-target rho and is left out of the mean)."""
    per_target = np.array([spearmanr(row, errors)[0] for row, errors in zip(distances, relative_error)])

    def pooled(rows):
        return spearmanr(distances[rows].ravel(), relative_error[rows].ravel())[0]

    draws = rng.integers(len(distances), size=(n_bootstrap, len(distances)))
    within_draws = np.nanmean(per_target[draws], axis=1)
    pooled_draws = np.array([pooled(rows) for rows in draws])
    return (
        np.nanmean(per_target),
        tuple(np.percentile(within_draws, [2.5, 97.5])),
        pooled(np.arange(len(distances))),
        tuple(np.percentile(pooled_draws, [2.5, 97.5])),
    )


def seconds_per_task(compare, tasks):
    """Wall-clock seconds of ``compare(task)`` per task, the best of ``TIMING_REPEATS`` runs."""
    runs = []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        for task in tasks:
            compare(task)
        runs.append((time.perf_counter() - start) / len(tasks))
    return min(runs)


def measured_costs(embedder, probe, source_embeddings, source_features, timed_tasks, args):
    """Seconds to compare one new task (images and labels) with the sources, by distance."""
    fresh = clone(embedder).set_params(memory=None).fit(timed_tasks[:1])

    def task2vec(kind):
        def compare(task):
            embedding = fresh.transform([task])
            if kind == "symmetric":
                return pairwise_task_distances(embedding, source_embeddings)
            return pairwise_task_distances(source_embeddings, embedding, kind="asymmetric")

        return compare

    def otdd(method):
        def compare(task):
            features = [(probe_features(probe, task[0]), task[1])]
            return otdd_distances(method, features, source_features, args)

        return compare

    def domain(task):
        return domain_distances([(probe_features(probe, task[0]), task[1])], source_features)

    compares = {"TASK2VEC symmetric": task2vec("symmetric"), "TASK2VEC asymmetric": task2vec("asymmetric")}
    compares.update({label: otdd(method) for label, method in OTDD_METHODS.items()})
    compares["domain embedding"] = domain
    return {label: seconds_per_task(compare, timed_tasks) for label, compare in compares.items()}


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.set_defaults(max_examples=1200)  # slow_model_selection.py's tasks and cache
    parser.add_argument("--expert-epochs", type=int, default=8, help="as slow_model_selection.py (default 8)")
    parser.add_argument("--expert-examples", type=int, default=2000, help="as slow_model_selection.py (2000)")
    parser.add_argument(
        "--otdd-points", type=int, default=500, help="examples of each task for the exact OTDD (default 500)"
    )
    parser.add_argument(
        "--n-bootstrap",
        type=int,
        default=2000,
        help="resamples of the targets for the intervals (default 2000)",
    )
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    begin = time.perf_counter()

    probe = _common.pretrained_probe(folder)
    task_pool, expert_pool = _common.split_pools(args.seed)
    library = _common.fashion_task_library(task_pool, max_examples=args.max_examples, seed=args.seed)
    targets = [entry["task"] for entry in library]
    source_library = [
        entry
        for entry in _common.fashion_task_library(
            expert_pool, max_examples=args.expert_examples, seed=args.seed + 1
        )
        if entry["name"] in selection.EXPERT_TASKS
    ]
    sources = [entry["task"] for entry in source_library]
    print(f"{len(sources)} source tasks (experts) x {len(targets)} target tasks")
    experts = selection.trained_experts(probe, source_library, folder, args)
    experts.append(selection.generic_expert(probe, _common.ten_class_task(args.max_examples, args.seed)))

    start = time.perf_counter()
    errors = error_matrix(
        experts,
        targets,
        task_names=[entry["name"] for entry in library],
        cache=folder / "feature-cache",
        device="cpu",
        random_state=args.seed,
    )
    generic = errors[:, -1]
    if np.any(generic == 0):
        raise SystemExit(
            "The generic probe makes no test error on some task: the relative error is undefined."
        )
    relative_error = errors[:, :-1] / generic[:, None]
    print(
        f"Error matrix {errors.shape} in {time.perf_counter() - start:.0f} s; relative error of the experts "
        f"(to the generic probe's): median {np.median(relative_error):.2f}, range "
        f"[{relative_error.min():.2f}, {relative_error.max():.2f}]"
    )

    start = time.perf_counter()
    embedder = _common.task_embedder(probe, folder, args.seed)
    target_embeddings = embedder.fit_transform(targets)
    source_embeddings = embedder.transform(sources)
    print(f"Embedded {len(targets) + len(sources)} tasks in {time.perf_counter() - start:.0f} s")
    target_features = [(probe_features(probe, images), labels) for images, labels in targets]
    source_features = [(probe_features(probe, images), labels) for images, labels in sources]

    distances = {
        "TASK2VEC symmetric": pairwise_task_distances(target_embeddings, source_embeddings),
        "TASK2VEC asymmetric": pairwise_task_distances(
            source_embeddings, target_embeddings, kind="asymmetric"
        ).T,
    }
    for label, method in OTDD_METHODS.items():
        start = time.perf_counter()
        distances[label] = otdd_distances(method, target_features, source_features, args)
        print(f"{label}: {distances[label].size} pairs in {time.perf_counter() - start:.0f} s")
    distances["domain embedding"] = domain_distances(target_features, source_features)

    print(f"Timing each distance on {TIMED_TASKS} new tasks against the {len(sources)} sources, no cache ...")
    costs = measured_costs(embedder, probe, source_embeddings, source_features, targets[:TIMED_TASKS], args)

    rng = np.random.default_rng(args.seed)
    print(
        f"\nSpearman's rho between the distance from source task a to target task b and the relative "
        f"error of a's expert on b;\nwithin each target over its {len(sources)} sources (mean over "
        f"{len(targets)} targets), and pooled over the {relative_error.size} pairs; 95 % bootstrap "
        f"intervals over the targets ({args.n_bootstrap} resamples); seconds to compare a new task "
        f"with the {len(sources)} sources (best of {TIMING_REPEATS} runs over {TIMED_TASKS} tasks):"
    )
    print(f"  {'distance':<20} {'within target [95 %]':>24} {'pooled [95 %]':>24} {'s/task':>7}")
    results = {}
    for label, matrix in distances.items():
        within, within_ci, pooled, pooled_ci = spearman_scores(matrix, relative_error, rng, args.n_bootstrap)
        results[label] = (within, within_ci, pooled, pooled_ci, costs[label])
        print(
            f"  {label:<20} {within:>+7.2f} [{within_ci[0]:+.2f}, {within_ci[1]:+.2f}]   "
            f"{pooled:>+7.2f} [{pooled_ci[0]:+.2f}, {pooled_ci[1]:+.2f}]   {costs[label]:>7.2f}"
        )
    print(f"Total {time.perf_counter() - begin:.0f} s")
    return results


if __name__ == "__main__":
    main()
