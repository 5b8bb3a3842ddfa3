"""Text as tasks: token batches, tokenizers, and Hugging Face probes by name.

A text task's examples reach the probe as a *token batch*: an int64 tensor of shape
``(n, 2, length)`` whose ``[:, 0]`` holds token ids and ``[:, 1]`` the attention mask (1 for a
token, 0 for padding), padded on the right. One tensor keeps the rest of the machinery (batches,
subsampling, the cache's content hash, the probe inspection) the same for text as for arrays.
Padding never changes a row: masked positions are excluded from pooling and from the next-token
labels, the attention masks them as keys, and each batch is cut to its own longest text
(:func:`trim_padding`), so a row does not depend on the batch size or on the padded length.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

#: Prefix of a Hugging Face model given as a probe by name or local folder: ``"hf:gpt2"``.
HF_PREFIX = "hf:"

# Tokenizers without a known limit report this (transformers' VERY_LARGE_INTEGER is 1e30).
_NO_LIMIT = 10**12


class TextEncoding(NamedTuple):
    """How a task's texts become token batches: the tokenizer (None: texts are refused) and the
    most tokens kept per text (None: no truncation)."""

    tokenizer: object
    max_length: int | None


def import_transformers():
    """The ``transformers`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise ImportError(
            "Text probes and tokenizers need Hugging Face transformers: pip install 'sklearn-task2vec[text]'."
        ) from exc


def is_text(inputs):
    """Whether a task's inputs are text: a sequence of strings, or a tokenizer's output (a
    mapping with ``"input_ids"``)."""
    if isinstance(inputs, Mapping):
        return "input_ids" in inputs
    if isinstance(inputs, str):
        return False
    if isinstance(inputs, np.ndarray):
        return (
            inputs.ndim == 1 and inputs.dtype.kind in "OU" and len(inputs) > 0 and isinstance(inputs[0], str)
        )
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and isinstance(inputs[0], str)


def n_texts(inputs):
    """How many examples text ``inputs`` hold."""
    if isinstance(inputs, Mapping):
        return len(inputs["input_ids"])
    return len(inputs)


def token_batch(inputs, encoding, where, *, stop=None):
    """Text ``inputs`` (strings, or a tokenizer's output) as a token batch, ``(n, 2, length)``
    int64; ``stop``: only the first ``stop`` examples."""
    if isinstance(inputs, Mapping):
        return _pretokenized(inputs, where, stop)
    texts = list(inputs[:stop])
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"{where}: the inputs are text, but example {index} is {type(text).__name__}, not a string."
            )
    if encoding is None or encoding.tokenizer is None:
        raise ValueError(
            f"{where} holds text, but the embedder has no tokenizer: pass tokenizer= (a Hugging "
            f"Face tokenizer, or its name or folder), or a probe given as 'hf:<name or folder>', "
            f"whose tokenizer is loaded with it."
        )
    tokenizer, max_length = encoding
    try:
        encoded = tokenizer(
            texts, truncation=max_length is not None, max_length=max_length, add_special_tokens=True
        )
    except Exception as exc:  # a tokenizer's own errors, whatever their type
        raise ValueError(f"{where}: the tokenizer failed on its texts: {type(exc).__name__}: {exc}") from exc
    return _packed(encoded["input_ids"], None, where)


def _pretokenized(mapping, where, stop):
    ids = mapping["input_ids"]
    mask = mapping.get("attention_mask")
    ids = list(ids[:stop]) if stop is not None else ids
    if mask is not None and stop is not None:
        mask = list(mask[:stop])
    return _packed(ids, mask, where)


def _packed(ids, mask, where):
    """Token ids (a 2-D array or ragged rows) and an optional attention mask as a token batch,
    after refusing empty texts, left padding and ids that are not non-negative integers."""
    rows = [_integer_row(row, where, index, "input_ids") for index, row in enumerate(ids)]
    if mask is None:
        masks = [np.ones(len(row), dtype=np.int64) for row in rows]
    else:
        masks = [_integer_row(row, where, index, "attention_mask") for index, row in enumerate(mask)]
        if len(masks) != len(rows):
            raise ValueError(
                f"{where}: attention_mask has {len(masks)} rows for {len(rows)} rows of input_ids."
            )
    length = max((len(row) for row in rows), default=0)
    tokens = np.zeros((len(rows), 2, length), dtype=np.int64)
    for index, (row, row_mask) in enumerate(zip(rows, masks)):
        if len(row_mask) != len(row):
            raise ValueError(
                f"{where}: example {index} has {len(row)} input_ids but {len(row_mask)} mask entries."
            )
        if not np.isin(row_mask, (0, 1)).all():
            raise ValueError(f"{where}: attention_mask of example {index} holds values other than 0 and 1.")
        n_tokens = int(row_mask.sum())
        if n_tokens == 0:
            raise ValueError(f"{where}: example {index} has no tokens (an empty text?): drop it.")
        if not row_mask[:n_tokens].all():
            raise ValueError(
                f"{where}: example {index} is padded on the left (its attention_mask does not start "
                f"with its tokens): tokenize with padding_side='right', or give the texts as strings."
            )
        if (row[:n_tokens] < 0).any():
            raise ValueError(f"{where}: example {index} holds negative token ids.")
        tokens[index, 0, :n_tokens] = row[:n_tokens]
        tokens[index, 1, :n_tokens] = 1
    return torch.from_numpy(tokens)


def _integer_row(row, where, index, field):
    array = row.detach().cpu().numpy() if isinstance(row, torch.Tensor) else np.asarray(row)
    if array.ndim != 1:
        raise ValueError(f"{where}: {field} of example {index} is not a sequence of integers.")
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if array.dtype.kind == "f" and np.array_equal(array, np.round(array)):
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: {field} of example {index} holds {array.dtype}, not integers.")
    return array.astype(np.int64)


def is_token_batch(inputs):
    """Whether a batch tensor is a token batch (see the module docstring)."""
    return inputs.dim() == 3 and inputs.shape[1] == 2 and not inputs.is_floating_point()


def trim_padding(tokens):
    """A token batch cut to its longest text: the columns after it are padding for all."""
    length = int(tokens[:, 1].sum(1).max())
    return tokens[:, :, :length]


def text_encoding(tokenizer, max_length, probe):
    """The :class:`TextEncoding` of an embedder: ``tokenizer`` loaded if it is a name or folder,
    and ``max_length`` (None: the tokenizer's own limit), capped at the positions ``probe``
    (a frozen probe, or None) has."""
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(os.fspath(tokenizer))
    limits = [max_length]
    if max_length is None and tokenizer is not None:
        limits.append(getattr(tokenizer, "model_max_length", None))
    limits.append(_probe_positions(probe))
    limits = [int(limit) for limit in limits if limit is not None and limit < _NO_LIMIT]
    return TextEncoding(tokenizer, min(limits) if limits else None)


def _probe_positions(probe):
    """The most positions a text probe's model takes (its config says), or None."""
    if probe is None:
        return None
    for module in probe.modules():
        config = getattr(module, "config", None)
        if config is not None and type(module).__module__.startswith("transformers"):
            for name in ("n_positions", "max_position_embeddings"):
                value = getattr(config, name, None)
                if isinstance(value, int):
                    return value
    return None


def _hub_error(kind, name, exc):
    return ValueError(
        f"Could not load the Hugging Face {kind} {name!r} ({type(exc).__name__}: {exc}). A name "
        f"is downloaded from the Hugging Face Hub and cached: offline, give the folder a model "
        f"was saved to with save_pretrained ('hf:/path/to/folder'), or a model instance."
    )


def load_tokenizer(name):
    """``AutoTokenizer.from_pretrained(name)``, with an error that says what to do offline."""
    transformers = import_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise _hub_error("tokenizer", name, exc) from exc


def load_pretrained(name):
    """``(model, tokenizer)`` of a Hugging Face model name or folder.

    A model whose configuration lists a causal language model architecture
    (``...ForCausalLM``, ``...LMHeadModel``) is loaded with its output layer, which starts the
    head of a language-modelling task; any other with ``AutoModel``. The tokenizer is None
    where none is saved with the model.
    """
    transformers = import_transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(name)
        causal = any(arch.endswith(("ForCausalLM", "LMHeadModel")) for arch in config.architectures or ())
        kind = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
        model = kind.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise _hub_error("model", name, exc) from exc
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError):
        tokenizer = None  # the embedder refuses text without a tokenizer, saying what to pass
    if tokenizer is not None and len(tokenizer) == 0:
        tokenizer = None  # a folder without tokenizer files loads as an empty vocabulary
    return model, tokenizer


def tokenizer_record(tokenizer):
    """What a provenance record keeps of a tokenizer: its class, its name or folder, and the
    SHA-256 of its vocabulary, special tokens and length limit (None: no tokenizer)."""
    if tokenizer is None:
        return None
    digest = hashlib.sha256()
    vocabulary = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    digest.update(json.dumps(sorted(vocabulary.items()), ensure_ascii=False).encode())
    special = getattr(tokenizer, "special_tokens_map", {})
    digest.update(json.dumps(special, sort_keys=True, default=str).encode())
    digest.update(repr(getattr(tokenizer, "model_max_length", None)).encode())
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{type(tokenizer).__name__}({name!r}) sha256:{digest.hexdigest()}"
