"""
Choosing a model: six datasets, four pretrained models, which to fine-tune for a new one?
=========================================================================================

The README's end-to-end model-selection recipe, run by the documentation build. You have
measured a few pretrained models (the *experts*) on the datasets you already have, and a new
dataset arrives: which model should you fine-tune on it, without fine-tuning them all?

1. experts: three small networks fine-tuned on known tasks
   (:func:`~sklearn_task2vec.zoo.train_expert`), one whose training data is unknown, saved
   and loaded back (:func:`~sklearn_task2vec.zoo.save_expert`,
   :func:`~sklearn_task2vec.zoo.load_expert`), as a model zoo on disk would be;
2. the error matrix on six datasets (:func:`~sklearn_task2vec.zoo.error_matrix`): the ground
   truth that the selector learns from;
3. one :class:`~sklearn_task2vec.FisherTaskEmbedder` for every task, a fitted
   :class:`~sklearn_task2vec.Model2VecSelector`, saved with joblib;
4. a recommendation for a new dataset from Python, checked against the new dataset's errors,
   and the same recommendation from the ``task2vec`` command line.

Everything is small and offline: scikit-learn's 8x8 digits, a 64 -> 16 network, a random
ReLU probe. Files go to a temporary folder. The figure at the end needs matplotlib
(``pip install "sklearn-task2vec[plot]"``).
"""

# %%
# Datasets: pairs of digits
# -------------------------
# A task is an ``(inputs, labels)`` pair. The experts learn on one half of the digits and the
# tasks use the other half, so that no expert is measured on images it was trained on.

import tempfile
from pathlib import Path

import joblib
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector
from sklearn_task2vec.cli import main as task2vec
from sklearn_task2vec.plotting import ModelSelectionDisplay
from sklearn_task2vec.selector import relative_error_increase
from sklearn_task2vec.zoo import (
    Expert,
    error_matrix,
    load_expert,
    model_embeddings,
    save_expert,
    train_expert,
)

digits = load_digits()
X, y = digits.data / 16.0, digits.target
half = np.arange(len(y)) % 2 == 0  # experts learn on one half of the digits, tasks use the other


def task(digits_, part):
    keep = part & np.isin(y, digits_)
    return X[keep], y[keep]


folder = tempfile.TemporaryDirectory()
workdir = Path(folder.name)

# %%
# Four pretrained models
# ----------------------
# Three are fine-tuned from one small network on known tasks (groups of digits); the fourth,
# "generic", is the network itself, standing for a downloaded model whose training data is
# unknown. They are saved to a folder each and loaded back, as experts trained elsewhere
# would be (``load_expert`` takes the architecture to load the weights into, here the same
# small network).

torch.manual_seed(0)
network = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU())  # a small probe for 8x8 digits
sources = {"round-digits": (0, 6, 8, 9), "straight-digits": (1, 4, 7), "curvy-digits": (2, 3, 5)}
experts = [
    train_expert(
        network,
        task(d, half),
        name=name,
        task_name=name,
        epochs=20,
        optimizer="adam",
        learning_rate=1e-2,
        head_learning_rate=1e-2,
        random_state=0,
        device="cpu",
    )
    for name, d in sources.items()
]
experts.append(Expert(network, "generic"))  # e.g. a downloaded model: its training task unknown

# %%
# Six datasets, a new one, and their embeddings
# ---------------------------------------------
# One embedder for everything: the six datasets, the new one, and the experts' source tasks
# (an expert's ``task_embedding`` is the embedding of the task it was trained on; "generic"
# has none). ``normalize="trivial"`` divides every row by the trivial embedding, the space in
# which the selector's asymmetric distance is defined.

datasets = [(0, 6), (1, 7), (2, 5), (8, 9), (4, 9), (3, 5)]
tasks = [task(d, ~half) for d in datasets]
new_task = task((2, 3), ~half)

embedder = FisherTaskEmbedder(normalize="trivial", random_state=0)
E = embedder.fit_transform(tasks)
E_new = embedder.transform([new_task])
for expert, row in zip(experts, embedder.transform([task(d, half) for d in sources.values()])):
    expert.task_embedding = row
print("embeddings:", E.shape, "(6 datasets, one value per filter of the probe)")

for expert in experts:
    save_expert(expert, workdir / "experts" / expert.name)
experts = [load_expert(workdir / "experts" / expert.name, architecture=network) for expert in experts]
print("loaded:", [(expert.name, expert.trained_on) for expert in experts])

# %%
# The error matrix: what the selector learns from
# -----------------------------------------------
# ``errors[i, j]`` is the test error (0 to 1, **lower is better**) of a logistic regression on
# expert ``j``'s frozen features of dataset ``i``: what fine-tuning every model on every
# dataset would tell you, at the cost of a linear classifier. The best expert of a dataset is
# the smallest entry of its row (the *oracle*); on these easy datasets several experts often
# tie, at 0 errors among the 54 or so test images of a dataset.

errors = error_matrix(experts, tasks, device="cpu", random_state=0)  # (6 tasks, 4 experts)
names = [expert.name for expert in experts]
print("errors (rows: datasets, columns:", names, ")")
print(errors.round(3))
best = errors == errors.min(axis=1, keepdims=True)  # ties: every expert at its row's minimum
print("best experts per dataset:", [" / ".join(np.array(names)[row]) for row in best])

# %%
# A selector, fitted and saved
# ----------------------------
# "generic" has no known training task (its row of ``model_embeddings`` is zeros): that needs
# MODEL2VEC (``max_iter > 0``, the default), which learns where it sits from the errors.
# ``experts=names`` makes the names the selector's classes: ``predict`` returns names, and
# ``relative_error_increase(..., experts=selector.classes_)`` maps them back to columns.
#
# The relative error increase is the paper's metric (Table 1): how much more error the chosen
# experts make than the best ones, 0 when the best expert is chosen for every dataset, 0.5
# when the chosen experts' mean error is 1.5 times the oracle's. Lower is better. Here it is
# measured on the datasets the selector was fitted on, so it is optimistic.

selector = Model2VecSelector(
    experts=names, model_embeddings=model_embeddings(experts), n_init=10, random_state=0
)
selector.fit(E, errors.argmin(axis=1), errors=errors)
chosen = selector.predict(E)
increase = relative_error_increase(errors, chosen, experts=selector.classes_)
print("training datasets: chosen", chosen.tolist())
print(f"relative error increase over the oracle (in-sample): {increase:.3f}")
joblib.dump(selector, workdir / "selector.joblib")

# %%
# A recommendation for the new dataset
# ------------------------------------
# ``predict_proba`` ranks the experts for the new dataset (probabilities sum to 1; the
# recommendation is the most probable one). The check below measures every expert on the new
# dataset: that is what the selector saves you from doing, and it tells whether the
# recommendation was right. With six training datasets the recommendation is a guide, not a
# guarantee: the README tells of another new dataset ("3 vs 8") where it was not the best.

recommended = selector.predict(E_new)[0]
probabilities = dict(zip(selector.classes_.tolist(), selector.predict_proba(E_new)[0].round(3).tolist()))
print("new task (2 vs 3): recommended", recommended, probabilities)

new_errors = error_matrix(experts, [new_task], device="cpu", random_state=0)[0]
print("new task's errors:", dict(zip(names, new_errors.round(3).tolist())))
rank = 1 + int(np.sum(new_errors < new_errors[names.index(recommended)]))
print(f"the recommended expert ranks {rank} of {len(names)} on the new task (1: the best)")

# %%
# The same from the command line
# ------------------------------
# ``task2vec embed`` writes the new dataset's embedding (its defaults match the embedder
# above but for ``--normalize trivial``), and ``task2vec recommend`` reads the saved selector.
# In a shell::
#
#     task2vec embed new_task.npz --normalize trivial -o new_task.csv
#     task2vec recommend selector.joblib new_task.csv
#
# Here the command line's ``main`` is called in-process with the same arguments; it returns
# the exit status (0: success).

np.savez(workdir / "new_task.npz", X=new_task[0], y=new_task[1])
for arguments in (
    ["embed", workdir / "new_task.npz", "--normalize", "trivial", "-o", workdir / "new_task.csv"],
    ["recommend", workdir / "selector.joblib", workdir / "new_task.csv"],
):
    status = task2vec([str(argument) for argument in arguments])
    if status != 0:
        raise RuntimeError(f"task2vec {arguments[0]} failed with exit status {status}")

# %%
# The errors, the choices and the recommendation in one figure
# ------------------------------------------------------------
# Left: the error matrix, the best experts of each dataset framed in black (several where
# they tie) and the selector's choice marked with a dot (a dot outside a frame is a mistake).
# Middle: the relative error increase over the oracle of the selector's choices on the six
# datasets (in-sample) and of always fine-tuning "generic", with chance (a random expert) for
# reference (:class:`~sklearn_task2vec.plotting.ModelSelectionDisplay`). Right: the new
# dataset's errors, the recommended expert's bar in colour.

figure, (left, middle, right) = plt.subplots(
    1, 3, figsize=(15, 4), width_ratios=(1.2, 1, 1), layout="constrained"
)
image = left.imshow(errors, cmap="viridis_r", vmin=0)  # low error bright, as close tasks are
figure.colorbar(image, ax=left, label="test error (lower is better)")
left.set_xticks(range(len(names)), names, rotation=45, ha="right")
left.set_yticks(range(len(datasets)), [f"{a} vs {b}" for a, b in datasets])
left.set_title("error matrix (6 datasets)")
for row, choice in enumerate(chosen):
    for column in np.flatnonzero(best[row]):
        left.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black", lw=2))
    left.plot(names.index(choice), row, "o", color="white", markeredgecolor="black")
always_generic = ["generic"] * len(datasets)
ModelSelectionDisplay.from_errors(
    errors,
    {"Model2VecSelector (in-sample)": chosen, "always generic": always_generic},
    experts=names,
    ax=middle,
)
colors = ["tab:orange" if name == recommended else "lightgray" for name in names]
right.barh(names, new_errors, color=colors)
right.invert_yaxis()
right.set_xlabel("test error on the new dataset (2 vs 3)")
right.set_title(f"recommended: {recommended}")
plt.show()

folder.cleanup()
