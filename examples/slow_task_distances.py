"""
Task distances on Fashion-MNIST: clusters, taxonomy and difficulty
==================================================================

The paper's Fig. 2 at laptop scale, with the small CNN probe pretrained on Fashion-MNIST's
t10k split (``slow_pretrain_probe.py``) and 19 tasks from the train split: the 9 nodes of a
hierarchy of the ten classes and 10 pairs of classes (400 images each).

* the symmetric TASK2VEC distance matrix, ordered by average-linkage hierarchical
  clustering (scipy) with its dendrogram, the tasks' names coloured by their place in the
  taxonomy (:class:`~sklearn_task2vec.plotting.TaskDistanceDisplay`);
* task distance against the taxonomic distance ``D_tax`` of the paper (sec. 2: fewest tree
  edges between a class of one task and a class of the other), Spearman correlation;
* the embedding's norm against the task's difficulty (test error of a logistic regression
  on the probe's features), Spearman correlation (the paper's Fig. 2, right;
  :class:`~sklearn_task2vec.plotting.NormDifficultyDisplay`).

Run: ``python examples/slow_task_distances.py``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from an earlier run of the script; the script writes its
own into ``<output-dir>``.

Run time: none is stored (the script prints its own total).

.. image:: /images/task_distances.png
   :alt: Task distance matrix with the taxonomy, distance against taxonomic distance, and norm against error
"""

# sphinx_gallery_thumbnail_path = "images/task_distances.png"

import time

import _common
import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import spearmanr

from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.plotting import NormDifficultyDisplay, TaskDistanceDisplay
from sklearn_task2vec.zoo import Expert, error_matrix

GROUP_ORDER = ["fashion", "clothing", "upper", "warm", "light", "long", "accessories", "footwear", "closed"]


def plot(plt, names, groups, distances, taxonomic, norms, errors):
    from matplotlib.patches import Patch

    figure = plt.figure(figsize=(17, 6.5), layout="constrained")
    heat, scatter, difficulty = figure.subplots(1, 3, width_ratios=[1.5, 1, 1])
    display = TaskDistanceDisplay(distances, names=names).plot(ax=heat)
    # Each name in the colour of the deepest taxonomy node holding its task's classes.
    palette = plt.get_cmap("tab10").colors
    for labels in (heat.get_xticklabels(), heat.get_yticklabels()):
        for label, task in zip(labels, display.order_):
            label.set_color(palette[GROUP_ORDER.index(groups[task])])
    figure.legend(
        [Patch(color=palette[i]) for i in range(len(GROUP_ORDER))],
        GROUP_ORDER,
        loc="outside lower left",
        ncol=len(GROUP_ORDER),
        fontsize=8,
        frameon=False,
        title="colour of a name: the deepest taxonomy node holding the task's classes",
        title_fontsize=8,
    )

    upper = np.triu_indices(len(names), 1)
    jitter = np.random.RandomState(0).uniform(-0.12, 0.12, size=len(upper[0]))
    scatter.scatter(taxonomic[upper] + jitter, distances[upper], s=12, alpha=0.6)
    rho = spearmanr(taxonomic[upper], distances[upper])[0]
    scatter.set_xlabel("taxonomic distance D_tax (tree edges)")
    scatter.set_ylabel("TASK2VEC distance d_sym")
    scatter.set_title(f"task vs taxonomic distance (Spearman {rho:+.2f})")

    # Last: its names are placed on the figure as laid out with the other panels.
    NormDifficultyDisplay(
        norms, 100 * errors, names=names, difficulty_label="test error on the probe's features (%)"
    ).plot(ax=difficulty, fontsize=7)
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    begin = time.perf_counter()
    probe = _common.pretrained_probe(folder)
    task_pool, _ = _common.split_pools(args.seed)
    # The full library (the same draws as slow_model_selection.py, so cached rows are reused), less one-vs-rest.
    library = [
        entry
        for entry in _common.fashion_task_library(task_pool, max_examples=args.max_examples, seed=args.seed)
        if entry["family"] != "one-vs-rest"
    ]
    names = [entry["name"] for entry in library]
    tasks = [entry["task"] for entry in library]
    groups = [_common.top_group(entry["classes"]) for entry in library]

    start = time.perf_counter()
    X = _common.task_embedder(probe, folder, args.seed).fit_transform(tasks)
    print(f"Embedded {len(tasks)} tasks ({X.shape[1]} filters) in {time.perf_counter() - start:.0f} s")
    distances = pairwise_task_distances(X)
    taxonomic = np.array(
        [[_common.class_set_distance(a["classes"], b["classes"]) for b in library] for a in library]
    )
    # The order of the figure's TaskDistanceDisplay: average linkage, optimal leaf ordering.
    tree = linkage(squareform(distances, checks=False), method="average", optimal_ordering=True)

    print("\nHierarchical clustering (average linkage on d_sym), leaves in order:")
    order = leaves_list(tree)
    print("  " + " | ".join(f"{names[i]} [{groups[i]}]" for i in order))
    print("\nNearest tasks (d_sym):")
    for i, name in enumerate(names):
        nearest = [j for j in np.argsort(distances[i], kind="stable") if j != i][:3]
        print(f"  {name:<18} -> " + ", ".join(f"{names[j]} ({distances[i, j]:.3f})" for j in nearest))

    upper = np.triu_indices(len(names), 1)
    rho, p = spearmanr(taxonomic[upper], distances[upper])
    print(f"\nSpearman(d_sym, D_tax) over {len(upper[0])} pairs of tasks = {rho:+.2f} (p = {p:.2g})")
    for value in np.unique(taxonomic[upper]):
        mask = taxonomic[upper] == value
        print(f"  D_tax = {value:.0f}: {mask.sum():>3} pairs, mean d_sym {distances[upper][mask].mean():.3f}")

    errors = error_matrix(
        [Expert(probe, "generic probe")],
        tasks,
        task_names=names,
        cache=folder / "feature-cache",
        device="cpu",
        random_state=args.seed,
    )[:, 0]
    norms = X.sum(axis=1)
    rho, p = spearmanr(norms, errors)
    print("\nEmbedding norm vs difficulty (logistic regression on the probe's features, 70/30 split):")
    print(f"  {'task':<18} {'L1 norm':>9} {'error %':>8}")
    for i in np.argsort(errors):
        print(f"  {names[i]:<18} {norms[i]:>9.3g} {100 * errors[i]:>8.1f}")
    print(f"  Spearman(norm, error) = {rho:+.2f} (p = {p:.2g}, {len(names)} tasks)")
    _common.savefig(
        plot,
        folder / "task_distances.png",
        names=names,
        groups=groups,
        distances=distances,
        taxonomic=taxonomic,
        norms=norms,
        errors=errors,
    )
    print(f"Total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
