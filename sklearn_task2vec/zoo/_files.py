"""The file format of an expert: a folder with its weights and a JSON file of its metadata."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from sklearn.utils._param_validation import validate_params
from torch import nn

from .. import __version__
from .._cache import write_atomically
from .._probes import build_named_probe
from ._expert import Expert

_WEIGHTS_FILE = "weights.pt"
_METADATA_FILE = "expert.json"
_FORMAT = "sklearn-task2vec expert"
_FORMAT_VERSION = 1


@validate_params({"expert": [Expert], "path": [str, os.PathLike]}, prefer_skip_nested_validation=True)
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


@validate_params(
    {"path": [str, os.PathLike], "architecture": [str, nn.Module, None]},
    prefer_skip_nested_validation=True,
)
def load_expert(path, *, architecture=None):
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
        # A damaged file, not a wrong argument: a ValueError, like the other damaged files.
        raise ValueError(  # noqa: TRY004
            f"{where}: {_WEIGHTS_FILE} holds a {type(state_dict).__name__}, not a state_dict."
        )

    recorded = metadata.get("architecture")
    if architecture is None:
        if not isinstance(recorded, str):
            raise ValueError(
                f"{where}: the expert is a {metadata.get('module_class')} module, not a torchvision "
                f"model: pass architecture=<an instance of it> to load its weights into."
            )
        architecture = recorded
    if isinstance(architecture, str):
        module, name = build_named_probe(architecture, None), architecture
    else:
        module, name = copy.deepcopy(architecture), recorded
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
    """The SHA-256 of a file's bytes, as hex, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
