"""The README's Python examples each run alone, as written (imports included: a reader may paste
any one of them into a fresh interpreter), the first prints what the README shows, and the docs'
landing page shows that same first example."""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS_INDEX = ROOT / "docs" / "index.md"
BLOCK = re.compile(r"```python\n(.*?)```\n\n(?:```\n(.*?)```)?", re.S)


def python_blocks(path):
    """``(code, shown_output)`` per Python block; ``shown_output`` is the plain block right after it."""
    return [(match.group(1), match.group(2)) for match in BLOCK.finditer(path.read_text())]


README_BLOCKS = python_blocks(README)
# Blocks that need what CI does not have: the Debian package dataset-fashion-mnist, downloaded weights.
OFFLINE = [index for index, (code, _) in enumerate(README_BLOCKS) if "load_fashion_mnist" not in code]


def test_the_readme_has_its_examples():
    assert len(README_BLOCKS) >= 4
    assert 0 in OFFLINE, "the first example runs offline"
    assert README_BLOCKS[0][1], "the README shows what the first example prints"


def test_the_docs_landing_page_shows_the_readme_short_example():
    docs_blocks = python_blocks(DOCS_INDEX)
    assert docs_blocks, "docs/index.md has a Python example"
    assert docs_blocks[0] == README_BLOCKS[0], "docs/index.md's example and output are the README's first"


@pytest.mark.slow
@pytest.mark.parametrize("index", OFFLINE)
def test_readme_example_runs_alone(index, tmp_path, monkeypatch, one_thread):
    """Each block in a fresh namespace and an empty folder: nothing from another block reaches it."""
    monkeypatch.chdir(tmp_path)
    code, shown = README_BLOCKS[index]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "__readme__"})
    if index == 0:
        assert printed.getvalue().strip() == shown.strip(), "the README shows what the example prints"
    if "joblib.dump" in code:
        assert (tmp_path / "selector.joblib").exists()
