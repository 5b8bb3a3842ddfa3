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
  tasks as in the paper: each task's expert is chosen by a selector that never saw it);
* beside them, the transferability scores (:mod:`sklearn_task2vec.transferability`: LogME,
  LEEP, NCE, H-score), each expert scored on each task's training split from the features
  the error matrix computes (:func:`~sklearn_task2vec.zoo.transferability_scores`), the
  best-scoring expert chosen (LEEP and NCE read each expert's source head; the generic
  probe's is a softmax regression on its features of its own 10-class task);
* for every selector, the weighted Kendall's tau between its scores of the experts and their
  accuracy (the LogME paper's measure, averaged over the tasks) with its 95 % percentile
  bootstrap interval over the tasks
  (:func:`~sklearn_task2vec.selector.weighted_kendall_tau_interval`), and its cost for a new
  task: how many networks the task is pushed through, and the seconds per new task measured
  in this run on a few tasks without any cache, the best of three runs (TASK2VEC: the probe's
  features, head and Fisher passes; the scores: every expert's features, which the four
  share, and the four scores);
* for every score, how often its chosen expert changes when a task's training examples are
  subsampled (half of each class without replacement, ``--n-resamples`` subsamples per task;
  the mean over the tasks of :func:`~sklearn_task2vec.zoo.selection_stability`, from the
  cached features). The TASK2VEC rows have none: each subsample would be embedded again.

Embeddings, experts and features are cached under ``<output-dir>`` so reruns are fast.
Run: ``python examples/slow_model_selection.py [--n-init 40] [--folds K] [--expert-epochs 8]``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from a run with ``--seed 1``; the script writes its own
into ``<output-dir>``.

Run time: 160 s on a shared 2-core CPU machine, one thread, and 30 s when rerun from
the cache (docs/paper.md, "Reproducing the paper"), measured before the transferability scores
were added; no run time of the current version is stored.

.. image:: /images/model_selection.png
   :alt: The relative error increase over the oracle of each selector, beside the paper's Table 1
"""

# sphinx_gallery_thumbnail_path = "images/model_selection.png"

import time

import _common
import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, LeaveOneOut
from torch import nn

from sklearn_task2vec import Model2VecSelector
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.plotting import ModelSelectionDisplay
from sklearn_task2vec.selector import relative_error_increase, weighted_kendall_tau_interval
from sklearn_task2vec.transferability import TransferabilitySelector
from sklearn_task2vec.zoo import (
    Expert,
    error_matrix,
    load_expert,
    model_embeddings,
    save_expert,
    selection_stability,
    train_expert,
    transferability_scores,
)

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
#: The transferability scores, as rows of the table.
SCORE_ROWS = {
    "logme": "LogME",
    "leep": "LEEP",
    "nce": "NCE",
    "h_score": "H-score",
    "knn": "k-NN",
    "sfda": "SFDA",
    "nleep": "N-LEEP",
    "transrate": "TransRate",
    "gbc": "GBC",
    "parc": "PARC",
}
#: Tasks embedded and scored again without any cache, to time each selector per new task.
TIMED_TASKS = 3
TIMING_REPEATS = 3


def trained_experts(probe, expert_library, folder, args):
    """Fine-tune (or load from ``folder/experts``) one expert per task of ``expert_library``.

    Each is saved with :func:`~sklearn_task2vec.zoo.save_expert`, its source head included.
    """
    (folder / "experts").mkdir(exist_ok=True)
    experts = []
    for entry in expert_library:
        tag = f"{entry['name'].replace('/', '_')}-e{args.expert_epochs}-n{args.expert_examples}-s{args.seed}"
        path = folder / "experts" / tag
        start = time.perf_counter()
        if (path / "expert.json").exists():
            expert = load_expert(path, architecture=_common.SmallCNN())
            note = "loaded"
        else:
            expert = train_expert(
                probe,
                entry["task"],
                task_name=entry["name"],
                name=f"expert:{entry['name']}",
                epochs=args.expert_epochs,
                head_epochs=1,
                optimizer="adam",
                learning_rate=1e-3,
                head_learning_rate=1e-2,
                batch_size=32,
                random_state=args.seed,
                device="cpu",
            )
            save_expert(expert, path)
            note = f"trained, last-epoch training accuracy {expert.info['accuracy'][-1]:.2f}"
        experts.append(expert)
        print(f"  {expert.name:<28} {note} ({time.perf_counter() - start:.0f} s)")
    return experts


def generic_expert(probe, pretraining_task):
    """The probe as an expert, with a source head over its 10 pretraining classes.

    The pretraining script keeps no head, so the head is a softmax regression fitted on the
    probe's features of (a sample of) its own pretraining task: what LEEP and NCE read.
    """
    images, labels = pretraining_task
    with torch.no_grad():
        features = probe.eval()(torch.as_tensor(images)).numpy()
    regression = LogisticRegression(max_iter=2000).fit(features, labels)
    head = nn.Linear(features.shape[1], len(regression.classes_))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(regression.coef_))
        head.bias.copy_(torch.from_numpy(regression.intercept_))
    return Expert(probe, "generic probe", trained_on="fashion-10 (t10k)", head=head.eval())


def cross_validated_choices(X, errors, start_embeddings, args):
    """MODEL2VEC's choice for each task, and its scores of the experts (minus the asymmetric
    distance), by a selector fitted on the other folds of tasks."""
    chosen = np.empty(len(X), dtype=int)
    scores = np.empty(errors.shape)
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
        scores[test] = selector.decision_function(X[test])
    return chosen, scores


def scores_and_changes(experts, tasks, score_names, args, **options):
    """Each score of ``score_names`` on every (task, expert), and how often its choice changes
    over ``args.n_resamples`` subsamples of each task (for the scores of
    ``args.stability_scores``, all if None): ``(scores, changes)``, dicts by score name.

    Each score on its own: one that refuses the zoo (a score refuses features it cannot score
    correctly) is reported as refused and left out, the others kept. ``options`` go to
    :func:`~sklearn_task2vec.zoo.transferability_scores` and
    :func:`~sklearn_task2vec.zoo.selection_stability` (the same splits and cache).
    """
    scores, changes = {}, {}
    for name in score_names:
        try:
            scores.update(transferability_scores(experts, tasks, scores=[name], **options))
            if args.stability_scores is None or name in args.stability_scores:
                changes.update(
                    selection_stability(
                        experts, tasks, scores=[name], n_resamples=args.n_resamples, **options
                    )
                )
        except ValueError as error:
            print(f"  {SCORE_ROWS[name]} refused: {error}")
            scores.pop(name, None)
    return scores, changes


def seconds_per_task(function, tasks):
    """Wall-clock seconds of ``function(tasks)`` per task: the best of ``TIMING_REPEATS`` runs
    (on a shared machine the other processes only ever add time)."""
    runs = []
    for _ in range(TIMING_REPEATS):
        start = time.perf_counter()
        function(tasks)
        runs.append((time.perf_counter() - start) / len(tasks))
    return min(runs)


def measured_costs(embedder, experts, timed_tasks, scores=tuple(SCORE_ROWS)):
    """Seconds per new task of each selector, measured on ``timed_tasks`` without a cache.

    TASK2VEC, asymmetric TASK2VEC and MODEL2VEC pay the embedding of the task (their choice
    from it is instant; MODEL2VEC's training is paid once, on solved tasks). The scores pay
    every expert's features of the task, which all four share, and the four scores: timed
    together, the scores themselves costing milliseconds beside the forward passes.
    """
    fresh = clone(embedder).set_params(memory=None).fit(timed_tasks[:1])
    embedding = seconds_per_task(fresh.transform, timed_tasks)
    scoring = seconds_per_task(
        lambda tasks: transferability_scores(experts, tasks, scores=list(scores), device="cpu"),
        timed_tasks,
    )
    costs = {label: embedding for label in ("TASK2VEC", "asymmetric TASK2VEC", "MODEL2VEC")}
    costs.update({SCORE_ROWS[name]: scoring for name in scores})
    return costs


def selection_rows(X, M, errors, scores, expert_names, args, generic=-1):
    """The rows of the Table 1 analogue: ``(label, mean error, relative increase, tau_w)``,
    ``tau_w`` a :class:`~sklearn_task2vec.selector.WeightedTauResult` (or None).

    ``X``: the tasks' embeddings; ``M``: the experts' (their training tasks'); ``scores``:
    :func:`~sklearn_task2vec.zoo.transferability_scores`'s dict. ``generic``: the column of
    the generic expert. Also returns MODEL2VEC's choices.
    """
    n_tasks = len(X)
    best = errors.argmin(axis=1)
    symmetric_distances = pairwise_task_distances(X, M)
    asymmetric_selector = Model2VecSelector(model_embeddings=M, max_iter=0).fit(X, best)
    model2vec, model2vec_scores = cross_validated_choices(X, errors, M, args)
    oracle = errors.min(axis=1).mean()
    generic_column = np.arange(errors.shape[1])[generic]
    rows = [
        ("oracle", oracle, 0.0, None),
        ("chance", errors.mean(), (errors.mean() - oracle) / oracle, None),
        (
            "generic",
            errors[:, generic_column].mean(),
            relative_error_increase(errors, np.full(n_tasks, generic_column)),
            None,
        ),
    ]
    selections = [
        ("TASK2VEC", symmetric_distances.argmin(axis=1), -symmetric_distances),
        ("asymmetric TASK2VEC", asymmetric_selector.predict(X), asymmetric_selector.decision_function(X)),
        ("MODEL2VEC", model2vec, model2vec_scores),
    ]
    for name, label in SCORE_ROWS.items():
        if name not in scores:
            continue
        selector = TransferabilitySelector(experts=expert_names).fit(scores[name])
        chosen = np.array([expert_names.index(expert) for expert in selector.predict(scores[name])])
        selections.append((label, chosen, scores[name]))
    for label, chosen, task_scores in selections:
        tau = weighted_kendall_tau_interval(task_scores, errors, random_state=args.seed)
        rows.append(
            (label, errors[np.arange(n_tasks), chosen].mean(), relative_error_increase(errors, chosen), tau)
        )
    return rows, model2vec


def print_table(rows, costs, n_experts, change_rates, args):
    """Print the Table 1 analogue beside the paper's rows, with each selector's tau_w and its
    interval, its cost, and (for the scores) ``change_rates``: how often its choice changes
    under subsampling of a task's examples, by row label."""
    networks = {label: 1 for label in ("TASK2VEC", "asymmetric TASK2VEC", "MODEL2VEC")}
    networks.update({label: n_experts for label in SCORE_ROWS.values()})
    print("\nTable 1 analogue: mean test error over the tasks and relative increase over the oracle;")
    print(
        "weighted Kendall's tau of each selector's scores against the experts' accuracy (mean over tasks) "
        "and its 95 % bootstrap interval over the tasks;"
    )
    print(
        f"cost of a new task: networks it is pushed through, seconds (mean of {TIMED_TASKS} tasks, no cache, "
        f"best of {TIMING_REPEATS} runs);"
    )
    print(
        f"changes: how often a score's chosen expert changes over {args.n_resamples} half-subsamples of a "
        f"task's training examples (mean over tasks)"
    )
    print(
        f"  {'selector':<21} {'ours: error':>11} {'ours: +%':>9} {'tau_w [95 % interval]':>22} {'networks':>8} "
        f"{'s/task':>7} {'changes':>7}   {'paper row':<10} {'paper: error':>12} {'paper: +%':>9}"
    )
    for label, error, increase, tau in rows:
        paper_error, paper_increase = PAPER.get(label, (None, None))
        paper_error = "" if paper_error is None else f"{paper_error:.2f}"
        paper_increase = "" if paper_increase is None else f"{paper_increase:+8.2f}%"
        paper_name = PAPER_NAMES.get(label, "same") if label in PAPER else "-"
        tau_text = (
            ""
            if tau is None
            else f"{tau.tau:.2f} [{tau.confidence_interval[0]:.2f}, {tau.confidence_interval[1]:.2f}]"
        )
        network_text = str(networks.get(label, ""))
        seconds = "" if label not in costs else f"{costs[label]:.2f}"
        change_text = "" if label not in change_rates else f"{change_rates[label]:.2f}"
        print(
            f"  {label:<21} {100 * error:>11.2f} {100 * increase:>+8.2f}% {tau_text:>22} {network_text:>8} "
            f"{seconds:>7} {change_text:>7}   {paper_name:<10} {paper_error:>12} {paper_increase:>9}"
        )


def plot(plt, rows):
    """Our relative error increases and the paper's Table 1, each on an axis of its own: the
    increase divides by the oracle's error, which differs between the two studies."""
    increases = {label: increase for label, _, increase, _ in rows if label not in ("oracle", "chance")}
    chance = next(increase for label, _, increase, _ in rows if label == "chance")
    paper = {label: PAPER[label][1] / 100 for label in increases if label in PAPER}
    figure, (ours_ax, paper_ax) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    ModelSelectionDisplay(increases, chance=chance).plot(ax=ours_ax)
    ours_ax.set_title("Fashion-MNIST, small CNN (this script)")
    ModelSelectionDisplay(paper, chance=PAPER["chance"][1] / 100).plot(ax=paper_ax)
    paper_ax.set_title("The paper's Table 1 (iNat + CUB): another scale")
    return figure


def add_stability_option(parser):
    parser.add_argument(
        "--stability-scores",
        nargs="+",
        choices=list(SCORE_ROWS),
        default=None,
        help="the scores whose choice changes are measured (default: all; N-LEEP's mixtures cost about a "
        "second per expert and subsample)",
    )


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
    parser.add_argument(
        "--n-resamples",
        type=int,
        default=10,
        help="half-subsamples of each task's examples for the scores' choice changes (default 10; "
        "each costs every score of every expert, N-LEEP's and PARC's about a second each)",
    )
    add_stability_option(parser)
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
    pretraining_task = _common.ten_class_task(args.max_examples, args.seed)
    experts.append(generic_expert(probe, pretraining_task))

    start = time.perf_counter()
    embedder = _common.task_embedder(probe, folder, args.seed)
    X = embedder.fit_transform([entry["task"] for entry in library])
    # Each expert's F_j: the embedding of the task it was trained on (the generic probe: its
    # 10-class pretraining task), by the same embedder, in the same trivial-normalised space.
    expert_tasks = [entry["task"] for entry in expert_library] + [pretraining_task]
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
    scores, changes = scores_and_changes(
        experts,
        [entry["task"] for entry in library],
        list(SCORE_ROWS),
        args,
        task_names=names,
        cache=folder / "feature-cache",  # the error matrix's features: no forward pass here
        device="cpu",
        random_state=args.seed,  # the error matrix's splits: scored (and subsampled) on the training examples
    )
    print(
        f"Transferability scores and their choice changes over {args.n_resamples} subsamples of each task in "
        f"{time.perf_counter() - start:.0f} s (cached features)"
    )

    start = time.perf_counter()
    rows, model2vec = selection_rows(X, M, errors, scores, [expert.name for expert in experts], args)
    print(
        f"Selectors in {time.perf_counter() - start:.0f} s (MODEL2VEC: "
        f"{'leave-one-out' if args.folds is None else f'{args.folds}-fold'} cross-validation over the tasks)"
    )

    print(f"Timing each selector on {TIMED_TASKS} new tasks, no cache ...")
    timed = [entry["task"] for entry in library[:TIMED_TASKS]]
    costs = measured_costs(embedder, experts, timed, scores=list(scores))
    print_table(
        rows,
        costs,
        len(experts),
        {SCORE_ROWS[name]: float(rate.mean()) for name, rate in changes.items()},
        args,
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
