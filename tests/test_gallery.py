"""The gallery examples that the documentation build executes run here too, and say what they should."""

import contextlib
import io
import runpy
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def agg_backend(monkeypatch):
    """matplotlib without a display; ``plt.show()`` does nothing, as in the docs build."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    yield plt
    plt.close("all")


def test_model_selection_recipe(agg_backend, one_thread):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        namespace = runpy.run_path(str(EXAMPLES / "model_selection_recipe.py"), run_name="__main__")
    output = printed.getvalue()
    names = namespace["names"]
    assert names == ["round-digits", "straight-digits", "curvy-digits", "generic"]
    # The loaded experts are the saved ones: names, training tasks and embeddings came back.
    assert [expert.trained_on for expert in namespace["experts"]] == [*names[:3], None]
    assert all(expert.task_embedding is not None for expert in namespace["experts"][:3])
    assert namespace["errors"].shape == (6, 4)
    # The recipe's claim: the recommended expert is the best one on the new dataset.
    new_errors, recommended = namespace["new_errors"], namespace["recommended"]
    assert recommended == names[int(np.argmin(new_errors))] == "curvy-digits"
    assert "ranks 1 of 4 on the new task" in output
    # The command line recommends the same expert from the saved selector.
    lines = output.splitlines()
    header = lines.index("task      recommended   top experts (probability)")
    assert lines[header + 1].split()[:2] == ["new_task", recommended]
    assert "Wrote the embeddings of 1 task (64 filters each)" in output
    # The figure: the error matrix, the selection's error increase and the new dataset's errors.
    figure = agg_backend.gcf()
    assert len(figure.axes) == 4  # three panels and the colour bar
    middle = figure.axes[1]
    assert [label.get_text() for label in middle.get_yticklabels()] == [
        "oracle",
        "Model2VecSelector (in-sample)",
        "always generic",
        "chance (random expert)",
    ]
    assert middle.patches[0].get_width() == pytest.approx(namespace["increase"])
    # Its files were in a temporary folder, removed at the end.
    assert not namespace["workdir"].exists()
