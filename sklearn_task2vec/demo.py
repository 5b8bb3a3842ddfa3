"""The digits study: TASK2VEC distances, norm versus difficulty, and model selection.

Run with ``python -m sklearn_task2vec.demo`` (or ``make demo``). Ten classification tasks
are carved out of the 8x8 digits bundled with scikit-learn (no download), embedded with
:class:`~sklearn_task2vec.FisherTaskEmbedder` (2-D features go to the random ReLU probe),
and compared with the symmetric TASK2VEC distance of the paper (Achille et al., ICCV 2019,
sec. 3.3). The paper also finds that an embedding's norm grows with the task's difficulty;
the demo sets each task's L1 norm beside the test error of a logistic regression on the
raw pixels.

Then model selection (the paper's sec. 3.4 and Table 1, on a toy scale): a small zoo of
experts (a one-layer ReLU network, 64 pixels -> 8 features, fine-tuned on eight tasks drawn
from one half of the digits, plus its untrained start, the "generic" expert) is tested on the
45 pairs of digits drawn from the other half (:func:`~sklearn_task2vec.zoo.error_matrix`), and
the expert chosen by the TASK2VEC distances of the tasks' embeddings to the embeddings of the
experts' training tasks (symmetric, and asymmetric with
:class:`~sklearn_task2vec.Model2VecSelector` ``(max_iter=0)``) is compared with the oracle,
chance and the generic expert. With matplotlib installed (``pip install
sklearn-task2vec[plot]``), the figure, drawn with the Displays of
:mod:`sklearn_task2vec.plotting`, goes to ``--output-dir``. The Fashion-MNIST version,
with MODEL2VEC, is ``examples/slow_model_selection.py``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from ._writer import write_file
from .distances import pairwise_task_distances
from .embedder import FisherTaskEmbedder
from .plotting import ModelSelectionDisplay, NormDifficultyDisplay, TaskDistanceDisplay
from .selector import Model2VecSelector, relative_error_increase
from .zoo import Expert, error_matrix, model_embeddings, train_expert

#: (short name, description, classes, label of each class: None keeps the digit itself).
TASKS = [
    ("0v1", "0 vs 1", [0, 1], None),
    ("3v8", "3 vs 8", [3, 8], None),
    ("1v7", "1 vs 7", [1, 7], None),
    ("4v9", "4 vs 9", [4, 9], None),
    ("5v6", "5 vs 6", [5, 6], None),
    ("2v3", "2 vs 3", [2, 3], None),
    ("even", "even vs odd", list(range(10)), lambda digit: digit % 2),
    ("lo/hi", "0-4 vs 5-9", list(range(10)), lambda digit: int(digit >= 5)),
    ("3v5v8", "3 vs 5 vs 8", [3, 5, 8], None),
    ("all10", "all ten digits", list(range(10)), None),
]


#: The tasks of :data:`TASKS` that the experts of the model-selection study are trained on.
EXPERT_TASKS = ["0v1", "3v8", "1v7", "4v9", "5v6", "2v3", "even", "lo/hi"]

#: Table 1 of the paper (iNat + CUB, ResNet-34 experts): relative error increase over the oracle (%).
PAPER_TABLE1 = {"chance": 59.52, "generic": 30.18, "TASK2VEC": 42.54, "asymmetric TASK2VEC": 9.97}


def digit_tasks(subset=None):
    """``[(short name, description, (inputs, labels)), ...]`` for the tasks in :data:`TASKS`.

    Inputs are the 64 pixels scaled to ``[0, 1]``; ``subset``: indices of the digits to use
    (``None``: all 1,797).
    """
    digits = load_digits()
    pixels, target = digits.data / 16.0, digits.target
    if subset is not None:
        pixels, target = pixels[subset], target[subset]
    tasks = []
    for name, description, classes, relabel in TASKS:
        keep = np.isin(target, classes)
        labels = target[keep]
        if relabel is not None:
            labels = np.array([relabel(digit) for digit in labels])
        tasks.append((name, description, (pixels[keep], labels)))
    return tasks


def pair_tasks(subset):
    """The 45 tasks "digit a vs digit b" on the digits ``subset``: ``[(name, (inputs, labels)), ...]``."""
    digits = load_digits()
    pixels, target = digits.data[subset] / 16.0, digits.target[subset]
    tasks = []
    for a, b in itertools.combinations(range(10), 2):
        keep = np.isin(target, [a, b])
        tasks.append((f"{a}v{b}", (pixels[keep], target[keep])))
    return tasks


def selection_study(random_state, method, expert_epochs=30):
    """Model selection on digit pairs: the expert zoo, the error matrix and each selector's choices.

    Returns a dict with ``names`` (tasks), ``experts`` (names), ``errors`` (tasks x experts),
    ``rows`` (``(selector, mean error, relative increase)``, oracle first) and timings.
    """
    # The networks and tasks are tiny: one torch thread is faster than several, and much
    # faster on a busy machine, where spinning threads wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            return _selection_study(random_state, method, expert_epochs)
    finally:
        torch.set_num_threads(threads)


def _selection_study(random_state, method, expert_epochs):
    order = np.random.RandomState(random_state).permutation(len(load_digits().target))
    task_half, expert_half = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    tasks = pair_tasks(task_half)
    expert_tasks = {name: task for name, _, task in digit_tasks(expert_half) if name in EXPERT_TASKS}

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(random_state)
    network = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU())
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.empty_like(parameter).uniform_(-0.125, 0.125, generator=generator))
    experts = [
        train_expert(
            network,
            expert_tasks[name],
            name=name,
            task_name=name,
            epochs=expert_epochs,
            head_epochs=2,
            optimizer="adam",
            learning_rate=1e-2,
            head_learning_rate=1e-2,
            random_state=random_state,
            device="cpu",
        )
        for name in EXPERT_TASKS
    ]
    experts.append(Expert(network, "generic"))
    trained = time.perf_counter() - start

    start = time.perf_counter()
    embedder = FisherTaskEmbedder(method=method, normalize="trivial", random_state=random_state)
    X = embedder.fit_transform([task for _, task in tasks])
    for expert, row in zip(experts, embedder.transform([expert_tasks[name] for name in EXPERT_TASKS])):
        expert.task_embedding = row
    M = model_embeddings(experts)  # the generic expert's row is zeros: unknown (paper, sec. 3.4)
    embedded = time.perf_counter() - start

    start = time.perf_counter()
    errors = error_matrix(experts, [task for _, task in tasks], device="cpu", random_state=random_state)
    measured = time.perf_counter() - start

    n_tasks, n_experts = errors.shape
    known = np.arange(len(EXPERT_TASKS))  # the symmetric distance needs an embedding: trained experts only
    choices = {
        "generic": np.full(n_tasks, n_experts - 1),
        "TASK2VEC": known[pairwise_task_distances(X, M[known]).argmin(axis=1)],
        "asymmetric TASK2VEC": Model2VecSelector(model_embeddings=M[known], max_iter=0)
        .fit(X, errors[:, known].argmin(axis=1))
        .predict(X),
    }
    oracle = errors.min(axis=1).mean()
    rows = [("oracle", oracle, 0.0), ("chance", errors.mean(), (errors.mean() - oracle) / oracle)]
    for label, chosen in choices.items():
        rows.append(
            (label, errors[np.arange(n_tasks), chosen].mean(), relative_error_increase(errors, chosen))
        )
    return {
        "names": [name for name, _ in tasks],
        "experts": [expert.name for expert in experts],
        "errors": errors,
        "rows": rows,
        "seconds": (trained, embedded, measured),
    }


def study_figure(names, distances, norms, errors, rows):
    """The study's figure: d_sym, norm vs error, and model selection beside the paper's Table 1.

    Drawn with the Displays of :mod:`sklearn_task2vec.plotting`; ``rows``: the selection
    table (``(selector, mean error, relative increase)``, oracle and chance first), or empty
    when the study was skipped. The paper's numbers get a panel and an axis of their own: its
    oracle's error is far larger than the digit pairs', so that the same mistakes give
    smaller percentages there (see :func:`selection_notes`).
    """
    import matplotlib.pyplot as plt

    layout = [["distances", "norms"], ["selection", "paper"]] if rows else [["distances", "norms"]]
    figure = plt.figure(figsize=(13, 11 if rows else 6.5), layout="constrained")
    panels = figure.subplot_mosaic(layout, height_ratios=[1.6, 1] if rows else None)
    TaskDistanceDisplay(distances, names=names).plot(ax=panels["distances"])
    if rows:
        chance = dict((label, increase) for label, _, increase in rows)["chance"]
        ours = {label: increase for label, _, increase in rows if label not in ("oracle", "chance")}
        ModelSelectionDisplay(ours, chance=chance).plot(ax=panels["selection"])
        panels["selection"].set_title("Model selection on the 45 digit pairs (this demo)")
        paper = {label: PAPER_TABLE1[label] / 100 for label in ours}
        ModelSelectionDisplay(paper, chance=PAPER_TABLE1["chance"] / 100).plot(ax=panels["paper"])
        panels["paper"].set_title("The paper's Table 1 (iNat + CUB): another scale")
    # Last: the names are placed on the figure as laid out with its other panels.
    NormDifficultyDisplay(
        norms,
        100 * errors,
        names=names,
        difficulty_label="test error of a logistic regression on the pixels (%)",
    ).plot(ax=panels["norms"])
    return figure


def write_plots(folder, **panels):
    """Write ``digits_study.png`` into ``folder`` when matplotlib is installed; the path, or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\nmatplotlib is not installed (pip install 'sklearn-task2vec[plot]'): no plots written.")
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_study.png"
    figure = study_figure(**panels)
    # The demo's own figure, under the name it gives it: a rerun replaces it.
    write_file(path, lambda file: figure.savefig(file, format="png", dpi=80), overwrite=True)
    plt.close(figure)
    print(f"\nWrote {path}")
    return path


def raw_task_error(inputs, labels, random_state):
    """Test error of a logistic regression on the raw task, over a stratified 50/50 split."""
    X_train, X_test, y_train, y_test = train_test_split(
        inputs, labels, test_size=0.5, stratify=labels, random_state=random_state
    )
    model = LogisticRegression(max_iter=2000).fit(X_train, y_train)
    return 1.0 - model.score(X_test, y_test)


def format_matrix(matrix, names, digits=2):
    """The rows of ``matrix`` as aligned text, with ``names`` as row and column labels."""
    width = max(max(len(name) for name in names), digits + 3)
    lines = [" " * width + " " + " ".join(f"{name:>{width}}" for name in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:>{width}} " + " ".join(f"{value:>{width}.{digits}f}" for value in row))
    return lines


def hub_notes(names, nearest_of):
    """Lines explaining the tasks that are the nearest task of half the others or more."""
    classes = {name: set(task_classes) for name, _, task_classes, _ in TASKS}
    lines = []
    for hub in sorted(set(nearest_of)):
        count = sum(1 for i, j in enumerate(nearest_of) if j == hub and i != hub)
        if count < len(names) / 2:
            continue
        near = [names[i] for i, j in enumerate(nearest_of) if j == hub]
        holds = names[hub] in classes and all(
            classes[names[hub]] >= classes.get(name, set()) for name in near
        )
        why = (
            "its examples include those of each of them, so its Fisher Information spreads over the "
            "filters every one of them uses"
            if holds
            else "its embedding spreads over the filters many of them use"
        )
        lines.append(
            f"  {names[hub]} is the nearest task of {count} of the {len(names)}: {why}. A task drawn from "
            f"the union of others is near each of them (a hub); the next entries of each row compare the "
            f"others among themselves."
        )
    return lines


def selection_notes(rows):
    """Lines saying how to read the model-selection table, with its oracle's error."""
    oracle = dict((label, error) for label, error, _ in rows)["oracle"]
    per_point = f"adds {1 / oracle:+.0f}% to it" if oracle > 0 else "has no finite relative size"
    return [
        "  Lower is better in both columns. 'vs oracle' is the relative error increase of the paper's",
        "  Table 1, (mean error of the chosen experts - the oracle's) / the oracle's, the oracle picking",
        f"  the best expert of every task. Here the oracle's mean error is {100 * oracle:.2f}%: each point of",
        f"  extra error {per_point}. The paper's fine-grained tasks (iNat, CUB) have a much larger",
        "  oracle error, so the same mistakes give smaller percentages there: compare the order of the",
        "  selectors, not the numbers. 'generic' is the experts' untrained start, a random network.",
    ]


def main(argv=None):
    """Run the demo and print its report.

    Parameters
    ----------
    argv : list of str or None
        Command-line arguments (``None``: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_task2vec.demo",
        description="TASK2VEC task distances and embedding norms on scikit-learn's digits.",
    )
    parser.add_argument(
        "--random-state", type=int, default=0, help="seed of the probe, heads and splits (default 0)"
    )
    parser.add_argument(
        "--method",
        choices=["auto", "exact", "montecarlo"],
        default="auto",
        help="Fisher estimator (default auto: exact up to 3 classes, Monte Carlo above)",
    )
    parser.add_argument("--no-selection", action="store_true", help="skip the model-selection study (faster)")
    parser.add_argument(
        "--output-dir",
        default="task2vec-demo",
        help="folder of the figures, written when matplotlib is installed (default ./task2vec-demo)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no figures")
    args = parser.parse_args(argv)

    tasks = digit_tasks()
    names = [name for name, _, _ in tasks]
    print("TASK2VEC on scikit-learn's digits (8x8 pixels scaled to [0, 1], random ReLU probe)")
    print()
    print("Tasks:")
    for name, description, (_, labels) in tasks:
        print(f"  {name:<6} {description:<15} {len(labels):>5} examples, {len(np.unique(labels)):>2} classes")

    start = time.perf_counter()
    embedder = FisherTaskEmbedder(method=args.method, random_state=args.random_state)
    embeddings = embedder.fit_transform([task for _, _, task in tasks])
    elapsed = time.perf_counter() - start
    print(f"\nEmbedded {len(tasks)} tasks into {embeddings.shape[1]} filters in {elapsed:.1f} s.")

    distances = pairwise_task_distances(embeddings)
    print("\nSymmetric TASK2VEC distance d_sym (paper, sec. 3.3):")
    for line in format_matrix(distances, names):
        print("  " + line)

    print("\nNearest tasks (d_sym: 0 for tasks that weigh the probe's filters alike, 1 for disjoint ones):")
    nearest_of = []
    for i, name in enumerate(names):
        order = [j for j in np.argsort(distances[i], kind="stable") if j != i][:3]
        nearest_of.append(order[0])
        nearest = ", ".join(f"{names[j]} ({distances[i, j]:.2f})" for j in order)
        print(f"  {name:<6} -> {nearest}")
    for line in hub_notes(names, nearest_of):
        print(line)

    norms = embeddings.sum(axis=1)  # L1 norm: the entries are non-negative
    errors = np.array([raw_task_error(*task, args.random_state) for _, _, task in tasks])
    print("\nEmbedding norm vs difficulty (logistic regression on raw pixels, 50/50 stratified split):")
    print(f"  {'task':<6} {'L1 norm':>10} {'test error':>11}")
    for name, norm, error in zip(names, norms, errors):
        print(f"  {name:<6} {norm:>10.4g} {error:>11.3f}")
    rho, p_value = spearmanr(norms, errors)
    print(f"  Spearman correlation(norm, error) = {rho:+.2f} (p = {p_value:.2g}, {len(names)} tasks)")

    rows = []
    if not args.no_selection:
        study = selection_study(args.random_state, args.method)
        trained, embedded, measured = study["seconds"]
        print(
            f"\nModel selection on the 45 pairs of digits (tasks: one half of the digits; experts: "
            f"{len(EXPERT_TASKS)} fine-tuned on {', '.join(EXPERT_TASKS)} from the other half, and their "
            f"untrained start, 'generic'). Experts trained in {trained:.1f} s, tasks embedded in "
            f"{embedded:.1f} s, error matrix {study['errors'].shape} in {measured:.1f} s."
        )
        print(f"  {'selector':<20} {'mean error':>10} {'vs oracle':>10} {'paper, Table 1':>15}")
        for label, error, increase in study["rows"]:
            paper = "" if label == "oracle" else f"{PAPER_TABLE1[label]:+.2f}%"
            print(f"  {label:<20} {100 * error:>9.2f}% {100 * increase:>+9.2f}% {paper:>15}")
        for line in selection_notes(study["rows"]):
            print(line)
        rows = study["rows"]
    if not args.no_plots:
        write_plots(args.output_dir, names=names, distances=distances, norms=norms, errors=errors, rows=rows)
    return distances


if __name__ == "__main__":
    main()
