"""The API reference lists every public name of the package.

The reference is ``docs/api/*.rst``: ``docs/api/index.rst`` has one ``autosummary`` table per
module, and a page per module documents its members with ``automodule``. This test reads those
reST sources as text (it needs neither Sphinx nor a docs build) and fails when a public name,
one in ``sklearn_task2vec.__all__`` or in the ``__all__`` of a documented module, is missing
from the tables, when a table names something that does not exist, or when the package gains
a module that is neither documented nor declared internal below.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import sklearn_task2vec

API_DIR = Path(__file__).resolve().parents[1] / "docs" / "api"

# Modules with user-facing names: each has a page in docs/api/ and a table in docs/api/index.rst.
DOCUMENTED_MODULES = (
    "sklearn_task2vec",
    "sklearn_task2vec.distances",
    "sklearn_task2vec.selector",
    "sklearn_task2vec.provenance",
    "sklearn_task2vec.transferability",
    "sklearn_task2vec.tasks",
    "sklearn_task2vec.task_library",
    "sklearn_task2vec.datasets",
    "sklearn_task2vec.probes",
    "sklearn_task2vec.zoo",
    "sklearn_task2vec.discovery",
    "sklearn_task2vec.diversity",
    "sklearn_task2vec.plotting",
    "sklearn_task2vec.cli",
)
# Modules without a leading underscore that users never import (``_cache`` has a page with
# its module docstring only, describing ``memory=``'s files).
INTERNAL_MODULES = {"demo", "embedder"}

_DIRECTIVE = re.compile(r"^\s*\.\. ([\w:-]+)::\s*(.*?)\s*$")
_OPTION = re.compile(r"^\s*:([\w-]+):\s*(.*?)\s*$")


def _parse_api_sources():
    """What the API sources list: ``(names, pages)``.

    ``names``: the fully qualified names in ``autosummary`` tables and ``autoclass`` /
    ``autofunction`` / ``autodata`` directives. ``pages``: ``{module: members option}`` for each
    ``automodule`` directive (``None`` without ``:members:``, ``[]`` for a bare ``:members:``).
    """
    names, pages = set(), {}
    for path in sorted(API_DIR.glob("*.rst")):
        module = None
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            match = _DIRECTIVE.match(lines[i])
            i += 1
            if match is None:
                continue
            directive, argument = match.groups()
            if directive in ("currentmodule", "module", "py:currentmodule", "py:module"):
                module = argument
            elif directive == "automodule":
                module = argument
                pages[module] = None
                while i < len(lines) and _OPTION.match(lines[i]):
                    option, value = _OPTION.match(lines[i]).groups()
                    if option == "members":
                        pages[module] = [name.strip() for name in value.split(",") if name.strip()]
                    i += 1
            elif directive in ("autoclass", "autofunction", "autodata", "autoexception"):
                names.add(_qualified(argument, module))
            elif directive == "autosummary":
                # Options, then entries: the lines indented under the directive.
                while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                    entry = lines[i].strip()
                    if entry and not _OPTION.match(lines[i]) and not entry.startswith(".."):
                        names.add(_qualified(entry, module))
                    i += 1
    return names, pages


def _qualified(name, module):
    name = name.lstrip("~")
    if name.startswith("sklearn_task2vec.") or module is None:
        return name
    return f"{module}.{name}"


def _resolve(qualified):
    """The object a fully qualified name refers to; raises if it does not exist."""
    module_name, _, attribute = qualified.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except ImportError:
        return getattr(_resolve(module_name), attribute)


def _public_names(module):
    """``module.__all__``; for the package without one, its public non-module attributes."""
    names = getattr(module, "__all__", None)
    if names is None and module is sklearn_task2vec:
        names = [
            name
            for name in dir(module)
            if not name.startswith("_") and not inspect.ismodule(getattr(module, name))
        ]
    return names


def undocumented_names():
    """Public names (``module.name``) that no table of the API reference lists."""
    listed, _ = _parse_api_sources()
    listed_objects = {id(_resolve(name)) for name in listed if _exists(name)}
    missing = []
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        for name in _public_names(module) or ():
            qualified = f"{module_name}.{name}"
            # A re-export (selector.Model2VecSelector) counts when its object is listed elsewhere.
            if qualified not in listed and id(getattr(module, name)) not in listed_objects:
                missing.append(qualified)
    return missing


def _exists(qualified):
    try:
        _resolve(qualified)
    except (AttributeError, ImportError):
        return False
    return True


def test_api_sources_are_there():
    names, _ = _parse_api_sources()
    assert (API_DIR / "index.rst").is_file()
    assert "sklearn_task2vec.FisherTaskEmbedder" in names  # the parser reads the tables


def test_every_public_name_is_in_the_api_reference():
    missing = undocumented_names()
    assert not missing, (
        f"Public names missing from the API reference: {missing}. Add each to its module's "
        f"autosummary table in docs/api/index.rst (and, for a module without __all__, to the "
        f"':members:' list on its page in docs/api/)."
    )


def test_every_listed_name_exists_and_is_rendered():
    names, pages = _parse_api_sources()
    problems = []
    for qualified in sorted(names):
        if not _exists(qualified):
            problems.append(f"{qualified} does not exist")
            continue
        module_name, _, name = qualified.rpartition(".")
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None)
        members = pages.get(module_name)
        if module_name not in pages:
            problems.append(f"{qualified}: no docs/api page has '.. automodule:: {module_name}'")
        elif members is None:
            problems.append(f"{qualified}: the automodule of {module_name} has no ':members:'")
        elif members and name not in members:
            problems.append(f"{qualified}: not in the ':members:' list of {module_name}'s page")
        elif not members and public is not None and name not in public:
            problems.append(f"{qualified}: not in {module_name}.__all__, so ':members:' leaves it out")
    assert not problems, "\n".join(problems)


def test_every_documented_module_has_a_page():
    _, pages = _parse_api_sources()
    missing = [module for module in DOCUMENTED_MODULES if module not in pages]
    assert not missing, f"No '.. automodule::' page in docs/api/ for {missing}."


def test_every_module_is_documented_or_internal():
    documented = {module.rpartition(".")[2] for module in DOCUMENTED_MODULES}
    # A leading underscore marks a module internal by name.
    modules = {
        info.name for info in pkgutil.iter_modules(sklearn_task2vec.__path__) if not info.name.startswith("_")
    }
    unknown = sorted(modules - documented - INTERNAL_MODULES)
    assert not unknown, (
        f"New modules {unknown}: give each a page in docs/api/ and a table in "
        f"docs/api/index.rst and add it to DOCUMENTED_MODULES in {Path(__file__).name}, or add "
        f"it to INTERNAL_MODULES there if users never import it."
    )


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_documented_module_has_a_docstring(module_name):
    # The module's page shows its docstring as the introduction.
    assert importlib.import_module(module_name).__doc__
