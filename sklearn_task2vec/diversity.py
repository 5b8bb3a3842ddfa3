"""How diverse a text corpus is, and how close two corpora are, in TASK2VEC space.

The *diversity coefficient* of a corpus (Miranda et al., "Beyond Scale: the Diversity
Coefficient as a Data Quality Metric", 2023) is the expected distance between the TASK2VEC
embeddings of two random batches of its texts, each batch embedded as a language-modelling
task (the next token is the label at every position) by one probe:

.. math::

    \\mathrm{div}(D) = \\mathbb{E}_{B_1, B_2 \\sim D} \\, d(\\vec f_{B_1}, \\vec f_{B_2}),

with :math:`d` the symmetric TASK2VEC distance (the cosine distance of the embeddings each
divided by their sum, :func:`~sklearn_task2vec.distances.symmetric_distance`). The
*cross-diversity* of two corpora takes :math:`B_1` from one and :math:`B_2` from the other; the
*alignment coefficient* is one minus it, :math:`1 - \\mathbb{E}_{B_1 \\sim D_1, B_2 \\sim D_2}
d(\\vec f_{B_1}, \\vec f_{B_2})` (how close a training corpus is to a target one).

Each batch's row is the per-sequence Fisher of the probe's filters averaged over the batch
(:class:`~sklearn_task2vec.FisherTaskEmbedder` on ``(batch_texts, None)`` tasks): the
squared gradient of each *sequence's* log-likelihood, not of the batch's mean loss, with the
probe in eval mode and its own output layer (copied, untied) as the start of the head.

The coefficient is the mean over all pairs of distinct batches (a U-statistic); its
confidence interval comes from the delete-one-batch jackknife, which counts that the pairs
sharing a batch are not independent.
"""

from __future__ import annotations

import dataclasses
from numbers import Integral, Real

import numpy as np
from scipy import stats
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from .distances import pairwise_task_distances
from .embedder import FisherTaskEmbedder

__all__ = [
    "CoefficientResult",
    "alignment_coefficient",
    "coefficient_from_embeddings",
    "cross_diversity_coefficient",
    "diversity_coefficient",
]


@dataclasses.dataclass(frozen=True)
class CoefficientResult:
    """A diversity, cross-diversity or alignment coefficient with its uncertainty.

    Attributes
    ----------
    coefficient : float
        The coefficient: the mean distance over pairs of batches (one minus it for the
        alignment coefficient).
    confidence_interval : tuple of float
        ``(low, high)`` at ``confidence_level``, from the jackknife's standard error.
    standard_error : float
        The delete-one-batch jackknife estimate of the coefficient's standard error.
    confidence_level : float
    embeddings : ndarray of shape (n_batches, n_filters), or a tuple of two
        The batches' TASK2VEC rows (one corpus; for two corpora, one array each): reuse them
        with :func:`coefficient_from_embeddings` instead of embedding the batches again.
    distances : ndarray
        The distances between batches the coefficient averages: ``(n_batches, n_batches)``
        for one corpus (its diagonal is not used), ``(n_batches_a, n_batches_b)`` for two.
    batches : list of ndarray, or a tuple of two
        The indices of each batch's texts in its corpus.
    kind : {"diversity", "cross_diversity", "alignment"}
    """

    coefficient: float
    confidence_interval: tuple
    standard_error: float
    confidence_level: float
    embeddings: object
    distances: np.ndarray
    batches: object
    kind: str

    def __repr__(self):
        low, high = self.confidence_interval
        return (
            f"CoefficientResult(kind={self.kind!r}, coefficient={self.coefficient:.4f}, "
            f"confidence_interval=({low:.4f}, {high:.4f}), confidence_level={self.confidence_level:g})"
        )


_COMMON = {
    "probe": "no_validation",
    "tokenizer": "no_validation",
    "batch_size": [Interval(Integral, 2, None, closed="left")],
    "n_batches": [Interval(Integral, 2, None, closed="left")],
    "confidence_level": [Interval(Real, 0, 1, closed="neither")],
    "random_state": ["random_state"],
}


@validate_params({"texts": ["array-like"], **_COMMON}, prefer_skip_nested_validation=True)
def diversity_coefficient(
    texts,
    *,
    probe=None,
    tokenizer=None,
    batch_size=8,
    n_batches=20,
    confidence_level=0.95,
    random_state=None,
    **embedder_params,
):
    """The diversity coefficient of a text corpus: the expected TASK2VEC distance between
    two random batches of it.

    Parameters
    ----------
    texts : sequence of str
        The corpus.
    probe : str or torch.nn.Module
        A causal language model: ``"hf:<name or folder>"`` (e.g. ``"hf:gpt2"``, the paper's)
        or a ``transformers`` model instance with its language-modelling head.
    tokenizer : tokenizer, str or None, default=None
        As :class:`~sklearn_task2vec.FisherTaskEmbedder`'s (None: the ``"hf:"`` probe's own).
    batch_size : int, default=8
        Texts per batch, each batch one task. The paper's batches are 512 sequences of 128
        tokens (``batch_size=512, max_length=128``; ``max_length`` is an embedder parameter):
        larger batches cost more and give rows with less Monte Carlo noise.
    n_batches : int, default=20
        Batches drawn. Disjoint when the corpus has ``n_batches * batch_size`` texts, else
        each drawn on its own (texts may recur across batches, never within one).
    confidence_level : float, default=0.95
    random_state : int, RandomState instance or None, default=None
        Draws the batches and seeds the embedder (Monte Carlo labels).
    **embedder_params
        Other parameters of :class:`~sklearn_task2vec.FisherTaskEmbedder`: ``method``,
        ``head_epochs`` (here 10 unless given: ``diversity.HEAD_EPOCHS``), ``label_draws``
        (here 8 unless given: ``diversity.LABEL_DRAWS``; one draw per token leaves a noise
        floor under every distance), ``max_length``, ``device``, ``n_jobs`` (many batches in
        parallel, any joblib backend, dask included), ``memory`` (a folder that keeps each
        batch's row: a rerun, or another coefficient over the same batches, computes nothing
        again), ...

    Returns
    -------
    CoefficientResult
        ``kind="diversity"``.

    Examples
    --------
    >>> from sklearn_task2vec.diversity import diversity_coefficient
    >>> result = diversity_coefficient(texts, probe="hf:gpt2", random_state=0)  # doctest: +SKIP
    >>> result.coefficient, result.confidence_interval  # doctest: +SKIP
    """
    texts = _corpus(texts, "texts", batch_size)
    seed, batch_seed = _seeds(random_state)
    batches = _draw_batches(len(texts), batch_size, n_batches, batch_seed)
    embedder = _embedder(probe, tokenizer, seed, embedder_params)
    embeddings = embedder.fit_transform([([texts[i] for i in batch], None) for batch in batches])
    result = coefficient_from_embeddings(embeddings, confidence_level=confidence_level)
    return dataclasses.replace(result, batches=batches)


@validate_params(
    {"texts_a": ["array-like"], "texts_b": ["array-like"], **_COMMON}, prefer_skip_nested_validation=True
)
def cross_diversity_coefficient(
    texts_a,
    texts_b,
    *,
    probe=None,
    tokenizer=None,
    batch_size=8,
    n_batches=20,
    confidence_level=0.95,
    random_state=None,
    **embedder_params,
):
    """The cross-diversity coefficient of two corpora: the expected TASK2VEC distance between
    a random batch of one and a random batch of the other.

    Parameters are those of :func:`diversity_coefficient`; ``n_batches`` batches are drawn
    from each corpus.

    Returns
    -------
    CoefficientResult
        ``kind="cross_diversity"``; ``embeddings`` and ``batches`` are pairs (corpus a, b).
    """
    return _two_corpora(
        texts_a,
        texts_b,
        probe,
        tokenizer,
        batch_size,
        n_batches,
        confidence_level,
        random_state,
        embedder_params,
    )


@validate_params(
    {"texts_a": ["array-like"], "texts_b": ["array-like"], **_COMMON}, prefer_skip_nested_validation=True
)
def alignment_coefficient(
    texts_a,
    texts_b,
    *,
    probe=None,
    tokenizer=None,
    batch_size=8,
    n_batches=20,
    confidence_level=0.95,
    random_state=None,
    **embedder_params,
):
    """The alignment coefficient of two corpora: one minus their cross-diversity.

    1 for corpora whose batches are indistinguishable in TASK2VEC space; lower the further
    apart they are. Typically ``texts_a`` is a training corpus and ``texts_b`` the target
    (a benchmark's texts). Parameters are those of :func:`diversity_coefficient`.

    Returns
    -------
    CoefficientResult
        ``kind="alignment"``.
    """
    cross = _two_corpora(
        texts_a,
        texts_b,
        probe,
        tokenizer,
        batch_size,
        n_batches,
        confidence_level,
        random_state,
        embedder_params,
    )
    return _alignment(cross)


@validate_params(
    {
        "embeddings": ["array-like"],
        "other_embeddings": ["array-like", None],
        "kind": [StrOptions({"diversity", "cross_diversity", "alignment"}), None],
        "confidence_level": [Interval(Real, 0, 1, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def coefficient_from_embeddings(embeddings, other_embeddings=None, *, kind=None, confidence_level=0.95):
    """A coefficient from batch embeddings already computed (a result's ``embeddings``).

    Parameters
    ----------
    embeddings : array-like of shape (n_batches, n_filters)
        TASK2VEC rows of batches of one corpus.
    other_embeddings : array-like of shape (n_batches_b, n_filters) or None
        Rows of batches of a second corpus, for the cross-diversity or the alignment.
    kind : {"diversity", "cross_diversity", "alignment"} or None
        None: ``"diversity"`` for one corpus, ``"cross_diversity"`` for two.
    confidence_level : float, default=0.95

    Returns
    -------
    CoefficientResult
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    kind = kind or ("diversity" if other_embeddings is None else "cross_diversity")
    if (kind == "diversity") != (other_embeddings is None):
        raise ValueError(
            f"kind={kind!r} takes {'one set' if kind == 'diversity' else 'two sets'} of embeddings."
        )
    _check_rows(embeddings, "embeddings")
    z = stats.norm.ppf(0.5 + confidence_level / 2)
    if other_embeddings is None:
        distances = pairwise_task_distances(embeddings)
        coefficient, error = _one_sample(distances)
        return CoefficientResult(
            coefficient,
            (coefficient - z * error, coefficient + z * error),
            error,
            confidence_level,
            embeddings,
            distances,
            None,
            "diversity",
        )
    other = np.asarray(other_embeddings, dtype=np.float64)
    _check_rows(other, "other_embeddings")
    if other.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"embeddings have {embeddings.shape[1]} filters and other_embeddings {other.shape[1]}: "
            f"they must come from one probe."
        )
    distances = pairwise_task_distances(embeddings, other)
    coefficient, error = _two_sample(distances)
    cross = CoefficientResult(
        coefficient,
        (coefficient - z * error, coefficient + z * error),
        error,
        confidence_level,
        (embeddings, other),
        distances,
        None,
        "cross_diversity",
    )
    return _alignment(cross) if kind == "alignment" else cross


def _alignment(cross):
    low, high = cross.confidence_interval
    return dataclasses.replace(
        cross,
        coefficient=1.0 - cross.coefficient,
        confidence_interval=(1.0 - high, 1.0 - low),
        kind="alignment",
    )


def _one_sample(distances):
    """The mean distance over pairs of distinct batches and its delete-one jackknife standard
    error (pairs sharing a batch are dependent: the naive error of the mean of pairs is too
    small)."""
    n = len(distances)
    upper = distances[np.triu_indices(n, 1)]
    coefficient = float(upper.mean())
    total = upper.sum()
    # Leaving batch i out removes its n - 1 pairs.
    left_out = (total - (distances.sum(1) - np.diag(distances))) / ((n - 1) * (n - 2) / 2) if n > 2 else None
    if left_out is None:
        return coefficient, float("nan")
    error = np.sqrt((n - 1) / n * np.square(left_out - left_out.mean()).sum())
    return coefficient, float(error)


def _two_sample(distances):
    """The mean distance over all (a, b) pairs and its two-sample jackknife standard error."""
    n_a, n_b = distances.shape
    coefficient = float(distances.mean())
    total = distances.sum()
    variance = 0.0
    for axis, n in ((1, n_a), (0, n_b)):
        if n < 2:
            return coefficient, float("nan")
        left_out = (total - distances.sum(axis)) / (distances.size - distances.size // n)
        variance += (n - 1) / n * np.square(left_out - left_out.mean()).sum()
    return coefficient, float(np.sqrt(variance))


def _check_rows(embeddings, name):
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(
            f"{name} must be a 2-D array of at least two batch rows, got shape {embeddings.shape}."
        )
    if not np.isfinite(embeddings).all():
        raise ValueError(f"{name} hold NaN or infinity (a batch whose embedding failed?).")


def _corpus(texts, name, batch_size):
    texts = list(texts)
    bad = next((index for index, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise TypeError(f"{name}: text {bad} is {type(texts[bad]).__name__}, not a string.")
    if len(texts) < batch_size:
        raise ValueError(f"{name} has {len(texts)} texts, fewer than batch_size={batch_size}.")
    return texts


def _seeds(random_state):
    """The embedder's seed and the batches' seed. Every corpus's batches are drawn from the
    same seed, so that one ``random_state`` gives a corpus the same batches (and, with the
    embedder's ``memory``, the same cached rows) in every coefficient it enters."""
    rng = check_random_state(random_state)
    return int(rng.randint(np.iinfo(np.int32).max)), int(rng.randint(np.iinfo(np.int32).max))


def _draw_batches(n_texts, batch_size, n_batches, seed):
    rng = np.random.RandomState(seed)
    if n_texts >= n_batches * batch_size:
        order = rng.permutation(n_texts)[: n_batches * batch_size]
        return [np.sort(batch) for batch in order.reshape(n_batches, batch_size)]
    return [np.sort(rng.choice(n_texts, batch_size, replace=False)) for _ in range(n_batches)]


#: L-BFGS iterations of each batch's head unless ``head_epochs`` is given: a short fine-tune of
#: the model's own output layer (the reference code: 10 epochs of AdamW at lr 5e-5), not a fit
#: to convergence, which a full-vocabulary head would reach by memorising one batch.
HEAD_EPOCHS = 10


#: Next tokens drawn per position (the embedder's ``label_draws``) unless ``label_draws`` is
#: given. One draw per token makes two rows of the same batch differ by as much as batches of
#: different corpora do: a floor of about 0.2 under every distance between batches of 8 texts
#: of 124 words (docs/text.md, the synthetic checks), which hides how corpora differ. The floor
#: falls as one over the number of draws, each draw one more backward pass over the batch.
LABEL_DRAWS = 8


def _embedder(probe, tokenizer, seed, embedder_params):
    if probe is None:
        raise ValueError("probe is required: a causal language model, e.g. probe='hf:gpt2'.")
    embedder_params = {"head_epochs": HEAD_EPOCHS, "label_draws": LABEL_DRAWS, **embedder_params}
    return FisherTaskEmbedder(probe, tokenizer=tokenizer, random_state=seed, **embedder_params)


def _two_corpora(
    texts_a, texts_b, probe, tokenizer, batch_size, n_batches, confidence_level, random_state, params
):
    texts_a = _corpus(texts_a, "texts_a", batch_size)
    texts_b = _corpus(texts_b, "texts_b", batch_size)
    seed, batch_seed = _seeds(random_state)
    batches_a = _draw_batches(len(texts_a), batch_size, n_batches, batch_seed)
    batches_b = _draw_batches(len(texts_b), batch_size, n_batches, batch_seed)
    embedder = _embedder(probe, tokenizer, seed, params)
    tasks = [([texts_a[i] for i in batch], None) for batch in batches_a]
    tasks += [([texts_b[i] for i in batch], None) for batch in batches_b]
    rows = embedder.fit_transform(tasks)
    result = coefficient_from_embeddings(
        rows[:n_batches], rows[n_batches:], confidence_level=confidence_level
    )
    return dataclasses.replace(result, batches=(batches_a, batches_b))
