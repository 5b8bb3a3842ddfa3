"""Synthetic text: the Markov-chain corpora and the word-level tokenizer of ``datasets``.

The corpora are checked against the chains they are drawn from (transition frequencies,
start distribution, nested concepts, disjoint vocabularies) and against the property the
diversity experiments rely on, with a model-free proxy: batches of a corpus differ more, the
more concepts and the larger the vocabulary. The tokenizer is checked by round trips.
"""

import sys
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from sklearn_task2vec.datasets import (
    BOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    _dirichlet_rows,
    _markov_paths,
    markov_text_corpus,
    word_level_tokenizer,
)

transformers = pytest.importorskip("transformers")


def corpus(n_concepts=3, **kwargs):
    options = {"vocab_size": 12, "n_texts": 40, "text_length": 9, "random_state": 0, **kwargs}
    return markov_text_corpus(n_concepts, **options)


def bigram_frequencies(texts, vocab_size, prefix="w"):
    """The (vocab_size, vocab_size) frequencies of the word pairs in ``texts``."""
    counts = np.zeros((vocab_size, vocab_size))
    for text in texts:
        indices = [int(word[len(prefix) :]) for word in text.split()]
        np.add.at(counts, (indices[:-1], indices[1:]), 1)
    return counts / counts.sum()


def total_variation(p, q):
    return 0.5 * np.abs(p - q).sum()


# ----------------------------------------------------------------------------- the corpus
def test_corpus_has_the_asked_shape_and_words():
    texts, concepts = corpus(4, vocab_size=7, n_texts=25, text_length=6, return_concepts=True)
    assert isinstance(texts, list) and len(texts) == 25
    assert all(isinstance(text, str) for text in texts)
    for text in texts:
        words = text.split(" ")
        assert len(words) == 6  # single spaces, no leading or trailing one
        assert all(word.startswith("w") and 0 <= int(word[1:]) < 7 for word in words)
    assert concepts.dtype == np.int64 and concepts.shape == (25,)
    assert concepts.min() >= 0 and concepts.max() < 4


def test_corpus_is_deterministic_for_an_integer_seed():
    assert corpus(random_state=3) == corpus(random_state=3)
    assert corpus(random_state=3) != corpus(random_state=4)
    rng = np.random.RandomState(5)  # a RandomState is accepted and advanced
    assert corpus(random_state=rng) != corpus(random_state=rng)


def test_concepts_are_drawn_uniformly():
    _, concepts = corpus(4, n_texts=4000, text_length=1, return_concepts=True)
    counts = np.bincount(concepts, minlength=4)
    # Each count is Binomial(4000, 1/4): standard deviation about 27.
    assert np.all(np.abs(counts - 1000) < 5 * 27), counts


def test_texts_follow_their_concepts_chain():
    """Word pairs of one concept's texts have its chain's frequencies; another concept's differ."""
    vocab_size, seed = 6, 11
    texts, concepts = markov_text_corpus(
        2,
        vocab_size=vocab_size,
        n_texts=3000,
        text_length=20,
        concentration=0.3,
        return_concepts=True,
        random_state=seed,
    )
    first = bigram_frequencies([t for t, c in zip(texts, concepts) if c == 0], vocab_size)
    second = bigram_frequencies([t for t, c in zip(texts, concepts) if c == 1], vocab_size)
    # The same chains in a corpus of 3 concepts (nested: drawn from per-concept streams).
    again, again_concepts = markov_text_corpus(
        3,
        vocab_size=vocab_size,
        n_texts=4500,
        text_length=20,
        concentration=0.3,
        return_concepts=True,
        random_state=seed,
    )
    first_again = bigram_frequencies([t for t, c in zip(again, again_concepts) if c == 0], vocab_size)
    assert total_variation(first, first_again) < 0.05
    assert total_variation(first, second) > 0.3


def test_transition_sampling_matches_the_chain():
    rng = np.random.default_rng(0)
    start = np.array([0.5, 0.0, 0.3, 0.2])
    transitions = np.array(
        [
            [0.1, 0.6, 0.3, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.25, 0.25, 0.25, 0.25],
            [0.7, 0.0, 0.0, 0.3],
        ]
    )
    paths = _markov_paths(start, transitions, 20000, 6, rng)
    assert paths.shape == (20000, 6) and paths.dtype == np.int64
    np.testing.assert_allclose(np.bincount(paths[:, 0], minlength=4) / 20000, start, atol=0.015)
    counts = np.zeros((4, 4))
    np.add.at(counts, (paths[:, :-1].ravel(), paths[:, 1:].ravel()), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), transitions, atol=0.015)
    # Impossible moves never happen, even at the edges of the rows.
    assert counts[0, 3] == counts[1, :3].sum() == counts[3, 1:3].sum() == 0


def test_a_deterministic_chain_is_followed_exactly():
    cycle = np.roll(np.eye(5), 1, axis=1)  # i -> i + 1 (mod 5)
    start = np.eye(5)[4]
    paths = _markov_paths(start, cycle, 3, 7, np.random.default_rng(0))
    np.testing.assert_array_equal(paths, np.tile([4, 0, 1, 2, 3, 4, 0], (3, 1)))


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 0.5, 5.0])
def test_dirichlet_rows_are_distributions_with_the_dirichlet_moments(alpha):
    n_columns = 4
    rows = _dirichlet_rows(np.random.default_rng(1), alpha, 40000, n_columns)
    assert np.isfinite(rows).all() and (rows >= 0).all()
    np.testing.assert_allclose(rows.sum(1), 1.0)
    # Symmetric Dirichlet: mean 1/n, variance (1/n)(1 - 1/n) / (n alpha + 1).
    np.testing.assert_allclose(rows.mean(0), 1 / n_columns, atol=0.01)
    variance = (1 / n_columns) * (1 - 1 / n_columns) / (n_columns * alpha + 1)
    np.testing.assert_allclose(rows.var(0), variance, rtol=0.05)


def test_vanishing_concentrations_give_one_hot_rows():
    """Where every gamma variate underflows, a row is one outcome, drawn in proportion to alpha."""
    rows = _dirichlet_rows(np.random.default_rng(3), np.array([1e-320, 3e-320]), 8000, 2)
    assert set(np.unique(rows)) == {0.0, 1.0} and (rows.sum(1) == 1).all()
    assert rows[:, 1].mean() == pytest.approx(0.75, abs=0.02)
    texts = corpus(1, vocab_size=6, n_texts=3, concentration=1e-300)
    successors = {}
    for text in texts:
        words = text.split()
        for first, second in zip(words[:-1], words[1:]):
            assert successors.setdefault(first, second) == second  # a deterministic chain


def test_tiny_concentrations_give_sparse_chains():
    """A word has fewer distinct successors under a small concentration than under a large one."""

    def successors_per_word(concentration):
        texts = corpus(1, vocab_size=30, n_texts=200, text_length=30, concentration=concentration)
        pairs = {pair for text in texts for pair in zip(text.split()[:-1], text.split()[1:])}
        return len(pairs) / len({first for first, _ in pairs})

    sparse, dense = successors_per_word(1e-4), successors_per_word(10.0)
    assert sparse < 2.0 < 20.0 < dense


def word_frequencies(texts, vocab_size):
    counts = np.zeros(vocab_size)
    for text in texts:
        np.add.at(counts, [int(word[1:]) for word in text.split()], 1)
    return counts / counts.sum()


def test_topics_give_each_concept_its_own_words():
    """With a small topic concentration, two concepts' word frequencies differ and each uses a
    small part of the vocabulary; without topics, they spread over it alike."""

    def concepts_frequencies(topic_concentration):
        texts, concepts = corpus(
            2,
            vocab_size=100,
            n_texts=600,
            text_length=30,
            topic_concentration=topic_concentration,
            return_concepts=True,
        )
        return [word_frequencies([t for t, c in zip(texts, concepts) if c == k], 100) for k in (0, 1)]

    first, second = concepts_frequencies(0.05)
    assert total_variation(first, second) > 0.8
    assert max(np.sum(first > 0.001), np.sum(second > 0.001)) < 40
    first, second = concepts_frequencies(None)
    assert total_variation(first, second) < 0.4
    assert min(np.sum(first > 0.001), np.sum(second > 0.001)) > 90


def test_dirichlet_rows_take_one_parameter_per_outcome():
    alpha = np.array([0.5, 1.0, 2.5, 0.0])  # a parameter 0: a word its topic never uses
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero
        rows = _dirichlet_rows(np.random.default_rng(2), alpha, 40000, 4)
    np.testing.assert_allclose(rows.sum(1), 1.0)
    assert (rows[:, 3] == 0).all()
    np.testing.assert_allclose(rows.mean(0), alpha / alpha.sum(), atol=0.01)


def test_word_prefixes_give_disjoint_vocabularies():
    first = {word for text in corpus(word_prefix="a") for word in text.split()}
    second = {word for text in corpus(word_prefix="b") for word in text.split()}
    assert first and second and not first & second
    assert all(word.startswith("a") for word in first)


def batch_distance(n_concepts, vocab_size, counts, n_pairs=12, batch_size=32, seed=0, **options):
    """Mean cosine distance between the word-pair (``counts=bigram_frequencies``) or word
    (``word_frequencies``) counts of two disjoint random batches: a model-free proxy of the
    diversity coefficient."""
    texts = markov_text_corpus(
        n_concepts,
        vocab_size=vocab_size,
        n_texts=2 * n_pairs * batch_size,
        text_length=20,
        random_state=seed,
        **options,
    )
    order = np.random.default_rng(seed).permutation(len(texts))
    distances = []
    for pair in range(n_pairs):
        batches = order[2 * pair * batch_size : 2 * (pair + 1) * batch_size].reshape(2, batch_size)
        a, b = (counts([texts[i] for i in batch], vocab_size).ravel() for batch in batches)
        distances.append(1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return np.mean(distances)


def test_batches_differ_more_with_more_concepts_and_larger_vocabularies():
    by_concepts = [batch_distance(k, 20, bigram_frequencies) for k in (1, 2, 8)]
    assert by_concepts[0] < by_concepts[1] < by_concepts[2], by_concepts
    by_vocabulary = [batch_distance(2, v, bigram_frequencies) for v in (10, 40, 160)]
    assert by_vocabulary[0] < by_vocabulary[1] < by_vocabulary[2], by_vocabulary


def test_word_counts_differ_with_the_concepts_only_with_topics():
    """What the Notes say: without topics the concepts share their word frequencies, so a
    batch's word counts hardly depend on how many concepts it mixes; with topics they do."""
    plain = [batch_distance(k, 100, word_frequencies) for k in (1, 8)]
    assert abs(plain[1] - plain[0]) < 0.25 * plain[0], plain
    topics = [batch_distance(k, 100, word_frequencies, topic_concentration=0.1) for k in (1, 2, 8)]
    assert topics[0] < topics[1] < topics[2] and topics[2] > 3 * topics[0], topics


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"n_concepts": 0}, ValueError, "'n_concepts' parameter"),
        ({"n_concepts": True}, ValueError, "'n_concepts' parameter"),
        ({"vocab_size": 0}, ValueError, "'vocab_size' parameter"),
        ({"n_texts": 2.5}, TypeError, "'n_texts' parameter"),
        ({"text_length": -1}, ValueError, "'text_length' parameter"),
        ({"concentration": 0.0}, ValueError, "'concentration' parameter"),
        ({"concentration": float("nan")}, ValueError, "'concentration' parameter"),
        ({"concentration": float("inf")}, ValueError, "'concentration' parameter"),
        ({"concentration": "0.1"}, TypeError, "'concentration' parameter"),
        ({"topic_concentration": 0}, ValueError, "'topic_concentration' parameter"),
        ({"word_prefix": ""}, ValueError, "word_prefix must be a non-empty string without whitespace"),
        ({"word_prefix": "w "}, ValueError, "word_prefix must be a non-empty string without whitespace"),
        ({"word_prefix": 1}, TypeError, "'word_prefix' parameter"),
        ({"random_state": "seed"}, ValueError, "'random_state' parameter"),
    ],
)
def test_corpus_refuses_bad_arguments(arguments, error, message):
    options = {"n_concepts": 2, "vocab_size": 5, "n_texts": 3, "text_length": 4, **arguments}
    n_concepts = options.pop("n_concepts")
    with pytest.raises(error, match=message):
        markov_text_corpus(n_concepts, **options)


# -------------------------------------------------------------------------- the tokenizer
def test_tokenizer_round_trips_the_corpus():
    texts = corpus(3, vocab_size=15, n_texts=60)
    tokenizer = word_level_tokenizer(texts)
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    words = {word for text in texts for word in text.split()}
    assert len(tokenizer) == len(words) + 3
    assert tokenizer.convert_ids_to_tokens([0, 1, 2]) == [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id) == (0, 1, 2)
    for text, ids in zip(texts, tokenizer(texts)["input_ids"]):
        assert ids[0] == tokenizer.bos_token_id
        assert all(3 <= i < len(tokenizer) for i in ids[1:])  # no [UNK]: every word is known
        assert tokenizer.convert_ids_to_tokens(ids[1:]) == text.split()
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_ranks_words_by_frequency_whatever_the_texts_order():
    texts = ["c a b a", "b a", "d"]  # a: 3, b: 2, c: 1, d: 1 (c before d as strings)
    tokenizer = word_level_tokenizer(texts)
    assert tokenizer.convert_ids_to_tokens(list(range(3, 7))) == ["a", "b", "c", "d"]
    assert word_level_tokenizer(texts[::-1]).get_vocab() == tokenizer.get_vocab()


def test_max_vocab_keeps_the_most_frequent_words():
    tokenizer = word_level_tokenizer(["c a b a", "b a", "d"], max_vocab=2)
    assert len(tokenizer) == 5
    ids = tokenizer("a b c d x")["input_ids"]
    assert ids == [2, 3, 4, 1, 1, 1]


def test_padding_is_on_the_right_with_the_pad_token():
    tokenizer = word_level_tokenizer(["a b c", "a"])
    encoded = tokenizer(["a b c", "a"], padding=True)
    assert encoded["input_ids"][1][2:] == [0, 0]
    assert encoded["attention_mask"] == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_tokenizer_options():
    plain = word_level_tokenizer(["a b"], add_bos=False, model_max_length=16)
    assert plain("a b")["input_ids"] == [3, 4]
    assert plain.model_max_length == 16
    truncated = word_level_tokenizer(["a b c"])("a b c", truncation=True, max_length=2)["input_ids"]
    assert truncated == [2, 3]


def test_words_are_split_on_whitespace_only():
    tokenizer = word_level_tokenizer(["don't w-1\tx\ny"])
    assert tokenizer.convert_ids_to_tokens(tokenizer("don't w-1")["input_ids"][1:]) == ["don't", "w-1"]
    assert len(tokenizer) == 3 + 4


def test_tokenizer_saves_and_loads(tmp_path):
    texts = corpus(2)
    tokenizer = word_level_tokenizer(texts)
    tokenizer.save_pretrained(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert loaded.pad_token_id == 0 and loaded.bos_token_id == 2


def test_tokenizer_ids_fit_a_language_model_of_its_size(one_thread):
    texts = corpus(2, vocab_size=30, n_texts=8)
    tokenizer = word_level_tokenizer(texts)
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=len(tokenizer)
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (8, 10, len(tokenizer)) and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("texts", "error", "message"),
    [
        ("a b c", TypeError, "sequence of strings, got a single str"),
        (3, TypeError, "sequence of strings, got int"),
        (["a", 3], TypeError, "text 1 is int"),
        ([], ValueError, "hold no word"),
        (["", "  \n"], ValueError, r"hold no word \(2 texts"),
        (["a [PAD] b"], ValueError, r"hold \[PAD\], spelled as a special token"),
    ],
)
def test_tokenizer_refuses_bad_texts(texts, error, message):
    with pytest.raises(error, match=message):
        word_level_tokenizer(texts)


def test_tokenizer_refuses_bad_options():
    with pytest.raises(ValueError, match="'max_vocab' parameter"):
        word_level_tokenizer(["a"], max_vocab=0)
    with pytest.raises(TypeError, match="'add_bos' parameter"):
        word_level_tokenizer(["a"], add_bos="yes")


def test_tokenizer_without_transformers_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match=r"pip install 'sklearn-task2vec\[text\]'"):
        word_level_tokenizer(["a b"])


def test_counts_are_what_the_vocabulary_holds():
    texts = corpus(2, vocab_size=9, n_texts=30)
    counts = Counter(word for text in texts for word in text.split())
    vocabulary = word_level_tokenizer(texts).get_vocab()
    assert set(vocabulary) == set(counts) | {PAD_TOKEN, UNK_TOKEN, BOS_TOKEN}
    ranked = sorted(counts, key=lambda word: vocabulary[word])
    assert [counts[word] for word in ranked] == sorted(counts.values(), reverse=True)
