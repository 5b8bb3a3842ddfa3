"""What several modules share: devices, seeds, scalars, content digests and progress."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import sys
from numbers import Integral

import joblib
import numpy as np
import torch
from sklearn import get_config
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

#: Exclusive upper bound of the seeds drawn from a ``random_state``.
SEED_BOUND = np.iinfo(np.int32).max


def resolve_device(device):
    """``device`` as a ``torch.device``; ``"auto"`` is CUDA when available, else CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto' or a torch device, got {device!r}.") from exc


def draw_seeds(random_state, n_seeds):
    """``n_seeds`` Python ints in ``[0, SEED_BOUND)`` drawn from ``random_state``."""
    return tuple(int(seed) for seed in check_random_state(random_state).randint(SEED_BOUND, size=n_seeds))


def python_scalar(value):
    """A numpy scalar as the Python object it holds (so that labels print as ``7``, not ``np.int64(7)``)."""
    return value.item() if isinstance(value, np.generic) else value


def update_digest(digest, array):
    """Feed ``array`` (its dtype, shape and bytes) to the hashlib object ``digest``."""
    array = np.ascontiguousarray(array)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    if array.dtype == object:
        digest.update(joblib.hash(array).encode())
    else:
        digest.update(array.view(np.uint8).reshape(-1).data)


def module_digest(module, digest=None):
    """SHA-256 of a module's class, structure (``repr``) and weights and buffers, as hex.

    ``digest``: a hashlib object to feed instead of a new one (then returned unfinished).
    """
    own = digest is None
    digest = hashlib.sha256() if own else digest
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}\n{module!r}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        tensor = tensor.detach().cpu()
        try:
            update_digest(digest, tensor.numpy())
        except TypeError:  # a dtype numpy lacks (bfloat16, float8): its bytes, and its name
            digest.update(str(tensor.dtype).encode())
            update_digest(digest, tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest() if own else digest


class StrictInterval(Interval):
    """scikit-learn's :class:`~sklearn.utils._param_validation.Interval`, refusing booleans.

    ``True`` is an ``Integral`` to Python, but ``batch_size=True`` is a mistake, not 1.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)


#: The constraint of a ``verbose`` parameter: ``"auto"`` (progress when the output is a
#: terminal) or an int (0: silent; above 0: progress).
VERBOSE_CONSTRAINT = [StrOptions({"auto"}), StrictInterval(Integral, 0, None, closed="left")]


def progress_enabled(verbose):
    """Whether to show progress: ``verbose`` above 0, or ``"auto"`` and standard error is a
    terminal (tqdm's own rule: progress for a person watching, none in logs and pipes)."""
    if verbose == "auto":
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return verbose > 0


def progress_bar(enabled, **options):
    """A tqdm progress bar on standard error, or None when ``enabled`` is false."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(**options)


# Devices where convolutional probes run in channels-last memory format (the layout tensor
# cores want); on CPU the default layout is as fast for these passes.
CHANNELS_LAST_DEVICES = ("cuda",)


def runs_channels_last(device):
    """Whether convolutional probes run in channels-last memory format on ``device``."""
    return device.type in CHANNELS_LAST_DEVICES


def on_device(module, device):
    """``module`` itself on CPU, a copy on another device: fitted attributes stay on CPU."""
    if device.type == "cpu":
        return module
    return copy.deepcopy(module).to(device)


def to_device(inputs, device):
    """A batch of inputs on ``device``: pinned, asynchronous copies to CUDA, image batches in
    channels-last layout there."""
    if device.type == "cuda":
        inputs = inputs.pin_memory().to(device, non_blocking=True)
    else:
        inputs = inputs.to(device)
    if inputs.dim() == 4 and runs_channels_last(device):
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def autocast_context(precision, device):
    """``torch.autocast`` on ``device`` in ``precision`` ("bfloat16", "float16"), or no context for None."""
    if precision is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, precision))


def module_dtype(module):
    """The floating dtype of ``module``'s first floating parameter (torch's default without one)."""
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def load_tensors(file, what):
    """``torch.load`` of ``file`` with ``weights_only=True`` (tensors and plain containers only,
    so that a file cannot run code), with errors that name ``what`` and never advise the unsafe
    ``weights_only=False`` that torch's own message suggests."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged archive fails in many ways (zip, pickle opcodes, storage)
        if "weights only load failed" in str(exc).lower():
            raise ValueError(
                f"{what} holds Python objects besides tensors, which are never loaded: only tensors "
                f"are read, so that a file cannot run code. Save a state_dict() with torch.save."
            ) from None
        raise ValueError(f"{what} is not a loadable state_dict ({type(exc).__name__}: {exc}).") from exc


def check_embeddings(X, name):
    """``X`` as a finite, non-negative 2-D float array of embeddings (one per row).

    float32 stays float32 (computed in float32, like scikit-learn's pairwise distances);
    anything else becomes float64.
    """
    X = check_array(X, dtype=[np.float64, np.float32], ensure_all_finite=True, input_name=name)
    if np.any(X < 0):
        raise ValueError(
            f"{name} has negative entries: task embeddings are Fisher Information diagonals, "
            f"which are non-negative."
        )
    return X


def check_expert_names(experts):
    """``experts`` as a 1-D array of distinct names, one per expert (a selector's classes)."""
    experts = np.asarray(experts)
    if experts.ndim != 1:
        raise ValueError(f"experts must be 1-D (one name per expert), got shape {experts.shape}.")
    if len(set(experts.tolist())) != len(experts):
        raise ValueError("experts must not repeat a name.")
    return experts


def with_context(error, where=None, after=""):
    """``error`` with its message starting with ``where`` (unless it does already, or None) and
    ending with ``after``, of the same type, so that whoever catches it by type still does (a
    GPU's ``torch.OutOfMemoryError`` stays one, and a ``RuntimeError``).

    A new exception of ``type(error)``, chained to ``error`` and carrying its traceback, where
    the type can be built from a message alone and shows it unchanged; otherwise (a type whose
    constructor takes other arguments, or a ``KeyError``, which quotes its message) ``error``
    itself, with the new message as a note on Python 3.11+ (``add_note``), shown under its
    traceback: not every type can be rebuilt, and the type matters more than the wording.
    Raise the result without ``from``: it is chained already.
    """
    text = str(error)
    named = text if where is None or text.startswith((f"{where}:", f"{where} ")) else f"{where}: {text}"
    message = named + after
    if message == text:
        return error
    try:
        renamed = type(error)(message)
    except Exception:  # a constructor that wants other arguments
        renamed = None
    if renamed is None or str(renamed) != message:
        if hasattr(error, "add_note"):  # Python 3.11+
            error.add_note(message)
        return error
    renamed.__cause__ = error
    return renamed.with_traceback(error.__traceback__)


def validates_parameters(method):
    """Decorate an estimator's method that reads its parameters after ``fit``, so that it
    validates them first, as ``fit`` does.

    scikit-learn validates parameters in ``fit`` only, and ``set_params`` changes them without
    a check: ``set_params(batch_size=0)`` after ``fit`` would fail deep in ``transform`` with
    ``range() arg 3 must not be zero``, and ``normalize="bogus"`` would return raw rows. The
    check is the estimator's ``_validate_params`` (its ``_parameter_constraints``), skipped
    under ``sklearn.set_config(skip_parameter_validation=True)`` like ``fit``'s.
    """

    @functools.wraps(method)
    def validated(self, *args, **kwargs):
        if not get_config()["skip_parameter_validation"]:
            self._validate_params()
        return method(self, *args, **kwargs)

    return validated
