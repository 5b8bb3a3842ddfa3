"""The task2vec command line on text: embed .jsonl files and folders of .txt files, diversity.

A tiny GPT-2 and a word-level tokenizer are saved with ``save_pretrained`` and given as
``--probe hf:<folder>``: everything runs offline. Each command's numbers are checked against the
Python API run on the same texts, built here rather than read back by the command's reader.
"""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.cli import main
from sklearn_task2vec.diversity import (
    alignment_coefficient,
    cross_diversity_coefficient,
    diversity_coefficient,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

# Tiny networks: one thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = [f"w{index}" for index in range(12)]


def run(capsys, *argv):
    capsys.readouterr()  # not what the test printed before (the Python API's progress bars)
    status = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err, *fragments):
    """One error line (the notes naming a task's classes may come before it), no traceback."""
    errors = [line for line in err.strip().splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def _texts(n, seed):
    rng = np.random.RandomState(seed)
    return [" ".join(rng.choice(WORDS, rng.randint(2, 8))) for _ in range(n)]


def _write_jsonl(path, records, blank_after=()):
    """One JSON object per line; a blank line after each index in ``blank_after``."""
    with open(path, "w", encoding="utf-8") as file:
        for index, record in enumerate(records):
            file.write(json.dumps(record) + "\n")
            if index in blank_after:
                file.write("\n")
    return path


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """``(model folder, model-only folder, tokenizer folder)``: a tiny GPT-2 saved with its
    word-level tokenizer, the same model saved without one, and the tokenizer alone."""
    root = tmp_path_factory.mktemp("hf")
    words = ["[UNK]", "[PAD]", *WORDS]
    model = tokenizers.models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )
    config = transformers.GPT2Config(
        n_layer=1, n_embd=8, n_head=2, vocab_size=len(words), n_positions=32, bos_token_id=0, eos_token_id=0
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        gpt2 = transformers.GPT2LMHeadModel(config)
    folders = root / "gpt2", root / "gpt2-alone", root / "tokenizer"
    gpt2.save_pretrained(folders[0])
    tokenizer.save_pretrained(folders[0])
    gpt2.save_pretrained(folders[1])
    tokenizer.save_pretrained(folders[2])
    return folders


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """A classification .jsonl file, a language-modelling one and a folder of .txt files, and
    the ``(texts, labels)`` each stands for."""
    root = tmp_path_factory.mktemp("text")
    texts = _texts(12, 0)
    labels = ["neg" if "w1" in text.split() else "pos" for text in texts]
    # Blank lines are not texts; extra fields are not read.
    records = [
        {"text": text, "label": label, "id": index} for index, (text, label) in enumerate(zip(texts, labels))
    ]
    _write_jsonl(root / "reviews.jsonl", records, blank_after=(4,))
    lm_texts = _texts(10, 1)
    _write_jsonl(root / "wiki.jsonl", [{"text": text} for text in lm_texts])
    folder_texts, folder_labels = [], []
    for label, seed in (("fiction", 2), ("news", 3)):  # sorted: the order the folder is read in
        (root / "genres" / label).mkdir(parents=True)
        for index, text in enumerate(_texts(4, seed)):
            # A final line break, as editors write: not part of the text.
            (root / "genres" / label / f"{index:02d}.txt").write_text(text + "\n", encoding="utf-8")
            folder_texts.append(text)
            folder_labels.append(label)
    return root, {
        "reviews": (texts, labels),
        "wiki": (lm_texts, None),
        "genres": (folder_texts, folder_labels),
    }


def test_embed_text_tasks_writes_exactly_the_estimators_rows(probe, tasks, tmp_path, capsys):
    folder, _, _ = probe
    root, data = tasks
    output = tmp_path / "text.npz"
    argv = ["embed", root / "reviews.jsonl", root / "wiki.jsonl", root / "genres"]
    status, out, err = run(capsys, *argv, "--probe", f"hf:{folder}", "-o", output)
    assert status == 0, err
    assert "3 tasks (72 filters each)" in out
    assert f"{root / 'reviews.jsonl'}: 2 classes, 12 texts: neg (" in err
    assert f"{root / 'wiki.jsonl'}: 10 texts without labels: a language-modelling task" in err
    assert f"{root / 'genres'}: 2 classes, 8 texts: fiction (4), news (4)." in err
    embedder = FisherTaskEmbedder(f"hf:{folder}", random_state=0)
    expected = embedder.fit_transform(list(data.values()))
    with np.load(output, allow_pickle=False) as stored:
        assert stored["tasks"].tolist() == ["reviews", "wiki", "genres"]
        np.testing.assert_array_equal(stored["embeddings"], expected)
        assert stored["filters"].tolist() == embedder.get_feature_names_out().tolist()
        np.testing.assert_array_equal(stored["trivial"], embedder.trivial_embedding_)
        # Text is not cut to --image-size: the record says no image size.
        assert str(stored["provenance"]) == embedder.provenance_.to_json()
        assert json.loads(str(stored["provenance"]))["image_size"] is None

    # The CSV file holds the same rows, and `distances` reads it.
    status, _, err = run(capsys, *argv, "--probe", f"hf:{folder}", "-o", tmp_path / "text.csv")
    assert status == 0, err
    status, out, _ = run(capsys, "distances", tmp_path / "text.csv", output)
    assert status == 0 and "reviews (" in out


def test_text_options_reach_the_embedder(probe, tasks, tmp_path, capsys):
    folder, alone, tokenizer = probe
    root, data = tasks
    texts, labels = data["reviews"]
    argv = ["embed", root / "reviews.jsonl", "--pooling", "last", "--max-length", 3]

    status, _, err = run(capsys, *argv, "--probe", f"hf:{folder}", "-o", tmp_path / "last.npz")
    assert status == 0, err
    embedder = FisherTaskEmbedder(f"hf:{folder}", pooling="last", max_length=3, random_state=0)
    expected = embedder.fit_transform([(texts, labels)])
    default = FisherTaskEmbedder(f"hf:{folder}", random_state=0).fit_transform([(texts, labels)])
    assert not np.allclose(expected, default), "the options change the rows"
    with np.load(tmp_path / "last.npz", allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["embeddings"], expected)
        assert json.loads(str(stored["provenance"]))["pooling"] == "last"

    # A model saved without its tokenizer: text needs --tokenizer. (transformers 5 then loads an
    # empty tokenizer, whose texts have no tokens, rather than none: the error says that.)
    status, _, err = run(capsys, *argv, "--probe", f"hf:{alone}", "-o", tmp_path / "alone.npz")
    assert status == 1 and not (tmp_path / "alone.npz").exists()
    assert_one_line_error(err, f"task2vec embed: error: reviews ({root / 'reviews.jsonl'}): ")
    status, _, err = run(
        capsys, *argv, "--probe", f"hf:{alone}", "--tokenizer", tokenizer, "-o", tmp_path / "alone.npz"
    )
    assert status == 0, err
    with np.load(tmp_path / "alone.npz", allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["embeddings"], expected)


@pytest.mark.parametrize(
    "lines, fragment",
    [
        (['{"text": "w1 w2", "label": "a"}', '{"text": "w3", "label": '], "line 2: not valid JSON"),
        (['{"text": "w1 w2", "label": "a"}', "", '{"label": "b"}'], 'line 3: has no "text" field'),
        (['{"text": "w1 w2"}', '{"text": 5}'], "line 2: the text is a number, not a string"),
        (['{"text": ["w1"]}'], "line 1: the text is a list, not a string"),
        (
            ['{"text": "w1", "label": "a"}', '{"text": "w2"}'],
            'line 2: has no "label" field, but line 1 has one',
        ),
        (
            ['{"text": "w1"}', '{"text": "w2"}', '{"text": "w3", "label": "a"}'],
            'line 1: has no "label" field, but line 3 has one',
        ),
        (['{"text": "w1", "label": "a"}', '{"text": "w2", "label": 1}'], 'line 2: the "label" is a number'),
        (['{"text": "w1", "label": null}'], 'line 1: the "label" is null'),
        (['{"text": "w1", "label": ["a"]}'], 'line 1: the "label" is a list'),
        (['{"text": "w1"}', '{"text": "  "}'], "line 2: the text is empty"),
        (['["w1", "a"]'], "line 1: is a list, not a JSON object"),
        (["", "  "], "holds no text"),
    ],
)
def test_bad_jsonl_lines_are_refused_naming_the_file_and_line(probe, tmp_path, capsys, lines, fragment):
    folder, _, _ = probe
    task = tmp_path / "bad.jsonl"
    task.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "e.npz"
    status, _, err = run(capsys, "embed", task, "--probe", f"hf:{folder}", "-o", output)
    assert status == 1 and not output.exists()
    assert_one_line_error(err, "task2vec embed: error:", str(task), fragment)


def test_a_line_that_is_not_utf8_is_named(probe, tmp_path, capsys):
    folder, _, _ = probe
    task = tmp_path / "latin.jsonl"
    task.write_bytes(b'{"text": "w1"}\n{"text": "caf\xe9"}\n')
    status, _, err = run(capsys, "embed", task, "--probe", f"hf:{folder}", "-o", tmp_path / "e.npz")
    assert status == 1
    assert_one_line_error(err, f"{task}, line 2: not UTF-8 text")


def test_bad_text_folders_are_refused_naming_the_folder_or_file(probe, tmp_path, capsys):
    folder, _, _ = probe

    def embed(task):
        return run(capsys, "embed", task, "--probe", f"hf:{folder}", "-o", tmp_path / "e.npz")

    mixed = tmp_path / "mixed"
    (mixed / "cats").mkdir(parents=True)
    (mixed / "reviews").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(mixed / "cats" / "0.png")
    (mixed / "reviews" / "0.txt").write_text("w1 w2")
    status, _, err = embed(mixed)
    assert status == 1
    assert_one_line_error(
        err, f"{mixed}: mixes images and texts: class folder cats holds images, reviews only"
    )

    latin = tmp_path / "latin"
    (latin / "a").mkdir(parents=True)
    (latin / "a" / "0.txt").write_bytes(b"caf\xe9")
    status, _, err = embed(latin)
    assert status == 1
    assert_one_line_error(err, f"{latin / 'a' / '0.txt'}: not UTF-8 text")

    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "a" / "0.txt").write_text("\n")
    status, _, err = embed(empty)
    assert status == 1
    assert_one_line_error(err, f"{empty / 'a' / '0.txt'}: the text is empty")

    hollow = tmp_path / "hollow"
    (hollow / "a").mkdir(parents=True)
    (hollow / "b").mkdir()
    (hollow / "a" / "0.txt").write_text("w1 w2")
    (hollow / "b" / "notes.md").write_text("w1 w2")
    status, _, err = embed(hollow)
    assert status == 1
    assert_one_line_error(err, f"{hollow}: class folder b holds no .txt file")
    assert not (tmp_path / "e.npz").exists()


def test_a_text_folders_texts_are_its_files_and_its_other_files_are_named(
    probe, tmp_path, capsys, monkeypatch
):
    folder, _, _ = probe
    task = tmp_path / "topics"
    files = {
        # A byte-order mark and one final line break (CRLF too) are not part of a text; a second
        # line break is.
        "a/0.txt": b"\xef\xbb\xbfw1 w2\r\n",
        "a/deeper/1.TXT": b"w3 w4 w5\n\n",  # subfolders count for their class, as in ImageFolder
        "b/0.txt": b"w6  w7",
        "b/deeper/1.txt": b"w8\n",
        "a/notes.md": b"not a text example",
        ".hidden/0.txt": b"w1",
        "README": b"outside the class folders",
    }
    for name, content in files.items():
        (task / name).parent.mkdir(parents=True, exist_ok=True)
        (task / name).write_bytes(content)
    seen = []
    fit_transform = FisherTaskEmbedder.fit_transform

    def recording(self, X, y=None, **params):
        seen.extend(X)
        return fit_transform(self, X, y, **params)

    monkeypatch.setattr(FisherTaskEmbedder, "fit_transform", recording)
    status, _, err = run(capsys, "embed", task, "--probe", f"hf:{folder}", "-o", tmp_path / "e.npz")
    assert status == 0, err
    assert f"{task}: skipped 2 files that are not texts (README, a/notes.md)" in err
    assert f"{task}: skipped 1 hidden or system entry: .hidden." in err
    expected = (["w1 w2", "w3 w4 w5\n", "w6  w7", "w8"], ["a", "a", "b", "b"])
    assert seen == [expected]
    monkeypatch.undo()
    rows = FisherTaskEmbedder(f"hf:{folder}", random_state=0).fit_transform([expected])
    with np.load(tmp_path / "e.npz", allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["embeddings"], rows)


def test_probes_and_tasks_of_other_kinds_are_usage_errors(probe, tasks, tmp_path, capsys):
    folder, _, _ = probe
    root, _ = tasks
    np.savez(tmp_path / "features.npz", X=np.zeros((4, 2)), y=[0, 1, 0, 1])
    (tmp_path / "wiki.json").write_text('[{"text": "w1"}]')  # JSON, not JSON Lines
    hf = ["--probe", f"hf:{folder}"]
    cases = [
        (["embed", root / "wiki.jsonl"], "--probe auto: text tasks (", "need a Hugging Face model"),
        (["embed", tmp_path / "features.npz", *hf], "a Hugging Face probe takes text", "features.npz"),
        (["embed", root / "wiki.jsonl", tmp_path / "features.npz", *hf], "is a text task and", "not"),
        (["embed", tmp_path / "features.npz", "--pooling", "first"], "--pooling: for text tasks"),
        (["embed", root / "wiki.jsonl", "--max-length", 4], "--max-length: for text tasks"),
        (["embed", root / "wiki.jsonl", *hf, "--probe-weights", "none"], "--probe-weights none"),
        (["embed", root / "missing.jsonl", *hf], "missing.jsonl: no such file"),
        (["embed", tmp_path / "wiki.json", *hf], "a task is a folder of images or of .txt files"),
    ]
    for argv, *fragments in cases:
        status, _, err = run(capsys, *argv, "-o", tmp_path / "e.npz")
        assert status == 2, (argv, err)
        assert_one_line_error(err, "task2vec embed: error:", *fragments)
    assert not (tmp_path / "e.npz").exists()


def test_images_are_still_read_as_images_beside_a_stray_text_file(tmp_path, capsys):
    task = tmp_path / "shapes"
    for label in ("round", "square"):
        (task / label).mkdir(parents=True)
        for index in range(2):
            pixels = np.full((8, 8, 3), 60 * index + (label == "round") * 100, np.uint8)
            Image.fromarray(pixels).save(task / label / f"{index}.png")
    (task / "round" / "notes.txt").write_text("taken in May")
    status, _, err = run(
        capsys,
        "embed",
        task,
        "--probe",
        "resnet18",
        "--probe-weights",
        "none",
        "--image-size",
        16,
        "-o",
        tmp_path / "e.npz",
    )
    assert status == 0, err
    assert "skipped 1 file that ImageFolder does not read (round/notes.txt)" in err
    assert ".txt files are texts only in a folder whose class folders hold no image" in err
    with np.load(tmp_path / "e.npz", allow_pickle=False) as stored:
        assert json.loads(str(stored["provenance"]))["image_size"] == 16


# --------------------------------------------------------------------------------------
# diversity
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Two .jsonl corpora (the first with a blank line and labels) and their texts."""
    root = tmp_path_factory.mktemp("corpora")
    first = _texts(9, 5)
    rng = np.random.RandomState(6)
    second = [" ".join(rng.choice(WORDS[:4], 5)) for _ in range(10)]  # fewer words: another corpus
    _write_jsonl(
        root / "web.jsonl",
        [{"text": text, "label": index % 2} for index, text in enumerate(first)],
        blank_after=(1,),
    )
    _write_jsonl(root / "books.jsonl", [{"text": text} for text in second])
    return root, first, second


SMALL = {"batch_size": 3, "n_batches": 4, "random_state": 7, "head_epochs": 2}
SMALL_ARGV = ["--batch-size", 3, "--n-batches", 4, "--random-state", 7, "--head-epochs", 2]


def _same_result(record, result):
    assert record["kind"] == result.kind
    assert record["coefficient"] == result.coefficient
    assert record["confidence_interval"] == list(result.confidence_interval)
    assert record["standard_error"] == result.standard_error
    assert record["confidence_level"] == result.confidence_level


def test_diversity_of_one_corpus_is_the_python_functions(probe, corpora, tmp_path, capsys):
    folder, _, _ = probe
    root, first, _ = corpora
    output = tmp_path / "web.json"
    argv = ["diversity", root / "web.jsonl", "--probe", f"hf:{folder}", *SMALL_ARGV]
    status, out, err = run(capsys, *argv, "-o", output)
    assert status == 0, err
    assert f'{root / "web.jsonl"}: its "label" fields (9 of 9 lines) are not used' in err
    expected = diversity_coefficient(first, probe=f"hf:{folder}", **SMALL)
    low, high = expected.confidence_interval
    assert out.splitlines()[0] == (
        f"diversity {expected.coefficient:.4f} (95% CI {low:.4f} to {high:.4f}) over 4 batches of 3 texts"
    )
    record = json.loads(output.read_text())
    assert record["corpora"] == [str(root / "web.jsonl")]
    (result,) = record["results"]
    _same_result(result, expected)
    (batches,) = record["batches"]
    assert batches["indices"] == [batch.tolist() for batch in expected.batches]
    # Line numbers: the blank line after the second text shifts the later ones by one.
    assert batches["lines"] == [[index + 1 + (index >= 2) for index in batch] for batch in expected.batches]
    assert record["settings"] == {
        "probe": f"hf:{folder}",
        "tokenizer": None,
        "batch_size": 3,
        "n_batches": 4,
        "max_length": None,
        "random_state": 7,
        "head_epochs": 2,
        "label_draws": 8,
        "confidence_level": 0.95,
        "device": "auto",
    }

    # Two batches: a coefficient, but no jackknife interval (null in the file, said on the line).
    status, out, err = run(capsys, *argv[:-6], "--n-batches", 2, "-o", tmp_path / "two.json")
    assert status == 0, err
    assert "no 95% CI: the jackknife needs 3 batches or more" in out
    assert json.loads((tmp_path / "two.json").read_text())["results"][0]["standard_error"] is None


def test_cross_diversity_and_alignment_of_two_corpora_are_the_python_functions(
    probe, corpora, tmp_path, capsys
):
    folder, alone, tokenizer = probe
    root, first, second = corpora
    output = tmp_path / "pair.json"
    argv = ["diversity", root / "web.jsonl", root / "books.jsonl", "--probe", f"hf:{alone}"]
    options = ["--tokenizer", tokenizer, "--max-length", 4, "--confidence-level", 0.9, *SMALL_ARGV]
    status, out, err = run(capsys, *argv, *options, "-o", output)
    assert status == 0, err
    common = dict(probe=f"hf:{alone}", tokenizer=str(tokenizer), max_length=4, confidence_level=0.9, **SMALL)
    cross = cross_diversity_coefficient(first, second, **common)
    alignment = alignment_coefficient(first, second, **common)
    lines = out.splitlines()
    assert lines[0].startswith(f"cross-diversity {cross.coefficient:.4f} (90% CI ")
    assert lines[1] == (
        f"alignment {alignment.coefficient:.4f} (90% CI {alignment.confidence_interval[0]:.4f} to "
        f"{alignment.confidence_interval[1]:.4f}) over 4 batches of 3 texts from each corpus"
    )
    record = json.loads(output.read_text())
    assert record["corpora"] == [str(root / "web.jsonl"), str(root / "books.jsonl")]
    _same_result(record["results"][0], cross)
    _same_result(record["results"][1], alignment)
    for stored, batches in zip(record["batches"], alignment.batches):
        assert stored["indices"] == [batch.tolist() for batch in batches]
    assert record["settings"]["max_length"] == 4 and record["settings"]["tokenizer"] == str(tokenizer)
    # --max-length reaches the embedder: without it the coefficient is another.
    status, out, _ = run(capsys, *argv, *options[:2], *SMALL_ARGV)
    assert status == 0 and not out.startswith(f"cross-diversity {cross.coefficient:.4f} ")


def test_diversity_memory_embeds_each_batch_once(probe, corpora, tmp_path, capsys, counted):
    folder, _, _ = probe
    root, _, _ = corpora
    argv = ["diversity", root / "books.jsonl", "--probe", f"hf:{folder}", *SMALL_ARGV]
    argv += ["--memory", tmp_path / "cache"]
    status, first, err = run(capsys, *argv)
    assert status == 0, err
    assert len(counted) == 4
    status, again, err = run(capsys, *argv)
    assert status == 0 and again == first
    assert len(counted) == 4, "the second run read every batch from --memory"


def test_diversity_refuses_bad_arguments(probe, corpora, tmp_path, capsys):
    folder, _, _ = probe
    root, _, _ = corpora
    hf = ["--probe", f"hf:{folder}"]
    (tmp_path / "file").write_text("")
    usage = [
        (
            ["diversity", root / "books.jsonl", "--probe", "gpt2"],
            "--probe gpt2: the coefficients take a causal",
        ),
        (["diversity", root / "books.txt", *hf], 'a corpus is a .jsonl file, one JSON object with a "text"'),
        (["diversity", root / "none.jsonl", *hf], "none.jsonl: no such file"),
        (["diversity", root / "books.jsonl", *hf, "-o", tmp_path / "r.csv"], "must end in .json"),
        (["diversity", root / "books.jsonl", *hf, "--memory", tmp_path / "file"], "is a file"),
    ]
    for argv, fragment in usage:
        status, _, err = run(capsys, *argv)
        assert status == 2, (argv, err)
        assert_one_line_error(err, "task2vec diversity: error:", fragment)
    for option, value in (
        ("--batch-size", 1),
        ("--n-batches", 1),
        ("--confidence-level", 1),
        ("--max-length", 1),
    ):
        status, _, err = run(capsys, "diversity", root / "books.jsonl", *hf, option, value)
        assert status == 2 and "error:" in err.splitlines()[-1] and "Traceback" not in err
    status, _, err = run(capsys, "diversity", root / "books.jsonl")
    assert status == 2 and "--probe" in err
    status, _, err = run(capsys, "diversity", root / "books.jsonl", *hf, "--batch-size", 11)
    assert status == 1
    assert_one_line_error(err, f"{root / 'books.jsonl'}: has 10 texts, fewer than --batch-size 11")
    # A corpus's labels are not used, so not checked: null, and on some lines only.
    labelled = _write_jsonl(
        tmp_path / "labelled.jsonl",
        [{"text": "w1 w2", "label": None}, *({"text": text} for text in _texts(3, 8))],
    )
    status, out, err = run(
        capsys, "diversity", labelled, *hf, "--batch-size", 2, "--n-batches", 2, "--head-epochs", 1
    )
    assert status == 0 and out.startswith("diversity ")
    assert f'{labelled}: its "label" fields (1 of 4 lines) are not used' in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "w1"}\n{"txt": "w2"}\n')
    status, _, err = run(capsys, "diversity", bad, *hf, "--batch-size", 2)
    assert status == 1
    assert_one_line_error(err, f'{bad}, line 2: has no "text" field')


def test_no_output_is_clobbered_and_no_input_is_the_output(probe, corpora, tasks, tmp_path, capsys):
    folder, _, _ = probe
    root, _, _ = corpora
    text_root, _ = tasks
    hf = ["--probe", f"hf:{folder}"]
    output = tmp_path / "result.json"
    output.write_text("precious\n")
    argv = ["diversity", root / "books.jsonl", *hf, *SMALL_ARGV, "-o", output]
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and output.read_text() == "precious\n"
    assert_one_line_error(err, "the file exists; pass --overwrite")
    status, _, err = run(capsys, *argv, "--overwrite")
    assert status == 0, err
    assert json.loads(output.read_text())["results"][0]["kind"] == "diversity"

    # A corpus given as the output, by a link too: never replaced, even with --overwrite.
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes((root / "books.jsonl").read_bytes())
    (tmp_path / "link.json").symlink_to(corpus)
    before = corpus.read_bytes()
    status, _, err = run(capsys, "diversity", corpus, *hf, "-o", tmp_path / "link.json", "--overwrite")
    assert status == 2 and corpus.read_bytes() == before
    assert_one_line_error(err, "is also an input of the command")

    embeddings = tmp_path / "e.csv"
    embeddings.write_text("precious\n")
    status, _, err = run(capsys, "embed", text_root / "wiki.jsonl", *hf, "-o", embeddings)
    assert status == 2 and embeddings.read_text() == "precious\n"
    assert_one_line_error(err, "the file exists; pass --overwrite")


def _help(out):
    """A help text as one line (argparse wraps lines, and at hyphens too)."""
    return " ".join(re.sub(r"(?<=\w)-\s+(?=\w)", "-", out).split())


def test_help_texts_name_the_text_forms(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "diversity" in out
    status, out, _ = run(capsys, "embed", "--help")
    text = _help(out)
    assert status == 0
    for fragment in (
        "a .jsonl file of texts or a folder of .txt files",
        '"text" and a "label" field',
        "language-modelling task",
        "hf:<name or folder>",
        "--tokenizer NAME_OR_FOLDER",
        "--max-length N",
        "--pooling {mean,first,last}",
    ):
        assert fragment in text, fragment
    status, out, _ = run(capsys, "diversity", "--help")
    text = _help(out)
    assert status == 0
    assert re.search(r"usage: task2vec diversity .*CORPUS \[OTHER\]", text)
    for fragment in (
        "--probe hf:NAME_OR_FOLDER",
        "alignment coefficient",
        '"label" fields are not used',
        ".json",
    ):
        assert fragment in text, fragment
