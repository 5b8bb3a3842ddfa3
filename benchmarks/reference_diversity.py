"""The diversity coefficient as the authors' code computes it, for comparison with ours.

An implementation of our own (no code copied) of the recipe of Miranda et al. (2023), "Beyond
Scale: the Diversity Coefficient as a Data Quality Metric", as their code runs it; what their
code does, with file paths and line numbers, is in ``benchmarks/REFERENCE_DIVERSITY_NOTES.md``.
In short, for one batch of texts:

1. a deep copy of the causal language model (the caller's is untouched), in **train** mode
   throughout (dropout on);
2. its output layer (``lm_head``; for GPT-2 the same parameter as the token embedding
   ``wte``, so both move) fine-tuned on the batch's next tokens: AdamW (lr 5e-5, eps 1e-8,
   weight decay 1e-4), mini-batches of 8 texts in order, 10 epochs (the paper's runs; the
   authors' library function ``get_diversity_coefficient`` leaves 5), padding ignored;
3. the Fisher: per mini-batch of 8 texts, a label sampled from the model's softmax at every
   position, the **mean** cross-entropy over the mini-batch's positions, and the square of
   its gradient; averaged over the mini-batches. As in their code, the label scored against
   the logits of position ``t`` is by default the one sampled at position ``t + 1``
   (``shifted_labels=True``; ``False`` samples it from the distribution it is scored
   against, as the paper's equation says), and padded positions count;
4. per filter, the mean of the squared gradients of its weights (biases left out).

and for a corpus: ``n_batches`` random batches, the normalised cosine distance of Task2Vec
(:func:`reference_cosine`) between every pair, and the mean ± the standard deviation of the
non-zero distances of the upper triangle (:func:`reference_stats`).

The filters (``filters=``) are either

* ``"package"`` (default): those ``sklearn_task2vec`` embeds, one per **output** unit of each
  ``Conv1D`` / ``Linear`` of the model's body (``model.base_model``), in module order; for
  GPT-2, per block ``attn.c_attn`` (``3 n_embd``), ``attn.c_proj`` (``n_embd``), ``mlp.c_fc``
  (``4 n_embd``), ``mlp.c_proj`` (``n_embd``), blocks in order; or
* ``"reference"``: the authors' layout: every module of ``model.named_modules()`` with a
  weight, in order, except the output layer's module, each weight reduced over all axes but
  its first: ``wte`` (one value per token, holding the tied head's gradients too), ``wpe``
  (per position), the LayerNorms (per feature) and Hugging Face's ``Conv1D`` per **input**
  unit (its weight is stored ``(in, out)``).

:func:`filter_layout` lists either layout as ``(path, units)``.

Runs on CPU in seconds for a tiny GPT-2 (``GPT2Config(n_layer=2, n_embd=64, n_head=2)``) and
batches of a few dozen texts.
"""

from __future__ import annotations

import contextlib
import copy
from numbers import Integral
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import distance as scipy_distance
from torch import nn

#: The authors' defaults for the head's fine-tuning (task2vec.py L175-179) and the paper's
#: number of epochs (main.py L62; appendix: "fine-tuned only the LM head for 10 epochs").
FINE_TUNING = {
    "epochs": 10,
    "learning_rate": 5e-5,
    "adam_epsilon": 1e-8,
    "weight_decay": 1e-4,
    "batch_size": 8,
}

#: Filter layouts :func:`reference_batch_embedding` can return.
FILTER_LAYOUTS = ("package", "reference")

# The authors' regulariser of the normalised cosine (task_similarity.py L92-94).
_COSINE_EPSILON = 1e-8


def _conv1d_type():
    from transformers.pytorch_utils import Conv1D

    return Conv1D


def _filter_units(module):
    """How ``module``'s squared weight gradients reduce to the package's filters: ``"rows"``
    (a Linear's ``(out, in)``: mean over dim 1), ``"columns"`` (Hugging Face's ``Conv1D``,
    ``(in, out)``: mean over dim 0) or None (not a filter layer)."""
    if isinstance(module, _conv1d_type()):
        return "columns"
    if isinstance(module, nn.Linear):
        return "rows"
    return None


def _output_module(model):
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Module) or not isinstance(getattr(head, "weight", None), nn.Parameter):
        raise TypeError(
            f"reference_batch_embedding needs a causal language model with an output layer "
            f"(get_output_embeddings(), e.g. GPT2LMHeadModel), got {type(model).__name__}."
        )
    return head


def filter_layout(model, filters="package"):
    """The filters of an embedding of ``model``, in order: ``[(path, n_units), ...]``.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal language model (e.g. ``GPT2LMHeadModel``).
    filters : {"package", "reference"}, default="package"
        The layout (see the module docstring).

    Returns
    -------
    list of (str, int)
        Each layer's path in ``model`` and its number of filters; the embedding has
        ``sum(n_units)`` values, layer after layer.
    """
    return [(path, units) for path, units, _, _ in _layout(model, filters)]


def _layout(model, filters):
    """``[(path, n_units, weight parameter, reduction), ...]`` of ``filters``."""
    if filters not in FILTER_LAYOUTS:
        raise ValueError(f"filters must be one of {FILTER_LAYOUTS}, got {filters!r}.")
    head = _output_module(model)
    layout = []
    if filters == "package":
        body = model.base_model
        prefix = next(path for path, module in model.named_modules() if module is body)
        for path, module in body.named_modules():
            reduction = _filter_units(module)
            if reduction is not None:
                weight = module.weight
                units = weight.shape[1] if reduction == "columns" else weight.shape[0]
                layout.append((f"{prefix}.{path}" if prefix else path, units, weight, reduction))
    else:
        for path, module in model.named_modules():
            weight = getattr(module, "weight", None)
            if module is head or not isinstance(weight, nn.Parameter):
                continue
            layout.append((path, weight.shape[0], weight, "first axis"))
    if not layout:
        raise ValueError(f"{type(model).__name__} has no filter layer in the {filters!r} layout.")
    return layout


def _reduce(squared, reduction):
    if reduction == "columns":
        return squared.mean(0)
    return squared.reshape(squared.shape[0], -1).mean(1)


@contextlib.contextmanager
def _seeded(random_state):
    """Torch's global generator seeded with ``random_state`` inside, restored after; None:
    the global generator as it is (advanced). Dropout draws from the global generator, so it
    is the one to seed."""
    if random_state is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(random_state))
        yield


def _encode(tokenizer, texts, max_length):
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a sequence of strings.")
    if len(texts) == 0:
        raise ValueError("texts is empty: a batch needs at least one text.")
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad_token: set one (GPT-2's authors use the eos token: "
            "tokenizer.pad_token = tokenizer.eos_token)."
        )
    if max_length is None:
        options = {"padding": "longest"}
    else:
        options = {"padding": "max_length", "truncation": True, "max_length": int(max_length)}
    encoded = tokenizer(list(texts), return_tensors="pt", **options)
    return encoded["input_ids"], encoded["attention_mask"]


def reference_batch_embedding(
    model,
    tokenizer,
    texts,
    *,
    max_length=None,
    epochs=FINE_TUNING["epochs"],
    learning_rate=FINE_TUNING["learning_rate"],
    weight_decay=FINE_TUNING["weight_decay"],
    adam_epsilon=FINE_TUNING["adam_epsilon"],
    batch_size=FINE_TUNING["batch_size"],
    shifted_labels=True,
    filters="package",
    random_state=None,
    device="cpu",
    return_loss=False,
):
    """The Task2Vec embedding of one batch of texts by the authors' recipe (module docstring).

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A causal language model with an output layer, e.g. ``GPT2LMHeadModel``; deep-copied,
        never changed.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer; it needs a ``pad_token``, whose id is ignored in the fine-tuning loss
        and in the Fisher's sampled labels, as the authors' ``ignore_index=50256`` (GPT-2's eos,
        their padding token).
    texts : sequence of str
        The batch.
    max_length : int or None, default=None
        Pad and truncate every text to this many tokens, as the authors do (128); None: pad
        to the batch's longest text, no truncation.
    epochs, learning_rate, weight_decay, adam_epsilon : default 10, 5e-5, 1e-4, 1e-8
        The head's fine-tuning (AdamW, no scheduler). ``epochs=0``: no fine-tuning.
    batch_size : int, default=8
        Texts per mini-batch, of the fine-tuning and of the Fisher: one squared gradient per
        mini-batch.
    shifted_labels : bool, default=True
        Score the logits of position ``t`` against the label sampled at ``t + 1``, as the
        authors' code does; False: against a label sampled from their own softmax.
    filters : {"package", "reference"} or sequence of them, default="package"
        The embedding's layout (module docstring, :func:`filter_layout`). A sequence of
        layouts returns one embedding per layout, all from the same fine-tuning and Fisher
        pass (the same squared gradients, reduced each way).
    random_state : int or None, default=None
        Seeds dropout and the sampled labels (torch's global generator, restored after);
        None: torch's global generator as it is.
    device : str or torch.device, default="cpu"
    return_loss : bool, default=False
        Also return the last fine-tuning step's loss (None without fine-tuning), as the
        authors' ``embed`` does.

    Returns
    -------
    embedding : ndarray of shape (n_filters,), float64
        A list of them, one per layout, when ``filters`` is a sequence.
    loss : float or None
        Only with ``return_loss=True``.
    """
    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not isinstance(epochs, Integral) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}.")
    layouts = [filters] if isinstance(filters, str) else list(filters)
    if not layouts:
        raise ValueError("filters is an empty sequence: give at least one layout.")
    for layout in layouts:
        _layout(model, layout)  # refuses a bad layout or model before any work
    input_ids, attention_mask = _encode(tokenizer, texts, max_length)
    ignore_index = tokenizer.pad_token_id
    device = torch.device(device)
    probe = copy.deepcopy(model).to(device).train()  # train mode throughout, as theirs
    chunks = list(zip(input_ids.split(batch_size), attention_mask.split(batch_size)))
    with _seeded(random_state):
        loss = _fine_tune_head(
            probe, chunks, ignore_index, epochs, learning_rate, weight_decay, adam_epsilon, device
        )
        squared = _batch_mean_fisher(probe, chunks, ignore_index, shifted_labels, device)
    embeddings = [
        np.concatenate(
            [
                _reduce(squared[id(weight)], reduction).double().cpu().numpy()
                for _, _, weight, reduction in _layout(probe, layout)
            ]
        )
        for layout in layouts
    ]
    embedding = embeddings[0] if isinstance(filters, str) else embeddings
    return (embedding, loss) if return_loss else embedding


def _next_token_loss(logits, labels, ignore_index):
    """Mean cross-entropy of ``logits[:, :-1]`` against ``labels`` (already aligned), over the
    positions whose label is not ``ignore_index``."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=ignore_index
    )


def _fine_tune_head(probe, chunks, ignore_index, epochs, learning_rate, weight_decay, adam_epsilon, device):
    """Fit the output layer (tied weights and all) on the batch's next tokens; the last loss."""
    head_parameters = list(_output_module(probe).parameters())
    head_ids = {id(parameter) for parameter in head_parameters}
    if epochs == 0:
        return None
    optimizer = torch.optim.AdamW(
        head_parameters, lr=learning_rate, eps=adam_epsilon, weight_decay=weight_decay
    )
    # Only the head is stepped; the other weights' gradients, which the authors compute and
    # never use, are skipped (the same updates, less work).
    frozen = [p for p in probe.parameters() if id(p) not in head_ids and p.requires_grad]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        loss = None
        for _ in range(epochs):
            for ids, mask in chunks:  # in order, as their unshuffled DataLoader
                ids, mask = ids.to(device), mask.to(device)
                optimizer.zero_grad()
                logits = probe(input_ids=ids, attention_mask=mask).logits
                loss = _next_token_loss(logits, ids[:, 1:], ignore_index)
                loss.backward()
                optimizer.step()
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _batch_mean_fisher(probe, chunks, ignore_index, shifted_labels, device):
    """``{id(parameter): mean over mini-batches of (d mean loss / d parameter) ** 2}``."""
    parameters = [p for p in probe.parameters() if p.requires_grad]
    totals = [torch.zeros_like(p, dtype=torch.float64) for p in parameters]
    for ids, mask in chunks:
        ids, mask = ids.to(device), mask.to(device)
        logits = probe(input_ids=ids, attention_mask=mask).logits
        with torch.no_grad():
            # Labels from the model, at every position (padding included), as theirs.
            positions = logits if shifted_labels else logits[:, :-1]
            probabilities = positions.float().softmax(-1).reshape(-1, logits.shape[-1])
            sampled = torch.multinomial(probabilities, 1).reshape(positions.shape[:2])
        labels = sampled[:, 1:] if shifted_labels else sampled
        loss = _next_token_loss(logits, labels, ignore_index)
        gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        for total, gradient in zip(totals, gradients):
            if gradient is not None:
                total += gradient.double() ** 2
    return {id(p): total / len(chunks) for p, total in zip(parameters, totals)}


# ---------------------------------------------------------------------------- the coefficient
def reference_cosine(first, second):
    """Task2Vec's normalised cosine distance, as the authors' ``task_similarity.cosine``.

    The cosine distance between ``first / (first + second + 1e-8)`` and
    ``second / (first + second + 1e-8)``: each filter's share of the pair's Fisher, so that
    filters with large values do not dominate.
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    total = first + second + _COSINE_EPSILON
    return float(scipy_distance.cosine(first / total, second / total))


def reference_distances(embeddings, others=None):
    """The matrix of :func:`reference_cosine` between ``embeddings`` (symmetric, zero
    diagonal), or between ``embeddings`` and ``others`` (all pairs)."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if others is None:
        matrix = np.zeros((len(embeddings), len(embeddings)))
        for i in range(len(embeddings)):
            for j in range(i + 1, len(embeddings)):
                matrix[i, j] = matrix[j, i] = reference_cosine(embeddings[i], embeddings[j])
        return matrix
    others = np.asarray(others, dtype=np.float64)
    return np.array([[reference_cosine(a, b) for b in others] for a in embeddings])


def reference_stats(distances, *, within=True):
    """``(mean, std)`` of distances, as the authors' ``stats_of_distance_matrix``.

    ``within=True`` (one corpus): the non-zero entries of the upper triangle (the diagonal
    and pairs at distance exactly 0 are left out, as theirs); False (two corpora): every
    entry. The standard deviation is the population one (``ddof=0``), which the authors
    report as ``div_coeff_ci``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    values = distances[np.triu(distances) != 0.0] if within else distances.ravel()
    if values.size == 0:
        raise ValueError("no distance to average: at least two batches at a non-zero distance are needed.")
    return float(values.mean()), float(values.std())


def sample_batches(n_texts, batch_size, n_batches, random_state=None):
    """``n_batches`` index arrays of ``batch_size`` texts each, drawn without replacement within
    a batch and independently across batches (the authors' non-streaming ``random.sample``).
    """
    if batch_size > n_texts:
        raise ValueError(f"batch_size={batch_size} is more than the {n_texts} texts.")
    rng = np.random.default_rng(random_state)
    return [np.sort(rng.choice(n_texts, size=batch_size, replace=False)) for _ in range(n_batches)]


class ReferenceDiversity(NamedTuple):
    """What :func:`reference_diversity` and :func:`reference_cross_diversity` return.

    ``coefficient``: the mean distance; ``std``: the population standard deviation of the
    distances (the authors' ``div_coeff_ci``); ``confidence_interval``: ``coefficient ± std``,
    as the authors report it (not a confidence interval of the mean); ``distances``: the
    matrix; ``embeddings``: one row per batch (for two corpora, the first corpus's rows then
    the second's); ``batches``: the index arrays of the batches (pairs of lists for two).
    """

    coefficient: float
    std: float
    confidence_interval: tuple
    distances: np.ndarray
    embeddings: np.ndarray
    batches: list


def _embed_batches(model, tokenizer, texts, batches, seeds, options):
    return np.stack(
        [
            reference_batch_embedding(
                model, tokenizer, [texts[i] for i in batch], random_state=int(seed), **options
            )
            for batch, seed in zip(batches, seeds)
        ]
    )


def reference_diversity(
    model, tokenizer, texts, *, batch_size=512, n_batches=10, batches=None, random_state=None, **options
):
    """The diversity coefficient of ``texts`` by the authors' recipe.

    Parameters
    ----------
    model, tokenizer
        As :func:`reference_batch_embedding`.
    texts : sequence of str
        The corpus.
    batch_size : int, default=512
        Texts per batch (the paper's 512).
    n_batches : int, default=10
        Batches drawn (the paper's 200).
    batches : list of index arrays or None, default=None
        The batches to embed, e.g. to compare estimators on the same ones; None: drawn by
        :func:`sample_batches`.
    random_state : int or None, default=None
        Seeds the batches and each batch's embedding.
    **options
        Passed to :func:`reference_batch_embedding` (``epochs``, ``filters``, ...).

    Returns
    -------
    ReferenceDiversity
    """
    rng = np.random.default_rng(random_state)
    if batches is None:
        batches = sample_batches(len(texts), batch_size, n_batches, rng)
    if len(batches) < 2:
        raise ValueError(f"the diversity coefficient needs at least 2 batches, got {len(batches)}.")
    seeds = rng.integers(2**31 - 1, size=len(batches))
    embeddings = _embed_batches(model, tokenizer, texts, batches, seeds, options)
    distances = reference_distances(embeddings)
    mean, std = reference_stats(distances, within=True)
    return ReferenceDiversity(mean, std, (mean - std, mean + std), distances, embeddings, list(batches))


def reference_cross_diversity(
    model,
    tokenizer,
    texts_a,
    texts_b,
    *,
    batch_size=512,
    n_batches=10,
    batches=None,
    random_state=None,
    **options,
):
    """The cross diversity coefficient of two corpora by the authors' recipe: the mean ± std of
    the distances between every batch of ``texts_a`` and every batch of ``texts_b``.

    ``batches``: ``(batches_a, batches_b)`` or None (``n_batches`` of each drawn). Other
    parameters as :func:`reference_diversity`.
    """
    rng = np.random.default_rng(random_state)
    if batches is None:
        batches = (
            sample_batches(len(texts_a), batch_size, n_batches, rng),
            sample_batches(len(texts_b), batch_size, n_batches, rng),
        )
    batches_a, batches_b = batches
    seeds = rng.integers(2**31 - 1, size=len(batches_a) + len(batches_b))
    first = _embed_batches(model, tokenizer, texts_a, batches_a, seeds[: len(batches_a)], options)
    second = _embed_batches(model, tokenizer, texts_b, batches_b, seeds[len(batches_a) :], options)
    distances = reference_distances(first, second)
    mean, std = reference_stats(distances, within=False)
    return ReferenceDiversity(
        mean,
        std,
        (mean - std, mean + std),
        distances,
        np.concatenate([first, second]),
        [batches_a, batches_b],
    )
