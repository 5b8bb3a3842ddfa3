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
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import numbers
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from torch import nn

from . import __version__, _probes as probes
from ._utils import update_digest as _array_digest
from ._cache import cache_folder, load_checked, save_checked, write_atomically
from ._heads import probe_features
from .tasks import TaskLibrary, _is_bare_pair, coerce_task, encode_labels

__all__ = ["Expert", "error_matrix", "load_expert", "model_embeddings", "save_expert", "train_expert"]

_WEIGHTS_FILE = "weights.pt"
_METADATA_FILE = "expert.json"
_FORMAT = "sklearn-task2vec expert"
_FORMAT_VERSION = 1
_OPTIMIZERS = ("sgd", "adam")
_SEED_BOUND = np.iinfo(np.int32).max


# --------------------------------------------------------------------------------------
# Experts
# --------------------------------------------------------------------------------------


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
            embedding = np.array(self.task_embedding, dtype=np.float64)
            if embedding.ndim != 1 or not np.all(np.isfinite(embedding)) or np.any(embedding < 0):
                raise ValueError(
                    f"Expert {self.name!r}: task_embedding must be a 1-D vector of finite, non-negative "
                    f"numbers (a TASK2VEC embedding), got shape {embedding.shape}."
                )
            self.task_embedding = embedding
        if not isinstance(self.info, dict):
            raise TypeError(f"Expert {self.name!r}: info must be a dict, got {type(self.info).__name__}.")

    def __repr__(self):
        n_parameters = sum(parameter.numel() for parameter in self.module.parameters())
        trained_on = "" if self.trained_on is None else f", trained_on={self.trained_on!r}"
        return (
            f"Expert({self.name!r}{trained_on}, module={type(self.module).__name__}, "
            f"{n_parameters} parameters)"
        )


def model_embeddings(experts):
    """The experts' task embeddings as ``Model2VecSelector(model_embeddings=...)`` takes them.

    Parameters
    ----------
    experts : sequence of Expert
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
    experts = _check_experts(experts)
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


def _check_experts(experts):
    if isinstance(experts, (Expert, nn.Module)) or not isinstance(experts, (list, tuple)):
        raise TypeError(f"experts must be a list of Expert, got {type(experts).__name__}.")
    if not experts:
        raise ValueError("experts is empty: give one Expert at least.")
    for position, expert in enumerate(experts):
        if not isinstance(expert, Expert):
            raise TypeError(
                f"experts[{position}] is a {type(expert).__name__}, not an Expert; wrap a module as "
                f"Expert(module, name)."
            )
    return list(experts)


def _resolve_device(device):
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto' or a torch device, got {device!r}.") from exc


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def train_expert(
    probe,
    task,
    *,
    name=None,
    task_name=None,
    probe_weights="imagenet",
    epochs=10,
    head_epochs=2,
    learning_rate=1e-3,
    head_learning_rate=1e-3,
    optimizer="sgd",
    momentum=0.9,
    weight_decay=5e-4,
    trainable_layers=None,
    batch_size=32,
    balanced=True,
    random_state=None,
    device="auto",
):
    """Fine-tune a probe network on a task: the expert for that task.

    The paper's recipe (supplementary sec. 4.1: ImageNet ResNet-34, 10 epochs of the head
    alone with Adam, then 60 epochs of the whole network by SGD with weight decay 5e-4 and
    learning rate 1e-3, divided by 10 at epoch 40, class-balanced epochs), with the number of
    epochs left to the caller:

    1. a linear head ``d -> n_classes`` is trained for ``head_epochs`` with Adam on the frozen
       network's features (computed once, network in eval mode);
    2. the network's trainable layers and the head are trained together for ``epochs``
       (``optimizer``, ``weight_decay``), the learning rate divided by 10 after two thirds of
       the epochs. BatchNorm layers that are trained update their statistics; frozen layers
       stay in eval mode.

    The head is then dropped: the expert is the network alone. The task is read into memory
    once. On CPU, the result is the same for the same ``random_state`` (torch's global random
    generator is left as it was).

    Parameters
    ----------
    probe : str or torch.nn.Module
        The network to fine-tune: a torchvision classification model name (its classifier is
        dropped, see ``probe_weights``), or a module mapping a batch of inputs to ``(batch,
        d)`` features, copied (never modified).
    task : task
        The task to train on: an ``(inputs, labels)`` pair, a torch ``Dataset`` of ``(x, y)``
        or a ``DataLoader`` (see :mod:`sklearn_task2vec.tasks`); two classes at least.
    name : str or None, default=None
        The expert's name; ``None``: ``"expert on <task_name>"``.
    task_name : str or None, default=None
        The task's name, recorded as the expert's ``trained_on``; ``None``: ``"task"``.
    probe_weights : {"imagenet", None} or path-like, default="imagenet"
        Starting weights of a named probe (ImageNet's, as in the paper; ``None`` for random
        initialisation; or a local ``state_dict`` file). Ignored for a module.
    epochs : int, default=10
        Epochs of fine-tuning the network with the head (the paper's 60).
    head_epochs : int, default=2
        Epochs of training the head alone first (the paper's 10); 0 skips it.
    learning_rate : float, default=1e-3
        Starting learning rate of fine-tuning (the paper's 1e-3).
    head_learning_rate : float, default=1e-3
        Adam's learning rate for the head alone.
    optimizer : {"sgd", "adam"}, default="sgd"
        Optimiser of fine-tuning: SGD with ``momentum`` (the paper's) or Adam.
    momentum : float, default=0.9
        SGD's momentum.
    weight_decay : float, default=5e-4
        L2 penalty of both phases (the paper's 5e-4).
    trainable_layers : sequence of str or None, default=None
        Module paths of the layers to fine-tune, e.g. ``["layer4"]`` for a ResNet's last
        block; the others stay frozen. ``None``: the whole network.
    batch_size : int, default=32
        Examples per step.
    balanced : bool, default=True
        Each epoch draws as many examples as the task has, with replacement, uniformly between
        classes (the paper's balanced sampling); ``False``: each epoch is a shuffle of the task.
    random_state : int, RandomState instance or None, default=None
        Seeds the head, a named probe's random initialisation, the epochs' draws and any
        dropout.
    device : str or torch.device, default="auto"
        Where to train; ``"auto"`` is CUDA when available, else CPU.

    Returns
    -------
    Expert
        The fine-tuned network, on CPU, in eval mode and without gradients. ``architecture``
        is the probe's name for a named probe; ``info`` holds the settings, the number of
        examples and classes, and each epoch's mean training loss and accuracy
        (``"loss"``, ``"accuracy"``).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import train_expert
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(40, 3)).astype(np.float32)
    >>> _ = torch.manual_seed(0)   # the network's random initialisation
    >>> network = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> expert = train_expert(network, (X, X[:, 0] > 0), task_name="sign", epochs=5,
    ...                       learning_rate=0.5, random_state=0)
    >>> expert
    Expert('expert on sign', trained_on='sign', module=Sequential, 16 parameters)
    >>> expert.info["accuracy"][-1] > 0.9   # training accuracy of the last epoch
    True
    """
    _check_number("epochs", epochs, integer=True, minimum=0)
    _check_number("head_epochs", head_epochs, integer=True, minimum=0)
    _check_number("batch_size", batch_size, integer=True, minimum=1)
    _check_number("learning_rate", learning_rate, positive=True)
    _check_number("head_learning_rate", head_learning_rate, positive=True)
    _check_number("momentum", momentum)
    _check_number("weight_decay", weight_decay)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}.")
    if task_name is not None and not isinstance(task_name, str):
        raise TypeError(f"task_name must be a string or None, got {task_name!r}.")
    task_name = "task" if task_name is None else task_name
    device = _resolve_device(device)
    rng = check_random_state(random_state)
    probe_seed, torch_seed, sampling_seed = (int(seed) for seed in rng.randint(_SEED_BOUND, size=3))

    if isinstance(probe, str):
        network = probes.build_named_probe(probe, probe_weights, seed=probe_seed)
        architecture = probe
    elif isinstance(probe, nn.Module):
        network = copy.deepcopy(probe)
        architecture = None
    else:
        raise TypeError(
            f"probe must be a torchvision model name or a torch.nn.Module, got {type(probe).__name__}."
        )
    network = network.to(device)
    trainable = _trainable_modules(network, trainable_layers)
    inputs, codes, n_classes = _task_in_memory(task, task_name, probes.probe_dtype(network), batch_size)

    sampling = np.random.RandomState(sampling_seed)

    def epoch_batches():
        return _epoch(codes, n_classes, sampling, batch_size, balanced)

    history = {"loss": [], "accuracy": []}
    cuda_devices = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(torch_seed)
        network.eval()  # phase 1: the head alone, on the network's features computed once
        features = torch.cat(
            [
                probe_features(network, inputs[start : start + batch_size].to(device), f"task {task_name!r}")
                for start in range(0, len(inputs), batch_size)
            ]
        )
        head = _trained_head(
            features, codes, n_classes, epoch_batches, head_epochs, head_learning_rate, weight_decay
        )
        del features
        # By identity: trainable layers may nest ("layer4" and "layer4.1").
        parameters = list({id(p): p for module in trainable for p in module.parameters()}.values())
        network.requires_grad_(False)
        for parameter in parameters:
            parameter.requires_grad_(True)
        groups = parameters + list(head.parameters())
        if optimizer == "sgd":
            step = torch.optim.SGD(groups, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
        else:
            step = torch.optim.Adam(groups, lr=learning_rate, weight_decay=weight_decay)
        # The paper divides the rate by 10 at epoch 40 of 60: after two thirds of the epochs.
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            step, milestones=[max(1, (2 * epochs) // 3)], gamma=0.1
        )
        for _ in range(epochs):
            network.eval()
            for module in trainable:
                module.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for batch in epoch_batches():
                batch_inputs = inputs[batch].to(device)
                targets = torch.from_numpy(codes[batch]).to(device)
                logits = head(network(batch_inputs))
                loss = F.cross_entropy(logits, targets)
                step.zero_grad(set_to_none=True)
                loss.backward()
                step.step()
                loss_sum += float(loss.detach()) * len(batch)
                correct += int((logits.argmax(dim=1) == targets).sum())
                seen += len(batch)
            schedule.step()
            history["loss"].append(loss_sum / seen)
            history["accuracy"].append(correct / seen)

    network = network.cpu().eval().requires_grad_(False)
    info = {  # plain Python numbers, for save_expert's JSON
        "n_examples": len(codes),
        "n_classes": n_classes,
        "epochs": int(epochs),
        "head_epochs": int(head_epochs),
        "learning_rate": float(learning_rate),
        "head_learning_rate": float(head_learning_rate),
        "optimizer": optimizer,
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "trainable_layers": None if trainable_layers is None else list(trainable_layers),
        "batch_size": int(batch_size),
        "balanced": bool(balanced),
        **history,
    }
    return Expert(
        network,
        f"expert on {task_name}" if name is None else name,
        trained_on=task_name,
        architecture=architecture,
        info=info,
    )


def _check_number(name, value, *, integer=False, minimum=0, positive=False):
    kind = numbers.Integral if integer else numbers.Real
    valid = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or value < minimum or (positive and value <= 0):
        bound = "> 0" if positive else f">= {minimum}"
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} {bound}, got {value!r}.")


def _trainable_modules(network, trainable_layers):
    if trainable_layers is None:
        return [network]
    if isinstance(trainable_layers, str) or not all(isinstance(path, str) for path in trainable_layers):
        raise TypeError(f"trainable_layers must be a list of module paths (str), got {trainable_layers!r}.")
    if not trainable_layers:
        raise ValueError("trainable_layers is empty: name one layer at least, or pass None for all.")
    modules = []
    for path in trainable_layers:
        try:
            modules.append(network.get_submodule(path))
        except AttributeError:
            children = [child for child, _ in network.named_children()]
            raise ValueError(
                f"trainable_layers: the network has no module {path!r}; its top-level modules are {children}."
            ) from None
    return modules


def _task_in_memory(task, task_name, dtype, batch_size):
    """``(inputs, codes, n_classes)`` of a task read whole: inputs a CPU tensor, codes int64."""
    coerced = coerce_task(
        task, f"{task_name!r}", dtype=dtype, batch_size=batch_size, max_samples=None, rng=None
    )
    batches = list(coerced.batches(batch_size))
    inputs = torch.cat([batch_inputs for batch_inputs, _ in batches])
    labels = np.concatenate([np.asarray(batch_labels) for _, batch_labels in batches])
    classes, codes = encode_labels(labels, f"task {task_name!r}")
    if len(classes) < 2:
        raise ValueError(
            f"task {task_name!r} has a single class ({_scalar(classes[0])!r}): an expert needs two at least."
        )
    return inputs, codes.astype(np.int64), len(classes)


def _scalar(label):
    """A numpy scalar label as the Python value it holds, to print as ``7`` and not ``np.int64(7)``."""
    return label.item() if isinstance(label, np.generic) else label


def _epoch(codes, n_classes, rng, batch_size, balanced):
    """The index batches of one epoch: as many examples as the task has, drawn from ``rng``."""
    n_examples = len(codes)
    if balanced:
        class_sizes = np.bincount(codes, minlength=n_classes)
        weights = 1.0 / (n_classes * class_sizes[codes])
        order = rng.choice(n_examples, size=n_examples, replace=True, p=weights / weights.sum())
    else:
        order = rng.permutation(n_examples)
    batches = [order[start : start + batch_size] for start in range(0, n_examples, batch_size)]
    # A BatchNorm in training mode cannot normalise a single example whose maps are 1 x 1 (a
    # ResNet's last block on small images): drop a last batch of one, a random draw anyway.
    if batch_size > 1 and len(batches[-1]) == 1:
        batches.pop()
    return [torch.from_numpy(batch) for batch in batches]


def _trained_head(features, codes, n_classes, epoch_batches, epochs, learning_rate, weight_decay):
    """A linear head trained alone with Adam for ``epochs`` on fixed features."""
    head = nn.Linear(features.shape[1], n_classes, dtype=features.dtype, device=features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    targets = torch.from_numpy(codes).to(features.device)
    for _ in range(epochs):
        for batch in epoch_batches():
            batch = batch.to(features.device)
            loss = F.cross_entropy(head(features[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head


# --------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------


def save_expert(expert, path):
    """Save an expert to a folder: its weights and a JSON file of its metadata.

    ``path/weights.pt`` is the module's ``state_dict`` (CPU tensors only): it loads with
    ``torch.load(weights_only=True)``, and for a torchvision architecture it is also a valid
    ``probe_weights`` file of :class:`~sklearn_task2vec.FisherTaskEmbedder`. ``path/expert.json``
    holds the name, ``trained_on``, ``architecture``, ``task_embedding``, ``info`` and the
    SHA-256 of the weights file, which :func:`load_expert` checks.

    Parameters
    ----------
    expert : Expert
        The expert; its ``info`` must be JSON-serialisable.
    path : str or path-like
        The folder, created if needed; an expert already there is replaced.

    Returns
    -------
    path : pathlib.Path
        The folder.

    Examples
    --------
    >>> import tempfile
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, load_expert, save_expert
    >>> folder = save_expert(Expert(nn.Linear(3, 2), "tiny"), tempfile.mkdtemp())
    >>> sorted(file.name for file in folder.iterdir())
    ['expert.json', 'weights.pt']
    >>> load_expert(folder, architecture=nn.Linear(3, 2))
    Expert('tiny', module=Linear, 8 parameters)
    """
    if not isinstance(expert, Expert):
        raise TypeError(f"save_expert takes an Expert, got {type(expert).__name__}.")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"save_expert: {os.fspath(folder)!r} is a file; an expert is saved to a folder.")
    metadata = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "name": expert.name,
        "trained_on": expert.trained_on,
        "architecture": expert.architecture,
        "module_class": f"{type(expert.module).__module__}.{type(expert.module).__qualname__}",
        # Python floats print as the shortest decimal that reads back as the same float: exact.
        "task_embedding": None if expert.task_embedding is None else expert.task_embedding.tolist(),
        "info": expert.info,
        "sklearn_task2vec_version": __version__,
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"save_expert: expert {expert.name!r} has info that JSON cannot hold: {exc}"
        ) from exc
    folder.mkdir(parents=True, exist_ok=True)
    state_dict = {key: tensor.detach().cpu().clone() for key, tensor in expert.module.state_dict().items()}
    weights = folder / _WEIGHTS_FILE
    write_atomically(weights, lambda file: torch.save(state_dict, file))
    metadata["weights_sha256"] = _file_sha256(weights)
    write_atomically(
        folder / _METADATA_FILE,
        lambda file: file.write(json.dumps(metadata, indent=1, allow_nan=False).encode()),
    )
    return folder


def load_expert(path, architecture=None):
    """Load an expert saved by :func:`save_expert`, without running any code from the files.

    Parameters
    ----------
    path : str or path-like
        The expert's folder.
    architecture : str, torch.nn.Module or None, default=None
        The network to load the weights into: a torchvision model name (built without its
        classifier), or a module of the expert's architecture (copied; its weights are
        replaced). ``None``: the architecture recorded when the expert was saved, which must
        then be a torchvision name.

    Returns
    -------
    Expert
        The expert, its module on CPU, in eval mode and without gradients.

    Raises
    ------
    ValueError
        If a file is missing, is not what :func:`save_expert` writes, fails its checksum (corrupt
        or replaced), or if the weights do not fit the architecture.

    Examples
    --------
    See :func:`save_expert`.
    """
    folder = Path(path)
    where = f"expert folder {os.fspath(folder)!r}"
    if not folder.is_dir():
        raise ValueError(f"{where} not found (an expert is a folder written by save_expert).")
    metadata_file, weights_file = folder / _METADATA_FILE, folder / _WEIGHTS_FILE
    for required in (metadata_file, weights_file):
        if not required.is_file():
            raise ValueError(f"{where} has no {required.name}: it is not an expert saved by save_expert.")
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: {_METADATA_FILE} is not valid JSON (corrupt?): {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"{where}: {_METADATA_FILE} is not the metadata of a saved expert.")
    if metadata.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{where} was saved in format version {metadata.get('format_version')!r}; this version of "
            f"sklearn-task2vec reads version {_FORMAT_VERSION}."
        )
    if _file_sha256(weights_file) != metadata.get("weights_sha256"):
        raise ValueError(
            f"{where}: {_WEIGHTS_FILE} does not match the checksum in {_METADATA_FILE}: the file is "
            f"corrupt, truncated or was replaced."
        )
    try:
        state_dict = torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged archive fails in many ways (zip, pickle opcodes, storage)
        raise ValueError(f"{where}: {_WEIGHTS_FILE} is not a loadable state_dict: {exc}") from exc
    if not isinstance(state_dict, dict):
        raise ValueError(f"{where}: {_WEIGHTS_FILE} holds a {type(state_dict).__name__}, not a state_dict.")

    recorded = metadata.get("architecture")
    if architecture is None:
        if recorded is None:
            raise ValueError(
                f"{where}: the expert is a {metadata.get('module_class')} module, not a torchvision "
                f"model: pass architecture=<an instance of it> to load its weights into."
            )
        architecture = recorded
    if isinstance(architecture, str):
        module = probes.build_named_probe(architecture, None)
        name = architecture
    elif isinstance(architecture, nn.Module):
        module = copy.deepcopy(architecture)
        name = recorded
    else:
        raise TypeError(
            f"architecture must be a torchvision model name, a torch.nn.Module or None, got "
            f"{type(architecture).__name__}."
        )
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ValueError(
            f"{where}: its weights do not fit the architecture {type(module).__name__} "
            f"(saved from {metadata.get('module_class')}): {exc}"
        ) from exc
    return Expert(
        module.eval().requires_grad_(False),
        metadata["name"],
        trained_on=metadata.get("trained_on"),
        task_embedding=metadata.get("task_embedding"),
        architecture=name,
        info=metadata.get("info") or {},
    )


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Ground truth: the error matrix
# --------------------------------------------------------------------------------------


def error_matrix(
    experts,
    tasks,
    *,
    test_size=0.3,
    task_names=None,
    classifier=None,
    batch_size=64,
    cache=None,
    device="auto",
    random_state=None,
):
    """Test error of every expert on every task: the brute-force ground truth of model selection.

    For each task, one stratified split into training and test examples, shared by all the
    experts; for each expert, its frozen features of the task's examples (in batches, under
    ``torch.no_grad``, eval mode) and a classifier (by default a logistic regression on
    standardised features) trained on the training examples' features; the entry is its
    error on the test examples. This is the paper's ground truth (sec. 4.2, supplementary
    sec. 4.1: a linear classifier on each expert for each task), scaled down; its rows go to
    ``Model2VecSelector.fit(embeddings, errors.argmin(axis=1), errors=errors)`` and to
    :data:`~sklearn_task2vec.selector.model_selection_scorer`.

    Parameters
    ----------
    experts : sequence of Expert
        The experts (columns), e.g. from :func:`train_expert` or :func:`load_expert`.
    tasks : sequence of tasks
        The tasks (rows): ``(inputs, labels)`` pairs, torch Datasets or DataLoaders (a
        DataLoader must yield its examples in the same order each time), e.g. a
        :class:`~sklearn_task2vec.tasks.TaskLibrary`.
    test_size : float, default=0.3
        Fraction of each task's examples in its test split, in (0, 1). Every class needs two
        examples at least, and each split one per class.
    task_names : sequence of str or None, default=None
        Names of the tasks, for error messages. ``None``: a TaskLibrary's names, else
        ``"task 0"``, ``"task 1"``, ...
    classifier : scikit-learn classifier or None, default=None
        Trained on each (task, expert)'s training features (a fresh clone each time).
        ``None``: ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``.
    batch_size : int, default=64
        Examples per forward pass.
    cache : str, path-like, joblib.Memory or None, default=None
        A folder (or a ``joblib.Memory``'s location) where each (expert, task)'s features are
        stored, keyed by the expert's weights and architecture and by the task's content, so
        that a later call (more experts, another classifier or split) computes only what is
        missing. Reading a DataLoader or Dataset task for its key costs one more pass over it
        per call. A damaged file is detected by checksum, reported and recomputed. A change to
        a module's code that keeps its class name, ``repr`` and weights is not detected: clear
        the folder then. ``None``: nothing is stored (within the call, a task listed twice is
        still read once per expert).
    device : str or torch.device, default="auto"
        Where the experts run; ``"auto"`` is CUDA when available, else CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds the splits (one per task). The matrix is the same for the same value.

    Returns
    -------
    errors : ndarray of shape (n_tasks, n_experts)
        ``errors[i, j]``: the test error of expert ``j`` on task ``i``, in [0, 1].

    Raises
    ------
    ValueError
        If a list is empty, a task has a single class or too few examples of a class to
        split, or an expert cannot take a task's inputs (the message names both).

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_task2vec.zoo import Expert, error_matrix
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(60, 2)).astype(np.float32)
    >>> first = Expert(nn.Linear(2, 1, bias=False), "first")
    >>> second = Expert(nn.Linear(2, 1, bias=False), "second")
    >>> _ = first.module.weight.data.copy_(torch.tensor([[1.0, 0.0]]))   # sees feature 0 only
    >>> _ = second.module.weight.data.copy_(torch.tensor([[0.0, 1.0]]))  # sees feature 1 only
    >>> tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]
    >>> errors = error_matrix([first, second], tasks, random_state=0)
    >>> errors.round(2)
    array([[0.11, 0.44],
           [0.39, 0.  ]])
    >>> errors.argmin(axis=1)   # the best expert of each task
    array([0, 1])
    """
    experts = _check_experts(experts)
    if not isinstance(tasks, (list, tuple)) or _is_bare_pair(tasks):
        raise TypeError(
            "tasks must be a list of tasks, e.g. [(inputs, labels), ...]; got "
            + ("one (inputs, labels) pair." if _is_bare_pair(tasks) else f"a {type(tasks).__name__}.")
        )
    if not tasks:
        raise ValueError("tasks is empty: give one task at least.")
    labels = _task_labels(tasks, task_names)
    if isinstance(test_size, bool) or not (isinstance(test_size, numbers.Real) and 0 < test_size < 1):
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size!r}.")
    _check_number("batch_size", batch_size, integer=True, minimum=1)
    classifier = (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        if classifier is None
        else classifier
    )
    device = _resolve_device(device)
    store = _FeatureStore(cache)
    split_seeds = check_random_state(random_state).randint(_SEED_BOUND, size=len(tasks))

    reader = _FeatureReader(tasks, labels, batch_size, device, store)
    splits = [None] * len(tasks)
    errors = np.empty((len(tasks), len(experts)))
    for column, expert in enumerate(experts):
        for row, task_label in enumerate(labels):
            features, task_labels = reader.features(expert, row)
            if splits[row] is None:
                splits[row] = _split(task_labels, test_size, split_seeds[row], task_label)
            codes, first_labels, train, test = splits[row]
            if not np.array_equal(task_labels, first_labels):
                raise ValueError(
                    f"{task_label} gave its examples in another order (or other labels) to expert "
                    f"{expert.name!r} than before: pass a Dataset, or a DataLoader with shuffle=False."
                )
            where = f"expert {expert.name!r} on {task_label}"
            if not np.all(np.isfinite(features)):
                raise ValueError(f"{where}: the expert's features contain NaN or infinity.")
            model = clone(classifier)
            try:
                model.fit(features[train], codes[train])
                predictions = model.predict(features[test])
            except ValueError as exc:
                raise ValueError(f"{where}: the classifier failed: {exc}") from exc
            errors[row, column] = float(np.mean(predictions != codes[test]))
        reader.forget_expert()
    return errors


def _task_labels(tasks, task_names):
    """How each task is named in messages: ``"task 0"`` or ``"task 0 ('birds')"``."""
    if task_names is None and isinstance(tasks, TaskLibrary):
        task_names = tasks.names
    if task_names is None:
        return [f"task {index}" for index in range(len(tasks))]
    task_names = list(task_names)
    if len(task_names) != len(tasks):
        raise ValueError(f"task_names has {len(task_names)} names for {len(tasks)} tasks.")
    return [f"task {index} ({name!r})" for index, name in enumerate(task_names)]


def _split(task_labels, test_size, seed, task_label):
    """``(codes, labels, train, test)``: the task's stratified split, after checking it is possible."""
    classes, codes = encode_labels(task_labels, task_label)
    counts = np.bincount(codes, minlength=len(classes))
    if len(classes) < 2:
        raise ValueError(
            f"{task_label} has a single class ({_scalar(classes[0])!r}): there is nothing to classify."
        )
    if counts.min() < 2:
        rare = _scalar(classes[int(np.argmin(counts))])
        raise ValueError(
            f"{task_label}: class {rare!r} has a single example; each class needs two at least, one for "
            f"the training split and one for the test split."
        )
    n_test = math.ceil(test_size * len(codes))
    n_train = len(codes) - n_test
    if min(n_test, n_train) < len(classes):
        raise ValueError(
            f"{task_label} has {len(codes)} examples: with test_size={test_size} its splits have {n_train} "
            f"and {n_test}, and each needs one example of each of its {len(classes)} classes."
        )
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros((len(codes), 1)), codes))
    return codes, task_labels, train, test


class _FeatureReader:
    """Features of (expert, task) pairs: from memory, from the disk store, or computed.

    In memory, the features of the current expert are kept by task object, so that a task
    listed twice is read once; the disk store (when given) is keyed by content.
    """

    def __init__(self, tasks, labels, batch_size, device, store):
        self.tasks, self.labels = tasks, labels
        self.batch_size, self.device, self.store = batch_size, device, store
        self.task_keys = {}  # (task row, dtype) -> (content key, labels), for the disk store
        self.expert = None

    def forget_expert(self):
        """Release the current expert's device copy and features."""
        self.expert = self.module = None
        self.memory = {}

    def _prepare(self, expert):
        if self.expert is not expert:
            self.expert = expert
            self.module = None  # moved to the device only when a feature has to be computed
            self.dtype = probes.probe_dtype(expert.module)
            self.expert_key = None if self.store.folder is None else _module_key(expert.module)
            self.memory = {}

    def features(self, expert, row):
        """``(features, labels)`` of task ``row`` under ``expert``: float numpy arrays and labels."""
        self._prepare(expert)
        task = self.tasks[row]
        if id(task) in self.memory:
            return self.memory[id(task)]
        if self.store.folder is None:
            result = self._compute(row)
        else:
            if (row, self.dtype) not in self.task_keys:
                self.task_keys[row, self.dtype] = self._task_key(row)
            task_key, labels = self.task_keys[row, self.dtype]
            features = self.store.load(self.expert_key, task_key)
            if features is None:
                features, computed_labels = self._compute(row)
                if np.array_equal(computed_labels, labels):  # else the caller reports the order change
                    self.store.save(self.expert_key, task_key, features)
                labels = computed_labels
            result = features, labels
        self.memory[id(task)] = result
        return result

    def _coerced(self, row):
        # coerce_task names the task "task {index}" in its messages: give it the name as well.
        return coerce_task(
            self.tasks[row],
            self.labels[row].removeprefix("task "),
            dtype=self.dtype,
            batch_size=self.batch_size,
            max_samples=None,
            rng=None,
        )

    def _task_key(self, row):
        """A hash of the task's examples and labels at the expert's dtype, and its labels."""
        digest, labels = hashlib.sha256(), []
        for inputs, batch_labels in self._coerced(row).batches(self.batch_size):
            _array_digest(digest, inputs.numpy())
            _array_digest(digest, np.asarray(batch_labels))
            labels.append(np.asarray(batch_labels))
        return digest.hexdigest(), np.concatenate(labels)

    def _compute(self, row):
        if self.module is None:
            self.module = probes.frozen_copy(self.expert.module).to(self.device)
        where = f"expert {self.expert.name!r}"
        features, labels = [], []
        try:
            for inputs, batch_labels in self._coerced(row).batches(self.batch_size):
                features.append(probe_features(self.module, inputs.to(self.device), self.labels[row]).cpu())
                labels.append(np.asarray(batch_labels))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        return torch.cat(features).numpy(), np.concatenate(labels)


def _module_key(module):
    """A hash of a module's class, structure (``repr``) and weights and buffers."""
    digest = hashlib.sha256()
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        _array_digest(digest, tensor.detach().cpu().numpy())
    return digest.hexdigest()


class _FeatureStore:
    """Features on disk, one ``.npz`` per (expert, task) with a checksum, written atomically."""

    def __init__(self, cache):
        folder = cache_folder(cache, "cache")
        self.folder = None if folder is None else folder / "features"

    def _path(self, expert_key, task_key):
        return self.folder / expert_key / f"{task_key}.npz"

    def load(self, expert_key, task_key):
        stored = load_checked(
            self._path(expert_key, task_key), f"{expert_key} {task_key}", ("features",), "features"
        )
        return None if stored is None else stored[0]

    def save(self, expert_key, task_key, features):
        save_checked(self._path(expert_key, task_key), f"{expert_key} {task_key}", features=features)
