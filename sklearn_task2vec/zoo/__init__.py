"""A zoo of experts and its brute-force ground truth: which expert does best on which task.

The paper's model selection (sec. 4.2, Table 1; supplementary sec. 4.1) needs a collection of
*experts*, feature extractors fine-tuned on tasks, and, to train and score a selector, the
test error of every expert on every task: a linear classifier trained on the expert's frozen
features. This module builds both, scaled down to what a CPU runs:

* :class:`Expert`: a feature extractor (a module mapping a batch of inputs to ``(batch, d)``
  features) with its name, the task it was trained on, and optionally that task's embedding
  (:func:`model_embeddings` stacks them for ``Model2VecSelector(model_embeddings=...)``).
* :func:`train_expert`: the paper's recipe, a probe fine-tuned on a task: a linear head
  trained alone on the frozen features with Adam, then the whole network (or its last
  blocks) with the head by SGD with momentum, weight decay and a tenfold learning-rate decay
  after two thirds of the epochs, on class-balanced epochs.
* :func:`save_expert` and :func:`load_expert`: a folder with the weights (a ``state_dict``
  read back with ``torch.load(weights_only=True)``, which runs no code) and a JSON file of
  metadata with the weights' checksum.
* :func:`error_matrix`: the ground truth, ``errors[i, j]`` the test error of a logistic
  regression on expert ``j``'s features of task ``i``, on one stratified split per task
  shared by all experts; what ``Model2VecSelector.fit(..., errors=...)`` and
  :data:`~sklearn_task2vec.selector.model_selection_scorer` read.
* :func:`transferability_scores`: the alternatives to TASK2VEC that score every expert on the
  new task itself (LogME, LEEP, NCE, H-score, k-NN, SFDA, N-LEEP, TransRate, GBC, PARC:
  :mod:`sklearn_task2vec.transferability`), from the same features and splits as
  :func:`error_matrix`; LEEP and NCE use the expert's source ``head``.
* :func:`selection_stability`: how often each of those scores' chosen expert changes when a
  task's examples are subsampled (half of each class, without replacement), from the same features.
"""

from ._expert import Expert, model_embeddings
from ._files import load_expert, save_expert
from ._ground_truth import error_matrix, selection_stability, transferability_scores
from ._training import train_expert

__all__ = [
    "Expert",
    "error_matrix",
    "load_expert",
    "model_embeddings",
    "save_expert",
    "selection_stability",
    "train_expert",
    "transferability_scores",
]
