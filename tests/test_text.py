"""Text tasks: Hugging Face probes, text classification and language modelling.

The rows are checked against a brute-force oracle that differentiates the user's model itself
(``torch.func`` Jacobians of every label slot's logits, one unpadded example at a time, in
float64): a text classification task's row is the mean over its texts of ``diag(J^T (diag p -
p p^T) J)``, a language-modelling task's the mean over its texts of that sum over every token
that has a next token (the per-sequence Fisher).
"""

import warnings

import numpy as np
import pytest
import torch

from sklearn_task2vec import FisherTaskEmbedder, _fisher, _pipeline
from sklearn_task2vec.probes import TransformersBody

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

VOCABULARY = [f"w{index}" for index in range(12)]


@pytest.fixture(scope="module")
def tokenizer():
    words = ["[UNK]", "[PAD]", *VOCABULARY]
    model = tokenizers.models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )


def _gpt2():
    config = transformers.GPT2Config(
        n_layer=2, n_embd=8, n_head=2, vocab_size=14, n_positions=24, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).double().eval()


def _bert():
    config = transformers.BertConfig(
        vocab_size=14,
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=24,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).double().eval()


def _llama():
    config = transformers.LlamaConfig(
        vocab_size=14,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=24,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).double().eval()


MODELS = {"gpt2": _gpt2, "bert": _bert, "llama": _llama}
CAUSAL = ["gpt2", "llama"]
# Llama's RMSNorm computes in float32 whatever the model's precision: the same text batched and
# alone then differs at float32's rounding, not float64's.
TOLERANCE = {"gpt2": 1e-7, "bert": 1e-7, "llama": 1e-5}


def _texts(n, seed, shortest=1, longest=9):
    rng = np.random.RandomState(seed)
    return [" ".join(rng.choice(VOCABULARY, rng.randint(shortest, longest + 1))) for _ in range(n)]


class HeadSpy:
    """Records the heads the pipeline fits (the oracle differentiates through the same head)."""

    def __init__(self, monkeypatch):
        self.heads = []
        fit = _pipeline.task_head

        def recorded(*args, **kwargs):
            fitted = fit(*args, **kwargs)
            self.heads.append(fitted.head)
            return fitted

        monkeypatch.setattr(_pipeline, "task_head", recorded)


def _filter_parameters(body):
    """``{parameter name: (filter path, axis of the filter's weights)}`` of every Conv1D and
    Linear of a body, as the embedder names them (under ``body.``)."""
    filters = {}
    for path, module in body.named_modules():
        kind = type(module).__name__
        if kind in ("Conv1D", "Linear") and not path.startswith("pooler"):
            # Conv1D stores W transposed, (in, out): a filter is a column.
            filters[f"{path}.weight"] = (f"body.{path}", 0 if kind == "Conv1D" else 1)
    return filters


def oracle_rows(model, head, tokens, *, kind, pooling="mean"):
    """The per-example (per-sequence) Fisher rows of ``tokens`` (n, 2, length), brute force."""
    body = model.base_model
    params = {name: parameter.detach() for name, parameter in body.named_parameters()}
    filters = _filter_parameters(body)
    chosen = {name: params[name] for name in filters}
    linear = head.linear

    def logits(weights, ids):
        hidden = torch.func.functional_call(body, {**params, **weights}, kwargs={"input_ids": ids[None]})
        states = hidden.last_hidden_state[0]
        if kind == "next_token":
            return linear(states[:-1])
        pooled = {"mean": states.mean(0), "first": states[0], "last": states[-1]}[pooling]
        return linear(pooled)[None]

    rows = []
    for example in tokens:
        ids = example[0, : int(example[1].sum())]  # the text alone, unpadded
        if kind == "next_token" and len(ids) < 2:  # no next token: no slot, a zero row
            rows.append(
                {path: torch.zeros(params[name].shape[1 - axis]) for name, (path, axis) in filters.items()}
            )
            continue
        jacobians = torch.func.jacrev(logits)(chosen, ids)
        with torch.no_grad():
            probs = torch.softmax(logits(chosen, ids), dim=1)
        metric = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)
        row = {}
        for name, (path, axis) in filters.items():
            jacobian = jacobians[name].flatten(2)  # (slots, classes, weights)
            diagonal = torch.einsum("scw,scd,sdw->w", jacobian, metric, jacobian)
            row[path] = diagonal.view(params[name].shape).mean(axis)
        rows.append(row)
    return rows


def _row(rows, names):
    """The mean of per-example oracle rows, in the embedder's feature order."""
    mean = {path: torch.stack([row[path] for row in rows]).mean(0) for path in rows[0]}
    by_name = {
        f"{path}:{index}": float(value) for path, values in mean.items() for index, value in enumerate(values)
    }
    return np.array([by_name[name] for name in names])


def _tokens(embedder, texts):
    encoded = embedder.tokenizer_(texts)
    length = max(len(ids) for ids in encoded["input_ids"])
    tokens = torch.zeros(len(texts), 2, length, dtype=torch.long)
    for index, ids in enumerate(encoded["input_ids"]):
        tokens[index, 0, : len(ids)] = torch.tensor(ids)
        tokens[index, 1, : len(ids)] = 1
    return tokens


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("pooling", ["mean", "first", "last"])
def test_text_classification_rows_equal_the_oracle(name, pooling, tokenizer, monkeypatch, one_thread):
    model = MODELS[name]()
    texts = _texts(10, seed=1)
    labels = np.arange(10) % 3
    spy = HeadSpy(monkeypatch)
    embedder = FisherTaskEmbedder(
        model, tokenizer=tokenizer, pooling=pooling, method="exact", batch_size=4, head_weight_decay=0.1
    )
    row = embedder.fit_transform([(texts, labels)])[0]
    expected = _row(
        oracle_rows(model, spy.heads[0], _tokens(embedder, texts), kind="pooled", pooling=pooling),
        embedder.get_feature_names_out(),
    )
    np.testing.assert_allclose(row, expected, rtol=TOLERANCE[name], atol=1e-14 * np.abs(expected).max())


@pytest.mark.parametrize("name", CAUSAL)
def test_language_modelling_rows_equal_the_per_sequence_oracle(name, tokenizer, monkeypatch, one_thread):
    model = MODELS[name]()
    texts = _texts(6, seed=2)
    spy = HeadSpy(monkeypatch)
    embedder = FisherTaskEmbedder(model, tokenizer=tokenizer, method="exact", batch_size=4, head_epochs=5)
    row = embedder.fit_transform([(texts, None)])[0]
    expected = _row(
        oracle_rows(model, spy.heads[0], _tokens(embedder, texts), kind="next_token"),
        embedder.get_feature_names_out(),
    )
    np.testing.assert_allclose(row, expected, rtol=TOLERANCE[name], atol=1e-14 * np.abs(expected).max())
    # The head starts at the model's own output layer and the model is not changed: its output
    # layer (GPT-2's tied to its input embeddings) has the weights it had.
    assert torch.equal(model.lm_head.weight, MODELS[name]().lm_head.weight)
    if name == "gpt2":
        assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("large", [False, True], ids=["multinomial", "inverse CDF"])
def test_language_modelling_montecarlo_is_unbiased(large, tokenizer, monkeypatch, one_thread):
    """The mean of Monte Carlo rows (one next token drawn per position, the square of the
    summed scores) converges to the exact per-sequence Fisher: the cross terms vanish. Both
    ways of drawing: torch.multinomial, and the inverse CDF used over large vocabularies."""
    if large:
        monkeypatch.setattr(_fisher, "_FLOAT64_LOGITS", 0)
    model = _gpt2()
    task = [(_texts(4, seed=3, shortest=4), None)]
    common = dict(tokenizer=tokenizer, batch_size=4, head_epochs=3)
    exact = FisherTaskEmbedder(model, method="exact", **common).fit_transform(task)[0]
    draws = np.array(
        [
            FisherTaskEmbedder(model, method="montecarlo", random_state=seed, **common).fit_transform(task)[0]
            for seed in range(48)
        ]
    )
    one = np.linalg.norm(draws[0] - exact) / np.linalg.norm(exact)
    mean = np.linalg.norm(draws.mean(0) - exact) / np.linalg.norm(exact)
    assert mean < 0.1, f"48 draws average to {mean:.3f} of the exact row, relative"
    assert mean < one / 3, "averaging draws converges (the estimator is unbiased, not just noisy)"


def test_label_draws_average_the_squares_of_independent_draws(tokenizer, monkeypatch, one_thread):
    """``label_draws=k`` is the mean of ``k`` one-draw rows, each the square of the summed
    scores of one fresh draw of every position's next token (recorded, then replayed one at a
    time into a one-draw embedder)."""
    model = _gpt2()
    task = [(_texts(4, seed=3, shortest=4), None)]
    common = dict(tokenizer=tokenizer, batch_size=4, head_epochs=3, method="montecarlo", random_state=0)
    drawn = []
    sample = _fisher.sampled_logit_directions

    def record(probs, generator):
        drawn.append(sample(probs, generator))
        return drawn[-1].clone()

    monkeypatch.setattr(_fisher, "sampled_logit_directions", record)
    averaged = FisherTaskEmbedder(model, label_draws=3, **common).fit_transform(task)[0]
    assert len(drawn) == 3, "one batch, three draws"
    assert all(not torch.equal(drawn[0], other) for other in drawn[1:]), "independent draws"
    replayed = []
    for directions in drawn:
        monkeypatch.setattr(
            _fisher, "sampled_logit_directions", lambda probs, generator, fixed=directions: fixed.clone()
        )
        replayed.append(FisherTaskEmbedder(model, **common).fit_transform(task)[0])
    np.testing.assert_allclose(averaged, np.mean(replayed, 0), rtol=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_rows_do_not_depend_on_padding_or_batch_size(name, tokenizer, one_thread):
    model = MODELS[name]()
    texts = _texts(9, seed=4, shortest=2)
    labels = np.arange(9) % 2
    encoded = tokenizer(texts, padding="max_length", max_length=20)
    tasks = [(texts, labels), (texts, None)] if name in CAUSAL else [(texts, labels)]
    padded = [(dict(encoded), labels), (dict(encoded), None)][: len(tasks)]
    rows = {}
    for batch_size in (1, 4, 64):
        embedder = FisherTaskEmbedder(
            model, tokenizer=tokenizer, method="exact", batch_size=batch_size, head_epochs=5
        )
        rows[batch_size] = embedder.fit_transform(tasks)
        rows[batch_size, "padded"] = embedder.transform(padded)
    reference = rows[1]
    for key, value in rows.items():
        np.testing.assert_allclose(
            value, reference, rtol=TOLERANCE[name] / 10, err_msg=f"batch_size, padding: {key}"
        )


def test_the_bert_pooler_is_left_out_with_its_reason(tokenizer, one_thread):
    embedder = FisherTaskEmbedder(_bert(), tokenizer=tokenizer, method="exact", head_epochs=3)
    embedder.fit([(_texts(4, seed=5), [0, 1, 0, 1])])
    assert "body.pooler.dense" not in embedder.embedded_layers_
    assert "does not reach the probe's output" in embedder.left_out_layers_["body.pooler.dense"]
    assert len(embedder.embedded_layers_) == 12, "six Linear layers per block"


def test_a_probe_is_loaded_by_name_from_a_folder(tmp_path, tokenizer, one_thread):
    model = _gpt2().float()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    texts = _texts(8, seed=6)
    by_name = FisherTaskEmbedder(f"hf:{tmp_path}", method="exact", head_epochs=3, random_state=0)
    by_instance = FisherTaskEmbedder(
        model, tokenizer=tokenizer, method="exact", head_epochs=3, random_state=0
    )
    tasks = [(texts, np.arange(8) % 2), (texts, None)]
    np.testing.assert_allclose(by_name.fit_transform(tasks), by_instance.fit_transform(tasks), rtol=1e-6)
    assert by_name.provenance_.probe == f"hf:{tmp_path}"
    assert isinstance(by_name.probe_, TransformersBody)


def test_an_unreachable_name_says_what_to_do_offline(monkeypatch):
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match=r"(?s)'some-org/no-such-model'.*offline.*save_pretrained"):
        FisherTaskEmbedder("hf:some-org/no-such-model").fit([(["w1 w2"], [0])])


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ((["w1 w2", ""], [0, 1]), r"task 0: example 1 has no tokens"),
        (
            ({"input_ids": [[0, 3, 4], [0, 3, 4]], "attention_mask": [[0, 1, 1], [1, 1, 1]]}, [0, 1]),
            r"padded on the left",
        ),
        (({"input_ids": [[3, -4]]}, [0]), r"negative token ids"),
        ((["w1 w2", 3], [0, 1]), r"example 1 is int, not a string"),
        ((["w1", "w2"], None), r"no text .* has two tokens or more"),
        ((np.zeros((3, 4)), None), r"labels are None.*language-modelling"),
    ],
)
def test_bad_text_is_refused_naming_the_task(task, message, tokenizer):
    embedder = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, head_epochs=1)
    embedder.fit([(["w1 w2 w3"], [0])])
    with pytest.raises((ValueError, TypeError), match=message):
        embedder.transform([task])


def test_text_without_a_tokenizer_is_refused():
    with pytest.raises(ValueError, match=r"task 0 holds text, but the embedder has no tokenizer"):
        FisherTaskEmbedder(_gpt2()).fit([(["w1 w2"], [0])])


def test_language_modelling_needs_a_causal_language_model(tokenizer, monkeypatch, one_thread):
    embedder = FisherTaskEmbedder(_bert(), tokenizer=tokenizer, head_epochs=1)
    spy = HeadSpy(monkeypatch)
    tasks = [(_texts(4, seed=7), [0, 1, 0, 1]), (_texts(4, seed=7, shortest=3), None)]
    with pytest.raises(
        ValueError, match=r"task 1 is a language-modelling task.*BertModel has no language-modelling head"
    ):
        embedder.fit_transform(tasks)
    assert spy.heads == [], "refused before any task is embedded"
    embedder.set_params(on_error="warn")
    with pytest.warns(UserWarning, match=r"Task 1 failed.*language-modelling head"):
        rows = embedder.fit_transform(tasks)
    assert np.isfinite(rows[0]).all() and np.isnan(rows[1]).all()


def test_variational_refuses_language_modelling(tokenizer, one_thread):
    embedder = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, method="variational", head_epochs=1)
    with pytest.raises(ValueError, match=r"method='variational' takes tasks with one label per example"):
        embedder.fit_transform([(_texts(4, seed=8, shortest=3), None)])


def test_a_text_array_given_as_one_task_says_how_to_pass_it(tokenizer):
    with pytest.raises(TypeError, match=r"X is text: a text task goes in a sequence of tasks"):
        FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer).fit(["w1 w2", "w3"], [0, 1])


def test_texts_are_truncated_to_the_positions_the_model_has(tokenizer, one_thread):
    long_text = " ".join(["w1"] * 40)  # more tokens than n_positions=24
    embedder = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, method="exact", head_epochs=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = embedder.fit_transform([([long_text, "w2 w3"], [0, 1])])
    assert np.isfinite(rows).all()
    short = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, method="exact", head_epochs=2, max_length=24)
    np.testing.assert_allclose(short.fit_transform([([" ".join(["w1"] * 24), "w2 w3"], [0, 1])]), rows)


def test_exact_is_refused_above_the_class_limit_for_a_large_vocabulary(tokenizer, one_thread):
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=1001, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    embedder = FisherTaskEmbedder(model, tokenizer=tokenizer, method="exact", head_epochs=1)
    with pytest.raises(ValueError, match=r"task 0: method='exact' on 1001 classes"):
        embedder.fit_transform([(_texts(3, seed=9, shortest=3), None)])


def test_text_tasks_fan_out_to_workers_with_the_same_rows(tokenizer, one_thread):
    model = _gpt2()
    tasks = [
        (_texts(6, seed=10 + index, shortest=2), None if index % 2 else np.arange(6) % 2)
        for index in range(4)
    ]
    common = dict(tokenizer=tokenizer, method="exact", head_epochs=3, random_state=0)
    sequential = FisherTaskEmbedder(model, **common).fit_transform(tasks)
    parallel = FisherTaskEmbedder(model, n_jobs=2, **common).fit_transform(tasks)
    np.testing.assert_allclose(parallel, sequential, rtol=1e-12)


def test_text_from_a_dataset_says_how_to_pass_it(tokenizer):
    from torch.utils.data import DataLoader

    loader = DataLoader(list(zip(_texts(4, seed=11), [0, 1, 0, 1])), batch_size=2)
    embedder = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, head_epochs=1)
    embedder.fit([(["w1 w2 w3"], [0])])
    with pytest.raises(TypeError, match=r"task 0.*yield text; a text task is a \(texts, labels\) pair"):
        embedder.transform([loader])


def test_the_cache_tells_a_language_modelling_task_from_a_one_class_one(tokenizer, tmp_path, one_thread):
    texts = _texts(5, seed=12, shortest=3)
    embedder = FisherTaskEmbedder(
        _gpt2(), tokenizer=tokenizer, head_epochs=2, random_state=0, memory=tmp_path
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-class task's warning
        one_class, language_modelling = embedder.fit_transform(
            [(texts, np.zeros(5, dtype=int)), (texts, None)]
        )
    assert not one_class.any() and language_modelling.all()
    fresh = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, head_epochs=2, random_state=0)
    np.testing.assert_allclose(language_modelling, fresh.fit_transform([(texts, None)])[0])


def test_the_record_names_the_tokenizer_and_max_length(tokenizer, one_thread):
    embedder = FisherTaskEmbedder(_gpt2(), tokenizer=tokenizer, head_epochs=1).fit([(["w1 w2"], [0])])
    record = embedder.provenance_
    assert record.tokenizer.startswith(f"{type(tokenizer).__name__}(") and "sha256:" in record.tokenizer
    other = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]", pad_token="[PAD]", model_max_length=7
    )
    changed = FisherTaskEmbedder(_gpt2(), tokenizer=other, head_epochs=1).fit([(["w1 w2"], [0])])
    assert changed.provenance_.tokenizer != record.tokenizer, "its length limit changes the rows"
    embedder.set_params(max_length=5)
    assert embedder.provenance_.settings.max_length == 5


@pytest.mark.parametrize("large", [False, True], ids=["multinomial", "inverse CDF"])
def test_sampled_labels_follow_the_model(large, monkeypatch):
    if large:
        monkeypatch.setattr(_fisher, "_FLOAT64_LOGITS", 0)
    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 1.0]]).repeat(20000, 1)
    directions = _fisher.sampled_logit_directions(probs.clone(), torch.Generator().manual_seed(0))[:, :, 0]
    drawn = directions + probs  # the one-hot labels
    assert torch.equal(drawn.sum(1), torch.ones(40000)), "one label per row"
    frequencies = drawn.view(20000, 2, 4).mean(0)
    np.testing.assert_allclose(frequencies[0], [0.5, 0.3, 0.2, 0.0], atol=0.01)
    assert torch.equal(frequencies[1], torch.tensor([0.0, 0.0, 0.0, 1.0])), "never a class of probability 0"
