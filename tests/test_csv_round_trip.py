"""CSV files of embeddings read back exactly what was written (issue 24): every task name,
whatever it starts with, and files a spreadsheet saved with a byte-order mark."""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_task2vec import cli
from sklearn_task2vec._pipeline import EmbeddingSettings
from sklearn_task2vec.cli import main
from sklearn_task2vec.provenance import embedding_provenance

pytestmark = pytest.mark.usefixtures("one_thread")

#: What a spreadsheet runs as a formula when a cell starts with it (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Names of every kind a generator might miss: the escape, escaped escapes, formula starts.
TRICKY = ["'=SUM(A1)", "''", "'", "=1+1", "+", "-3", "@x", "\tx", "\rx", "'plain", "''=x", "", " =x", "x'"]
names = st.lists(
    st.one_of(st.text(), st.sampled_from(TRICKY), st.text().map(lambda text: "'" + text)), min_size=1
)
values = st.floats(allow_nan=True, allow_infinity=True, width=64)


SETTINGS = EmbeddingSettings(
    "auto", 64, None, 100, 1.0, 5e-4, 1e-3, 300, 0.05, "per_example", "gauss_newton", None, None
)


def round_trip(names, rows, *, normalised=False, bom=False):
    """``(names, filters, rows, trivial, provenance)`` after writing to a CSV file and reading it
    back; the provenance record must read back as written."""
    provenance = embedding_provenance(
        "probe", "0" * 64, SETTINGS, normalize="trivial" if normalised else None, random_state=0
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "e.csv"
        filters = [f"f{index}" for index in range(rows.shape[1])]
        cli._write_embeddings(path, names, filters, rows, None, provenance, overwrite=False)
        if bom:  # as a spreadsheet saves it
            path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        read = cli._read_embeddings(path)
        assert read.provenance == provenance
        return read


@settings(max_examples=300, deadline=None)
@given(names=names, data=st.data(), normalised=st.booleans(), bom=st.booleans())
def test_every_task_name_and_value_reads_back_as_written(names, data, normalised, bom):
    width = data.draw(st.integers(1, 3))
    rows = np.array(
        data.draw(
            st.lists(
                st.lists(values, min_size=width, max_size=width), min_size=len(names), max_size=len(names)
            )
        )
    )
    read_names, filters, read_rows, trivial, _ = round_trip(names, rows, normalised=normalised, bom=bom)
    assert read_names == names
    assert filters == [f"f{index}" for index in range(width)]
    np.testing.assert_array_equal(read_rows, rows)  # repr() of a float is exact; NaN is NaN
    assert (trivial is not None) == normalised


@settings(max_examples=500, deadline=None)
@given(name=st.one_of(st.text(), st.sampled_from(TRICKY)))
def test_no_cell_starts_as_a_formula_and_the_escape_is_undone(name):
    cell = cli._csv_name(name)
    assert not cell.startswith(FORMULA_STARTS)
    assert cli._name_from_csv(cell) == name


@pytest.mark.parametrize(
    ("cell", "name"),
    [("'abc", "'abc"), ("'=x", "=x"), ("''x", "'x"), ("'", "'"), ("x", "x")],
)
def test_files_written_before_the_escape_was_escaped_read_as_they_did(cell, name):
    """A file written before an apostrophe at the start of a name was escaped holds ``'abc``
    for the name ``'abc``: it still reads so (only ``''`` and ``'`` before a formula character
    are escapes)."""
    assert cli._name_from_csv(cell) == name


def test_the_command_line_round_trips_names_and_reads_a_spreadsheets_file(tmp_path, capsys):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 4))
    tasks = []
    for name in ["=cmd", "'=quoted", "''", "+1", "-x", "@at", "plain"]:
        tasks.append(tmp_path / f"{name}.npz")
        np.savez(tasks[-1], X=X, y=X[:, len(tasks) % 4] > 0)
    argv = ["embed", *map(str, tasks)]
    assert main([*argv, "-o", str(tmp_path / "e.csv")]) == 0
    assert main([*argv, "-o", str(tmp_path / "e.npz")]) == 0
    names, _, rows, _, _ = cli._read_embeddings(tmp_path / "e.csv")
    with np.load(tmp_path / "e.npz") as stored:
        assert names == stored["tasks"].tolist() == [task.stem for task in tasks]
        np.testing.assert_array_equal(rows, stored["embeddings"])

    saved = tmp_path / "saved by a spreadsheet.csv"
    text = (tmp_path / "e.csv").read_text(encoding="utf-8")
    saved.write_bytes("\ufeff".encode() + text.encode())
    capsys.readouterr()
    assert main(["distances", str(saved)]) == 0
    assert main(["distances", str(tmp_path / "e.csv")]) == 0
    with_bom, without = capsys.readouterr().out.split("symmetric TASK2VEC distance:")[1:]
    assert with_bom == without
