"""Sphinx configuration of the sklearn-task2vec documentation (`make docs`).

Built offline with warnings as errors: ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
No extension here fetches anything from the network (no intersphinx): references to other
projects' objects (numpy, torch, scikit-learn, ...) stay plain text, see ``nitpick_ignore_regex``.

Example gallery (sphinx-gallery), built from ``examples/`` into ``docs/auto_examples/``:

* every ``examples/*.py`` is rendered as a page; it is *executed* unless its file name starts
  with ``slow_`` (``filename_pattern`` below). Examples must run headless, offline (no weight
  or dataset downloads) and fast, on CPU;
* an executed example that runs longer than ``EXAMPLE_TIME_LIMIT`` seconds fails the build
  with a message saying so (``docs/gallery_time_limit.py``): rename it ``slow_*.py`` so that
  it is shown without being run, or make it faster;
* an example's docstring must start with a reST title (a line underlined with ``=``);
  ``examples/GALLERY_HEADER.rst`` is the gallery's introduction.
"""

import importlib
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))  # gallery_time_limit

import sklearn_task2vec  # installed by `make docs`, imported after the sys.path change

project = "sklearn-task2vec"
author = "sklearn-task2vec developers"
copyright = "sklearn-task2vec developers"
release = sklearn_task2vec.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Every cross-reference must resolve (-W turns a broken one into an error).
nitpicky = True
# Objects of other projects cannot be resolved offline (no intersphinx): they are left as text.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|sklearn|torch|torchvision|joblib|pandas|dask)(\..*)?"),
]

# -- autodoc / autosummary / numpydoc -------------------------------------------------------
# Members are asked for on each page (``:members:``): a module page without it shows only the
# module docstring.
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_preserve_defaults = True
# A method without a docstring of its own (RandomReLUProbe.forward) is left out rather than
# given its base class's docstring (torch.nn.Module.forward, whose references cannot resolve).
autodoc_inherit_docstrings = False
autosummary_generate = False  # the API pages use automodule; autosummary only draws tables
numpydoc_show_class_members = False  # members are documented by autodoc's :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False


def _skip_generated_request_methods(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_{method}_request`` methods.

    scikit-learn attaches them to every estimator that has metadata parameters; their
    docstrings refer to scikit-learn's own user guide, which cannot resolve here.
    """
    if what == "class" and name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def _import_object(path):
    """The object named by a dotted path (``package.module.attribute``), or None."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_from_defining_module(app, env, node, contnode):
    """Resolve the references that docstrings make from the module that defines them.

    The estimators are defined in submodules (``sklearn_task2vec.selector``, ...) and documented
    where users import them, under ``sklearn_task2vec``. Their docstrings name objects as seen
    from the defining module (``soft_labels`` in ``Model2VecSelector``'s docstring, or
    ``sklearn_task2vec.probes.RandomReLUProbe``), which Sphinx would look up in the wrong
    place. This handler looks each unresolved Python reference up again: relative to the
    module that defines the documented class, and with a re-exported class replaced by its
    documented name ``sklearn_task2vec.<name>``. A reference that names no documented object
    either way stays unresolved, which fails the build.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip(".~")
    module, cls = node.get("py:module"), node.get("py:class")
    candidates = [target]
    if module:
        candidates.insert(0, f"{module}.{target}")
        documented = _import_object(f"{module}.{cls}") if cls else None
        defining = getattr(documented, "__module__", None)
        if defining and defining != module:
            candidates.insert(0, f"{defining}.{target}")
    reexported = {id(getattr(sklearn_task2vec, name)): name for name in sklearn_task2vec.__all__}
    domain = env.get_domain("py")
    for candidate in candidates:
        obj = _import_object(candidate)
        if obj is None:
            continue
        if id(obj) in reexported:
            candidate = f"sklearn_task2vec.{reexported[id(obj)]}"
        resolved = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode
        )
        if resolved is not None:
            return resolved
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_generated_request_methods)
    app.connect("missing-reference", _resolve_from_defining_module)


# -- MyST (the Markdown pages: user_guide.md is the single source of the user guide) ---------
myst_heading_anchors = 3

# -- sphinx-gallery ---------------------------------------------------------------------------
# Seconds an executed example may take before the build fails (see the module docstring).
EXAMPLE_TIME_LIMIT = int(os.environ.get("SKLEARN_TASK2VEC_EXAMPLE_TIME_LIMIT", "120"))
os.environ["SKLEARN_TASK2VEC_EXAMPLE_TIME_LIMIT"] = str(EXAMPLE_TIME_LIMIT)

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Run every example except the ones named slow_*.py (those are shown, not run).
    "filename_pattern": r"(^|[\\/])(?!slow_)[^\\/]+\.py$",
    "ignore_pattern": r"(__init__|_common|_text_data)\.py",
    "reset_modules": ("matplotlib", "gallery_time_limit.time_limit"),
    "reset_modules_order": "both",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 1,
    "backreferences_dir": None,
    "first_notebook_cell": None,
}

# -- HTML -------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"sklearn-task2vec {release}"
html_static_path = []
