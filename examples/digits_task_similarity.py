"""
Which digit-recognition tasks are alike?
========================================

TASK2VEC distances on scikit-learn's digits. Each task is an ``(inputs, labels)`` pair.
FisherTaskEmbedder turns every task into one vector (the Fisher Information of a probe
network's filters), and the symmetric TASK2VEC distance (Achille et al., ICCV 2019, sec. 3.3)
compares those vectors.
"""

import numpy as np
from sklearn.datasets import load_digits

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.distances import pairwise_task_distances

# 8x8 images flattened to 64 pixels in 0..16; scale them to [0, 1].
digits = load_digits()
X, y = digits.data / 16.0, digits.target

# Four binary tasks, each restricted to the examples of its two digits.
pairs = {"3 vs 8": (3, 8), "3 vs 5": (3, 5), "1 vs 7": (1, 7), "0 vs 6": (0, 6)}
tasks = []
for first, second in pairs.values():
    keep = np.isin(y, [first, second])
    tasks.append((X[keep], y[keep]))

# 2-D features go to a random ReLU probe; random_state makes the run reproducible.
embeddings = FisherTaskEmbedder(random_state=0).fit_transform(tasks)  # (4 tasks, 64 filters)

# d_sym between every pair of tasks: 0 for identical tasks, at most 1.
distances = pairwise_task_distances(embeddings)
names = list(pairs)
print(" " * 8 + "".join(f"{name:>8}" for name in names))
for name, row in zip(names, distances):
    print(f"{name:>8}" + "".join(f"{value:8.2f}" for value in row))
