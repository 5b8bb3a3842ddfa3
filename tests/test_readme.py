"""The README's Python examples run as written, in order, in one namespace (as a reader would
paste them), and the first one prints what the README shows."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks():
    """``(code, shown_output)`` per Python block; ``shown_output`` is the plain block right after it."""
    text = README.read_text()
    pattern = re.compile(r"```python\n(.*?)```\n\n(?:```\n(.*?)```)?", re.S)
    return [(match.group(1), match.group(2)) for match in pattern.finditer(text)]


def test_the_readme_has_its_examples():
    assert len(readme_blocks()) >= 4


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    ran = 0
    for index, (code, shown) in enumerate(readme_blocks()):
        if "load_fashion_mnist" in code:
            continue  # needs the Debian package dataset-fashion-mnist and the ImageNet weights
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"README block {index}", "exec"), namespace)
        ran += 1
        if index == 0:
            assert printed.getvalue().strip() == shown.strip(), "the README shows what the example prints"
    assert ran >= 4
    assert (tmp_path / "selector.joblib").exists()
