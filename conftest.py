"""Doctest collection: a module whose examples need an optional extra is left out without it
(its tests skip themselves the same way, ``pytest.importorskip``)."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("onnx2torch") else ["sklearn_task2vec/_onnx.py"]
