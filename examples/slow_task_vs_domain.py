"""
Task embedding versus domain embedding on Fashion-MNIST
=======================================================

The paper's Fig. 1 point at laptop scale: a domain embedding (the mean of the probe's
features over the task's images) sees only the images, so tasks that share their images and
differ in their labels look alike; the TASK2VEC embedding sees the labels too.

Two domains (the clothing images, classes 0-4 and 6; the accessories, 5 and 7-9), three
labellings of each (two binary ones and all the domain's classes), five random draws of 300
images for each: 30 tasks in 6 families. For each embedding: t-SNE, and the leave-one-out
nearest-neighbour accuracy of the task's family and of its domain (TASK2VEC: the symmetric
distance; domain embedding: Euclidean). Uses the small CNN probe of ``slow_pretrain_probe.py``.

Run: ``python examples/slow_task_vs_domain.py [--draws 5] [--task-examples 300]``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from an earlier run of the script; the script writes its
own into ``<output-dir>``.

Run time: none is stored (the script prints its own total).

.. image:: /images/task_vs_domain.png
   :alt: t-SNE of the task embeddings and of the domain embeddings, coloured by family
"""

# sphinx_gallery_thumbnail_path = "images/task_vs_domain.png"

import time

import _common
import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.metrics import pairwise_distances
from threadpoolctl import threadpool_limits

from sklearn_task2vec.distances import pairwise_task_distances

#: domain -> (its classes, {labelling name: label of each class}).
DOMAINS = {
    "clothing": (
        (0, 1, 2, 3, 4, 6),
        {
            "upper vs long": {0: 1, 2: 1, 4: 1, 6: 1, 1: 0, 3: 0},
            "warm vs rest": {2: 1, 4: 1, 0: 0, 6: 0, 1: 0, 3: 0},
            "6 clothes": {c: c for c in (0, 1, 2, 3, 4, 6)},
        },
    ),
    "accessories": (
        (5, 7, 8, 9),
        {
            "footwear vs bag": {5: 1, 7: 1, 9: 1, 8: 0},
            "sandal vs rest": {5: 1, 7: 0, 9: 0, 8: 0},
            "4 accessories": {c: c for c in (5, 7, 8, 9)},
        },
    ),
}


def family_tasks(pool, draws, n_examples, seed):
    images, labels = pool
    rng = np.random.RandomState(seed)
    tasks, families, domains = [], [], []
    for domain, (classes, labellings) in DOMAINS.items():
        for family, relabel in labellings.items():
            for _ in range(draws):
                keep = np.flatnonzero(np.isin(labels, classes))
                chosen = np.sort(rng.choice(keep, n_examples, replace=False))
                tasks.append((images[chosen], np.array([relabel[int(c)] for c in labels[chosen]])))
                families.append(family)
                domains.append(domain)
    return tasks, np.array(families), np.array(domains)


def nearest_neighbour_accuracy(distances, labels):
    distances = distances.copy()
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[distances.argmin(axis=1)] == labels))


def plot(plt, points, families, titles):
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    markers = {"clothing": "o", "accessories": "^"}
    palette = plt.get_cmap("tab10").colors
    names = list(dict.fromkeys(families))
    for ax, xy, title in zip(axes, points, titles):
        for k, family in enumerate(names):
            mask = families == family
            domain = next(d for d, (_, labellings) in DOMAINS.items() if family in labellings)
            ax.scatter(
                *xy[mask].T, color=palette[k], marker=markers[domain], s=40, label=f"{family} ({domain})"
            )
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--draws", type=int, default=5, help="random draws per family (default 5)")
    parser.add_argument("--task-examples", type=int, default=300, help="images per task (default 300)")
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    begin = time.perf_counter()
    probe = _common.pretrained_probe(folder)
    task_pool, _ = _common.split_pools(args.seed)
    tasks, families, domains = family_tasks(task_pool, args.draws, args.task_examples, args.seed + 7)
    print(f"{len(tasks)} tasks: {len(set(families))} families (labellings) x {args.draws} draws, 2 domains")

    start = time.perf_counter()
    X = _common.task_embedder(probe, folder, args.seed).fit_transform(tasks)
    print(f"Embedded the tasks in {time.perf_counter() - start:.0f} s")
    with torch.no_grad():
        domain_embeddings = np.stack([probe(torch.from_numpy(images)).mean(0).numpy() for images, _ in tasks])

    task_distances = pairwise_task_distances(X)
    domain_distances = pairwise_distances(domain_embeddings)
    print("\nLeave-one-out 1-nearest-neighbour accuracy (chance: family 1/6 by majority, domain 1/2):")
    print(f"  {'embedding':<32} {'family':>7} {'domain':>7}")
    results = {}
    for label, distances in [
        ("TASK2VEC (d_sym)", task_distances),
        ("domain: mean features (Euclid.)", domain_distances),
    ]:
        family_acc = nearest_neighbour_accuracy(distances, families)
        domain_acc = nearest_neighbour_accuracy(distances, domains)
        results[label] = (family_acc, domain_acc)
        print(f"  {label:<32} {family_acc:>7.2f} {domain_acc:>7.2f}")

    same = families[:, None] == families[None, :]
    off = ~np.eye(len(tasks), dtype=bool)
    same_domain_other_family = (domains[:, None] == domains[None, :]) & ~same
    for label, distances in [("TASK2VEC", task_distances), ("domain", domain_distances)]:
        ratio = distances[same_domain_other_family].mean() / distances[same & off].mean()
        print(f"  {label}: mean distance, same domain other labels / same family = {ratio:.2f}")

    with threadpool_limits(limits=1):  # 30 points: threads only cost time on a busy machine
        points = [
            TSNE(perplexity=8, metric="precomputed", init="random", random_state=args.seed).fit_transform(d)
            for d in (task_distances, domain_distances)
        ]
    titles = [
        f"TASK2VEC (t-SNE of d_sym): family NN acc. {results['TASK2VEC (d_sym)'][0]:.2f}",
        f"Domain embedding (t-SNE): family NN acc. {results['domain: mean features (Euclid.)'][0]:.2f}",
    ]
    _common.savefig(plot, folder / "task_vs_domain.png", points=points, families=families, titles=titles)
    print(f"Total {time.perf_counter() - begin:.0f} s")
    return results


if __name__ == "__main__":
    main()
