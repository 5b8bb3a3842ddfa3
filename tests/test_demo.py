"""The digits demo (``python -m sklearn_task2vec.demo``) runs and prints its report."""

import numpy as np
import pytest

from sklearn_task2vec import demo


def printed_matrix(lines, names):
    """The distance matrix parsed back from the demo's output."""
    header = next(i for i, line in enumerate(lines) if line.split() == names)
    rows = [lines[header + 1 + i].split() for i in range(len(names))]
    assert [row[0] for row in rows] == names
    return np.array([[float(value) for value in row[1:]] for row in rows])


@pytest.mark.slow
def test_demo_prints_matrix_nearest_tasks_and_norms(capsys, tmp_path):
    returned = demo.main(["--output-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    names = [name for name, *_ in demo.TASKS]
    assert len(names) == 10

    assert any("Symmetric TASK2VEC distance" in line for line in lines)
    matrix = printed_matrix(lines, names)
    assert matrix.shape == (10, 10)
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    assert np.all((matrix >= 0) & (matrix <= 1))
    np.testing.assert_allclose(matrix, returned, atol=0.005 + 1e-12)

    nearest = [line for line in lines if "->" in line]
    assert len(nearest) == 10
    for name, line in zip(names, nearest):
        left, right = line.split("->")
        assert left.split() == [name]
        assert len(right.split(",")) == 3 and name not in right.replace("(", " ").split()

    assert any("Spearman correlation(norm, error)" in line for line in lines)
    norm_rows = [
        line.split() for line in lines if line.split()[:1] in ([n] for n in names) and len(line.split()) == 3
    ]
    assert [row[0] for row in norm_rows] == names
    assert all(float(norm) > 0 and 0 <= float(error) <= 1 for _, norm, error in norm_rows)

    # The model-selection table: every selector, errors in [0, 100]%, none below the oracle.
    selectors = ["oracle", "chance", "generic", "TASK2VEC", "asymmetric TASK2VEC"]
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["selector", "mean", "error"])
    table = [lines[header + 1 + i] for i in range(len(selectors))]
    errors = {}
    for name, line in zip(selectors, table):
        assert line.split()[: len(name.split())] == name.split()
        values = line.split()[len(name.split()) :]
        errors[name] = float(values[0].rstrip("%"))
        assert 0 <= errors[name] <= 100 and float(values[1].rstrip("%")) >= 0
    assert errors["oracle"] == min(errors.values())
    assert errors["asymmetric TASK2VEC"] < errors["chance"]  # the embeddings beat a random expert

    pytest.importorskip("matplotlib")
    assert (tmp_path / "digits_study.png").stat().st_size > 0


def test_demo_options(capsys):
    demo.main(["--random-state", "1", "--method", "montecarlo", "--no-selection", "--no-plots"])
    out = capsys.readouterr().out
    assert "Spearman" in out and "Model selection" not in out
    with pytest.raises(SystemExit):
        demo.main(["--method", "bogus"])


# --------------------------------------------------------------------------------------
# Readable without the paper (issue 15): notes under the tables (the figure, drawn with
# sklearn_task2vec.plotting, is tested with the Displays in test_plotting.py)
# --------------------------------------------------------------------------------------

NAMES = [name for name, *_ in demo.TASKS]
# The demo's numbers (seed 0): five tasks with no test error and close norms, a hub (all10).
NORMS = np.array([1.126, 3.222, 2.111, 1.778, 1.352, 3.04, 9.187, 13.66, 5.944, 11.26])
RAW_ERRORS = np.array([0.0, 0.011, 0.0, 0.0, 0.0, 0.022, 0.096, 0.109, 0.015, 0.039])
ROWS = [
    ("oracle", 0.0120, 0.0),
    ("chance", 0.0704, 4.8531),
    ("generic", 0.0843, 6.0104),
    ("TASK2VEC", 0.0387, 2.2179),
    ("asymmetric TASK2VEC", 0.0383, 2.1838),
]


def test_selection_notes_say_lower_is_better_and_why_the_scale_differs():
    text = " ".join(" ".join(demo.selection_notes(ROWS)).split())
    assert "Lower is better" in text
    assert "the oracle's mean error is 1.20%: each point of extra error adds +83% to it" in text
    assert "compare the order of the selectors, not the numbers" in text


def test_hub_notes_explain_a_task_that_is_nearest_to_most():
    all10 = NAMES.index("all10")
    nearest = [all10] * 8 + [1, 8]  # as in the demo: 3v8 and 3v5v8 are each other's nearest
    nearest[all10] = NAMES.index("3v5v8")
    (line,) = demo.hub_notes(NAMES, nearest)
    assert line.strip().startswith("all10 is the nearest task of 8 of the 10")
    assert "its examples include those of each of them" in line
    assert demo.hub_notes(NAMES, [(i + 1) % 10 for i in range(10)]) == []  # no hub, no note
