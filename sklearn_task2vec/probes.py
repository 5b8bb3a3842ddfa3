"""Probe networks by name or file: the user-facing part of the probe machinery.

:func:`build_named_probe` builds a torchvision classification model without its classifier
(e.g. to train experts from, :mod:`sklearn_task2vec.zoo`); :func:`onnx_probe` converts an ONNX
graph (optionally cut at a named tensor) to a torch module whose Conv and Linear layers are
embedded (the optional extra ``[onnx]``); :class:`RandomReLUProbe` is the paper's toy probe for
2-D features. How probes are frozen, folded, cut and hooked for the Fisher pass is internal
(``sklearn_task2vec._probes``).
"""

from ._onnx import onnx_probe
from ._probes import RandomReLUProbe, TransformersBody, build_named_probe

__all__ = ["RandomReLUProbe", "TransformersBody", "build_named_probe", "onnx_probe"]
