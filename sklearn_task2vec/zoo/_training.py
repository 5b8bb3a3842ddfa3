"""Training an expert: a probe fine-tuned on a task, by the paper's recipe."""

from __future__ import annotations

import copy
import math
import os
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import StrOptions, validate_params
from torch import nn

from .._heads import task_features
from .._probes import build_named_probe
from .._utils import StrictInterval, draw_seeds, module_dtype, python_scalar, resolve_device, to_device
from ..tasks import ArrayTask, coerce_task, encode_labels
from ._expert import Expert

# Finite upper bounds: an infinite learning rate or decay is a mistake, not a setting.
_POSITIVE_REAL = StrictInterval(Real, 0, math.inf, closed="neither")
_NON_NEGATIVE_REAL = StrictInterval(Real, 0, math.inf, closed="left")


@validate_params(
    {
        "probe": [str, nn.Module],
        "task": "no_validation",  # coerce_task names what is wrong with it
        "name": [str, None],
        "task_name": [str, None],
        "probe_weights": [str, os.PathLike, None],
        "epochs": [StrictInterval(Integral, 0, None, closed="left")],
        "head_epochs": [StrictInterval(Integral, 0, None, closed="left")],
        "learning_rate": [_POSITIVE_REAL],
        "head_learning_rate": [_POSITIVE_REAL],
        "optimizer": [StrOptions({"sgd", "adam"})],
        "momentum": [_NON_NEGATIVE_REAL],
        "weight_decay": [_NON_NEGATIVE_REAL],
        "trainable_layers": ["array-like", None],
        "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
        "balanced": ["boolean"],
        "random_state": ["random_state"],
        "device": [str, torch.device],
    },
    prefer_skip_nested_validation=True,
)
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

    The expert is the network; the head it trained is kept as its ``head`` (its source
    classifier, for LEEP and NCE). The task is read into memory once. On CPU, the result is the same for the same ``random_state`` (torch's global random
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
        The fine-tuned network and its head (a ``torch.nn.Linear`` over the task's classes,
        sorted where the labels can be sorted), on CPU, in eval mode and without gradients.
        ``architecture`` is the probe's name for a named probe; ``info`` holds the settings,
        the number of examples and classes, and each epoch's mean training loss and accuracy
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
    Expert('expert on sign', trained_on='sign', module=Sequential, 16 parameters, head=Linear)
    >>> expert.info["accuracy"][-1] > 0.9   # training accuracy of the last epoch
    True
    """
    task_name = "task" if task_name is None else task_name
    device = resolve_device(device)
    probe_seed, torch_seed, sampling_seed = draw_seeds(random_state, 3)
    network, architecture = _network_to_train(probe, probe_weights, probe_seed)
    network = network.to(device)
    trainable = _trainable_modules(network, trainable_layers)
    task, n_classes = _task_in_memory(task, task_name, module_dtype(network), batch_size)

    sampling = np.random.RandomState(sampling_seed)

    def next_epoch():
        return epoch_batches(task.labels, n_classes, sampling, batch_size, balanced)

    history = {"loss": [], "accuracy": []}
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(torch_seed)
        head = _head_alone(
            network,
            task,
            n_classes,
            next_epoch,
            epochs=head_epochs,
            learning_rate=head_learning_rate,
            weight_decay=weight_decay,
            batch_size=batch_size,
            device=device,
        )
        step = _fine_tuning_optimizer(
            network,
            trainable,
            head,
            optimizer=optimizer,
            learning_rate=learning_rate,
            momentum=momentum,
            weight_decay=weight_decay,
        )
        # The paper divides the rate by 10 at epoch 40 of 60: after two thirds of the epochs.
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            step, milestones=[max(1, (2 * epochs) // 3)], gamma=0.1
        )
        for _ in range(epochs):
            loss, accuracy = _fine_tuning_epoch(network, trainable, head, task, next_epoch(), step, device)
            schedule.step()
            history["loss"].append(loss)
            history["accuracy"].append(accuracy)

    info = _training_info(
        n_examples=len(task),
        n_classes=n_classes,
        epochs=epochs,
        head_epochs=head_epochs,
        learning_rate=learning_rate,
        head_learning_rate=head_learning_rate,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        trainable_layers=trainable_layers,
        batch_size=batch_size,
        balanced=balanced,
        history=history,
    )
    return Expert(
        network.cpu().eval().requires_grad_(False),
        f"expert on {task_name}" if name is None else name,
        trained_on=task_name,
        architecture=architecture,
        info=info,
        head=head.cpu().eval().requires_grad_(False),
    )


def _network_to_train(probe, probe_weights, seed):
    """``(network, architecture)``: a named probe built (``seed`` its random initialisation), or a
    copy of a module (with no architecture name), so that the caller's probe is never modified."""
    if isinstance(probe, str):
        return build_named_probe(probe, probe_weights, seed=seed), probe
    return copy.deepcopy(probe), None


def _trainable_modules(network, trainable_layers):
    if trainable_layers is None:
        return [network]
    if not all(isinstance(path, str) for path in trainable_layers):
        raise TypeError(f"trainable_layers must be a list of module paths (str), got {trainable_layers!r}.")
    if not len(trainable_layers):
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
    """``(task, n_classes)``: the task read whole, an ArrayTask whose labels are int64 class codes."""
    coerced = coerce_task(
        task, f"{task_name!r}", dtype=dtype, batch_size=batch_size, max_samples=None, rng=None
    )
    batches = list(coerced.batches(batch_size))
    inputs = torch.cat([batch_inputs for batch_inputs, _ in batches])
    labels = np.concatenate([np.asarray(batch_labels) for _, batch_labels in batches])
    classes, codes = encode_labels(labels, coerced.where)
    if len(classes) < 2:
        raise ValueError(
            f"{coerced.where} has a single class ({python_scalar(classes[0])!r}): an expert needs two at least."
        )
    return ArrayTask(inputs, codes.astype(np.int64), coerced.where), len(classes)


def epoch_batches(codes, n_classes, rng, batch_size, balanced):
    """The index batches of one epoch: as many examples as the task has, drawn from ``rng``.

    ``balanced``: drawn with replacement, uniformly between classes; else a shuffle.
    """
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


def _cuda_devices(device):
    """The CUDA devices whose random generator training on ``device`` draws from."""
    if device.type != "cuda":
        return []
    return [torch.cuda.current_device() if device.index is None else device.index]


def _head_alone(
    network, task, n_classes, next_epoch, *, epochs, learning_rate, weight_decay, batch_size, device
):
    """Phase 1: a linear head trained with Adam for ``epochs`` on the network's features,
    computed once, in eval mode."""
    network.eval()
    features = task_features(network, task, batch_size=batch_size, device=device).features
    head = nn.Linear(features.shape[1], n_classes, dtype=features.dtype, device=features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    targets = torch.from_numpy(task.labels).to(features.device)
    for _ in range(epochs):
        for batch in next_epoch():
            batch = batch.to(features.device)
            loss = F.cross_entropy(head(features[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head


def _fine_tuning_optimizer(network, trainable, head, *, optimizer, learning_rate, momentum, weight_decay):
    """The optimiser of phase 2, over the trainable layers and the head; the rest is frozen."""
    # By identity: trainable layers may nest ("layer4" and "layer4.1").
    parameters = list({id(p): p for module in trainable for p in module.parameters()}.values())
    network.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    groups = parameters + list(head.parameters())
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(groups, lr=learning_rate, weight_decay=weight_decay)


def _fine_tuning_epoch(network, trainable, head, task, batches, step, device):
    """Phase 2, one epoch: the trainable layers (in training mode, BatchNorm statistics
    included) and the head, one ``step`` a batch. Returns the mean loss and the accuracy."""
    network.eval()
    for module in trainable:
        module.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in batches:
        inputs = to_device(task.inputs[batch], device)
        targets = torch.from_numpy(task.labels[batch]).to(device)
        logits = head(network(inputs))
        loss = F.cross_entropy(logits, targets)
        step.zero_grad(set_to_none=True)
        loss.backward()
        step.step()
        loss_sum += float(loss.detach()) * len(batch)
        correct += int((logits.argmax(dim=1) == targets).sum())
        seen += len(batch)
    return loss_sum / seen, correct / seen


def _training_info(
    *,
    n_examples,
    n_classes,
    epochs,
    head_epochs,
    learning_rate,
    head_learning_rate,
    optimizer,
    momentum,
    weight_decay,
    trainable_layers,
    batch_size,
    balanced,
    history,
):
    """The expert's ``info``: its settings and training curve, as plain Python values for
    save_expert's JSON."""
    return {
        "n_examples": n_examples,
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
