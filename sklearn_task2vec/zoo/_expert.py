"""The expert record: a feature extractor, its name, its training task and that task's embedding."""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.utils._param_validation import validate_params
from torch import nn


@dataclasses.dataclass(repr=False, eq=False)
class Expert:
    """A feature extractor and what is known about it.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a batch of inputs to a ``(batch, d)`` feature matrix (a probe network without its
        classifier, e.g. from :func:`~sklearn_task2vec.probes.build_named_probe`).
    name : str
        The expert's name: a class of :class:`~sklearn_task2vec.Model2VecSelector` once its
        errors are known.
    trained_on : str or None, default=None
        The name of the task it was trained on, if any.
    task_embedding : array-like of shape (n_filters,) or None, default=None
        The TASK2VEC embedding of that task, in the space of the tasks the selector will see
        (same probe, same ``normalize``): the expert's ``F_j`` in
        ``Model2VecSelector(model_embeddings=...)``. ``None`` when unknown.
    architecture : str or None, default=None
        The torchvision model name ``module`` was built from (``"resnet34"``, ...), so that
        :func:`load_expert` can rebuild it; ``None`` for any other module.
    info : dict, default={}
        Facts about the expert, JSON-serialisable to be saved (:func:`train_expert` records
        its settings and training curve here).
    head : torch.nn.Module or None, default=None
        The expert's source classifier: maps ``module``'s features to logits over the classes
        of the task it was trained on (:func:`train_expert` keeps the head it trained). LEEP
        and NCE (:func:`transferability_scores`) need it; :func:`save_expert` saves a
        ``torch.nn.Linear`` head. ``None`` when unknown.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert
    >>> Expert(nn.Linear(4, 2), "identity-ish", trained_on="toy")
    Expert('identity-ish', trained_on='toy', module=Linear, 10 parameters)
    """

    module: nn.Module
    name: str
    trained_on: str | None = None
    task_embedding: np.ndarray | None = None
    architecture: str | None = None
    info: dict = dataclasses.field(default_factory=dict)
    head: nn.Module | None = None

    def __post_init__(self):
        if not isinstance(self.module, nn.Module):
            raise TypeError(f"Expert module must be a torch.nn.Module, got {type(self.module).__name__}.")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Expert name must be a non-empty string, got {self.name!r}.")
        for field in ("trained_on", "architecture"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Expert {self.name!r}: {field} must be a string or None, got {value!r}.")
        if self.task_embedding is not None:
            try:
                embedding = np.array(self.task_embedding, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"Expert {self.name!r}: task_embedding must be a vector of numbers: {exc}"
                ) from exc
            if embedding.ndim != 1 or not np.all(np.isfinite(embedding)) or np.any(embedding < 0):
                raise ValueError(
                    f"Expert {self.name!r}: task_embedding must be a 1-D vector of finite, non-negative "
                    f"numbers (a TASK2VEC embedding), got shape {embedding.shape}."
                )
            self.task_embedding = embedding
        if not isinstance(self.info, dict):
            raise TypeError(f"Expert {self.name!r}: info must be a dict, got {type(self.info).__name__}.")
        if self.head is not None and not isinstance(self.head, nn.Module):
            raise TypeError(
                f"Expert {self.name!r}: head must be a torch.nn.Module or None, got {type(self.head).__name__}."
            )

    def __repr__(self):
        n_parameters = sum(parameter.numel() for parameter in self.module.parameters())
        trained_on = "" if self.trained_on is None else f", trained_on={self.trained_on!r}"
        head = "" if self.head is None else f", head={type(self.head).__name__}"
        return (
            f"Expert({self.name!r}{trained_on}, module={type(self.module).__name__}, "
            f"{n_parameters} parameters{head})"
        )


@validate_params({"experts": [list, tuple]}, prefer_skip_nested_validation=True)
def model_embeddings(experts):
    """The experts' task embeddings as ``Model2VecSelector(model_embeddings=...)`` takes them.

    Parameters
    ----------
    experts : list of Expert
        The experts, in the order of the columns of their error matrix.

    Returns
    -------
    embeddings : ndarray of shape (n_experts, n_filters) or None
        Row ``j`` is expert ``j``'s ``task_embedding``, or zeros where it is unknown (the
        paper's ``F_j = 0``, sec. 3.4); ``None`` when no expert has one.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, model_embeddings
    >>> experts = [Expert(nn.Identity(), "a", task_embedding=[1.0, 2.0]), Expert(nn.Identity(), "b")]
    >>> model_embeddings(experts)
    array([[1., 2.],
           [0., 0.]])
    """
    experts = check_experts(experts)
    known = [expert for expert in experts if expert.task_embedding is not None]
    if not known:
        return None
    sizes = {len(expert.task_embedding) for expert in known}
    if len(sizes) > 1:
        raise ValueError(
            f"The experts' task embeddings have different lengths {sorted(sizes)}: they come from "
            f"different probes and cannot be compared."
        )
    width = sizes.pop()
    return np.vstack(
        [np.zeros(width) if expert.task_embedding is None else expert.task_embedding for expert in experts]
    )


def check_experts(experts):
    """``experts`` (a list or tuple, as the callers' parameter constraints ensure) as a list,
    checked to hold one :class:`Expert` at least and nothing else."""
    if not experts:
        raise ValueError("experts is empty: give one Expert at least.")
    for position, expert in enumerate(experts):
        if not isinstance(expert, Expert):
            raise TypeError(
                f"experts[{position}] is a {type(expert).__name__}, not an Expert; wrap a module as "
                f"Expert(module, name)."
            )
    return list(experts)
