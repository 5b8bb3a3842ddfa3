"""Provenance (issue 24): one record of how rows were made, written into every artifact of rows
(CSV, NPZ, cache entry, saved selector) and checked by every consumer (recommend, distances,
Model2VecSelector.predict, the cache). Each setting of the record is enumerated against each
consumer: changed alone, it is refused and named."""

import copy
import csv
import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.pipeline import make_pipeline

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector
from sklearn_task2vec import embedder as embedder_module
from sklearn_task2vec._cache import EmbeddingCache
from sklearn_task2vec._pipeline import EmbeddingSettings, TaskEmbedding
from sklearn_task2vec.cli import main
from sklearn_task2vec.provenance import (
    EmbeddingProvenance,
    ProvenanceWarning,
    check_provenance,
    embedding_provenance,
    provenance_differences,
)

# Tiny tasks and probes: one thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

# For each setting of the record, a value that differs from the base record's (below). A field
# added to the record without a value here fails test_every_setting_of_the_record_is_enumerated.
OTHER_VALUES = {
    "probe": "resnet18",
    "probe_digest": "0" * 64,
    "method": "exact",
    "batch_size": 32,
    "max_samples": 10,
    "head_epochs": 5,
    "head_learning_rate": 0.5,
    "head_weight_decay": 0.0,
    "variational_beta": 0.01,
    "variational_steps": 10,
    "variational_tol": 0.0,
    "variational_noise": "per_position",
    "variational_curvature": "hessian",
    "skip_layers": "features",
    "autocast": "bfloat16",
    "pooling": "first",
    "max_length": 128,
    "label_draws": 4,
    "normalize": None,
    "random_state": 1,
    "image_size": 64,
    "version": "0.0.1",
    "tokenizer": "PreTrainedTokenizerFast('gpt2') sha256:" + "0" * 64,
}
FIELDS = list(OTHER_VALUES)


def changed(record, field):
    """``record`` with ``field`` alone set to its other value."""
    values = record.to_dict()
    values[field] = OTHER_VALUES[field]
    return EmbeddingProvenance.from_dict(values)


def run(capsys, *argv):
    status = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def tasks():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 4))
    return [(X, X[:, 0] > 0), (X, X[:, 1] > 0), (X, X[:, 0] + X[:, 2] > 0), (X, X[:, 3] > 0)]


@pytest.fixture(scope="module")
def fitted(tasks):
    """A trivial-normalised embedder, its rows, and a selector fitted on them with their record."""
    embedder = FisherTaskEmbedder(normalize="trivial", random_state=0)
    rows = embedder.fit_transform(tasks)
    selector = Model2VecSelector(
        max_iter=0, model_embeddings=rows[:2], experts=["a", "b"], provenance=embedder.provenance_
    )
    selector.fit(rows, ["a", "b", "a", "b"])
    return embedder, rows, selector


@pytest.fixture(scope="module")
def base(fitted):
    return fitted[0].provenance_


def write_rows(path, rows, record, trivial=None, first_task=0):
    """Rows in the format of ``task2vec embed`` (its --help): a CSV whose header's first cell is
    ``task`` and the record's JSON (or ``task`` alone, an older file, for no record), or an NPZ
    with the record's JSON in the array ``provenance`` (absent for no record)."""
    names = [f"task{first_task + index}" for index in range(len(rows))]
    filters = [f"features:{index}" for index in range(rows.shape[1])]
    if path.suffix == ".npz":
        arrays = {"embeddings": rows, "tasks": np.array(names), "filters": np.array(filters)}
        arrays["trivial"] = np.ones(rows.shape[1]) if trivial is None else trivial
        if record is not None:
            arrays["provenance"] = np.array(record.to_json())
        np.savez(path, **arrays)
        return path
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["task" if record is None else f"task {record.to_json()}", *filters])
        for name, row in zip(names, rows):
            writer.writerow([name, *map(repr, row.tolist())])
    return path


def assert_refused(status, err, field):
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1, err
    assert "rows embedded otherwise than expected" in lines[0] and "--ignore-provenance" in lines[0]
    assert f"; {field} " in lines[0] or f": {field} " in lines[0], lines[0]


# --------------------------------------------------------------------------------------
# The record
# --------------------------------------------------------------------------------------


def test_every_setting_of_the_record_is_enumerated(base):
    assert list(base.to_dict()) == FIELDS
    assert {field.name for field in dataclasses.fields(EmbeddingSettings)} <= set(FIELDS)
    for field in FIELDS:
        assert changed(base, field).to_dict()[field] != base.to_dict()[field], field


def records():
    """Any record: text with quotes, commas, newlines and non-ASCII, floats at their extremes."""
    positive = st.floats(min_value=0, exclude_min=True, allow_nan=False)
    return st.builds(
        EmbeddingProvenance,
        probe=st.text(),
        probe_digest=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        settings=st.builds(
            EmbeddingSettings,
            method=st.sampled_from(["auto", "exact", "montecarlo", "variational"]),
            batch_size=st.integers(1, 2**40),
            max_samples=st.none() | st.integers(1, 2**40),
            head_epochs=st.integers(0, 10**6),
            head_learning_rate=positive,
            head_weight_decay=st.floats(min_value=0, allow_nan=False),
            variational_beta=st.none() | positive,
            variational_steps=st.none() | st.integers(0, 10**6),
            variational_tol=st.none() | st.floats(min_value=0, allow_nan=False),
            variational_noise=st.none() | st.sampled_from(["per_example", "per_position"]),
            variational_curvature=st.none() | st.sampled_from(["gauss_newton", "hessian"]),
            skip_layers=st.none() | st.text(),
            autocast=st.sampled_from([None, "bfloat16", "float16"]),
            pooling=st.sampled_from(["mean", "first", "last"]),
            max_length=st.none() | st.integers(2, 10**6),
            label_draws=st.integers(1, 10**6),
        ),
        normalize=st.sampled_from([None, "trivial"]),
        random_state=st.none() | st.integers(0, 2**32),
        image_size=st.none() | st.integers(1, 10**5),
        version=st.text(min_size=1),
        tokenizer=st.none() | st.text(),
    )


@given(records())
def test_a_record_round_trips_exactly_through_dict_and_json(record):
    assert EmbeddingProvenance.from_dict(record.to_dict()) == record
    assert EmbeddingProvenance.from_json(record.to_json()) == record
    assert "\n" not in record.to_json()  # one line: one CSV cell, one header line
    assert provenance_differences(record, record) == []


@given(records(), st.sampled_from(FIELDS))
def test_the_differences_name_exactly_the_settings_that_differ(record, field):
    other = changed(record, field)
    differences = [difference.split()[0] for difference in provenance_differences(other, record)]
    assert differences == ([] if other == record else [field])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records(), field=st.sampled_from(FIELDS), suffix=st.sampled_from([".csv", ".npz"]))
def test_any_record_survives_a_file_and_a_changed_setting_is_named(capsys, record, field, suffix):
    """Through the files of `task2vec embed` and `task2vec distances`, which reads them: equal
    records pass silently, and a record changed in one setting is refused naming it alone."""
    rows = np.abs(np.random.RandomState(0).normal(size=(2, 3)))
    other = changed(record, field)
    with tempfile.TemporaryDirectory() as folder:
        first = write_rows(Path(folder) / f"first{suffix}", rows, record)
        same = write_rows(Path(folder) / f"same{suffix}", rows, record)
        status, _, err = run(capsys, "distances", first, same)
        assert status == 0 and err == "", err
        if other != record:
            status, _, err = run(
                capsys, "distances", first, write_rows(Path(folder) / f"o{suffix}", rows, other)
            )
            assert_refused(status, err, field)


def test_from_dict_names_missing_and_unknown_settings(base):
    values = base.to_dict()
    del values["normalize"]
    values["colour"] = "blue"
    with pytest.raises(ValueError, match="missing normalize; unknown colour"):
        EmbeddingProvenance.from_dict(values)
    with pytest.raises(ValueError, match="not JSON"):
        EmbeddingProvenance.from_json("{")


def test_check_provenance_refuses_naming_each_setting_and_warns_without_a_record(base):
    other = changed(changed(base, "normalize"), "random_state")
    with pytest.raises(ValueError) as refused:
        check_provenance(
            other, base, given_name="new.csv", expected_name="selector.joblib", override="say so"
        )
    message = str(refused.value)
    assert "(new.csv vs selector.joblib): normalize None vs 'trivial'; random_state 1 vs 0." in message
    assert "or say so to use them anyway" in message
    for rows_record, expected, named in [(None, base, "new.csv"), (base, None, "selector.joblib")]:
        with pytest.warns(ProvenanceWarning, match=f"{named} carries no provenance record"):
            check_provenance(
                rows_record, expected, given_name="new.csv", expected_name="selector.joblib", override=""
            )
    with pytest.warns(ProvenanceWarning, match="new.csv and selector.joblib carry no provenance"):
        check_provenance(None, None, given_name="new.csv", expected_name="selector.joblib", override="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_provenance(base, base, given_name="a", expected_name="b", override="")


# --------------------------------------------------------------------------------------
# The embedder builds it
# --------------------------------------------------------------------------------------


def test_the_embedders_record_says_how_its_rows_are_made(tasks, base):
    assert base.probe == "sklearn_task2vec._probes.RandomReLUProbe"
    assert (base.normalize, base.random_state, base.image_size) == ("trivial", 0, None)
    # Settings that only method="variational" reads are not recorded for other methods.
    assert base.settings.variational_steps is None and base.settings.head_epochs == 100
    other = FisherTaskEmbedder(normalize="trivial", random_state=1).fit(tasks).provenance_
    assert [difference.split()[0] for difference in provenance_differences(other, base)] == [
        "probe_digest",  # the random probe's weights come from the seed
        "random_state",
    ]
    variational = FisherTaskEmbedder(method="variational", variational_steps=7, random_state=0).fit(tasks)
    assert variational.provenance_.settings.variational_steps == 7
    # transform reads the settings when it runs: so does the record.
    moved = FisherTaskEmbedder(normalize="trivial", random_state=0).fit(tasks)
    moved.set_params(normalize=None)
    assert moved.provenance_ == changed(base, "normalize")
    unseeded = embedding_provenance(
        "p", "d", base.settings, normalize=None, random_state=np.random.RandomState(0)
    )
    assert unseeded.random_state is None  # its seeds change from call to call
    with pytest.raises(AttributeError):  # NotFittedError is one: hasattr says False before fit
        _ = FisherTaskEmbedder().provenance_


# --------------------------------------------------------------------------------------
# Model2VecSelector: fitted with the record, checks it in predict, keeps it when saved
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_the_selector_refuses_rows_made_otherwise_naming_the_setting(fitted, base, field):
    _, rows, selector = fitted
    with pytest.raises(ValueError, match=rf"\(the rows vs the selector\): {field} .*pass no provenance="):
        selector.predict(rows, provenance=changed(base, field))


def test_every_prediction_method_checks_and_rows_without_a_record_are_checked_for_width(
    tmp_path, fitted, base
):
    _, rows, selector = fitted
    saved = joblib.load(joblib.dump(selector, tmp_path / "selector.joblib")[0])
    assert saved.provenance_ == base
    other = changed(base, "random_state")
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function"):
        with pytest.raises(ValueError, match="random_state 1 vs 0"):
            getattr(saved, method)(rows, provenance=other)
        np.testing.assert_array_equal(
            getattr(saved, method)(rows, provenance=base), getattr(selector, method)(rows)
        )
    with pytest.raises(ValueError, match="features"):
        saved.predict(rows[:, :3])
    with pytest.raises(TypeError, match="the provenance of the rows must be an EmbeddingProvenance"):
        saved.predict(rows, provenance=base.to_dict())
    unknown = Model2VecSelector(max_iter=0, model_embeddings=rows[:2]).fit(rows, [0, 1, 0, 1])
    assert unknown.provenance_ is None
    with pytest.warns(ProvenanceWarning, match="the selector carries no provenance record"):
        unknown.predict(rows, provenance=base)


def test_the_issues_example_another_seed_changes_the_answer_unless_refused(tasks, fitted):
    """The issue: rows of a random probe with another seed have the selector's width and change
    its answers; with their record they are refused, naming the seed."""
    _, rows, selector = fitted
    other = FisherTaskEmbedder(normalize="trivial", random_state=1).fit(tasks)
    other_rows = other.transform(tasks)
    assert not np.allclose(selector.predict_proba(other_rows), selector.predict_proba(rows))
    with pytest.raises(ValueError, match="random_state 1 vs 0"):
        selector.predict_proba(other_rows, provenance=other.provenance_)


# --------------------------------------------------------------------------------------
# The command line: files carry the record; recommend and distances check it
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_selector(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("selector") / "selector.joblib"
    joblib.dump(fitted[2], path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize("field", FIELDS)
def test_recommend_refuses_a_file_embedded_otherwise_naming_the_setting(
    capsys, tmp_path, fitted, base, saved_selector, field, suffix
):
    rows = fitted[1]
    embedded = write_rows(tmp_path / f"new{suffix}", rows, changed(base, field))
    status, out, err = run(capsys, "recommend", saved_selector, embedded)
    assert_refused(status, err, field)
    assert out == "" and str(embedded) in err and str(saved_selector) in err
    status, out, err = run(capsys, "recommend", saved_selector, embedded, "--ignore-provenance")
    assert status == 0 and err == "" and out.startswith("task")


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize("field", FIELDS)
def test_distances_refuse_files_embedded_otherwise_naming_the_setting(
    capsys, tmp_path, fitted, base, field, suffix
):
    rows = fitted[1]
    first = write_rows(tmp_path / f"first{suffix}", rows[:2], base)
    second = write_rows(tmp_path / f"second{suffix}", rows[2:], changed(base, field))
    status, out, err = run(capsys, "distances", first, second)
    assert_refused(status, err, field)
    assert f"({second} vs {first})" in err
    status, out, err = run(capsys, "distances", first, second, "--ignore-provenance")
    assert status == 0 and err == ""


def test_distances_of_several_files_are_those_of_their_rows_together(capsys, tmp_path, fitted, base):
    rows = fitted[1]
    together = write_rows(tmp_path / "together.npz", rows, base)
    first = write_rows(tmp_path / "first.csv", rows[:2], base)
    second = write_rows(tmp_path / "second.npz", rows[2:], base, first_task=2)
    _, expected, _ = run(capsys, "distances", together, "--kind", "asymmetric")
    status, out, err = run(capsys, "distances", first, second, "--kind", "asymmetric")
    assert status == 0 and err == "" and out == expected
    # The same task in two files is named with its file in each.
    status, out, _ = run(capsys, "distances", first, first)
    assert status == 0 and f"task0 ({first})" in out


def test_the_issues_example_recommend_refuses_rows_embedded_without_normalize_trivial(
    capsys, tmp_path, tasks, saved_selector
):
    """The issue: `recommend` on a CSV embedded without --normalize trivial, for a selector fitted
    on trivial-normalised rows, exited 0 with other picks."""
    files = []
    for index, (X, y) in enumerate(tasks):
        files.append(tmp_path / f"task{index}.npz")
        np.savez(files[-1], X=X, y=y)
    assert run(capsys, "embed", *files, "-o", tmp_path / "raw.csv")[0] == 0
    status, out, err = run(capsys, "recommend", saved_selector, tmp_path / "raw.csv")
    assert_refused(status, err, "normalize")
    assert "normalize None vs 'trivial'" in err
    assert run(capsys, "embed", *files, "--normalize", "trivial", "-o", tmp_path / "normalised.csv")[0] == 0
    status, out, err = run(capsys, "recommend", saved_selector, tmp_path / "normalised.csv")
    assert status == 0 and err == "", err


def test_recommend_checks_a_pipelines_rows_against_its_embedder(capsys, tmp_path, tasks, fitted, base):
    pipeline = make_pipeline(
        FisherTaskEmbedder(normalize="trivial", random_state=0), Model2VecSelector(max_iter=5, n_init=1)
    )
    pipeline.fit(tasks, ["a", "b", "a", "b"])
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    rows = fitted[1]
    status, _, err = run(
        capsys, "recommend", tmp_path / "pipeline.joblib", write_rows(tmp_path / "a.npz", rows, base)
    )
    assert status == 0 and err == "", err
    other = write_rows(tmp_path / "b.npz", rows, changed(base, "normalize"))
    assert_refused(*run(capsys, "recommend", tmp_path / "pipeline.joblib", other)[::2], "normalize")


def test_files_and_selectors_without_a_record_get_a_warning_not_an_error(
    capsys, tmp_path, fitted, base, saved_selector
):
    rows = fitted[1]
    old_csv = write_rows(tmp_path / "old.csv", rows, None)
    old_npz = write_rows(tmp_path / "old.npz", rows, None)
    for old in (old_csv, old_npz):
        status, out, err = run(capsys, "recommend", saved_selector, old)
        assert status == 0 and out.startswith("task"), err
        assert err.strip() == (
            f"task2vec: warning: {old} carries no provenance record (written by an older version, or "
            f"fitted without one): whether the rows were embedded with the same probe and settings "
            f"could not be checked."
        )
    status, _, err = run(capsys, "distances", old_csv, write_rows(tmp_path / "new.csv", rows, base))
    assert status == 0 and f"warning: {old_csv} carries no provenance record" in err
    # A selector fitted without the record, given a file with one.
    unknown = Model2VecSelector(max_iter=0, model_embeddings=rows[:2]).fit(rows, [0, 1, 0, 1])
    joblib.dump(unknown, tmp_path / "unknown.joblib")
    status, _, err = run(capsys, "recommend", tmp_path / "unknown.joblib", tmp_path / "new.csv")
    assert status == 0 and f"warning: {tmp_path / 'unknown.joblib'} carries no provenance record" in err
    # An older file with the old header of trivial-normalised rows is still read as such.
    legacy = tmp_path / "legacy.csv"
    legacy.write_text(old_csv.read_text().replace("task,", "task (normalize=trivial),", 1))
    status, out, err = run(capsys, "distances", legacy, "--kind", "asymmetric")
    assert status == 0, err


def test_a_damaged_record_is_a_data_error_naming_the_file(capsys, tmp_path, fitted, base, saved_selector):
    text = write_rows(tmp_path / "new.csv", fitted[1], base).read_text()
    damaged = tmp_path / "damaged.csv"
    damaged.write_text(text.replace('""probe_digest""', '""digest""', 1))
    status, _, err = run(capsys, "recommend", saved_selector, damaged)
    assert status == 1 and f"{damaged}: not a provenance record" in err and "missing probe_digest" in err


# --------------------------------------------------------------------------------------
# The cache: every entry stores its record; an entry made otherwise is not used
# --------------------------------------------------------------------------------------


def cache_entry():
    return TaskEmbedding(np.arange(1.0, 4.0), np.ones(3), 2)


@pytest.mark.parametrize("field", [field for field in FIELDS if field != "normalize"])
def test_a_cache_entry_made_otherwise_is_not_used_naming_the_setting(tmp_path, base, field):
    EmbeddingCache(tmp_path, "settings", base).save("task", cache_entry())
    with pytest.warns(
        UserWarning, match=rf"\(cached vs now: {field} .*\); it is not used, and is recomputed"
    ):
        assert EmbeddingCache(tmp_path, "settings", changed(base, field)).load("task") is None
    row, prior, n_classes = EmbeddingCache(tmp_path, "settings", base).load("task")
    np.testing.assert_array_equal(row, cache_entry().row)


def test_a_cache_entry_serves_either_normalisation_and_an_older_entry_is_recomputed(tmp_path, base):
    # Entries hold rows before normalisation: one serves both settings.
    EmbeddingCache(tmp_path, "settings", base).save("task", cache_entry())
    assert EmbeddingCache(tmp_path, "settings", changed(base, "normalize")).load("task") is not None
    # An entry of an older version has no record: not used.
    path = tmp_path / "settings" / "task.npz"
    with np.load(path) as stored:
        arrays = {name: stored[name] for name in stored.files if name != "provenance"}
    np.savez(path, **arrays)
    with pytest.warns(UserWarning, match="provenance"):
        assert EmbeddingCache(tmp_path, "settings", base).load("task") is None


def test_the_embedders_cache_recomputes_an_entry_whose_record_differs(tmp_path, tasks, monkeypatch):
    """Were two settings ever to share a cache folder (a key that misses a setting), the record
    in each entry still tells them apart."""
    monkeypatch.setattr(embedder_module, "settings_key", lambda *args: "one-folder-for-all")
    first = FisherTaskEmbedder(memory=tmp_path, random_state=0).fit_transform(tasks[:1])
    other = FisherTaskEmbedder(memory=tmp_path, random_state=0, head_epochs=3)
    with pytest.warns(UserWarning, match="cached vs now: head_epochs 100 vs 3"):
        rows = other.fit_transform(tasks[:1])
    np.testing.assert_array_equal(
        rows, FisherTaskEmbedder(random_state=0, head_epochs=3).fit_transform(tasks[:1])
    )
    assert not np.array_equal(rows, first)
    assert len(os.listdir(tmp_path / "sklearn_task2vec" / "one-folder-for-all")) == 1
    with np.load(next((tmp_path / "sklearn_task2vec" / "one-folder-for-all").iterdir())) as stored:
        assert json.loads(str(stored["provenance"]))["head_epochs"] == 3


def test_a_probe_in_a_dtype_numpy_lacks_has_a_digest_of_its_weights(tasks):
    """bfloat16 weights have no numpy dtype: they are hashed by their bytes and dtype's name."""
    probe = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    records = []
    for module in (probe, copy.deepcopy(probe).to(torch.bfloat16)):  # .to() changes a module in place
        records.append(FisherTaskEmbedder(probe=module, random_state=0).fit(tasks[:1]).provenance_)
    assert records[0].probe == records[1].probe == "torch.nn.modules.container.Sequential"
    assert records[0].probe_digest != records[1].probe_digest
    changed_weight = probe.to(torch.bfloat16)
    with torch.no_grad():
        changed_weight[0].weight[0, 0] += 1
    assert FisherTaskEmbedder(probe=changed_weight, random_state=0).fit(tasks[:1]).provenance_ != records[1]
