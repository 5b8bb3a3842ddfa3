"""The file format of an expert: a folder with its weights and a JSON file of its metadata."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from sklearn.utils._param_validation import validate_params
from torch import nn

from .. import __version__
from .._probes import build_named_probe
from .._utils import load_tensors
from .._writer import write_file, write_folder
from ._expert import Expert

_WEIGHTS_FILE = "weights.pt"
_HEAD_FILE = "head.pt"
_METADATA_FILE = "expert.json"
# Everything an expert folder holds: a folder holding anything else is not one.
_EXPERT_FILES = (_WEIGHTS_FILE, _HEAD_FILE, _METADATA_FILE)
_FORMAT = "sklearn-task2vec expert"
# Version 2: expert.json carries its own checksum, and the expert may have a source head.
_FORMAT_VERSION = 2
_FORMAT_VERSIONS_READ = (1, 2)
_METADATA_CHECKSUM = "metadata_sha256"


def metadata_sha256(metadata):
    """The SHA-256 of an expert's metadata: of its JSON with sorted keys and no spaces,
    without the checksum entry itself (floats print as the shortest decimal that reads back
    as the same float, so the text is the same after a round trip)."""
    content = {key: value for key, value in metadata.items() if key != _METADATA_CHECKSUM}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@validate_params(
    {"expert": [Expert], "path": [str, os.PathLike], "overwrite": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def save_expert(expert, path, *, overwrite=False):
    """Save an expert to a folder: its weights and a JSON file of its metadata.

    ``path/weights.pt`` is the module's ``state_dict`` (CPU tensors only): it loads with
    ``torch.load(weights_only=True)``, and for a torchvision architecture it is also a valid
    ``probe_weights`` file of :class:`~sklearn_task2vec.FisherTaskEmbedder`. ``path/head.pt``
    is the source head's ``state_dict``, when the expert has one. ``path/expert.json`` holds
    the name, ``trained_on``, ``architecture``, ``task_embedding``, ``info``, the head's shape,
    the SHA-256 of the weight files and its own SHA-256, all of which :func:`load_expert`
    checks.

    Parameters
    ----------
    expert : Expert
        The expert; its ``info`` must be JSON-serialisable and its ``head``, if any, a
        ``torch.nn.Linear``.
    path : str or path-like
        The folder: new, or empty, or (with ``overwrite``) an expert folder written by
        ``save_expert``. Its parent folder must exist and be writable: the expert is written
        whole to a new folder beside it, then renamed to ``path``, so that a save killed
        half-way leaves the old expert loadable. The files get the mode the umask gives new
        files; a replaced folder keeps its own.
    overwrite : bool, default=False
        Replace the expert already saved in ``path``.

    Returns
    -------
    path : pathlib.Path
        The folder.

    Raises
    ------
    ValueError
        If ``path`` is a file, or a folder holding anything but an expert saved by
        ``save_expert`` (it is left untouched, whatever ``overwrite`` says).
    FileExistsError
        If ``path`` holds an expert and ``overwrite`` is false.
    OSError
        If the folder cannot be written; the message names it.

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
    head = expert.head
    if head is not None and type(head) is not nn.Linear:
        raise ValueError(
            f"save_expert: expert {expert.name!r} has a {type(head).__name__} head; the file format "
            f"holds a torch.nn.Linear head (set head=None to save the expert without it)."
        )
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
        "head": None
        if head is None
        else {
            "in_features": head.in_features,
            "out_features": head.out_features,
            "bias": head.bias is not None,
        },
        "sklearn_task2vec_version": __version__,
    }
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"save_expert: expert {expert.name!r} has info that JSON cannot hold: {exc}"
        ) from exc

    def fill(new_folder):
        weights = new_folder / _WEIGHTS_FILE
        _save_state_dict(expert.module, weights)
        metadata["weights_sha256"] = _file_sha256(weights)
        if head is not None:
            head_file = new_folder / _HEAD_FILE
            _save_state_dict(head, head_file)
            metadata["head_sha256"] = _file_sha256(head_file)
        metadata[_METADATA_CHECKSUM] = metadata_sha256(metadata)
        text = json.dumps(metadata, indent=1, allow_nan=False)
        write_file(new_folder / _METADATA_FILE, lambda file: file.write(text.encode()))

    folder.parent.mkdir(parents=True, exist_ok=True)
    return write_folder(folder, fill, overwrite=overwrite, check=_check_expert_folder)


def is_expert_folder(path):
    """Whether ``path`` is a folder holding an expert's metadata file, as :func:`save_expert`
    writes (what the command line calls an expert folder; :func:`load_expert` checks the rest)."""
    return Path(path).is_dir() and (Path(path) / _METADATA_FILE).is_file()


def _check_expert_folder(folder):
    """Refuse a folder that is not an expert saved by :func:`save_expert`: one holding anything
    but its three files, or whose ``expert.json`` is not an expert's metadata. Only such a
    folder may be replaced: any other is a user's, whatever its files are named."""
    where = f"save_expert: {os.fspath(folder)!r}"
    foreign = sorted(
        entry.name for entry in folder.iterdir() if entry.name not in _EXPERT_FILES or not entry.is_file()
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(
            f"{where} is not an expert folder (it holds {shown}); save_expert replaces only a "
            f"folder it wrote. Choose a new or empty folder."
        )
    try:
        metadata = json.loads((folder / _METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{where} is not an expert folder: its {_METADATA_FILE} is missing or not the metadata "
            f"save_expert writes; save_expert replaces only a folder it wrote. Choose a new or "
            f"empty folder."
        )


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
        If a file is missing, is not what :func:`save_expert` writes, fails its checksum (corrupt,
        replaced, or an edited ``expert.json``), holds values an expert cannot have, or if the
        weights do not fit the architecture; every message names the folder.

    Warns
    -----
    UserWarning
        For a folder saved in format version 1 (before ``expert.json`` had a checksum and
        experts a head): it loads, without a head.

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
    metadata = _read_metadata(metadata_file, where)
    _check_file(weights_file, metadata.get("weights_sha256"), where)
    state_dict = _load_state_dict(weights_file, where)

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
    head = _load_head(folder, metadata, where)
    try:
        return Expert(
            module.eval().requires_grad_(False),
            metadata["name"],
            trained_on=metadata.get("trained_on"),
            task_embedding=metadata.get("task_embedding"),
            architecture=name,
            info=metadata.get("info") or {},
            head=head,
        )
    except (TypeError, ValueError) as exc:
        # Values a checked file should not hold: a damaged (or hand-made) file, so a ValueError.
        raise ValueError(f"{where}: {_METADATA_FILE} holds a value an expert cannot have: {exc}") from exc


def _read_metadata(metadata_file, where):
    """The checked metadata of an expert: its JSON, format and checksum (format 2)."""
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: {_METADATA_FILE} is not valid JSON (corrupt?): {exc}") from exc
    except RecursionError:
        raise ValueError(
            f"{where}: {_METADATA_FILE} is nested too deeply to read: it is not what save_expert writes."
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
        raise ValueError(f"{where}: {_METADATA_FILE} is not the metadata of a saved expert.")
    version = metadata.get("format_version")
    if version not in _FORMAT_VERSIONS_READ:
        raise ValueError(
            f"{where} was saved in format version {version!r}; this version of sklearn-task2vec "
            f"reads versions {list(_FORMAT_VERSIONS_READ)}."
        )
    if version == 1:
        warnings.warn(
            f"{where} was saved in format version 1, whose {_METADATA_FILE} has no checksum (an edit "
            f"to it cannot be detected) and no source head (LEEP and NCE cannot score it): save it "
            f"again with save_expert.",
            UserWarning,
            stacklevel=3,
        )
    else:
        try:
            checksum = metadata_sha256(metadata)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{where}: {_METADATA_FILE} holds values JSON cannot hold: {exc}") from None
        if metadata.get(_METADATA_CHECKSUM) != checksum:
            raise ValueError(
                f"{where}: {_METADATA_FILE} does not match its checksum: it was edited or damaged "
                f"after save_expert wrote it."
            )
    if not isinstance(metadata.get("name"), str):
        raise ValueError(
            f"{where}: {_METADATA_FILE} has no expert name (a string under 'name'), got "
            f"{metadata.get('name')!r}."
        )
    return metadata


def _check_file(file, recorded, where):
    if _file_sha256(file) != recorded:
        raise ValueError(
            f"{where}: {file.name} does not match the checksum in {_METADATA_FILE}: the file is "
            f"corrupt, truncated or was replaced."
        )


def _save_state_dict(module, file):
    state_dict = {key: tensor.detach().cpu().clone() for key, tensor in module.state_dict().items()}
    write_file(file, lambda handle: torch.save(state_dict, handle))


def _load_state_dict(file, where):
    state_dict = load_tensors(file, f"{where}: {file.name}")
    if not isinstance(state_dict, dict):
        # A damaged file, not a wrong argument: a ValueError, like the other damaged files.
        raise ValueError(  # noqa: TRY004
            f"{where}: {file.name} holds a {type(state_dict).__name__}, not a state_dict."
        )
    return state_dict


def _load_head(folder, metadata, where):
    """The expert's source head (a Linear layer), or None when it was saved without one."""
    shape = metadata.get("head")
    if shape is None:
        return None
    keys = {"in_features", "out_features", "bias"}
    if (
        not isinstance(shape, dict)
        or set(shape) != keys
        or not all(
            isinstance(shape[key], int) and not isinstance(shape[key], bool) and shape[key] > 0
            for key in ("in_features", "out_features")
        )
        or not isinstance(shape["bias"], bool)
    ):
        raise ValueError(
            f"{where}: {_METADATA_FILE} has a head entry that is not a Linear layer's shape: {shape!r}."
        )
    head_file = folder / _HEAD_FILE
    if not head_file.is_file():
        raise ValueError(f"{where}: the expert has a source head, but {_HEAD_FILE} is missing.")
    _check_file(head_file, metadata.get("head_sha256"), where)
    state_dict = _load_state_dict(head_file, where)
    head = nn.Linear(shape["in_features"], shape["out_features"], bias=shape["bias"])
    try:
        head.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ValueError(f"{where}: {_HEAD_FILE} does not fit its recorded shape {shape}: {exc}") from exc
    return head.eval().requires_grad_(False)


def _file_sha256(path):
    """The SHA-256 of a file's bytes, as hex, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
