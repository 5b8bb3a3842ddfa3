"""The provenance of task embeddings: one record of how rows were made, kept with them and checked.

Rows of TASK2VEC embeddings can be compared (by a distance, by a
:class:`~sklearn_task2vec.Model2VecSelector`) only with rows made the same way: the same probe
(architecture and weights), Fisher estimator, normalisation, seeds and settings. Rows made
otherwise have the same width and look alike, so nothing in the numbers tells the mistake. An
:class:`EmbeddingProvenance` records how rows were made; it is built in one place
(:func:`embedding_provenance`, from a fitted
:class:`~sklearn_task2vec.FisherTaskEmbedder`: its ``provenance_``), written into every artifact
of rows, and compared by one function (:func:`provenance_differences`, through
:func:`check_provenance` where a difference is an error), which every consumer calls:

- files of ``task2vec embed`` (CSV: in the header's first cell; NPZ: the array ``provenance``),
  checked by ``task2vec recommend`` against the selector's record and by ``task2vec distances``
  across its files (``--ignore-provenance`` overrides);
- a fitted :class:`~sklearn_task2vec.Model2VecSelector` (``provenance_``, from its parameter
  ``provenance``), saved with it, checked by its ``predict`` and ``predict_proba`` against
  the record passed with the rows (``provenance=``);
- every entry of the embedding cache (``memory=``): an entry whose record differs is not used.

A mismatch is a ``ValueError`` that names each setting that differs; rows or a selector with no
record (written by an older version) get a :class:`ProvenanceWarning`: the check could not be
made.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from numbers import Integral

from . import __version__
from ._pipeline import EmbeddingSettings

__all__ = [
    "EmbeddingProvenance",
    "ProvenanceWarning",
    "check_provenance",
    "embedding_provenance",
    "provenance_differences",
]

# Settings that only method="variational" reads: recorded as None for the other methods, whose
# rows they do not change (so that they do not make equal rows look different).
_VARIATIONAL_SETTINGS = (
    "variational_beta",
    "variational_steps",
    "variational_tol",
    "variational_noise",
    "variational_curvature",
)
# Digests are shown this long in messages: enough to tell two apart.
_SHOWN_DIGEST = 12


class ProvenanceWarning(UserWarning):
    """Rows, a file or a selector carry no provenance record: the check could not be made."""


@dataclasses.dataclass(frozen=True)
class EmbeddingProvenance:
    """How rows of task embeddings were made: what must be equal for two rows to be compared.

    Build it with :func:`embedding_provenance` (a fitted
    :class:`~sklearn_task2vec.FisherTaskEmbedder` has it as ``provenance_``); compare two with
    :func:`check_provenance`.

    Parameters
    ----------
    probe : str
        The probe: a torchvision or timm model name (``"resnet34"``), or the class of a module
        probe (``"sklearn_task2vec._probes.RandomReLUProbe"`` for the random probe).
    probe_digest : str
        SHA-256 of the fitted probe's class, structure, weights and buffers (hex).
    settings : EmbeddingSettings
        The embedder's settings that change a row (Fisher ``method``, ``skip_layers``,
        ``max_samples``, ``batch_size``, the head's and the variational estimator's settings,
        ``autocast``); the variational ones are None unless ``method="variational"``.
    normalize : {None, "trivial"}
        The rows' normalisation.
    random_state : int or None
        The seed of the probe, the subsampling and the Monte Carlo labels; None when the
        embedder was not given an integer (its seeds change from call to call).
    image_size : int or None
        The side of the squares that ``task2vec embed`` cut images of image folders to; None
        for rows made from inputs prepared by the caller.
    version : str
        The version of sklearn-task2vec that made the rows.
    tokenizer : str or None
        What tokenized text tasks: the tokenizer's class and name or folder, and the SHA-256
        of its vocabulary, special tokens and length limit; None without a tokenizer.
    """

    probe: str
    probe_digest: str
    settings: EmbeddingSettings
    normalize: str | None
    random_state: int | None
    image_size: int | None
    version: str
    tokenizer: str | None = None

    def to_dict(self):
        """The record as a flat dict of JSON values, keys in a fixed order.

        Returns
        -------
        record : dict
            ``probe``, ``probe_digest``, the settings' fields, ``normalize``,
            ``random_state``, ``image_size``, ``version``, ``tokenizer``.
        """
        record = {"probe": self.probe, "probe_digest": self.probe_digest}
        record.update(dataclasses.asdict(self.settings))
        record.update(
            normalize=self.normalize,
            random_state=self.random_state,
            image_size=self.image_size,
            version=self.version,
            tokenizer=self.tokenizer,
        )
        return record

    @classmethod
    def from_dict(cls, record):
        """The record that :meth:`to_dict` gave.

        Parameters
        ----------
        record : dict
            Exactly the keys of :meth:`to_dict`.

        Returns
        -------
        provenance : EmbeddingProvenance

        Raises
        ------
        ValueError
            If a key is missing or unknown.
        """
        if not isinstance(record, dict):
            raise ValueError(f"a provenance record is a JSON object, got {type(record).__name__}.")
        settings = [field.name for field in dataclasses.fields(EmbeddingSettings)]
        own = [field.name for field in dataclasses.fields(cls) if field.name != "settings"]
        missing = sorted(set(own + settings) - set(record))
        unknown = sorted(set(record) - set(own + settings))
        if missing or unknown:
            raise ValueError(
                f"not a provenance record of this version of sklearn-task2vec ({__version__}): "
                + "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(unknown)}" if unknown else "",
                    )
                    if part
                )
                + "."
            )
        return cls(
            settings=EmbeddingSettings(**{name: record[name] for name in settings}),
            **{name: record[name] for name in own},
        )

    def to_json(self):
        """:meth:`to_dict` as a one-line JSON string (what files store).

        Returns
        -------
        text : str
        """
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text):
        """The record that :meth:`to_json` gave.

        Parameters
        ----------
        text : str

        Returns
        -------
        provenance : EmbeddingProvenance

        Raises
        ------
        ValueError
            If ``text`` is not JSON of a record.
        """
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"its provenance record is not JSON ({exc}).") from exc
        return cls.from_dict(record)


def embedding_provenance(
    probe, probe_digest, settings, *, normalize, random_state, image_size=None, tokenizer=None
):
    """The record of rows made by a probe with ``settings``: the one place records are built.

    Parameters
    ----------
    probe : str
        The probe's name or class (see :class:`EmbeddingProvenance`).
    probe_digest : str
        The SHA-256 digest of the fitted probe (its structure and weights).
    settings : EmbeddingSettings
        The embedder's row-changing settings.
    normalize : {None, "trivial"}
    random_state : int, RandomState instance or None
        The embedder's parameter; recorded only when it is an integer.
    image_size : int or None, default=None
        The side images were cut to by ``task2vec embed``.
    tokenizer : str or None, default=None
        The tokenizer's record (its class, name and a digest of its vocabulary).

    Returns
    -------
    provenance : EmbeddingProvenance
    """
    if settings.method != "variational":
        settings = dataclasses.replace(settings, **dict.fromkeys(_VARIATIONAL_SETTINGS))
    seed = int(random_state) if isinstance(random_state, Integral) else None
    return EmbeddingProvenance(
        probe=probe,
        probe_digest=probe_digest,
        settings=settings,
        normalize=normalize,
        random_state=seed,
        image_size=image_size,
        version=__version__,
        tokenizer=tokenizer,
    )


def _shown(name, value):
    if name == "probe_digest" and isinstance(value, str):
        return value[:_SHOWN_DIGEST]
    return repr(value)


def provenance_differences(given, expected):
    """Each setting in which two records differ: ``"name given vs expected"``.

    Parameters
    ----------
    given, expected : EmbeddingProvenance

    Returns
    -------
    differences : list of str
        In the order of :meth:`EmbeddingProvenance.to_dict`; empty when the records are equal.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec import FisherTaskEmbedder
    >>> from sklearn_task2vec.provenance import provenance_differences
    >>> X = np.random.RandomState(0).normal(size=(40, 2))
    >>> tasks = [(X, X[:, 0] > 0)]
    >>> raw = FisherTaskEmbedder(random_state=0).fit(tasks).provenance_
    >>> normalised = FisherTaskEmbedder(normalize="trivial", random_state=0).fit(tasks).provenance_
    >>> provenance_differences(normalised, raw)
    ["normalize 'trivial' vs None"]
    """
    given, expected = given.to_dict(), expected.to_dict()
    return [
        f"{name} {_shown(name, given[name])} vs {_shown(name, expected[name])}"
        for name in expected
        if given[name] != expected[name]
    ]


def check_provenance(given, expected, *, given_name, expected_name, override):
    """Refuse rows made otherwise than expected; warn when a record is missing.

    Every consumer of rows calls it: ``task2vec recommend`` and ``task2vec distances``,
    :meth:`Model2VecSelector.predict <sklearn_task2vec.Model2VecSelector.predict>` and its
    siblings, and the embedding cache.

    Parameters
    ----------
    given : EmbeddingProvenance or None
        The record of the rows to use; None when they have none.
    expected : EmbeddingProvenance or None
        The record they must match; None when it is unknown.
    given_name, expected_name : str
        What holds each, for the messages (e.g. a file name, ``"the selector"``).
    override : str
        How to use such rows anyway, for the message (e.g. ``"pass --ignore-provenance"``).

    Raises
    ------
    ValueError
        If the records differ: the message names each setting that does.
    TypeError
        If a record is not an :class:`EmbeddingProvenance`.

    Warns
    -----
    ProvenanceWarning
        If a record is missing: the check could not be made.
    """
    for name, record in ((given_name, given), (expected_name, expected)):
        if record is not None and not isinstance(record, EmbeddingProvenance):
            raise TypeError(
                f"the provenance of {name} must be an EmbeddingProvenance (a fitted "
                f"FisherTaskEmbedder's provenance_), got {type(record).__name__}."
            )
    if given is None or expected is None:
        missing = [
            name for name, record in ((given_name, given), (expected_name, expected)) if record is None
        ]
        warnings.warn(
            f"{' and '.join(missing)} carr{'ies' if len(missing) == 1 else 'y'} no provenance record "
            f"(written by an older version, or fitted without one): whether the rows were embedded "
            f"with the same probe and settings could not be checked.",
            ProvenanceWarning,
            stacklevel=3,
        )
        return
    differences = provenance_differences(given, expected)
    if differences:
        raise ValueError(
            f"rows embedded otherwise than expected ({given_name} vs {expected_name}): "
            f"{'; '.join(differences)}. Rows made with another probe or other settings are in "
            f"another space: embed them again as {expected_name} expects, or {override} to use "
            f"them anyway."
        )
