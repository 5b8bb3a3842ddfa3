"""Probe networks by name: the user-facing part of the probe machinery.

:func:`build_named_probe` builds a torchvision classification model without its classifier
(e.g. to train experts from, :mod:`sklearn_task2vec.zoo`); :class:`RandomReLUProbe` is the
paper's toy probe for 2-D features. How probes are frozen, folded, cut and hooked for the
Fisher pass is internal (``sklearn_task2vec._probes``).
"""

from ._probes import RandomReLUProbe, TransformersBody, build_named_probe

__all__ = ["RandomReLUProbe", "TransformersBody", "build_named_probe"]
