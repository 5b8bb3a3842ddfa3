"""A resumable, content-addressed cache of task embeddings (``FisherTaskEmbedder(memory=...)``).

Each finished task's row is written at once, in its own file, so an interrupted run (a crash,
Ctrl-C, a killed worker) loses only the tasks that were still running, and a rerun recomputes
only what is missing. A file's name is a hash of the task's content (its examples and labels,
after ``max_samples``); its folder's name a hash of everything else the row depends on (the
probe's weights and architecture, the estimator's settings, the seeds, the device type and the
versions of this package and torch). Files are written to a temporary name and renamed, so
several processes can share one folder; every file carries a checksum of its contents and its
own key, and a file that fails the check is reported, never used, and recomputed. An
embedding file's checksum covers its settings key too, so a file copied or linked from another
settings folder fails the check; it also stores the provenance record of its row
(:mod:`sklearn_task2vec.provenance`), compared on loading with the current one, field by field:
an entry made otherwise is reported, naming what differs, and recomputed. A row whose file cannot be written (a read-only folder, a full
disk) is still returned, with a warning: the cache never costs a result.

A task's file name follows the order of its examples, as its row does, except for a DataLoader
that shuffles them at every pass: its row is one draw over the orders, so it is keyed by its
examples in any order, and a rerun reuses the row drawn first. A loader that reads other
examples at every pass (drawing with replacement, ``drop_last`` on a shuffled pass) is not
cached, with a warning: its key would never be found again.

What the key cannot see: a module probe is keyed by its class, its ``repr`` and its
``state_dict`` (parameters and registered buffers), not by the code of its ``forward`` nor by
plain attributes that ``forward`` reads. After changing those, use a new folder (or delete the
old one): the cache would return the rows of the old probe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch

from . import __version__
from ._utils import module_digest, update_digest
from ._writer import write_file
from .provenance import EmbeddingProvenance, provenance_differences


def cache_folder(memory, parameter="memory"):
    """The folder of ``memory`` (a path, a ``joblib.Memory`` or None), or None for no cache.

    ``parameter`` names the argument in the error message.
    """
    if memory is None:
        return None
    if isinstance(memory, joblib.Memory):
        if memory.location is None:
            return None
        location = Path(memory.location)
    elif isinstance(memory, (str, os.PathLike)):
        location = Path(memory)
    else:
        raise TypeError(f"{parameter} must be None, a path or a joblib.Memory, got {type(memory).__name__}.")
    folder = location / "sklearn_task2vec"
    # Refused before any work starts: every row's file would fail to be written.
    for path in (location, folder):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{parameter}={str(location)!r}: {path} is a file; the cache needs a folder.")
    return folder


def task_key(task, batch_size):
    """A hash of the examples and labels of a coerced task (one pass over its data), or None
    when the cache cannot key it.

    In order, for a task whose order is fixed: its row depends on it (the Monte Carlo labels
    and the variational steps follow the examples' order). For a loader that shuffles its
    examples at every pass (``task.order == "permuted"``) its row is a draw over the orders,
    different at each run: it is keyed by its examples as a multiset (all of them, before
    ``max_samples``), so that a rerun finds the row drawn before rather than never hitting. None
    for a loader that reads other examples at every pass (``"random"``): no key would be found
    again.
    """
    if task.order == "random":
        return None
    if task.order == "permuted":
        examples = []
        for inputs, labels in task.all_batches():
            inputs, labels = inputs.cpu().numpy(), np.asarray(labels)
            for index in range(len(labels)):
                example = hashlib.sha256()
                update_digest(example, inputs[index])
                update_digest(example, labels[index : index + 1])
                examples.append(example.digest())
        digest = hashlib.sha256(b"examples in any order\n")
        for example in sorted(examples):
            digest.update(example)
        return digest.hexdigest()
    digest = hashlib.sha256()
    if getattr(task, "language_modelling", False):
        # Its labels are placeholders: without this, it would share the key of a one-class
        # classification task of the same texts.
        digest.update(b"language modelling: the labels are the next tokens\n")
    for inputs, labels in task.batches(batch_size):
        update_digest(digest, inputs.cpu().numpy())
        update_digest(digest, np.asarray(labels))
    return digest.hexdigest()


def settings_key(settings, seeds, probe, device):
    """A hash of what a row depends on besides the task: the row-changing ``settings`` (a
    frozen dataclass, by its ``repr``), the fitted ``probe`` (class, structure and weights),
    the ``seeds``, the device type and the versions of this package and torch."""
    digest = hashlib.sha256(repr(settings).encode())
    module_digest(probe, digest)
    digest.update(repr([int(seed) for seed in seeds]).encode())
    digest.update(f"{device.type} {__version__} torch {torch.__version__}".encode())
    return digest.hexdigest()


def _checksum(key, arrays):
    digest = hashlib.sha256(key.encode())
    for array in arrays:
        update_digest(digest, array)
    return digest.hexdigest()


def save_checked(path, key, kept, **arrays):
    """Write ``arrays`` to the ``.npz`` file ``path`` atomically, with a checksum of their
    contents and of ``key`` (what the file is for); True once written.

    A file that cannot be written (a read-only folder, a full disk, something in the way) is a
    warning naming it and saying what the caller keeps instead (``kept``, e.g. ``"the row is
    kept"``), not an error: the cache never costs a result. Returns False then.
    """
    checksum = np.array(_checksum(key, arrays.values()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # overwrite: a damaged file is replaced by the recomputed one (and two processes that
        # computed one task write the same content).
        write_file(path, lambda file: np.savez(file, **arrays, checksum=checksum), overwrite=True)
    except OSError as exc:
        warnings.warn(
            # The error names the file (the writer's message, or mkdir's).
            f"Could not write the cache file ({type(exc).__name__}: {exc}); {kept} but not cached.",
            UserWarning,
            stacklevel=4,
        )
        return False
    return True


def load_checked(path, key, names, description):
    """The arrays ``names`` of a file written by :func:`save_checked` for ``key``, or None
    when it is absent or damaged: a damaged file (any failure to read it, or a checksum that
    does not match) is reported with a warning naming ``description`` and never used, and so
    is anything in its place that is not a regular file (a FIFO, whose opening would wait for a
    writer forever, a socket, a folder)."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # no file, or a file where its folder goes
        return None
    if not stat.S_ISREG(mode):
        warnings.warn(
            f"The cached {description} {path} is not a regular file (a FIFO, a socket or a folder); "
            f"it is skipped and the {description} recomputed.",
            UserWarning,
            stacklevel=3,
        )
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = tuple(stored[name] for name in names)
            checksum = str(stored["checksum"])
        if checksum != _checksum(key, arrays):
            raise ValueError("checksum mismatch")
    except Exception as exc:  # a damaged file fails in many ways (zip, header, data, checksum)
        warnings.warn(
            f"The cached {description} {path} is corrupted ({type(exc).__name__}: {exc}); it is "
            f"ignored and recomputed.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return arrays


class EmbeddingCache:
    """Task embeddings under one settings key, one ``.npz`` file per task in ``folder``, each
    with the :class:`~sklearn_task2vec.provenance.EmbeddingProvenance` of its row."""

    def __init__(self, folder, settings, provenance):
        self.folder = Path(folder) / settings
        self.settings = settings
        # The cache holds rows before normalisation, which one entry serves for either setting.
        self.provenance = dataclasses.replace(provenance, normalize=None)

    def _path(self, key):
        return self.folder / f"{key}.npz"

    def _checked_key(self, key):
        # The checksum binds a file to its settings as well as to its task.
        return f"{self.settings}/{key}"

    def save(self, key, embedding):
        """Store a :class:`~sklearn_task2vec._pipeline.TaskEmbedding` for the task ``key``,
        atomically (write, then rename). A file that cannot be written is a warning, not an
        error: the caller keeps its row."""
        save_checked(
            self._path(key),
            self._checked_key(key),
            "the row is kept",
            row=np.asarray(embedding.row, dtype=np.float64),
            prior=np.asarray(embedding.prior, dtype=np.float64),
            n_classes=np.asarray(embedding.n_classes, dtype=np.int64),
            provenance=np.array(self.provenance.to_json()),
        )

    def load(self, key):
        """``(row, prior, n_classes)`` stored for the task ``key``, or None if absent, corrupted
        (an entry of an older version without a provenance record too) or made otherwise
        than this cache's provenance says (a warning names each setting that differs)."""
        path = self._path(key)
        stored = load_checked(
            path, self._checked_key(key), ("row", "prior", "n_classes", "provenance"), "embedding"
        )
        if stored is None:
            return None
        row, prior, n_classes, record = stored
        try:
            differences = provenance_differences(EmbeddingProvenance.from_json(str(record)), self.provenance)
        except ValueError as exc:  # a record of another version of the package
            differences = [str(exc)]
        if differences:
            warnings.warn(
                f"The cached embedding {path} was made otherwise than asked (cached vs now: "
                f"{'; '.join(differences)}); it is not used, and is recomputed.",
                UserWarning,
                stacklevel=3,
            )
            return None
        return row, prior, int(n_classes)
