"""
Model selection on Fashion-MNIST: the paper's Table 1 at laptop scale
=====================================================================

The paper (Achille et al., ICCV 2019, Table 1) picks, for each of many iNat and CUB tasks,
one expert of a zoo of networks, and reports the mean test error of the chosen experts as a
relative increase over the oracle (the best expert of each task). Here:

* tasks: 29 Fashion-MNIST tasks (9 nodes of a hierarchy, 10 one-vs-rest, 10 pairs of classes),
  1,200 images each, from one half of the train split;
* experts: the small CNN probe (pretrained on the t10k split, ``slow_pretrain_probe.py``)
  fine-tuned with Adam for 8 epochs on 8 of those task definitions (2,000 images each), drawn
  from the *other* half of the train split, plus the probe itself, the "generic" expert (the paper's ImageNet row);
* ground truth: :func:`~sklearn_task2vec.zoo.error_matrix`, a logistic regression on each
  expert's frozen features of each task (70/30 split);
* selectors: chance, the generic expert, TASK2VEC (nearest expert by the symmetric distance
  of its training task's embedding), asymmetric TASK2VEC (``Model2VecSelector(max_iter=0)``)
  and MODEL2VEC (``Model2VecSelector`` trained on the error matrix, leave-one-out over the
  tasks as in the paper: each task's expert is chosen by a selector that never saw it).

Embeddings, experts and features are cached under ``<output-dir>`` so reruns are fast.
Run: ``python examples/slow_model_selection.py [--n-init 40] [--folds K] [--expert-epochs 8]``.
"""

import time

import _common
import numpy as np
import torch
from sklearn.model_selection import KFold, LeaveOneOut

from sklearn_task2vec import Model2VecSelector
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.selector import relative_error_increase
from sklearn_task2vec.zoo import Expert, error_matrix, model_embeddings, train_expert

#: The task definitions the experts are fine-tuned on (their data: the other half of the train split).
EXPERT_TASKS = [
    "upper",
    "long",
    "footwear",
    "accessories",
    "shirt-vs-rest",
    "dress-vs-rest",
    "coat/shirt",
    "sandal/sneaker",
]

#: Table 1 of the paper (iNat + CUB): mean error (%) and relative increase over the oracle.
PAPER = {
    "oracle": (31.24, 0.0),
    "chance": (None, 59.52),
    "generic": (None, 30.18),
    "TASK2VEC": (None, 42.54),
    "asymmetric TASK2VEC": (None, 9.97),
    "MODEL2VEC": (None, 6.81),
}
PAPER_NAMES = {"generic": "ImageNet"}


def trained_experts(probe, expert_library, folder, args):
    """Fine-tune (or load from ``folder/experts``) one expert per task of ``expert_library``."""
    (folder / "experts").mkdir(exist_ok=True)
    experts = []
    for entry in expert_library:
        tag = f"{entry['name'].replace('/', '_')}-e{args.expert_epochs}-n{args.expert_examples}-s{args.seed}"
        path = folder / "experts" / f"{tag}.pt"
        network = _common.SmallCNN()
        start = time.perf_counter()
        if path.exists():
            network.load_state_dict(torch.load(path, weights_only=True))
            note = "loaded"
        else:
            expert = train_expert(
                probe,
                entry["task"],
                task_name=entry["name"],
                epochs=args.expert_epochs,
                head_epochs=1,
                optimizer="adam",
                learning_rate=1e-3,
                head_learning_rate=1e-2,
                batch_size=32,
                random_state=args.seed,
                device="cpu",
            )
            network = expert.module
            torch.save(network.state_dict(), path)
            accuracy = expert.info["accuracy"][-1]
            note = f"trained, last-epoch training accuracy {accuracy:.2f}"
        network.eval()
        experts.append(Expert(network, f"expert:{entry['name']}", trained_on=entry["name"]))
        print(f"  {experts[-1].name:<28} {note} ({time.perf_counter() - start:.0f} s)")
    return experts


def cross_validated_choices(X, errors, start_embeddings, args):
    """MODEL2VEC's choice for each task by a selector fitted on the other folds of tasks."""
    chosen = np.empty(len(X), dtype=int)
    folds = LeaveOneOut() if args.folds is None else KFold(args.folds, shuffle=True, random_state=args.seed)
    for train, test in folds.split(X):
        selector = Model2VecSelector(
            model_embeddings=start_embeddings,
            max_iter=args.max_iter,
            n_init=args.n_init,
            random_state=args.seed,
        )
        selector.fit(X[train], errors[train].argmin(axis=1), errors=errors[train])
        chosen[test] = selector.predict(X[test])
    return chosen


def plot(plt, rows):
    names = [name for name, *_ in rows if name != "oracle"]
    ours = [100 * increase for name, _, increase in rows if name != "oracle"]
    paper = [PAPER[name][1] for name in names]
    figure, axes = plt.subplots(figsize=(7, 3.6))
    positions = np.arange(len(names))
    axes.barh(positions + 0.2, ours, height=0.4, label="ours (Fashion-MNIST, small CNN)")
    axes.barh(positions - 0.2, paper, height=0.4, label="paper (iNat+CUB, ResNet-34)", alpha=0.6)
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel("relative error increase over the oracle (%)")
    axes.set_title("Model selection (paper Table 1 analogue)")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    # Tasks and experts large enough that the error matrix is more than noise: with 360 test
    # images per task one mistake is 0.3 %, and experts trained this long differ.
    parser.set_defaults(max_examples=1200)
    parser.add_argument(
        "--expert-epochs", type=int, default=8, help="fine-tuning epochs per expert (default 8)"
    )
    parser.add_argument(
        "--expert-examples", type=int, default=2000, help="examples per expert (default 2000)"
    )
    parser.add_argument("--n-init", type=int, default=40, help="MODEL2VEC restarts (default 40)")
    parser.add_argument(
        "--folds", type=int, default=None, help="folds of tasks for MODEL2VEC (default: leave-one-out)"
    )
    parser.add_argument("--max-iter", type=int, default=81, help="MODEL2VEC epochs (default 81, the paper's)")
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    begin = time.perf_counter()

    probe = _common.pretrained_probe(folder)
    task_pool, expert_pool = _common.split_pools(args.seed)
    library = _common.fashion_task_library(task_pool, max_examples=args.max_examples, seed=args.seed)
    names = [entry["name"] for entry in library]
    expert_library = [
        entry
        for entry in _common.fashion_task_library(
            expert_pool, max_examples=args.expert_examples, seed=args.seed + 1
        )
        if entry["name"] in EXPERT_TASKS
    ]
    print(
        f"{len(library)} tasks of {args.max_examples} images; {len(expert_library)} experts + the generic probe"
    )

    print("Experts (fine-tuned from the probe with Adam, on the expert half of the train split):")
    experts = trained_experts(probe, expert_library, folder, args)
    experts.append(Expert(probe, "generic probe", trained_on="fashion-10 (t10k)"))

    start = time.perf_counter()
    embedder = _common.task_embedder(probe, folder, args.seed)
    X = embedder.fit_transform([entry["task"] for entry in library])
    # Each expert's F_j: the embedding of the task it was trained on (the generic probe: its
    # 10-class pretraining task), by the same embedder, in the same trivial-normalised space.
    expert_tasks = [entry["task"] for entry in expert_library] + [
        _common.ten_class_task(args.max_examples, args.seed)
    ]
    for expert, row in zip(experts, embedder.transform(expert_tasks)):
        expert.task_embedding = row
    M = model_embeddings(experts)
    print(
        f"Embedded {len(library) + len(expert_tasks)} tasks ({X.shape[1]} filters) in {time.perf_counter() - start:.0f} s"
    )

    start = time.perf_counter()
    errors = error_matrix(
        experts,
        [entry["task"] for entry in library],
        task_names=names,
        cache=folder / "feature-cache",
        device="cpu",
        random_state=args.seed,
    )
    print(f"Error matrix {errors.shape} in {time.perf_counter() - start:.0f} s")
    best = errors.argmin(axis=1)
    short = [expert.name.replace("expert:", "") for expert in experts]
    print("\nError (%) of every expert on every task (* = oracle):")
    print(f"  {'task':<18}" + "".join(f"{name[:9]:>10}" for name in short))
    for name, row, j in zip(names, errors, best):
        print(
            f"  {name:<18}" + "".join(f"{100 * v:>9.1f}{'*' if k == j else ' '}" for k, v in enumerate(row))
        )

    start = time.perf_counter()
    n_tasks = len(library)
    generic = np.full(n_tasks, len(experts) - 1)
    symmetric = pairwise_task_distances(X, M).argmin(axis=1)
    asymmetric = Model2VecSelector(model_embeddings=M, max_iter=0).fit(X, best).predict(X)
    model2vec = cross_validated_choices(X, errors, M, args)
    print(
        f"Selectors in {time.perf_counter() - start:.0f} s (MODEL2VEC: "
        f"{'leave-one-out' if args.folds is None else f'{args.folds}-fold'} cross-validation over the tasks)"
    )

    oracle = errors.min(axis=1).mean()
    rows = [("oracle", oracle, 0.0), ("chance", errors.mean(), (errors.mean() - oracle) / oracle)]
    for label, chosen in [
        ("generic", generic),
        ("TASK2VEC", symmetric),
        ("asymmetric TASK2VEC", asymmetric),
        ("MODEL2VEC", model2vec),
    ]:
        rows.append(
            (label, errors[np.arange(n_tasks), chosen].mean(), relative_error_increase(errors, chosen))
        )

    print("\nTable 1 analogue: mean test error over the tasks and relative increase over the oracle")
    print(
        f"  {'selector':<21} {'ours: error':>11} {'ours: +%':>9}   {'paper row':<10} {'paper: error':>12} {'paper: +%':>9}"
    )
    for label, error, increase in rows:
        paper_error, paper_increase = PAPER[label]
        paper_error = "" if paper_error is None else f"{paper_error:.2f}"
        print(
            f"  {label:<21} {100 * error:>11.2f} {100 * increase:>+8.2f}%   {PAPER_NAMES.get(label, 'same'):<10} "
            f"{paper_error:>12} {paper_increase:>+8.2f}%"
        )
    print(
        f"  (chance = the expected error of a uniformly random expert; experts chosen by "
        f"MODEL2VEC: {np.bincount(model2vec, minlength=len(experts)).tolist()}, oracle: "
        f"{np.bincount(best, minlength=len(experts)).tolist()})"
    )
    _common.savefig(plot, folder / "model_selection.png", rows=rows)
    print(f"Total {time.perf_counter() - begin:.0f} s")
    return rows


if __name__ == "__main__":
    main()
