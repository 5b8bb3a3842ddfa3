"""The reference estimator of ``benchmarks/reference_diversity.py`` (the authors' recipe).

Checked against direct computations on a tiny GPT-2: with the sampled labels made
deterministic (``torch.multinomial`` replaced by the argmax) and dropout off, an embedding is
the mean over mini-batches of the squared gradient of each mini-batch's mean loss, with the
labels shifted by one position as in the authors' code, reduced per output unit; the head's
fine-tuning moves the tied head/embedding weight only; the caller's model is untouched.
"""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sklearn_task2vec.datasets import markov_text_corpus, word_level_tokenizer

transformers = pytest.importorskip("transformers")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_diversity.py"
_SPEC = importlib.util.spec_from_file_location("reference_diversity", _PATH)
reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reference)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def texts():
    return markov_text_corpus(2, vocab_size=12, n_texts=12, text_length=6, random_state=0)


@pytest.fixture(scope="module")
def tokenizer(texts):
    return word_level_tokenizer(texts)


def tiny_gpt2(tokenizer, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        n_positions=16,
        vocab_size=len(tokenizer),
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture
def argmax_labels(monkeypatch):
    """``torch.multinomial`` as the argmax: the sampled labels become deterministic."""
    monkeypatch.setattr(torch, "multinomial", lambda probabilities, n: probabilities.argmax(-1, keepdim=True))


def direct_fisher(model, tokenizer, chunks, shifted):
    """Mean over ``chunks`` (lists of texts) of the squared gradient of each chunk's mean loss
    against argmax labels, per output unit of each Conv1D, computed with plain backward."""
    model = copy.deepcopy(model).train()
    layers = [m for m in model.transformer.modules() if type(m).__name__ == "Conv1D"]
    totals = [torch.zeros(layer.weight.shape[1], dtype=torch.float64) for layer in layers]
    for chunk in chunks:
        encoded = tokenizer(chunk, padding=True, return_tensors="pt")
        model.zero_grad()
        logits = model(**encoded).logits
        labels = logits.argmax(-1)
        labels = labels[:, 1:] if shifted else labels[:, :-1]
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=tokenizer.pad_token_id,
        )
        loss.backward()
        for total, layer in zip(totals, layers):
            total += (layer.weight.grad.double() ** 2).mean(0)  # (in, out): one value per output
    return np.concatenate([(total / len(chunks)).numpy() for total in totals])


@pytest.mark.parametrize("shifted", [True, False])
@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_embedding_is_the_squared_gradient_of_each_mini_batch_mean_loss(
    argmax_labels, texts, tokenizer, shifted, batch_size
):
    model = tiny_gpt2(tokenizer)
    batch = texts[:4]
    embedding = reference.reference_batch_embedding(
        model, tokenizer, batch, epochs=0, batch_size=batch_size, shifted_labels=shifted
    )
    chunks = [batch[i : i + batch_size] for i in range(0, len(batch), batch_size)]
    np.testing.assert_allclose(embedding, direct_fisher(model, tokenizer, chunks, shifted), rtol=1e-5)


def test_the_batch_mean_gradient_is_squared_not_each_texts(argmax_labels, texts, tokenizer):
    """One mini-batch of 4 gives the square of the mean, not the mean of the squares."""
    model = tiny_gpt2(tokenizer)
    together = reference.reference_batch_embedding(model, tokenizer, texts[:4], epochs=0, batch_size=4)
    apart = reference.reference_batch_embedding(model, tokenizer, texts[:4], epochs=0, batch_size=1)
    assert together.sum() < 0.9 * apart.sum()


def test_padded_positions_count_in_the_fisher(argmax_labels, tokenizer):
    model = tiny_gpt2(tokenizer)
    batch = ["w1 w2 w3", "w1 w2 w3"]
    plain = reference.reference_batch_embedding(model, tokenizer, batch, epochs=0)
    padded = reference.reference_batch_embedding(model, tokenizer, batch, epochs=0, max_length=8)
    assert not np.allclose(plain, padded, rtol=1e-3)


def test_layouts(tokenizer):
    model = tiny_gpt2(tokenizer)
    assert reference.filter_layout(model) == [
        ("transformer.h.0.attn.c_attn", 48),
        ("transformer.h.0.attn.c_proj", 16),
        ("transformer.h.0.mlp.c_fc", 64),
        ("transformer.h.0.mlp.c_proj", 16),
    ]
    assert reference.filter_layout(model, "reference") == [
        ("transformer.wte", len(tokenizer)),
        ("transformer.wpe", 16),
        ("transformer.h.0.ln_1", 16),
        ("transformer.h.0.attn.c_attn", 16),
        ("transformer.h.0.attn.c_proj", 16),
        ("transformer.h.0.ln_2", 16),
        ("transformer.h.0.mlp.c_fc", 16),
        ("transformer.h.0.mlp.c_proj", 64),
        ("transformer.ln_f", 16),
    ]


def test_reference_layout_reduces_every_weight_over_its_first_axis(argmax_labels, texts, tokenizer):
    model = tiny_gpt2(tokenizer)
    embedding = reference.reference_batch_embedding(
        model, tokenizer, texts[:2], epochs=0, filters="reference"
    )
    assert embedding.shape == (len(tokenizer) + 16 * 7 + 64,)
    copy_ = copy.deepcopy(model).train()
    encoded = tokenizer(texts[:2], padding=True, return_tensors="pt")
    logits = copy_(**encoded).logits
    F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), logits.argmax(-1)[:, 1:].reshape(-1)
    ).backward()
    wte = (copy_.transformer.wte.weight.grad.double() ** 2).mean(1).numpy()  # the tied head's too
    np.testing.assert_allclose(embedding[: len(tokenizer)], wte, rtol=1e-5)
    fc = (copy_.transformer.h[0].mlp.c_fc.weight.grad.double() ** 2).mean(1).numpy()  # per input unit
    start = len(tokenizer) + 16 * 5
    np.testing.assert_allclose(embedding[start : start + 16], fc, rtol=1e-5)


def test_fine_tuning_moves_the_tied_head_only_and_lowers_the_loss(texts, tokenizer):
    model = tiny_gpt2(tokenizer).train()
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    chunks = list(zip(encoded["input_ids"].split(8), encoded["attention_mask"].split(8)))
    before = copy.deepcopy(model.state_dict())
    losses = [
        reference._fine_tune_head(
            model, chunks, tokenizer.pad_token_id, 1, 1e-2, 1e-4, 1e-8, torch.device("cpu")
        )
        for _ in range(5)
    ]
    assert losses[-1] < losses[0]
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed == {"transformer.wte.weight", "lm_head.weight"}  # one tied parameter
    assert all(parameter.requires_grad for parameter in model.parameters())  # restored


def test_the_callers_model_is_untouched(texts, tokenizer):
    model = tiny_gpt2(tokenizer, dropout=0.1).eval()
    before = copy.deepcopy(model.state_dict())
    embedding, loss = reference.reference_batch_embedding(
        model, tokenizer, texts[:8], epochs=2, random_state=0, return_loss=True
    )
    assert np.isfinite(embedding).all() and (embedding >= 0).all() and isinstance(loss, float)
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert not model.training
    assert all(parameter.grad is None for parameter in model.parameters())


def test_seeded_embeddings_repeat_and_train_mode_dropout_varies_them(argmax_labels, texts, tokenizer):
    model = tiny_gpt2(tokenizer, dropout=0.1)
    first = reference.reference_batch_embedding(model, tokenizer, texts[:4], epochs=1, random_state=0)
    again = reference.reference_batch_embedding(model, tokenizer, texts[:4], epochs=1, random_state=0)
    other = reference.reference_batch_embedding(model, tokenizer, texts[:4], epochs=1, random_state=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)  # labels are argmax here: the difference is dropout


def test_reference_cosine_is_the_normalised_cosine():
    first, second = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])
    shares = first / (first + second), second / (first + second)
    expected = 1 - shares[0] @ shares[1] / np.linalg.norm(shares[0]) / np.linalg.norm(shares[1])
    assert reference.reference_cosine(first, second) == pytest.approx(expected, rel=1e-6)
    assert reference.reference_cosine(first, first) == pytest.approx(0.0, abs=1e-12)
    # Per-filter shares: scaling both embeddings together changes nothing.
    assert reference.reference_cosine(7 * first, 7 * second) == pytest.approx(expected, rel=1e-6)


def test_reference_stats_average_the_upper_triangle_without_zeros():
    distances = np.array([[0.0, 0.2, 0.4], [0.2, 0.0, 0.0], [0.4, 0.0, 0.0]])
    assert reference.reference_stats(distances) == pytest.approx((0.3, 0.1))
    assert reference.reference_stats(distances, within=False) == pytest.approx(
        (distances.mean(), distances.std())
    )
    with pytest.raises(ValueError, match="no distance to average"):
        reference.reference_stats(np.zeros((2, 2)))


def test_reference_diversity_on_given_batches(texts, tokenizer):
    model = tiny_gpt2(tokenizer)
    batches = reference.sample_batches(len(texts), 4, 3, random_state=0)
    assert all(len(set(batch)) == 4 for batch in batches)
    result = reference.reference_diversity(model, tokenizer, texts, batches=batches, epochs=1, random_state=0)
    assert result.embeddings.shape == (3, 144)
    np.testing.assert_allclose(result.distances, result.distances.T)
    upper = result.distances[np.triu_indices(3, 1)]
    assert result.coefficient == pytest.approx(upper.mean()) and result.std == pytest.approx(upper.std())
    assert result.confidence_interval == pytest.approx(
        (upper.mean() - upper.std(), upper.mean() + upper.std())
    )
    cross = reference.reference_cross_diversity(
        model, tokenizer, texts, texts, batch_size=4, n_batches=2, epochs=0, random_state=0
    )
    assert cross.distances.shape == (2, 2) and cross.embeddings.shape == (4, 144)
    assert cross.coefficient == pytest.approx(cross.distances.mean())


def test_several_layouts_come_from_one_fisher_pass(texts, tokenizer):
    """A sequence of layouts gives each layout's embedding of the same squared gradients: the
    same as one call per layout under the same random state (dropout and labels included)."""
    model = tiny_gpt2(tokenizer, dropout=0.1)
    both = reference.reference_batch_embedding(
        model, tokenizer, texts[:4], epochs=1, filters=("package", "reference"), random_state=3
    )
    assert isinstance(both, list) and len(both) == 2
    for layout, embedding in zip(("package", "reference"), both):
        alone = reference.reference_batch_embedding(
            model, tokenizer, texts[:4], epochs=1, filters=layout, random_state=3
        )
        np.testing.assert_allclose(embedding, alone, rtol=1e-6)
    assert len(both[0]) != len(both[1])


def test_refusals(texts, tokenizer):
    model = tiny_gpt2(tokenizer)
    with pytest.raises(ValueError, match="filters must be one of"):
        reference.reference_batch_embedding(model, tokenizer, texts[:2], filters="all")
    with pytest.raises(ValueError, match="filters must be one of"):
        reference.reference_batch_embedding(model, tokenizer, texts[:2], filters=("package", "all"))
    with pytest.raises(ValueError, match="empty sequence"):
        reference.reference_batch_embedding(model, tokenizer, texts[:2], filters=())
    with pytest.raises(TypeError, match="causal language model with an output layer"):
        reference.reference_batch_embedding(model.transformer, tokenizer, texts[:2])
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="has no pad_token"):
        reference.reference_batch_embedding(model, no_pad, texts[:2])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        reference.reference_batch_embedding(model, tokenizer, texts[:2], batch_size=0)
    with pytest.raises(ValueError, match="at least 2 batches"):
        reference.reference_diversity(model, tokenizer, texts, batch_size=4, n_batches=1)
