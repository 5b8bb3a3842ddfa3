"""What several modules share: devices, seeds, scalars and content digests."""

from __future__ import annotations

import hashlib

import joblib
import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

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
        update_digest(digest, tensor.detach().cpu().numpy())
    return digest.hexdigest() if own else digest


class StrictInterval(Interval):
    """scikit-learn's :class:`~sklearn.utils._param_validation.Interval`, refusing booleans.

    ``True`` is an ``Integral`` to Python, but ``batch_size=True`` is a mistake, not 1.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)
