"""The ``task2vec`` command: embed tasks, compare them, and recommend experts, without Python.

::

    task2vec embed TASK [TASK ...] --output embeddings.csv
    task2vec distances embeddings.csv [more.csv ...]
    task2vec errors TASK [TASK ...] --experts EXPERT [EXPERT ...] --output errors.csv
    task2vec fit-selector embeddings.npz --errors errors.csv --output selector.joblib
    task2vec recommend selector.joblib embeddings.csv
    task2vec diversity CORPUS.jsonl [OTHER.jsonl] --probe hf:gpt2 [--output result.json]
    task2vec help [COMMAND]

A TASK is a folder of images in ImageFolder layout (one subfolder per class) or an ``.npz``
file with arrays ``X`` (inputs: 2-D features or N x C x H x W images) and ``y`` (labels); or
text, embedded with ``--probe hf:<name or folder>`` (a Hugging Face model, see
``docs/text.md``): a ``.jsonl`` file, one JSON object per line with a ``text`` field and a
``label`` field (a file with no ``label`` fields is a language-modelling task), or a folder of
``.txt`` files with one subfolder per class, one text per file (UTF-8; a byte-order mark and
one final line break are not part of the text). A folder whose class folders hold images is an
image folder, its ``.txt`` files skipped and named as before; one where some class folders hold
images and others only ``.txt`` files is refused: a task is images or texts. ``task2vec
diversity`` prints the diversity coefficient of a ``.jsonl`` corpus, or the cross-diversity and
alignment coefficient of two (:mod:`sklearn_task2vec.diversity`). Run ``task2vec help COMMAND``
(or ``task2vec COMMAND --help``) for each command's options. The same is ``python -m
sklearn_task2vec.cli``, and :func:`main` runs it from Python.

From image folders to a recommendation, without Python: ``task2vec embed`` the tasks whose best
model you know; give ``task2vec fit-selector`` that file of embeddings and a table of errors,
from your own fine-tunings or from ``task2vec errors``, which measures the experts saved with
:func:`~sklearn_task2vec.zoo.save_expert` on image-folder or ``.npz`` tasks
(:func:`~sklearn_task2vec.zoo.error_matrix`); give ``task2vec recommend`` the saved selector and
the embeddings of new tasks. A table of errors is a CSV file: a header whose first cell is any
label (``task2vec errors`` writes ``task \\ model``) and whose other cells name the models, then
one row per task, its name as in the file of embeddings (rows are matched by name, in any order;
a task in one file and not the other is refused, naming it) and one error per model. An error is
a finite number >= 0, lower is better, on any scale (a fraction or a percentage: the selector's
soft labels standardise each task's row); an empty cell is refused, naming its task and model.
``fit-selector`` needs the trivial embedding (an ``.npz`` file of embeddings, or a ``.csv`` file
embedded with ``--normalize trivial``); ``--model-embeddings`` gives the embeddings of the tasks
the models were trained on, each row named as its model. ``--gray-to-rgb`` repeats the gray
channel of an ``.npz`` task's one-channel images for probes and experts that take RGB images
(an image folder's images are always read as RGB).

Every file argument is checked for its kind by its content, before any work: a saved selector
(a joblib file) where embeddings are expected, embeddings where a selector is, a task, a table of
errors, a matrix of distances, a file of weights, a ``.jsonl`` file of texts or an expert folder
in the wrong place is a usage error that names what the file is, what the argument takes, and
the command's synopsis (``task2vec recommend SELECTOR EMBEDDINGS``). So is a ``--probe`` (or an
``--architecture``) that names no model.

An existing output file is replaced only with ``--overwrite``, and never when it is one of the
command's inputs; this is checked before any work and again when the file is written, so a
file that appeared while the command ran is not replaced either. The output is written to a
temporary file first and renamed, so it is never left half written; it gets the mode the umask
gives a new file (a replaced file keeps its own). When ``task2vec embed`` or ``task2vec
diversity`` cannot write its output (a full disk, a file that appeared meanwhile), what it
computed is saved to a rescue file, ``<name>.<pid>.<token>.rescued.csv`` (or ``.npz``,
``.json``) beside it or in the temporary folder, which the error names. ``task2vec embed
--on-error warn`` writes the rows of the tasks that could be embedded and names the others;
``--memory DIR`` caches each finished row.

Every file of embeddings carries the record of how its rows were made (probe and the digest of
its weights, settings, seed, normalisation, image size, version:
:mod:`sklearn_task2vec.provenance`; the record does not hold a text task's tokenizer or
``--max-length``: compare rows of texts tokenized alike). ``recommend`` refuses rows whose record differs from the
selector's, and ``distances`` files whose records differ from each other, naming each setting
that differs; ``--ignore-provenance`` uses them anyway. Files of older versions have no record:
a warning says the check could not be made.

Exit status: 0 on success (``help`` and ``--help`` included), 2 for a usage error (a bad
option, an unknown probe, a missing file, an unknown file type, a file of another kind than the
argument takes), 1 for a data error (a file that cannot be read or holds wrong values, a task
that cannot be embedded). Errors are one line on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

__all__ = ["main"]

# Kept here rather than imported, so that `task2vec --help` answers without importing torch.
_METHODS = ("auto", "exact", "montecarlo", "variational")
_VARIATIONAL_CURVATURES = ("gauss_newton", "hessian")
#: The estimator's names in its warnings, and the command line's for them.
_OPTIONS_OF_PARAMETERS = (
    ("variational_steps=", "--variational-steps "),
    ("variational_tol=", "--variational-tol "),
    ("variational_steps", "--variational-steps"),
    ("method='montecarlo' or 'exact'", "--method montecarlo or exact"),
    ("method='variational'", "--method variational"),
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_PROG = "task2vec"
_ZIP_MAGIC = b"PK\x03\x04"  # how every .npz file starts
# First header cell of a CSV file of embeddings: "task" and the JSON of its rows' provenance
# record (sklearn_task2vec.provenance), which says among others whether they were divided by the
# trivial embedding, which the CSV (unlike the NPZ file) does not hold and d_asym needs. Files of
# older versions start with "task" alone (raw rows) or with _CSV_TASK_NORMALISED, and no record.
_CSV_TASK = "task"
_CSV_TASK_NORMALISED = "task (normalize=trivial)"
# How to use rows whose provenance differs anyway, for the messages.
_IGNORE_PROVENANCE = "pass --ignore-provenance"
# Spreadsheets run a cell that starts with one of these as a formula: such task names are written
# with a leading apostrophe (OWASP's advice against CSV injection), removed again on reading.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# The escape itself is escaped, so that a name starting with an apostrophe reads back whole.
_ESCAPED_STARTS = (*_FORMULA_STARTS, "'")
# An .npz file whose arrays would take more than this share of the physical memory is refused
# before it is decompressed (a small compressed file can expand to gigabytes).
_NPZ_MEMORY_SHARE = 0.5
# Upscaling small images more than this with --image-size earns a hint on stderr.
_UPSCALE_HINT = 4.0
# Classes of an image folder named on stderr, at most.
_CLASSES_SHOWN = 20
# What to do, on the command line, with one-channel images for a probe that takes three.
_GRAY_TO_RGB_FIX = "pass --gray-to-rgb to repeat the gray channel in three"
# The prefix of a Hugging Face probe (sklearn_task2vec._text.HF_PREFIX), here so that the
# command line's checks run before torch is imported.
_HF_PREFIX = "hf:"


class UsageError(Exception):
    """A problem with the command line itself: exit status 2."""


class DataError(Exception):
    """A problem with the data the command line points to: exit status 1."""


# --------------------------------------------------------------------------------------
# Reading and writing embeddings
# --------------------------------------------------------------------------------------


def _same_file(first, second):
    """Whether two paths name one file: the same resolved path (symbolic links followed), or
    hard links to one file."""
    first, second = Path(first), Path(second)
    if first.resolve() == second.resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist: not the same file
        return False


def _check_output(path, suffixes, *, inputs, overwrite):
    """``path`` as a Path, checked before any work starts: its suffix and folder, never one of the
    command's ``inputs``, and an existing file only with ``overwrite``."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"--output {path}: the file name must end in {' or '.join(suffixes)}.")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: folder {path.parent} does not exist.")
    for source in inputs:
        if _same_file(path, source):
            raise UsageError(
                f"--output {path}: is also an input of the command ({source}); writing there would "
                f"destroy it. Choose another output file (--overwrite never replaces an input)."
            )
    if path.is_dir():
        raise UsageError(f"--output {path}: is a folder, not a file.")
    if path.exists() and not path.is_file():
        raise UsageError(
            f"--output {path}: is not a regular file (a FIFO, a socket or a device); it is never replaced."
        )
    if path.exists() and not overwrite:
        raise UsageError(f"--output {path}: the file exists; pass --overwrite to replace it.")
    return path


def _write_embeddings(path, names, filters, embeddings, trivial, provenance, *, overwrite):
    """Write the rows and their ``provenance`` (an ``EmbeddingProvenance``) to a .csv or .npz file
    through the package's writer: published whole, never over a file that appeared meanwhile
    without ``overwrite``, and, when the write fails, the rows are saved to a rescue file that the
    error names (they took the whole run to compute)."""
    import numpy as np

    from ._writer import write_file

    if path.suffix.lower() == ".npz":
        arrays = {
            "embeddings": embeddings,
            "tasks": np.array(names, dtype=str),
            "filters": np.array(filters, dtype=str),
            "trivial": trivial,
            "provenance": np.array(provenance.to_json()),
        }
        write_file(path, lambda file: np.savez(file, **arrays), overwrite=overwrite, rescue=True)
        return

    def write(file):
        writer = csv.writer(file)
        writer.writerow([f"{_CSV_TASK} {provenance.to_json()}", *filters])
        for name, row in zip(names, embeddings):
            writer.writerow([_csv_name(name), *(repr(float(value)) for value in row)])  # repr: exact

    write_file(path, write, overwrite=overwrite, text=True, rescue=True)


def _csv_name(name):
    """A task name as a CSV cell that no spreadsheet runs as a formula: a name starting with a
    formula character, or with the apostrophe that marks the escape, gets one more apostrophe
    in front (OWASP's advice against CSV injection). :func:`_name_from_csv` removes it: every
    name reads back as it was."""
    name = str(name)
    return f"'{name}" if name.startswith(_ESCAPED_STARTS) else name


def _name_from_csv(cell):
    """The task name that :func:`_csv_name` wrote as ``cell``."""
    # Only an apostrophe that _csv_name adds is removed: one before a formula character or an
    # apostrophe. A file written before apostrophes were escaped reads as it did then.
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_ESCAPED_STARTS) else cell


def _npz_arrays(path, required, hint):
    """The arrays of an ``.npz`` file, read without pickle, checked to hold those ``required``."""
    import zipfile

    import numpy as np

    with open(path, "rb") as file:
        if file.read(4) != _ZIP_MAGIC:
            raise DataError(f"{path}: not an .npz file (numpy.savez writes a zip archive of arrays).")
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from exc
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if expanded > _NPZ_MEMORY_SHARE * memory:
        raise DataError(
            f"{path}: its arrays would take {expanded / 2**30:.1f} GiB once decompressed, more than "
            f"{_NPZ_MEMORY_SHARE:.0%} of this machine's {memory / 2**30:.1f} GiB of memory; refused "
            f"before decompressing. Split the task, or embed it from Python with a DataLoader."
        )
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except ValueError as exc:  # object arrays: loading them would need pickle
        raise DataError(
            f"{path}: cannot read its arrays without pickle ({exc}); store numbers, and labels as numbers "
            f"or strings."
        ) from exc
    except Exception as exc:  # zip, header or data errors of a damaged file
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from exc
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise DataError(f"{path}: has no array {' or '.join(missing)}; {hint}")
    return arrays


class _Embeddings(NamedTuple):
    """A file of ``task2vec embed`` (:func:`_read_embeddings`).

    ``trivial`` is the trivial embedding in the file's space: the NPZ file's array, all ones for a
    CSV file of trivial-normalised rows, None for a CSV file of raw rows (it does not hold it).
    ``provenance``: the rows' ``EmbeddingProvenance``; None in a file of an older version."""

    names: list
    filters: list | None
    rows: object
    trivial: object
    provenance: object


def _read_embeddings(path):
    """The :class:`_Embeddings` of a file written by ``task2vec embed``."""
    import numpy as np

    from .provenance import EmbeddingProvenance

    def record(text):
        try:
            return EmbeddingProvenance.from_json(text)
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from exc

    path = Path(path)
    if path.suffix.lower() not in (".csv", ".npz"):
        raise UsageError(f"{path}: embeddings must be a .csv or .npz file written by `task2vec embed`.")
    if not path.is_file():
        raise UsageError(f"{path}: no such file.")
    if path.suffix.lower() == ".npz":
        arrays = _npz_arrays(path, ("embeddings", "tasks"), "it was not written by `task2vec embed`.")
        embeddings, names = arrays["embeddings"], [str(name) for name in arrays["tasks"]]
        filters = [str(name) for name in arrays["filters"]] if "filters" in arrays else None
        trivial = arrays.get("trivial")
        provenance = record(str(arrays["provenance"])) if "provenance" in arrays else None
    else:
        try:
            # utf-8-sig: spreadsheets save a CSV file with a byte-order mark, which is not data.
            with open(path, newline="", encoding="utf-8-sig") as file:
                rows = [row for row in csv.reader(file) if row]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc}).") from exc
        first = rows[0][0] if rows else ""
        with_record = first.startswith(f"{_CSV_TASK} {{")
        if len(rows) < 2 or not (with_record or first in (_CSV_TASK, _CSV_TASK_NORMALISED)):
            raise DataError(f"{path}: expected a header `task,<filter>,...` and one row per task.")
        provenance = record(first[len(_CSV_TASK) + 1 :]) if with_record else None
        filters, names = rows[0][1:], [_name_from_csv(row[0]) for row in rows[1:]]
        normalised = first == _CSV_TASK_NORMALISED or (with_record and provenance.normalize == "trivial")
        trivial = np.ones(len(filters)) if normalised else None
        if any(len(row) != len(rows[0]) for row in rows[1:]):
            raise DataError(
                f"{path}: every row must have a task name and one value per filter ({len(filters)})."
            )
        try:
            embeddings = np.array([[float(value) for value in row[1:]] for row in rows[1:]])
        except ValueError as exc:
            raise DataError(f"{path}: a value is not a number ({exc}).") from exc
    if embeddings.ndim != 2 or len(names) != len(embeddings):
        raise DataError(f"{path}: expected one embedding row per task name.")
    return _Embeddings(names, filters, embeddings, trivial, provenance)


# --------------------------------------------------------------------------------------
# What a file is: every command's file arguments are checked here, by content
# --------------------------------------------------------------------------------------

# How messages name each kind of input the command line recognises by its content (not its name).
_KINDS = {
    "selector": "a joblib file (a saved selector)",
    "weights": "a torch file of weights (a state_dict)",
    "embeddings": "a file of embeddings (written by `task2vec embed`)",
    # A CSV file whose first cell is "task" and whose other cells are numbers: embeddings of an
    # older version (before their header carried the record) or a table of errors; either reads it.
    "table": "a CSV table of numbers with a `task` column (embeddings of an older version, or errors)",
    "errors": "a table of errors (a CSV file of numbers, one row per task, one column per model)",
    "distances": "a matrix of distances (written by `task2vec distances --output`)",
    "task": "a task (an .npz file of arrays X and y)",
    "texts": "a .jsonl file of texts",
    "expert": "an expert folder (written by zoo.save_expert)",
    "folder": "a folder",
}
# The first bytes of a joblib file: a pickle (protocol 2 or later), or joblib's compressors
# (zlib, gzip, bz2, xz, lzma, lz4).
_JOBLIB_STARTS = (b"\x80", b"ZF", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00", b"\x04\x22\x4d\x18")
# torch.save's format before torch 1.6: a pickle that starts with its magic number.
_TORCH_LEGACY_START = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
# Bytes read to tell a file's kind: enough for a CSV header with the record and a first row.
_SNIFF_BYTES = 1 << 20
# Data rows of a CSV file looked at to tell its kind.
_SNIFF_ROWS = 5
# A filter's name in an embeddings file: "<module path>:<filter index>".
_FILTER_NAME = re.compile(r"^[\w.\-]+:\d+$")
# The first cell of the header of a table of errors that `task2vec errors` writes: rows are
# tasks, columns models. Any other first cell but "task" marks a table of errors too.
_CSV_ERRORS_CORNER = "task \\ model"


class _Input(NamedTuple):
    """A file argument of a command: its argparse destination, how its usage names it, the
    kinds (keys of :data:`_KINDS`) it takes, and what it is, in words."""

    dest: str
    name: str
    kinds: tuple
    expected: str


_TASK_INPUT = _Input(
    "tasks",
    "TASK",
    ("task", "folder", "texts"),
    "a task (a folder of images or of .txt files with one subfolder per class, an .npz file of X "
    "and y, or a .jsonl file of texts)",
)
_EMBEDDINGS_INPUT = _Input(
    "embeddings",
    "EMBEDDINGS",
    ("embeddings", "table"),
    "embeddings (a .csv or .npz file written by `task2vec embed`)",
)
_MEMORY_INPUT = _Input("memory", "--memory", ("folder",), "a cache folder")
# A tokenizer's name is no file (no kind): only a file or folder of another kind is refused.
_TOKENIZER_INPUT = _Input(
    "tokenizer",
    "--tokenizer",
    ("folder",),
    "a tokenizer (a Hugging Face name, or a folder saved with save_pretrained)",
)
# Each command's synopsis (for the messages) and its file arguments (-o outputs are checked
# apart, by _check_output).
_COMMANDS = {
    "embed": ("task2vec embed TASK [TASK ...] -o EMBEDDINGS", (_TASK_INPUT, _TOKENIZER_INPUT, _MEMORY_INPUT)),
    "distances": ("task2vec distances EMBEDDINGS [EMBEDDINGS ...]", (_EMBEDDINGS_INPUT,)),
    "recommend": (
        "task2vec recommend SELECTOR EMBEDDINGS",
        (
            _Input("selector", "SELECTOR", ("selector",), "a saved selector (a .joblib file)"),
            _EMBEDDINGS_INPUT,
        ),
    ),
    "diversity": (
        "task2vec diversity CORPUS [OTHER] --probe hf:NAME",
        (
            _Input("corpus", "CORPUS", ("texts",), "a corpus (a .jsonl file of texts)"),
            _Input("other", "OTHER", ("texts",), "a corpus (a .jsonl file of texts)"),
            _TOKENIZER_INPUT,
            _MEMORY_INPUT,
        ),
    ),
    "fit-selector": (
        "task2vec fit-selector EMBEDDINGS --errors ERRORS.csv -o SELECTOR.joblib",
        (
            _EMBEDDINGS_INPUT,
            _Input(
                "errors",
                "--errors",
                ("errors", "table"),
                "a table of errors (a CSV file, one row per task, one column per model)",
            ),
            _Input(
                "model_embeddings",
                "--model-embeddings",
                ("embeddings", "table"),
                "embeddings (a .csv or .npz file written by `task2vec embed`)",
            ),
        ),
    ),
    "errors": (
        "task2vec errors TASK [TASK ...] --experts EXPERT [EXPERT ...] -o ERRORS.csv",
        (
            _Input(
                "tasks",
                "TASK",
                ("task", "folder"),
                "a task (a folder of images with one subfolder per class, or an .npz file of X and y)",
            ),
            _Input("experts", "--experts", ("expert",), "an expert folder (written by zoo.save_expert)"),
            _Input("cache", "--cache", ("folder",), "a cache folder"),
        ),
    ),
}
# --probe-weights is a file only when it is not one of these words.
_PROBE_WEIGHTS_WORDS = ("imagenet", "none")


def _file_kind(path):
    """What ``path`` holds, by its content: a key of :data:`_KINDS`, or None when it does not
    exist or is none of them (the command's reader then says what is wrong with it)."""
    path = Path(path)
    if path.is_dir():
        from .zoo._files import is_expert_folder

        return "expert" if is_expert_folder(path) else "folder"
    if not path.is_file():  # missing, or a FIFO, socket or device, which reading could block on
        return None
    try:
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
            whole = not file.read(1)
    except OSError:  # unreadable: the command's own checks name it
        return None
    if head.startswith(_ZIP_MAGIC):
        return _zip_kind(path)
    if head.startswith(_TORCH_LEGACY_START):
        return "weights"
    if head.startswith(_JOBLIB_STARTS):
        return "selector"
    try:
        # final=False: a character cut at the end of the bytes read is not an encoding error.
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=whole)
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith("{"):
        return "texts"
    # The rows read whole: a file longer than the bytes read is cut after its last line break.
    return _csv_kind(text if whole else text[: text.rfind("\n") + 1])


def _zip_kind(path):
    """The kind of a zip archive: an .npz file of embeddings or of a task, or torch's format."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return None
    if {"embeddings.npy", "tasks.npy"} <= names:
        return "embeddings"
    if {"X.npy", "y.npy"} <= names:
        return "task"
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return "weights"
    return None


def _csv_kind(text):
    """The kind of a CSV file from its first rows (``text``): embeddings, distances, errors."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row][: _SNIFF_ROWS + 1]
    except csv.Error:
        return None
    if not rows:
        return None
    header, data = rows[0], rows[1:]
    first = header[0]
    if first.startswith(f"{_CSV_TASK} {{") or first == _CSV_TASK_NORMALISED:
        return "embeddings"
    if len(header) < 2 or not data:  # with a data row, the header was read whole
        return None
    if first == _CSV_TASK and all(_FILTER_NAME.match(name) for name in header[1:]):
        return "embeddings"
    if first == _CSV_TASK and data[0][0] == header[1]:
        return "distances"  # its rows are named as its columns, the first task's first
    if not all(_is_number_or_empty(cell) for row in data for cell in row[1:]):
        return None
    return "table" if first == _CSV_TASK else "errors"


def _is_number_or_empty(cell):
    if not cell.strip():
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _check_input_kinds(args):
    """Refuse, before any work, a command's file argument that holds another kind of file than
    the argument takes, naming both kinds and the command's synopsis (where the argument goes)."""
    synopsis, inputs = _COMMANDS[args.command]
    if args.command == "embed" and args.probe_weights.lower() not in _PROBE_WEIGHTS_WORDS:
        inputs = (
            *inputs,
            _Input("probe_weights", "--probe-weights", ("weights",), "a torch state_dict file"),
        )
    for argument in inputs:
        given = getattr(args, argument.dest)
        for path in given if isinstance(given, list) else [given]:
            kind = None if path is None else _file_kind(path)
            if kind is not None and kind not in argument.kinds:
                raise UsageError(
                    f"{argument.name} {path}: is {_KINDS[kind]}, where {argument.name} is "
                    f"{argument.expected}. Usage: {synopsis}."
                )


# --------------------------------------------------------------------------------------
# Tables of errors: what `task2vec errors` writes and `task2vec fit-selector --errors` reads
# --------------------------------------------------------------------------------------


class _Errors(NamedTuple):
    """A table of errors (:func:`_read_errors`): ``values[i, j]`` the error of model
    ``models[j]`` on task ``tasks[i]``."""

    tasks: list
    models: list
    values: object


def _write_errors(path, tasks, models, values, *, overwrite):
    """Write a table of errors as a CSV file: a header ``task \\ model,<model>,...``, then one
    row per task, its name and its errors (exact: ``repr``). Names are escaped as in files of
    embeddings (no spreadsheet runs them as formulas); :func:`_read_errors` reads it back."""
    from ._writer import write_file

    def write(file):
        writer = csv.writer(file)
        writer.writerow([_CSV_ERRORS_CORNER, *map(_csv_name, models)])
        for name, row in zip(tasks, values):
            writer.writerow([_csv_name(name), *(repr(float(value)) for value in row)])

    # Rescued when it cannot be written: every expert ran over every task to compute it.
    write_file(path, write, overwrite=overwrite, text=True, rescue=True)


def _read_errors(path):
    """The :class:`_Errors` of a CSV file: a header whose first cell is any label and whose other
    cells name the models, then one row per task, its name and one error per model.

    Every error must be a finite number >= 0 (lower is better); its scale is free (a fraction, a
    percentage): the selector's soft labels standardise each task's row. An empty cell, a
    repeated task or model and a row of another length are refused, naming the task and model."""
    import numpy as np

    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc}).") from exc
    layout = "a header `task,<model>,<model>,...` and one row per task, its name and one error per model"
    if len(rows) < 2:
        raise DataError(f"{path}: expected {layout}.")
    (_, header), *rows = rows
    models = [_name_from_csv(cell) for cell in header[1:]]
    if len(models) < 2:
        raise DataError(
            f"{path}: has {len(models)} model column; a selector chooses among 2 models at least."
        )
    for column, model in enumerate(models, start=2):
        if not model.strip():
            raise DataError(f"{path}: column {column} of the header has no model name.")
    _refuse_repeats(path, models, "model")
    tasks, values = [], []
    for line, row in rows:
        task = _name_from_csv(row[0])
        if not task.strip():
            raise DataError(f"{path}, line {line}: the row has no task name.")
        if len(row) != len(header):
            raise DataError(
                f"{path}, line {line}: task {task!r} has {len(row) - 1} errors for {len(models)} models."
            )
        tasks.append(task)
        values.append(
            [
                _error_value(cell, f"{path}, line {line}: task {task!r}, model {model!r}")
                for model, cell in zip(models, row[1:])
            ]
        )
    _refuse_repeats(path, tasks, "task")
    return _Errors(tasks, models, np.array(values, dtype=np.float64))


def _error_value(cell, where):
    """The error in a cell, refused unless a finite number >= 0."""
    if not cell.strip():
        raise DataError(
            f"{where}: the error is missing; the selector needs the error of every model on every task."
        )
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{where}: the error {cell!r} is not a number.") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: the error is {cell.strip()}, not a finite number.")
    if value < 0:
        raise DataError(
            f"{where}: the error is negative ({cell.strip()}); an error is >= 0, lower is better (not an "
            f"accuracy, a difference or a log-likelihood)."
        )
    return value


def _refuse_repeats(path, names, what):
    """Refuse a file that names one task (``what="task"``) or model (``"model"``) twice."""
    import collections

    repeated = [name for name, count in collections.Counter(names).items() if count > 1]
    if repeated:
        raise DataError(f"{path}: {what} {repeated[0]!r} appears more than once; a {what} has one entry.")


def _match_rows(names, path, table, table_path):
    """The rows of ``table`` (a table of errors) in the order of ``names``, the tasks of the file
    of embeddings ``path``: matched by name; a task in one file and not the other is refused."""
    _refuse_repeats(path, names, "task")
    missing = sorted(set(names) - set(table.tasks), key=names.index)
    extra = sorted(set(table.tasks) - set(names), key=table.tasks.index)
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{_listed(missing)} of {path} {'have' if len(missing) > 1 else 'has'} no row in {table_path}"
            )
        if extra:
            parts.append(
                f"{_listed(extra)} of {table_path} {'have' if len(extra) > 1 else 'has'} no row in {path}"
            )
        raise DataError(
            f"the tasks of the two files differ: {'; '.join(parts)}. Tasks are matched by name: give "
            f"both files the same tasks."
        )
    order = {name: index for index, name in enumerate(table.tasks)}
    return table.values[[order[name] for name in names]]


# --------------------------------------------------------------------------------------
# Text tasks and corpora: .jsonl files and folders of .txt files
# --------------------------------------------------------------------------------------


class _Line(NamedTuple):
    """One text of a ``.jsonl`` file: its line number (from 1), the text, and its label
    (:data:`_NO_LABEL` where the line has no ``label`` field)."""

    number: int
    text: str
    label: object


# A line without a "label" field (None is a JSON value, null, which is refused as a label).
_NO_LABEL = object()


def _json_kind(value):
    """How a message names a JSON value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before numbers: a bool is an int in Python
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _listed(names, shown=3):
    """The first ``shown`` names, and ``...`` when there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _check_text(text, where):
    """Refuse a text that is not a string, or that has nothing to tokenize."""
    if not isinstance(text, str):
        raise DataError(f"{where}: the text is {_json_kind(text)}, not a string.")
    # Checked here, where the line or file can be named: the embedder would refuse the text's
    # empty token list later, naming only its index in the task.
    if not text.strip():
        raise DataError(f"{where}: the text is empty (or only whitespace), so it has no tokens: drop it.")


def _read_jsonl(path, *, check_labels=True):
    """The :class:`_Line` of every non-blank line of a ``.jsonl`` file, each a JSON object with
    a string ``text`` field and optionally a ``label`` (checked to be a string, a number or a
    boolean with ``check_labels``; a corpus's labels are not used, so not checked either)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc}).") from exc
    lines = []
    # Split the bytes, not decoded text: an encoding error is then named by its line too.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path}, line {number}"
        try:
            # utf-8-sig: a byte-order mark (some editors write one) is not text.
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
        if not line.strip():  # a blank line (a final newline, a separator) holds no record
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from exc
        if not isinstance(record, dict):
            raise DataError(
                f"{where}: is {_json_kind(record)}, not a JSON object such as "
                f'{{"text": "...", "label": "..."}}.'
            )
        if "text" not in record:
            raise DataError(
                f'{where}: has no "text" field (fields: {", ".join(map(repr, record)) or "none"}).'
            )
        _check_text(record["text"], where)
        label = record.get("label", _NO_LABEL)
        if label is not _NO_LABEL and check_labels:
            kind = _json_kind(label)
            if kind not in ("a string", "a number", "a boolean"):
                raise DataError(
                    f'{where}: the "label" is {kind}; a label is a string, a number or a boolean.'
                )
            if isinstance(label, float) and not math.isfinite(label):
                raise DataError(f'{where}: the "label" is {label}, not a class.')
        lines.append(_Line(number, record["text"], label))
    if not lines:
        raise DataError(f'{path}: holds no text (expected one JSON object with a "text" field per line).')
    return lines


def _jsonl_task(path, command):
    """A ``.jsonl`` file as a text task: ``(texts, labels)``, or ``(texts, None)`` (a
    language-modelling task) when no line has a ``label`` field; notes on stderr for ``command``."""
    lines = _read_jsonl(path)
    texts = [line.text for line in lines]
    first = lines[0]
    for line in lines[1:]:
        # A file is labelled throughout or not at all: a line without a label among labelled
        # ones is a mistake in the file, not a language-modelling example.
        if (line.label is _NO_LABEL) != (first.label is _NO_LABEL):
            labelled, unlabelled = (first, line) if line.label is _NO_LABEL else (line, first)
            raise DataError(
                f'{path}, line {unlabelled.number}: has no "label" field, but line {labelled.number} '
                f"has one: give every line a label (a classification task) or none (a "
                f"language-modelling task)."
            )
        if first.label is not _NO_LABEL and _json_kind(line.label) != _json_kind(first.label):
            raise DataError(
                f'{path}, line {line.number}: the "label" is {_json_kind(line.label)} ({line.label!r}), '
                f"but that of line {first.number} is {_json_kind(first.label)} ({first.label!r}): give "
                f"the labels of a task one type."
            )
    if first.label is _NO_LABEL:
        _note(
            f"{path}: {len(texts)} texts without labels: a language-modelling task (the next token "
            f"is the label).",
            command,
        )
        return texts, None
    labels = [line.label for line in lines]
    _note_text_classes(path, labels, command)
    return texts, labels


def _jsonl_corpus(path, command):
    """The :class:`_Line` of a ``.jsonl`` corpus (its ``label`` fields, if any, are not used)."""
    lines = _read_jsonl(path, check_labels=False)
    labelled = sum(line.label is not _NO_LABEL for line in lines)
    if labelled:
        _note(
            f'{path}: its "label" fields ({labelled} of {len(lines)} lines) are not used: the coefficients '
            f"embed batches of texts as language-modelling tasks.",
            command,
        )
    return lines


def _note_text_classes(path, labels, command):
    """The classes of a text task and their number of texts, on stderr (as for image folders)."""
    import collections

    counts = sorted(collections.Counter(labels).items())  # one type of label per task: they sort
    shown = ", ".join(f"{label} ({count})" for label, count in counts[:_CLASSES_SHOWN])
    more = len(counts) - _CLASSES_SHOWN
    _note(
        f"{path}: {len(counts)} classes, {len(labels)} texts: {shown}"
        + (f", and {more} more" if more > 0 else "")
        + ".",
        command,
    )


def _text_folder(path, command):
    """A folder of ``.txt`` files, one subfolder per class, as a text task ``(texts, labels)``
    (labels: the class folders' names); None when it is an image folder (or neither: the image
    reader then says what is wrong, as it did before text was read). Notes go to stderr for
    ``command``.

    A class folder is an image class as soon as it holds an image (the scan of that class stops
    there, so an image folder costs one listing per class), a text class when it holds ``.txt``
    files and no image. A folder of image classes is an image folder, its ``.txt`` files not
    examples (as before); a folder of text classes a text task; one with both is refused.
    """
    from torchvision.datasets.folder import is_image_file

    from .datasets import is_system_name

    path = Path(path)
    skipped, unread = [], []
    classes, texts_of, image_classes, empty = [], {}, [], []
    try:
        with os.scandir(path) as entries:
            top = sorted(entries, key=lambda entry: entry.name)
        for entry in top:
            if is_system_name(entry.name):
                skipped.append(entry.name)
            elif entry.is_dir():
                classes.append(entry.name)
            else:
                unread.append(entry.name)
        for name in classes:
            files = _class_text_files(path, path / name, skipped, unread, is_image_file, is_system_name)
            if files is None:
                image_classes.append(name)
            elif files:
                texts_of[name] = files
            else:
                empty.append(name)
    except OSError as exc:  # a folder that cannot be listed
        raise DataError(f"{path}: cannot read the folder ({exc}).") from exc
    if not texts_of:
        return None
    if image_classes:
        several = len(image_classes) > 1
        raise DataError(
            f"{path}: mixes images and texts: class folder{'s' if several else ''} "
            f"{_listed(image_classes)} hold{'' if several else 's'} images, {_listed(list(texts_of))} "
            f"only .txt files. A task is a folder of images or a folder of texts: move the images or "
            f"the texts out."
        )
    if empty:
        raise DataError(
            f"{path}: class folder {empty[0]} holds no .txt file; every class needs at least one text."
        )
    if skipped:
        entries = "entries" if len(skipped) > 1 else "entry"
        _note(f"{path}: skipped {len(skipped)} hidden or system {entries}: {_listed(skipped)}.", command)
    if unread:
        _note(
            f"{path}: skipped {len(unread)} file{'s' if len(unread) > 1 else ''} that are not texts "
            f"({_listed(unread)}): only .txt files in a class subfolder are examples.",
            command,
        )
    texts, labels = [], []
    for name, files in texts_of.items():
        for file in files:
            texts.append(_read_text_file(file))
            labels.append(name)
    _note_text_classes(path, labels, command)
    return texts, labels


def _class_text_files(root, folder, skipped, unread, is_image_file, is_system_name):
    """The ``.txt`` files under a class folder, sorted (subfolders too, as ImageFolder reads
    them); None as soon as an image is found. Hidden and system entries go to ``skipped``,
    other files to ``unread`` (paths relative to ``root``)."""
    found = []

    def visit(current, ancestors):
        with os.scandir(current) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        subfolders = []
        for entry in listed:
            relative = os.path.relpath(entry.path, root)
            if is_system_name(entry.name):
                skipped.append(relative)
            elif entry.is_dir():  # follows links, as ImageFolder does
                subfolders.append(entry)
            elif is_image_file(entry.name):
                return False
            elif entry.name.lower().endswith(".txt"):
                found.append(Path(entry.path))
            else:
                unread.append(relative)
        for entry in subfolders:
            real = os.path.realpath(entry.path)
            if real in ancestors:  # os.walk would go round this loop until the paths grew too long
                raise DataError(
                    f"{entry.path} is a directory link back to {real}, a folder that contains it: reading "
                    f"the tree would visit the same files again and again. Remove the link."
                )
            if not visit(entry.path, ancestors | {real}):
                return False
        return True

    return found if visit(folder, {os.path.realpath(root), os.path.realpath(folder)}) else None


def _read_text_file(path):
    """The text of one ``.txt`` file: UTF-8, without a byte-order mark or one final line break
    (which editors add; it is not part of the text)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc}).") from exc
    text = text.removesuffix("\n").removesuffix("\r")
    _check_text(text, str(path))
    return text


# --------------------------------------------------------------------------------------
# embed
# --------------------------------------------------------------------------------------


def _load_task(path, image_size, gray_to_rgb, command):
    """``(name, task)``: an ImageFolder dataset, the ``(texts, labels)`` of a folder of ``.txt``
    files or of a ``.jsonl`` file (labels None: a language-modelling task), or the ``(X, y)``
    arrays of an ``.npz`` file, its one-channel images repeated in three channels with
    ``gray_to_rgb`` (an image folder's are always: every image is read as RGB). Notes on what
    was read go to stderr for ``command``."""
    path = Path(path)
    if path.is_dir():
        texts = _text_folder(path, command)
        if texts is not None:
            return path.resolve().name, texts
        from torchvision import transforms

        from .datasets import load_image_folder

        transform = transforms.Compose(
            [
                transforms.Resize(image_size),
                transforms.CenterCrop(image_size),
                transforms.ToTensor(),
                transforms.Normalize(_IMAGENET_MEAN, _IMAGENET_STD),
            ]
        )
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                dataset = load_image_folder(path, transform=transform)
        except OSError as exc:  # no class folder, or no image in them (FileNotFoundError)
            raise DataError(f"{path}: not an image folder with one subfolder per class ({exc}).") from exc
        except ValueError as exc:  # a directory link that loops
            raise DataError(f"{path}: {exc}") from exc
        for warning in caught:  # the hidden and system entries skipped
            _note(str(warning.message), command)
        _note_classes(path, dataset, command)
        _note_skipped_files(path, dataset, command)
        _note_upscaling(path, dataset, image_size, command)
        return path.resolve().name, dataset
    if path.suffix.lower() == ".jsonl":
        return path.stem, _jsonl_task(path, command)
    if path.suffix.lower() != ".npz":
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder.")
        raise UsageError(
            f"{path}: a task is a folder of images or of .txt files (one subfolder per class), an .npz "
            f"file or a .jsonl file of texts."
        )
    if not path.is_file():
        raise UsageError(f"{path}: no such file.")
    arrays = _npz_arrays(
        path, ("X", "y"), "a task file holds inputs X and labels y (numpy.savez(path, X=inputs, y=labels))."
    )
    inputs, labels = arrays["X"], arrays["y"]
    if gray_to_rgb and inputs.ndim == 4 and inputs.shape[1] == 1:
        from .datasets import to_rgb

        inputs = to_rgb(inputs)
        _note(f"{path}: its one-channel images repeated in 3 channels (--gray-to-rgb).", command)
    return path.stem, (inputs, labels)


def _load_tasks(paths, image_size, gray_to_rgb, command):
    """``(names, tasks)`` of the TASK arguments (:func:`_load_task`), refusing two of one name."""
    loaded = [_load_task(path, image_size, gray_to_rgb, command) for path in paths]
    seen = {}
    for (name, _), path in zip(loaded, paths):
        if name in seen:
            raise UsageError(f"tasks {seen[name]} and {path} have the same name {name!r}: rename one.")
        seen[name] = path
    return [name for name, _ in loaded], [task for _, task in loaded]


def _note(message, command="embed"):
    print(f"{_PROG} {command}: {message}", file=sys.stderr)


def _note_classes(path, dataset, command):
    """The classes found in an image folder and their number of images, on stderr."""
    import numpy as np

    counts = np.bincount(dataset.targets, minlength=len(dataset.classes))
    shown = ", ".join(f"{name} ({count})" for name, count in zip(dataset.classes[:_CLASSES_SHOWN], counts))
    more = len(dataset.classes) - _CLASSES_SHOWN
    _note(
        f"{path}: {len(dataset.classes)} classes, {len(dataset)} images: {shown}"
        + (f", and {more} more" if more > 0 else "")
        + ".",
        command,
    )


def _note_skipped_files(path, dataset, command):
    """Count, on stderr, the files of an image folder that are not examples: those outside the
    class folders and those whose extension is not an image's (hidden and system entries are
    noted apart)."""
    if dataset.unread:
        from torchvision.datasets.folder import IMG_EXTENSIONS

        unread = dataset.unread
        shown = ", ".join(unread[:3]) + (", ..." if len(unread) > 3 else "")
        # A .txt file beside images is not a text example: say why, as it would be in a folder of texts.
        texts = any(name.lower().endswith(".txt") for name in unread)
        _note(
            f"{path}: skipped {len(unread)} file{'s' if len(unread) > 1 else ''} that ImageFolder does "
            f"not read ({shown}): only files in a class subfolder with an image extension "
            f"({' '.join(IMG_EXTENSIONS)}) are examples"
            + (" (.txt files are texts only in a folder whose class folders hold no image)" if texts else "")
            + ".",
            command,
        )


def _note_upscaling(path, dataset, image_size, command):
    """A hint on stderr when --image-size blows the folder's (first) images up many times."""
    from .datasets import read_image

    try:
        width, height = read_image(dataset.samples[0][0]).size
    except (OSError, ValueError):  # an unreadable image fails later, named with its task and file
        return
    if image_size > _UPSCALE_HINT * min(width, height):
        _note(
            f"{path}: its images are {width} x {height} pixels, upscaled {image_size / min(width, height):.0f}x "
            f"to --image-size {image_size}. That adds no information and costs about "
            f"({image_size}/S)^2 times the time of size S; for small images a size such as "
            f"--image-size {max(32, 2 * min(width, height))} is much faster (the embedding changes with "
            f"the size: embed the tasks you compare at one size).",
            command,
        )


def _imagenet_checkpoint(probe, tasks):
    """``(name, url, cached file)`` of the torchvision ImageNet weights the embedder will fetch, or
    None (random probe for 2-D features, a timm probe, an unknown name)."""
    if probe == "auto":
        first = tasks[0]
        is_images = not isinstance(first, tuple) or getattr(first[0], "ndim", 0) == 4
        if not is_images:
            return None
        probe = "resnet34"
    try:
        import torch
        import torchvision

        url = torchvision.models.get_model_weights(probe).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        return None
    return probe, url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _is_hf(probe):
    """Whether ``--probe`` names a Hugging Face model (``hf:<name or folder>``)."""
    return probe.startswith(_HF_PREFIX)


def _check_transformers():
    """Refuse a Hugging Face probe when transformers is not installed, saying how to install it."""
    from ._text import import_transformers

    try:
        import_transformers()
    except ImportError as exc:
        raise UsageError(str(exc)) from exc


def _progress_options(command):
    """``--verbose`` and ``--quiet``: progress bars always, or never; by default, when standard
    error is a terminal."""
    group = command.add_mutually_exclusive_group()
    group.add_argument(
        "--verbose", action="store_true", help="show progress bars even when not on a terminal (in a log)"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars (default: shown on a terminal)")


def _verbosity(args):
    """The ``verbose`` of the estimators: 1 (``--verbose``), 0 (``--quiet``) or ``"auto"``."""
    return 1 if args.verbose else 0 if args.quiet else "auto"


@contextlib.contextmanager
def _quiet_transformers(verbose):
    """Without ``--verbose``, transformers' progress bars (its weights being loaded) are off, so
    that stderr holds the command's own lines; they are turned on again after."""
    if verbose:
        yield
        return
    from ._text import import_transformers

    logging = import_transformers().utils.logging
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def _check_text_options(args):
    """Before any work: the text options need a Hugging Face probe, which has no --probe-weights."""
    given = [
        option
        for option, value in (
            ("--tokenizer", args.tokenizer),
            ("--max-length", args.max_length),
            ("--pooling", args.pooling),
        )
        if value is not None
    ]
    if not _is_hf(args.probe):
        if given:
            raise UsageError(
                f"{', '.join(given)}: for text tasks, which take a Hugging Face probe (--probe "
                f"hf:<name or folder>); --probe is {args.probe}."
            )
        return
    _check_transformers()
    if args.probe_weights != "imagenet":
        raise UsageError(
            f"--probe-weights {args.probe_weights}: a Hugging Face probe has the weights saved with it "
            f"(--probe {args.probe}); --probe-weights is for torchvision probes."
        )


def _check_task_kinds(args, paths, tasks):
    """Whether the tasks are text, after refusing a run that mixes text with other tasks, and
    text without a Hugging Face probe or the reverse (one probe takes one kind of input)."""
    from ._text import is_text

    text = [isinstance(task, tuple) and is_text(task[0]) for task in tasks]
    if any(text) and not all(text):
        raise UsageError(
            f"{paths[text.index(True)]} is a text task and {paths[text.index(False)]} is not: one probe "
            f"cannot take both. Embed them in separate runs."
        )
    if all(text) and not _is_hf(args.probe):
        raise UsageError(
            f"--probe {args.probe}: text tasks ({paths[0]}) need a Hugging Face model: --probe "
            f"hf:<name or folder> (hf:gpt2, or the folder a model was saved to with save_pretrained)."
        )
    if _is_hf(args.probe) and not all(text):
        raise UsageError(
            f"--probe {args.probe}: a Hugging Face probe takes text, and {paths[text.index(False)]} is not "
            f"a text task (a .jsonl file or a folder of .txt files)."
        )
    return all(text)


def _check_probe(name, option):
    """Refuse, before any work, a probe (or expert architecture) name that names no model."""
    from ._probes import check_probe_name

    try:
        check_probe_name(name)
    except ValueError as exc:
        raise UsageError(f"{option} {name}: {exc}") from exc


def _embed(args):
    paths = args.tasks
    weights = args.probe_weights
    _check_text_options(args)
    if args.probe != "auto" and not _is_hf(args.probe):
        _check_probe(args.probe, "--probe")
    if weights.lower() == "none":
        weights = None
    elif weights != "imagenet" and not Path(weights).is_file():
        raise UsageError(
            f"--probe-weights {weights}: no such file (expected imagenet, none or a state_dict file)."
        )
    inputs = [*paths, *([weights] if weights not in (None, "imagenet") else [])]
    output = _check_output(args.output, (".csv", ".npz"), inputs=inputs, overwrite=args.overwrite)
    if args.memory is not None and Path(args.memory).exists() and not Path(args.memory).is_dir():
        raise UsageError(f"--memory {args.memory}: is a file; the cache needs a folder.")
    names, tasks = _load_tasks(paths, args.image_size, args.gray_to_rgb, "embed")
    text = _check_task_kinds(args, paths, tasks)
    # Only image folders are cut to --image-size (a folder of .txt files is text).
    from_folders = not text and any(Path(path).is_dir() for path in paths)

    import numpy as np

    from .embedder import FisherTaskEmbedder

    embedder = FisherTaskEmbedder(
        probe=args.probe,
        probe_weights=weights,
        tokenizer=args.tokenizer,
        max_length=args.max_length,
        pooling=args.pooling or "mean",
        method=args.method,
        variational_steps=args.variational_steps,
        variational_tol=args.variational_tol,
        variational_curvature=args.variational_curvature,
        normalize=None if args.normalize == "none" else args.normalize,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        device=args.device,
        n_jobs=args.n_jobs,
        memory=args.memory,
        on_error="warn",  # every failed task is named below, whatever --on-error says
        random_state=args.random_state,
        verbose=_verbosity(args),
    )
    checkpoint = _imagenet_checkpoint(args.probe, tasks) if weights == "imagenet" and not text else None
    if checkpoint is not None and not checkpoint[2].is_file():
        _note(
            f"the ImageNet weights of probe {checkpoint[0]} are not in {checkpoint[2].parent}: downloading "
            f"them once (torch prints the address). Offline, pass --probe-weights PATH (a local "
            f"state_dict) or --probe-weights none (a random probe)."
        )
    quiet = _quiet_transformers(args.verbose) if text else contextlib.nullcontext()
    with warnings.catch_warnings(record=True) as caught, quiet:
        warnings.simplefilter("always")
        try:
            embeddings = embedder.fit_transform(tasks)
        except (ValueError, TypeError, RuntimeError) as exc:
            offline = checkpoint is not None and isinstance(exc, RuntimeError)
            if not (offline and str(exc).startswith("Could not get the ImageNet weights")):
                # Fitting the probe reads a task's first example; an error there starts with
                # "task <index>": named here by the task's name and file, as failed tasks are below.
                named = re.match(r"task (\d+):? ?", str(exc))
                if named is None or int(named.group(1)) >= len(names):
                    raise
                index = int(named.group(1))
                raise DataError(f"{names[index]} ({paths[index]}): {str(exc)[named.end() :]}") from exc
            cause = exc.__cause__
            raise DataError(
                f"could not get the ImageNet weights of probe {checkpoint[0]} ({type(cause).__name__}: "
                f"{cause}). Run once with internet access (they are then cached in "
                f"{checkpoint[2].parent}), or download {checkpoint[1]} to {checkpoint[2]}, or pass "
                f"--probe-weights PATH (a local state_dict of the model), or --probe-weights none for a "
                f"randomly initialised probe."
            ) from exc
    for warning in caught:
        message = str(warning.message)
        # Failed tasks are reported below, by name; other warnings name tasks by their folder or file.
        if re.match(r"Task \d+ failed", message):
            continue
        named = re.match(r"Task (\d+) ", message)
        if named and int(named.group(1)) < len(names):
            index = int(named.group(1))
            message = f"{names[index]} ({paths[index]}) {message[named.end() :]}"
        for parameter, option in _OPTIONS_OF_PARAMETERS:
            message = message.replace(parameter, option)
        warnings.warn(message, warning.category, stacklevel=1)
    failures = "; ".join(
        # The embedder's messages start with "task <index>:"; the name and path say more.
        f"{names[index]} ({paths[index]}): {re.sub(rf'^task {index}:? ?', '', str(error))}"
        for index, error in sorted(embedder.errors_.items())
    )
    failed = f"could not embed {len(embedder.errors_)} of {len(names)} tasks: {failures}"
    if embedder.errors_ and (args.on_error == "raise" or len(embedder.errors_) == len(names)):
        raise DataError(f"{failed}. Nothing was written.")
    kept = [index for index in range(len(names)) if index not in embedder.errors_]
    trivial = embedder.trivial_embedding_ if embedder.normalize is None else np.ones(embeddings.shape[1])
    # The embedder's record, and the one setting it cannot know: how image folders were cut.
    provenance = dataclasses.replace(
        embedder.provenance_, image_size=args.image_size if from_folders else None
    )
    _write_embeddings(
        output,
        [names[index] for index in kept],
        embedder.get_feature_names_out().tolist(),
        embeddings[kept],
        trivial,
        provenance,
        overwrite=args.overwrite,
    )
    tasks = f"{len(kept)} task{'s' if len(kept) != 1 else ''}"
    print(f"Wrote the embeddings of {tasks} ({embeddings.shape[1]} filters each) to {output}.")
    if embedder.errors_:
        raise DataError(f"{failed}. The other tasks' rows were written to {output}.")


# --------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------


def _table(row_names, column_names, values, digits=3):
    """A plain-text table: one row per name, numbers right-aligned."""
    cells = [[f"{value:.{digits}f}" for value in row] for row in values]
    first = max(len(name) for name in row_names)
    widths = [
        max(len(name), *(len(row[column]) for row in cells)) for column, name in enumerate(column_names)
    ]
    lines = ["  ".join([" " * first, *(name.rjust(width) for name, width in zip(column_names, widths))])]
    for name, row in zip(row_names, cells):
        lines.append("  ".join([name.ljust(first), *(cell.rjust(width) for cell, width in zip(row, widths))]))
    return "\n".join(lines)


def _distances(args):
    if not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise UsageError(f"--alpha {args.alpha}: must be a number >= 0, and finite.")
    output = None
    if args.output is not None:
        output = _check_output(args.output, (".csv",), inputs=args.embeddings, overwrite=args.overwrite)

    import collections

    import numpy as np

    from .provenance import check_provenance

    files = [(path, _read_embeddings(path)) for path in args.embeddings]
    (first_path, first), *others = files
    for path, file in others:
        if file.rows.shape[1] != first.rows.shape[1]:
            raise DataError(
                f"{path}: its rows have {file.rows.shape[1]} filters, those of {first_path} "
                f"{first.rows.shape[1]}: they were embedded with other probes."
            )
        if args.ignore_provenance:
            continue
        if None not in (file.filters, first.filters) and file.filters != first.filters:
            raise DataError(
                f"{path}: its filters are not those of {first_path}: they were embedded with other "
                f"probes. Embed them with one probe, or {_IGNORE_PROVENANCE} to compare them anyway."
            )
        check_provenance(
            file.provenance,
            first.provenance,
            given_name=str(path),
            expected_name=str(first_path),
            override=_IGNORE_PROVENANCE,
        )
    # A task in several files is named with its file in each.
    counts = collections.Counter(name for _, file in files for name in file.names)
    names = [f"{name} ({path})" if counts[name] > 1 else name for path, file in files for name in file.names]
    embeddings = np.vstack([file.rows for _, file in files])
    # The files' rows are in one space (checked above): the first file's trivial embedding is theirs.
    trivial = first.trivial
    if args.kind == "asymmetric":
        for path, file in files:
            _trivial_of(path, file, "the asymmetric distance")

    from .distances import pairwise_task_distances

    try:
        distances = pairwise_task_distances(
            embeddings,
            kind=args.kind,
            alpha=args.alpha,
            trivial=trivial if args.kind == "asymmetric" else None,
        )
    except ValueError as exc:
        raise DataError(f"{', '.join(map(str, args.embeddings))}: {exc}") from exc
    title = (
        "symmetric TASK2VEC distance"
        if args.kind == "symmetric"
        else (f"asymmetric TASK2VEC distance d(row -> column), alpha={args.alpha}")
    )
    print(f"{title}:")
    print(_table(names, names, distances))
    if output is not None:
        from ._writer import write_file

        def write(file):
            writer = csv.writer(file)
            writer.writerow(["task", *map(_csv_name, names)])
            for name, row in zip(names, distances):
                writer.writerow([_csv_name(name), *(repr(float(value)) for value in row)])

        # Not rescued: the distances are recomputed from the embeddings file in a moment.
        write_file(output, write, overwrite=args.overwrite, text=True)
        print(f"Wrote the distances to {output}.")


# --------------------------------------------------------------------------------------
# recommend
# --------------------------------------------------------------------------------------


def _load_selector(path):
    """``(selector, before, embedder)``: the fitted selector, the steps to run on the embeddings
    before it (a Pipeline's middle) and the Pipeline's embedder (or None)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file.")
    import joblib
    from sklearn.pipeline import Pipeline

    from .embedder import FisherTaskEmbedder
    from .selector import Model2VecSelector

    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling a damaged or foreign file fails in many ways
        raise DataError(f"{path}: cannot load it with joblib ({type(exc).__name__}: {exc}).") from exc
    embedder = None
    if isinstance(model, Pipeline):
        steps = [step for _, step in model.steps if step is not None and step != "passthrough"]
        # The embeddings file stands for the output of the pipeline's embedder: skip it.
        if steps and isinstance(steps[0], FisherTaskEmbedder):
            embedder, steps = steps[0], steps[1:]
        selector, before = (steps[-1], steps[:-1]) if steps else (None, [])
    else:
        selector, before = model, []
    if not isinstance(selector, Model2VecSelector):
        raise DataError(
            f"{path}: holds a {type(model).__name__}, not a Model2VecSelector or a Pipeline ending in one."
        )
    if not hasattr(selector, "classes_"):
        raise DataError(f"{path}: the Model2VecSelector in it is not fitted.")
    return selector, before, embedder


def _recommend(args):
    if args.top < 1:
        raise UsageError(f"--top {args.top}: must be >= 1.")
    selector, before, embedder = _load_selector(args.selector)
    names, filters, embeddings, _, provenance = _read_embeddings(args.embeddings)

    import numpy as np

    from .provenance import check_provenance

    hint = "embed the tasks with the probe (and --normalize) the selector was trained with"
    fitted_embedder = embedder is not None and hasattr(embedder, "probe_")
    if fitted_embedder and filters is not None and filters != embedder.get_feature_names_out().tolist():
        raise DataError(f"{args.embeddings}: its filters are not those of the selector's probe: {hint}.")
    if not before and embeddings.shape[1] != selector.n_features_in_:
        raise DataError(
            f"{args.embeddings}: the embeddings have {embeddings.shape[1]} filters but the selector was "
            f"fitted on {selector.n_features_in_}: {hint}."
        )
    if not args.ignore_provenance:
        # The selector's record (given when it was fitted; an older selector has none), else that
        # of the Pipeline's embedder, whose rows it was fitted on.
        expected = getattr(selector, "provenance_", None)
        if expected is None and embedder is not None:
            expected = getattr(embedder, "provenance_", None)  # None when not fitted
        check_provenance(
            provenance,
            expected,
            given_name=str(args.embeddings),
            expected_name=str(args.selector),
            override=_IGNORE_PROVENANCE,
        )
    try:
        features = embeddings
        for step in before:
            features = step.transform(features)
        probabilities = selector.predict_proba(features)
    except ValueError as exc:
        raise DataError(f"{args.embeddings}: {exc}") from exc
    experts = [str(expert) for expert in selector.classes_]
    top = min(args.top, len(experts))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    width = max(len("task"), *(len(name) for name in names))
    best_width = max(len("recommended"), *(len(experts[row[0]]) for row in order))
    print(f"{'task'.ljust(width)}  {'recommended'.ljust(best_width)}  top experts (probability)")
    for name, row, ranked in zip(names, probabilities, order):
        listed = ", ".join(f"{experts[column]} {row[column]:.3f}" for column in ranked)
        print(f"{name.ljust(width)}  {experts[ranked[0]].ljust(best_width)}  {listed}")


# --------------------------------------------------------------------------------------
# fit-selector
# --------------------------------------------------------------------------------------


def _trivial_of(path, file, purpose):
    """The trivial embedding of a file of embeddings, which ``purpose`` needs; refused for a .csv
    file of raw rows, which does not hold it."""
    if file.trivial is None:
        raise DataError(
            f"{path}: {purpose} needs the trivial embedding, which a .csv file embedded without "
            f"--normalize trivial does not hold. Embed again with --normalize trivial, or to an .npz "
            f"file (--output embeddings.npz), which stores it."
        )
    return file.trivial


def _model_embeddings(args, embeddings, models):
    """The rows of ``--model-embeddings`` in the order of the models: the embedding of the task
    each model was trained on, a row named as the model; a model without one gets zeros (an
    unknown expert, which MODEL2VEC places), and a row naming no model is refused."""
    import numpy as np

    from .provenance import check_provenance

    path = args.model_embeddings
    file = _read_embeddings(path)
    if file.rows.shape[1] != embeddings.rows.shape[1] or (
        None not in (file.filters, embeddings.filters) and file.filters != embeddings.filters
    ):
        raise DataError(
            f"--model-embeddings {path}: its filters are not those of {args.embeddings}: they were "
            f"embedded with other probes."
        )
    if not args.ignore_provenance:
        check_provenance(
            file.provenance,
            embeddings.provenance,
            given_name=str(path),
            expected_name=str(args.embeddings),
            override=_IGNORE_PROVENANCE,
        )
    _refuse_repeats(path, file.names, "task")
    unknown = sorted(set(file.names) - set(models), key=file.names.index)
    if unknown:
        raise DataError(
            f"--model-embeddings {path}: {_listed(unknown)} {'are' if len(unknown) > 1 else 'is'} not a "
            f"model of --errors {args.errors} ({_listed(models)}): each row is named as the model whose "
            f"training task it embeds."
        )
    missing = sorted(set(models) - set(file.names), key=models.index)
    if missing and args.max_iter == 0:
        raise DataError(
            f"--model-embeddings {path}: has no row for {_listed(missing)}; --max-iter 0 (no training) "
            f"needs the embedding of every model's training task."
        )
    if missing:
        _note(
            f"--model-embeddings {path}: no row for {_listed(missing)}; "
            f"{'they start' if len(missing) > 1 else 'it starts'} as unknown (zeros), placed by training.",
            "fit-selector",
        )
    rows = dict(zip(file.names, file.rows))
    return np.array([rows.get(model, np.zeros(file.rows.shape[1])) for model in models])


def _fit_selector(args):
    if args.max_iter == 0 and args.model_embeddings is None:
        raise UsageError(
            "--max-iter 0 (the plain asymmetric TASK2VEC selector, no training) needs --model-embeddings, "
            "the embeddings of the tasks the models were trained on."
        )
    inputs = [args.embeddings, args.errors, *([args.model_embeddings] if args.model_embeddings else [])]
    output = _check_output(args.output, (".joblib",), inputs=inputs, overwrite=args.overwrite)
    embeddings = _read_embeddings(args.embeddings)
    trivial = _trivial_of(args.embeddings, embeddings, "the selector's asymmetric distance")
    table = _read_errors(args.errors)
    errors = _match_rows(embeddings.names, args.embeddings, table, args.errors)
    start = None if args.model_embeddings is None else _model_embeddings(args, embeddings, table.models)

    import joblib
    import numpy as np

    from ._writer import write_file
    from .selector import Model2VecSelector

    selector = Model2VecSelector(
        alpha=args.alpha,
        label_temperature=args.label_temperature,
        max_iter=args.max_iter,
        n_init=args.n_init,
        model_embeddings=start,
        trivial_embedding=trivial,
        experts=table.models,
        random_state=args.random_state,
        provenance=embeddings.provenance,
    )
    best = np.array(table.models, dtype=object)[errors.argmin(axis=1)]
    try:
        selector.fit(embeddings.rows, best, errors=errors)
    except ValueError as exc:
        raise DataError(f"{args.embeddings}: {exc}") from exc
    # Rescued when it cannot be written: the training may have taken long.
    write_file(output, lambda file: joblib.dump(selector, file), overwrite=args.overwrite, rescue=True)
    column = {model: index for index, model in enumerate(table.models)}
    chosen = [column[model] for model in selector.predict(embeddings.rows)]
    print(
        f"Wrote a selector of {len(table.models)} models, fitted on {len(embeddings.names)} tasks, to "
        f"{output}. On these tasks (in-sample), the mean error of the models it recommends is "
        f"{errors[np.arange(len(errors)), chosen].mean():.4g}, of the best ones {errors.min(axis=1).mean():.4g}."
    )


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------


def _errors(args):
    if args.architecture is not None:
        _check_probe(args.architecture, "--architecture")
    output = _check_output(
        args.output, (".csv",), inputs=[*args.tasks, *args.experts], overwrite=args.overwrite
    )
    if args.cache is not None and Path(args.cache).exists() and not Path(args.cache).is_dir():
        raise UsageError(f"--cache {args.cache}: is a file; the cache needs a folder.")
    names, tasks = _load_tasks(args.tasks, args.image_size, args.gray_to_rgb, "errors")

    from ._text import is_text

    for path, task in zip(args.tasks, tasks):
        if isinstance(task, tuple) and is_text(task[0]):
            raise UsageError(
                f"TASK {path}: is a text task; the experts take images or arrays (a folder of images, "
                f"an .npz file of X and y)."
            )
    experts = [_load_expert(folder, args.architecture) for folder in args.experts]
    first_of = {}
    for folder, expert in zip(args.experts, experts):
        if expert.name in first_of:
            raise DataError(
                f"--experts {first_of[expert.name]} and {folder}: both experts are named {expert.name!r}; "
                f"a table of errors has one column per name."
            )
        first_of[expert.name] = folder

    from .zoo import error_matrix

    values = error_matrix(
        experts,
        tasks,
        test_size=args.test_size,
        task_names=names,
        batch_size=args.batch_size,
        cache=args.cache,
        device=args.device,
        random_state=args.random_state,
    )
    models = [expert.name for expert in experts]
    _write_errors(output, names, models, values, overwrite=args.overwrite)
    print(f"Wrote the errors of {len(models)} experts on {len(names)} tasks to {output}.")


def _load_expert(folder, architecture):
    """The expert saved in ``folder``, its weights in ``architecture`` (a probe name) or in the
    architecture it was saved with."""
    from .zoo import load_expert

    try:
        return load_expert(folder, architecture=architecture)
    except ValueError as exc:
        raise DataError(str(exc)) from exc


# --------------------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------------------


def _help(parser, commands, args):
    """Print the help of ``parser`` or of its command ``args.topic`` (``commands``: its
    subparsers by name)."""
    print(parser.format_help() if args.topic is None else commands[args.topic].format_help(), end="")


# --------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------


def _coefficient_record(result):
    """A :class:`~sklearn_task2vec.diversity.CoefficientResult` as JSON values (an undefined
    standard error, from two batches, is null: JSON has no NaN)."""

    def number(value):
        return float(value) if math.isfinite(value) else None

    return {
        "kind": result.kind,
        "coefficient": number(result.coefficient),
        "confidence_interval": [number(bound) for bound in result.confidence_interval],
        "standard_error": number(result.standard_error),
        "confidence_level": result.confidence_level,
    }


def _coefficient_line(result, batches):
    """The human line of a coefficient, e.g. ``diversity 0.2370 (95% CI 0.2251 to 0.2489) over
    20 batches of 8 texts``."""
    low, high = result.confidence_interval
    level = f"{100 * result.confidence_level:g}%"
    if math.isfinite(low) and math.isfinite(high):
        interval = f"{level} CI {low:.4f} to {high:.4f}"
    else:  # the delete-one-batch jackknife of one corpus needs three batches
        interval = f"no {level} CI: the jackknife needs 3 batches or more"
    return f"{result.kind.replace('_', '-')} {result.coefficient:.4f} ({interval}) over {batches}"


def _diversity(args):
    corpora = [args.corpus, *([args.other] if args.other is not None else [])]
    for path in corpora:
        if Path(path).suffix.lower() != ".jsonl":
            raise UsageError(
                f'{path}: a corpus is a .jsonl file, one JSON object with a "text" field per line.'
            )
        if not Path(path).is_file():
            raise UsageError(f"{path}: no such file.")
    if not _is_hf(args.probe):
        raise UsageError(
            f"--probe {args.probe}: the coefficients take a causal language model from Hugging Face: "
            f"--probe hf:<name or folder> (hf:gpt2, the paper's, or the folder a model was saved to "
            f"with save_pretrained)."
        )
    _check_transformers()
    output = None
    if args.output is not None:
        output = _check_output(args.output, (".json",), inputs=corpora, overwrite=args.overwrite)
    if args.memory is not None and Path(args.memory).exists() and not Path(args.memory).is_dir():
        raise UsageError(f"--memory {args.memory}: is a file; the cache needs a folder.")
    read = [_jsonl_corpus(path, "diversity") for path in corpora]
    for path, lines in zip(corpora, read):
        if len(lines) < args.batch_size:
            raise DataError(f"{path}: has {len(lines)} texts, fewer than --batch-size {args.batch_size}.")
    texts = [[line.text for line in lines] for lines in read]

    from . import __version__
    from .diversity import (
        HEAD_EPOCHS,
        LABEL_DRAWS,
        coefficient_from_embeddings,
        cross_diversity_coefficient,
        diversity_coefficient,
    )

    common = dict(
        probe=args.probe,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        n_batches=args.n_batches,
        confidence_level=args.confidence_level,
        random_state=args.random_state,
        max_length=args.max_length,
        device=args.device,
        n_jobs=args.n_jobs,
        memory=args.memory,
        verbose=_verbosity(args),
    )
    # The Python functions' defaults when not given, named so that the settings record them.
    head_epochs = HEAD_EPOCHS if args.head_epochs is None else args.head_epochs
    label_draws = LABEL_DRAWS if args.label_draws is None else args.label_draws
    common.update(head_epochs=head_epochs, label_draws=label_draws)
    with _quiet_transformers(args.verbose):
        if len(texts) == 1:
            results = [diversity_coefficient(texts[0], **common)]
            batches = [results[0].batches]
        else:
            cross = cross_diversity_coefficient(*texts, **common)
            # The alignment is one minus the cross-diversity of the same batches: from their rows,
            # not from a second run that would embed every batch again.
            alignment = coefficient_from_embeddings(
                *cross.embeddings, kind="alignment", confidence_level=args.confidence_level
            )
            results = [cross, dataclasses.replace(alignment, batches=cross.batches)]
            batches = list(cross.batches)
    size = f"{args.n_batches} batches of {args.batch_size} texts" + (
        " from each corpus" if len(texts) > 1 else ""
    )
    for result in results:
        print(_coefficient_line(result, size))
    if output is None:
        return
    # A batch's texts by their index among the corpus's texts (the Python functions' ``batches``)
    # and by their line in its file (blank lines hold no text, so the two can differ).
    record = {
        "corpora": [str(path) for path in corpora],
        "results": [_coefficient_record(result) for result in results],
        "batches": [
            {
                "corpus": str(path),
                "indices": [[int(index) for index in batch] for batch in corpus_batches],
                "lines": [[lines[index].number for index in batch] for batch in corpus_batches],
            }
            for path, corpus_batches, lines in zip(corpora, batches, read)
        ],
        "settings": {
            "probe": args.probe,
            "tokenizer": args.tokenizer,
            "batch_size": args.batch_size,
            "n_batches": args.n_batches,
            "max_length": args.max_length,
            "random_state": args.random_state,
            "head_epochs": head_epochs,
            "label_draws": label_draws,
            "confidence_level": args.confidence_level,
            "device": args.device,
        },
        "version": __version__,
    }
    text = json.dumps(record, indent=2, allow_nan=False)
    # Arrays of numbers (a batch, an interval) on one line each: hundreds of lines of one index
    # each would bury the coefficients. Only arrays without strings or nesting are joined.
    text = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda match: f"[{' '.join(match.group(1).split())}]", text)
    text += "\n"

    from ._writer import write_file

    # Rescued when it cannot be written: the coefficients took the whole run to compute.
    write_file(output, lambda file: file.write(text), overwrite=args.overwrite, text=True, rescue=True)
    print(f"Wrote the result to {output}.")


# --------------------------------------------------------------------------------------
# The parser and main
# --------------------------------------------------------------------------------------


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _finite_non_negative_float(text):
    value = _non_negative_float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be finite")
    return value


def _int_from(smallest):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < smallest:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {smallest}")
        return value

    return parse


_positive_int = _int_from(1)


def _probability(text):
    """A number strictly between 0 and 1 (a confidence level)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:  # NaN too
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1, e.g. 0.95")
    return value


def _add_text_encoding(command):
    """The options of how texts become tokens, shared by embed and diversity."""
    command.add_argument(
        "--tokenizer",
        metavar="NAME_OR_FOLDER",
        help="the Hugging Face tokenizer of the texts, by name or saved folder (default: the one saved "
        "with the hf: probe)",
    )
    command.add_argument(
        "--max-length",
        type=_int_from(2),
        metavar="N",
        help="most tokens kept per text, longer ones truncated (default: the tokenizer's limit); at "
        "most the positions the model has",
    )


def _add_ignore_provenance(command, checked):
    command.add_argument(
        "--ignore-provenance",
        action="store_true",
        help=f"use the rows even when {checked} (another probe, seed, --normalize or setting): "
        "by default such rows are refused, naming each setting that differs",
    )


def _add_gray_to_rgb(command):
    command.add_argument(
        "--gray-to-rgb",
        action="store_true",
        help="repeat the gray channel of one-channel images (an .npz file's N x 1 x H x W X) in three "
        "channels, for probes that take RGB images (the ImageNet ones); an image folder's images are "
        "always read as RGB",
    )


def _add_overwrite(command):
    command.add_argument(
        "--overwrite",
        "--force",
        action="store_true",
        help="replace the --output file if it exists (never one of the command's inputs)",
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="TASK2VEC task embeddings (Achille et al., ICCV 2019): embed tasks, compare them, "
        "and recommend an expert for each.",
        epilog="Run `task2vec help COMMAND` (or `task2vec COMMAND --help`) for a command's options. Exit "
        "status: 0 success, 1 a data error, 2 a usage error.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    embed = commands.add_parser(
        "embed",
        help="embed tasks, one row per task, into a CSV or NPZ file",
        description="Embed each TASK as the diagonal Fisher Information of a probe network's filters. "
        "A TASK is a folder of images with one subfolder per class (torchvision ImageFolder: images are "
        "resized and center-cropped to --image-size and normalised with ImageNet's mean and std), an "
        ".npz file with arrays X (2-D features or N x C x H x W images) and y (labels), or text, "
        "embedded with --probe hf:<name or folder>: a .jsonl file, one JSON object per line with a "
        '"text" and a "label" field (a file without "label" fields is a language-modelling task, whose '
        "labels are the next tokens), or a folder of .txt files with one subfolder per class, one text "
        "per file (a folder whose class folders hold images is an image folder; one mixing image "
        "classes and text classes is refused). A task is named by its folder or file stem.",
    )
    embed.add_argument(
        "tasks",
        nargs="+",
        metavar="TASK",
        help="an image folder, an .npz file, a .jsonl file of texts or a folder of .txt files",
    )
    embed.add_argument(
        "-o",
        "--output",
        required=True,
        help="where to write: .csv (a `task` column, then one column per filter; the header's first "
        "cell is `task` and the JSON record of how the rows were made: probe, settings, version) "
        "or .npz (arrays embeddings, tasks, filters, trivial, the trivial embedding in the file's "
        "space, and provenance, that record)",
    )
    embed.add_argument(
        "--probe",
        default="auto",
        help="a torchvision classification model (resnet18, resnet34 as in the paper, resnet50, "
        "densenet121, ...); hf:<name or folder>, a Hugging Face model (hf:gpt2, hf:bert-base-uncased, or "
        "a folder saved with save_pretrained), for text tasks; a PATH.onnx file, an ONNX graph (the extra "
        "[onnx]; its weights are the file's); auto (default): resnet34 for images, a random ReLU network "
        "for 2-D features",
    )
    embed.add_argument(
        "--probe-weights",
        default="imagenet",
        metavar="imagenet|none|PATH",
        help="the probe's weights: imagenet (default; downloaded by torchvision on first use, then "
        "cached), none (random initialisation), or a local state_dict file (loaded as weights only); a "
        "hf: probe has the weights saved with it",
    )
    _add_text_encoding(embed)
    embed.add_argument(
        "--pooling",
        choices=("mean", "first", "last"),
        help="text classification tasks: the features of the head, the hidden states' mean over a "
        "text's tokens (default), the first token's (BERT's [CLS]) or the last token's (a causal "
        "language model's)",
    )
    embed.add_argument("--method", default="auto", choices=_METHODS, help="Fisher estimator (default: auto)")
    embed.add_argument(
        "--variational-steps",
        type=_int_from(0),
        default=300,
        metavar="N",
        help="--method variational: most steps (default: 300); 0: none, the optimum of the "
        "objective's second-order model, at the cost of a point estimate",
    )
    embed.add_argument(
        "--variational-tol",
        type=_non_negative_float,
        default=0.05,
        metavar="TOL",
        help="--method variational: stop once the row's estimated relative standard error is at "
        "most TOL (default: 0.05; 0 runs all --variational-steps)",
    )
    embed.add_argument(
        "--variational-curvature",
        default="gauss_newton",
        choices=_VARIATIONAL_CURVATURES,
        help="--method variational: the loss's response to the weight noise from its Gauss-Newton "
        "(Fisher) curvature at the perturbed weights (default: low variance, converges in about an "
        "epoch), or the full Hessian's pathwise estimate (the paper's exact objective; hundreds of "
        "noisy steps on deep ReLU probes)",
    )
    embed.add_argument(
        "--normalize",
        default="none",
        choices=("none", "trivial"),
        help="trivial: divide each row by the trivial embedding (default: none)",
    )
    embed.add_argument(
        "--max-samples", type=_positive_int, metavar="N", help="use at most N examples per task"
    )
    embed.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="default: 64")
    embed.add_argument(
        "--image-size",
        type=_positive_int,
        default=224,
        metavar="PIXELS",
        help="side of the square images cut from image folders (default: 224, the ImageNet probes' "
        "size). The time grows with its square: for small images (28-pixel Fashion-MNIST, 32-pixel "
        "CIFAR) a size such as 32 or 64 is many times faster than upscaling them to 224; embed the "
        "tasks you compare at one size",
    )
    _add_gray_to_rgb(embed)
    embed.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed of the random probe, subsampling and Monte Carlo labels (default: 0, so that runs "
        "repeat and their embeddings can be compared)",
    )
    embed.add_argument("--n-jobs", type=int, default=None, metavar="N", help="tasks embedded in parallel")
    embed.add_argument(
        "--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ..."
    )
    embed.add_argument(
        "--on-error",
        default="raise",
        choices=("raise", "warn"),
        help="raise (default): when a task cannot be embedded, write nothing; warn: write the rows "
        "of the tasks that could be. Either way the failed tasks are named and the exit status is 1",
    )
    embed.add_argument(
        "--memory",
        metavar="DIR",
        help="cache each task's row in this folder as soon as it is computed; a rerun loads the "
        "finished tasks and computes only the others",
    )
    _add_overwrite(embed)
    _progress_options(embed)
    embed.set_defaults(run=_embed)

    distances = commands.add_parser(
        "distances",
        help="print the distance matrix between embedded tasks",
        description="Print the TASK2VEC distance between every pair of tasks of embeddings files "
        "written by `task2vec embed`. The rows of several files must have been embedded alike (the "
        "same probe and settings, as their records say); a task in several files is named with "
        "its file. The asymmetric distance d(a -> b) = d_sym(a, b) - alpha * "
        "d_sym(a, trivial) needs the trivial embedding: .npz files carry it, and a .csv file embedded "
        "with --normalize trivial is in the space where it is all ones; a .csv file of raw rows is "
        "refused for it.",
    )
    distances.add_argument(
        "embeddings",
        nargs="+",
        metavar="EMBEDDINGS",
        help="one or more .csv or .npz files from `task2vec embed`",
    )
    distances.add_argument(
        "--kind", default="symmetric", choices=("symmetric", "asymmetric"), help="default: symmetric"
    )
    distances.add_argument(
        "--alpha",
        type=float,
        default=0.15,
        help="weight of the complexity term of the asymmetric distance (default: 0.15)",
    )
    distances.add_argument("-o", "--output", help="also write the matrix to this .csv file")
    _add_ignore_provenance(distances, "the files' rows were embedded otherwise")
    _add_overwrite(distances)
    distances.set_defaults(run=_distances)

    recommend = commands.add_parser(
        "recommend",
        help="recommend an expert for each embedded task",
        description="Load a fitted Model2VecSelector (or a fitted Pipeline ending in one, whose "
        "FisherTaskEmbedder step is skipped: the embeddings file stands for its output) saved with "
        "joblib.dump, and print for each task of EMBEDDINGS the recommended expert and the "
        "probabilities of the best ones. The embeddings must come from the probe and settings the "
        "selector was trained with: rows whose record says otherwise are refused (the record of a "
        "selector is its provenance_, or its Pipeline's FisherTaskEmbedder's). WARNING: a joblib file runs code when it is loaded: load only "
        "files you trust.",
    )
    recommend.add_argument(
        "selector", metavar="SELECTOR", help="a .joblib file of a fitted selector (trusted)"
    )
    recommend.add_argument(
        "embeddings", metavar="EMBEDDINGS", help="a .csv or .npz file from `task2vec embed`"
    )
    recommend.add_argument(
        "--top", type=int, default=3, metavar="K", help="experts listed per task (default: 3)"
    )
    _add_ignore_provenance(recommend, "they were embedded otherwise than the selector's training rows")
    recommend.set_defaults(run=_recommend)

    diversity = commands.add_parser(
        "diversity",
        help="the diversity coefficient of a text corpus, or the cross-diversity and alignment of two",
        description="The diversity coefficient of CORPUS (Miranda et al., 2023): the expected TASK2VEC "
        "distance between the embeddings of two random batches of its texts, each batch embedded as a "
        "language-modelling task by the --probe causal language model. With OTHER, the cross-diversity "
        "of the two corpora (a batch of each) and the alignment coefficient, one minus it. The "
        "coefficient is the mean over pairs of batches; its confidence interval comes from the "
        "delete-one-batch jackknife. A corpus is a .jsonl file, one JSON object per line with a "
        '"text" field; "label" fields are not used (a note says so).',
    )
    diversity.add_argument("corpus", metavar="CORPUS", help="a .jsonl file of texts")
    diversity.add_argument(
        "other", nargs="?", metavar="OTHER", help="a second .jsonl file: cross-diversity and alignment"
    )
    diversity.add_argument(
        "--probe",
        required=True,
        metavar="hf:NAME_OR_FOLDER",
        help="a causal language model from Hugging Face: hf:gpt2 (the paper's), or hf:<folder> saved "
        "with save_pretrained",
    )
    _add_text_encoding(diversity)
    diversity.add_argument(
        "--batch-size", type=_int_from(2), default=8, metavar="N", help="texts per batch (default: 8)"
    )
    diversity.add_argument(
        "--n-batches",
        type=_int_from(2),
        default=20,
        metavar="N",
        help="batches drawn from each corpus (default: 20; the confidence interval of one corpus needs 3)",
    )
    diversity.add_argument(
        "--confidence-level",
        type=_probability,
        default=0.95,
        metavar="LEVEL",
        help="of the confidence interval (default: 0.95)",
    )
    diversity.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed of the batches, the probe's Monte Carlo labels and the heads (default: 0, so that runs "
        "repeat; one seed gives a corpus the same batches in every run)",
    )
    diversity.add_argument(
        "--head-epochs",
        type=_int_from(0),
        metavar="N",
        help="most epochs of each batch's head (default: the Python functions', 10)",
    )
    diversity.add_argument(
        "--label-draws",
        type=_int_from(1),
        metavar="N",
        help="next tokens drawn per position for the Fisher (default: the Python functions', 8)",
    )
    diversity.add_argument(
        "--memory",
        metavar="DIR",
        help="cache each batch's row in this folder: a rerun, or the coefficients of another corpus "
        "pair drawn with the same --random-state, embeds only the batches not seen yet",
    )
    diversity.add_argument(
        "--n-jobs", type=int, default=None, metavar="N", help="batches embedded in parallel"
    )
    diversity.add_argument(
        "--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ..."
    )
    diversity.add_argument(
        "-o",
        "--output",
        help="also write the result to this .json file: each coefficient (kind, coefficient, "
        "confidence_interval, standard_error, confidence_level), each batch's texts (indices among "
        "the corpus's texts and line numbers), the settings and the version",
    )
    _add_overwrite(diversity)
    _progress_options(diversity)
    diversity.set_defaults(run=_diversity)

    fit_selector = commands.add_parser(
        "fit-selector",
        help="fit a selector on embedded tasks and a table of the models' errors on them",
        description="Fit a Model2VecSelector (Achille et al., ICCV 2019, sec. 3.3-3.4: MODEL2VEC) on "
        "the tasks of EMBEDDINGS, a file written by `task2vec embed`, and on ERRORS.csv, the error of "
        "every model on each of these tasks (from your own fine-tunings, or from `task2vec errors`), "
        "and save it with joblib for `task2vec recommend`. ERRORS.csv has a header whose first cell "
        "is any label and whose other cells name the models, then one row per task: its name, as in "
        "EMBEDDINGS (rows are matched by name, in any order; a task in one file and not the other is "
        "refused), and one error per model. An error is a finite number >= 0, lower is better; its "
        "scale is free (a fraction or a percentage: the selector's soft labels standardise each "
        "task's row); an empty cell is refused. The selector's distance needs the trivial embedding: "
        "EMBEDDINGS is an .npz file, or a .csv file embedded with --normalize trivial. The saved "
        "selector records how the rows were made, so that `task2vec recommend` refuses rows made "
        "otherwise.",
    )
    fit_selector.add_argument(
        "embeddings", metavar="EMBEDDINGS", help="a .csv or .npz file from `task2vec embed`: the tasks"
    )
    fit_selector.add_argument(
        "--errors",
        required=True,
        metavar="ERRORS.csv",
        help="the error of every model (column) on every task (row) of EMBEDDINGS",
    )
    fit_selector.add_argument(
        "-o", "--output", required=True, metavar="SELECTOR.joblib", help="where to save the selector"
    )
    fit_selector.add_argument(
        "--model-embeddings",
        metavar="EMBEDDINGS",
        help="a file from `task2vec embed` (embedded as EMBEDDINGS) whose rows are named as models: "
        "the embedding of the task each model was trained on, where training starts (the paper's "
        "F_j); a model without a row starts as unknown. Needed by --max-iter 0",
    )
    fit_selector.add_argument(
        "--max-iter",
        type=_int_from(0),
        default=81,
        metavar="N",
        help="training epochs (default: 81, the paper's); 0: no training, the plain asymmetric "
        "TASK2VEC selector (sec. 3.3), which needs --model-embeddings",
    )
    fit_selector.add_argument(
        "--n-init",
        type=_positive_int,
        default=40,
        metavar="N",
        help="training runs, the one of lowest training loss kept (default: 40)",
    )
    fit_selector.add_argument(
        "--alpha",
        type=_finite_non_negative_float,
        default=0.15,
        help="weight of the complexity term of the asymmetric distance (default: 0.15)",
    )
    fit_selector.add_argument(
        "--label-temperature",
        type=_finite_non_negative_float,
        default=20.0,
        metavar="T",
        help="sharpness of the soft labels made from the errors (default: 20, the paper's)",
    )
    fit_selector.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed of the training runs' starts (default: 0, so that runs repeat)",
    )
    _add_ignore_provenance(fit_selector, "--model-embeddings was embedded otherwise than EMBEDDINGS")
    _add_overwrite(fit_selector)
    fit_selector.set_defaults(run=_fit_selector)

    errors = commands.add_parser(
        "errors",
        help="measure the error of saved experts on tasks, a table for `task2vec fit-selector`",
        description="The ground truth of model selection (zoo.error_matrix): for each TASK and each "
        "expert, the test error of a logistic regression on the expert's frozen features, on one "
        "stratified split per task shared by all experts. A TASK is a folder of images with one "
        "subfolder per class (resized and center-cropped to --image-size, normalised with ImageNet's "
        "mean and std, as `task2vec embed` does) or an .npz file with arrays X and y. An expert is a "
        "folder written by zoo.save_expert. The table goes to a CSV file, one row per task (named by "
        "its folder or file stem, as `task2vec embed` names it), one column per expert (its name), "
        "which `task2vec fit-selector --errors` reads.",
    )
    errors.add_argument("tasks", nargs="+", metavar="TASK", help="an image folder or an .npz file")
    errors.add_argument(
        "--experts",
        nargs="+",
        required=True,
        metavar="EXPERT",
        help="expert folders written by zoo.save_expert (their weights are loaded without running code)",
    )
    errors.add_argument(
        "-o", "--output", required=True, metavar="ERRORS.csv", help="where to write the table"
    )
    errors.add_argument(
        "--architecture",
        metavar="NAME",
        help="the torchvision model to load the experts' weights into (default: the one each expert "
        "was saved with)",
    )
    errors.add_argument(
        "--test-size",
        type=_probability,
        default=0.3,
        metavar="FRACTION",
        help="share of each task's examples in its test split (default: 0.3)",
    )
    errors.add_argument(
        "--image-size",
        type=_positive_int,
        default=224,
        metavar="PIXELS",
        help="side of the square images cut from image folders (default: 224)",
    )
    _add_gray_to_rgb(errors)
    errors.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="default: 64")
    errors.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed of the splits (default: 0, so that runs repeat)",
    )
    errors.add_argument(
        "--cache",
        metavar="DIR",
        help="store each (expert, task)'s features in this folder: a rerun with more experts or tasks "
        "computes only the new ones",
    )
    errors.add_argument(
        "--device", default="auto", help="auto (default: CUDA if available), cpu, cuda, cuda:1, ..."
    )
    _add_overwrite(errors)
    errors.set_defaults(run=_errors)

    topics = list(commands.choices)
    help_ = commands.add_parser(
        "help",
        help="show this help, or a command's",
        description="Show the help of task2vec, or of COMMAND (the same as `task2vec COMMAND --help`).",
    )
    help_.add_argument(
        "topic", nargs="?", choices=[*topics, "help"], metavar="COMMAND", help=", ".join(topics)
    )
    help_.set_defaults(run=functools.partial(_help, parser, commands.choices))
    return parser


def _one_line(message):
    return " ".join(str(message).split())


def _in_command_line_terms(message):
    """A data error's message with the Python fix for gray images (``to_rgb``) replaced by the
    command line's, ``--gray-to-rgb``."""
    from ._heads import channel_fix

    return message.replace(channel_fix(1, 3), _GRAY_TO_RGB_FIX)


def main(argv=None):
    """Run the ``task2vec`` command line.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments, without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success (``--help`` included), 1 for a data error, 2 for a usage error. argparse's
        exits are returned as a status too, never raised.

    Examples
    --------
    >>> from sklearn_task2vec.cli import main
    >>> main(["distances", "no-such-file.csv"])
    2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error argparse already printed
        return 0 if exit_.code is None else int(exit_.code)

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{_PROG}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        try:
            if args.command in _COMMANDS:
                _check_input_kinds(args)
            args.run(args)
        except UsageError as exc:
            print(f"{_PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except (DataError, ValueError, TypeError, OSError, RuntimeError) as exc:
            print(f"{_PROG} {args.command}: error: {_in_command_line_terms(_one_line(exc))}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{_PROG}: interrupted", file=sys.stderr)
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
