"""
Task discovery on digits: real against random labellings, learnability, and a search
=====================================================================================

The task-discovery study of the seeds (002) at laptop scale, on scikit-learn's 8x8 digits
(bundled, no download) or on Fashion-MNIST (``--dataset fashion``, the Debian package
``dataset-fashion-mnist``), with the seed's small CNN:

1. **real against random**: the task-ness of every one-digit-against-the-others task and of
   random labellings of the same examples and class ratio, and the ROC AUC that tells them
   apart;
2. **learnability**: task-ness against the fraction of shuffled labels (the seed keeps 20%)
   and against the class ratio 1:R;
3. **discovery**: :class:`~sklearn_task2vec.discovery.TaskDiscovery` on N = 50 images at
   1:4 (the seed's setting), ``--n-tasks`` tasks kept apart by the label-agreement penalty,
   against the best of as many random labellings of the same ratio as the search evaluated;
   the tasks as image grids, positives first and framed, with their scores
   (:class:`~sklearn_task2vec.plotting.DiscoveredTasksDisplay`);
4. the TASK2VEC distances between the discovered tasks, the real one-digit tasks on the same
   50 images and the best random labellings (random ReLU probe on the pixels), in
   average-linkage order (:class:`~sklearn_task2vec.plotting.TaskDistanceDisplay`).

Run: ``python examples/slow_task_discovery.py [--dataset digits|fashion] [--budget 600]``.

Not run by the documentation build (the file name starts with ``slow_``): the figures below are
the ones stored in ``docs/images/``, from the run described on the task discovery page
(:doc:`/discovery`: digits, three tasks of 500 candidates each); the script writes its own into
``<output-dir>``.

Run time (the seed's network, measured on a shared 2-core CPU machine, one thread, with another
run of this script beside it): digits, three tasks of 500 candidates, 77 s for the studies and
435 s for the search's 1,428 trainings; Fashion-MNIST (``--dataset fashion --budget 200
--n-tasks 2``), 377 s for the studies and 492 s for the search's 382 trainings.

.. image:: /images/discovery_learnability.png
   :alt: Task-ness against the fraction of shuffled labels and against the class ratio

.. image:: /images/discovery_tasks.png
   :alt: The tasks found and the best random labellings, with the TASK2VEC distances between them

With ``--dataset fashion --budget 200 --n-tasks 2``:

.. image:: /images/discovery_fashion_learnability.png
   :alt: Fashion-MNIST: task-ness against the fraction of shuffled labels and against the class ratio

.. image:: /images/discovery_fashion_tasks.png
   :alt: Fashion-MNIST: the tasks found and the best random labellings, with their TASK2VEC distances
"""

# sphinx_gallery_thumbnail_path = "images/discovery_tasks.png"

import time

import _common
import numpy as np
from sklearn.utils import check_random_state

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import load_digits_images, load_fashion_mnist
from sklearn_task2vec.discovery import TaskDiscovery, decode_labelling, learnability_study, taskness_score
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.plotting import DiscoveredTasksDisplay, TaskDistanceDisplay


def load_pool(dataset, n_pool, seed):
    """Images (N, 1, H, W) in [0, 1] and their classes, ``n_pool`` of them drawn at random."""
    if dataset == "digits":
        data = load_digits_images()
        images, classes = data.images, data.target
    else:
        data = load_fashion_mnist(split="test")
        images, classes = data.images, data.target
    chosen = np.sort(check_random_state(seed).choice(len(classes), min(n_pool, len(classes)), replace=False))
    return images[chosen].astype(np.float32), classes[chosen]


def print_table(title, table):
    print(f"\n{title}")
    print("".join(f"{name:>18}" for name in table.columns))
    for row in zip(*(table[name] for name in table.columns)):
        print("".join(f"{value:>18.3f}" if isinstance(value, float) else f"{value:>18}" for value in row))


def plot_curves(plt, ablation, ratio):
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for axis, table, variable, label in (
        (axes[0], ablation, "fraction", "fraction of labels shuffled"),
        (axes[1], ratio, "ratio", "R of the class ratio 1:R"),
    ):
        x = np.asarray(table[variable], dtype=float)
        axis.errorbar(x, table.score, yerr=table.score_std, marker="o", label="task")
        axis.errorbar(x, table.random_score, yerr=table.random_score_std, marker="s", label="random labels")
        axis.axhline(0, color="grey", lw=0.5)
        axis.set_xlabel(label)
        axis.set_ylabel("task-ness")
        axis.legend()
    axes[1].set_xscale("log")
    figure.tight_layout()
    return figure


def plot_tasks(plt, images, labellings, task_names, scores, distances, names):
    """Left: the tasks as grids of their images, positives first and framed. Right: the TASK2VEC
    distances between all the tasks, in average-linkage order."""
    figure = plt.figure(figsize=(17, 1.2 * len(labellings) + 1.5), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=[1.5, 1])
    DiscoveredTasksDisplay(images, labellings, scores=scores, names=task_names, score_name="task-ness").plot(
        ax=left.subplots(len(labellings), 1)
    )
    TaskDistanceDisplay(distances, names=names).plot(ax=right.subplots())
    return figure


def main():
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "fashion"), default="digits")
    parser.add_argument("--n-steps", type=int, default=100, help="Adam steps per training (default 100)")
    parser.add_argument("--study-examples", type=int, default=200, help="examples per study task (200)")
    parser.add_argument("--n-images", type=int, default=50, help="images of the search (the seed's 50)")
    parser.add_argument("--budget", type=int, default=600, help="candidates per task (the seed: 4,000)")
    parser.add_argument("--n-tasks", type=int, default=3)
    parser.add_argument("--n-seeds", type=int, default=2, help="runs averaged per task-ness (2)")
    args = parser.parse_args()
    folder = _common.output_dir(args)
    score_params = {"n_steps": args.n_steps, "n_seeds": args.n_seeds}
    images, classes = load_pool(args.dataset, 1500, args.seed)
    print(
        f"{args.dataset}: a pool of {len(images)} images {images.shape[1:]}, small CNN, {args.n_steps} steps"
    )

    start = time.perf_counter()
    study = {"n_samples": args.study_examples, "score_params": score_params, "random_state": args.seed}
    real_random = learnability_study(images, classes, study="real_vs_random", n_repeats=2, **study)
    print_table(f"Real against random (ROC AUC {real_random.roc_auc:.3f})", real_random)
    ablation = learnability_study(images, classes, study="ablation", n_repeats=2, **study)
    print_table("Label ablation (one class against the others, 1:4)", ablation)
    ratio = learnability_study(
        images, classes, study="class_ratio", values=[1, 3, 9, 19], n_repeats=2, **study
    )
    print_table("Class ratio", ratio)
    print(f"(studies: {time.perf_counter() - start:.0f} s)")
    _common.savefig(plot_curves, folder / "discovery_learnability.png", ablation=ablation, ratio=ratio)

    rng = check_random_state(args.seed)
    chosen = rng.choice(len(images), args.n_images, replace=False)
    X, X_classes = images[chosen], classes[chosen]
    start = time.perf_counter()
    search = TaskDiscovery(
        n_tasks=args.n_tasks, budget=args.budget, score_params=score_params, random_state=args.seed, verbose=0
    ).fit(X)
    print(
        f"\nDiscovery: {args.n_tasks} tasks x {args.budget} candidates on {args.n_images} images "
        f"({search.n_trainings_} trainings, {time.perf_counter() - start:.0f} s)"
    )
    # The fit's own seeds score the random labellings and the real tasks alike.
    seed = search.score_seed_
    n_positive = int(search.labels_[0].sum())
    random_stack = np.stack(
        [decode_labelling(rng.uniform(size=args.n_images), n_positive) for _ in range(args.budget)]
    )
    random_scores = taskness_score(X, random_stack, random_state=seed, **score_params)
    best_random = np.argsort(-random_scores)[: args.n_tasks]
    for task, (score, labels) in enumerate(zip(search.scores_, search.labels_)):
        print(
            f"  task {task}: task-ness {score:.3f}; classes of its positives: {sorted(X_classes[labels == 1].tolist())}"
        )
    print(
        f"  best of {args.budget} random labellings: {random_scores[best_random].round(3).tolist()} "
        f"(median {np.median(random_scores):.3f})"
    )

    real_classes = [
        c for c in np.unique(X_classes) if min((X_classes == c).sum(), (X_classes != c).sum()) >= 2
    ]
    real = [(X_classes == c).astype(np.int64) for c in real_classes]
    real_scores = taskness_score(X, np.stack(real), random_state=seed, **score_params)
    print(
        "  real one-class tasks on these images: "
        + ", ".join(f"{c}: {s:.3f}" for c, s in zip(real_classes, real_scores))
    )

    labellings = [*search.labels_, *random_stack[best_random], *real]
    names = (
        [f"found {t}" for t in range(args.n_tasks)]
        + [f"random {t}" for t in range(args.n_tasks)]
        + [f"class {c}" for c in real_classes]
    )
    features = X.reshape(len(X), -1)
    embeddings = FisherTaskEmbedder(device="cpu", random_state=args.seed).fit_transform(
        [(features, labels) for labels in labellings]
    )
    distances = pairwise_task_distances(embeddings)
    n = args.n_tasks
    print(
        f"  TASK2VEC distance: found-found {distances[:n, :n][np.triu_indices(n, 1)].mean():.3f}, "
        f"found-real {distances[:n, 2 * n :].mean():.3f}, random-real {distances[n : 2 * n, 2 * n :].mean():.3f}"
    )
    _common.savefig(
        plot_tasks,
        folder / "discovery_tasks.png",
        images=X,
        labellings=np.stack(labellings[: 2 * n]),
        task_names=[f"found {t}" for t in range(n)] + [f"best random {t}" for t in range(n)],
        scores=np.concatenate([search.scores_, random_scores[best_random]]),
        distances=distances,
        names=names,
    )


if __name__ == "__main__":
    main()
