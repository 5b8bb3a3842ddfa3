"""Probe networks: building them by name, loading their weights, and finding their filters.

A probe is a frozen feature extractor ``x -> z`` with ``z`` of shape ``(batch, d)``.
Its *filters* are the output channels of every convolution and the output units of
every linear layer inside it: one embedding coordinate each (paper, sec. 3.1).
"""

from __future__ import annotations

import collections
import copy
import itertools
import os
import urllib.error
from typing import NamedTuple

import numpy as np
import torch
from torch import fx, nn

from ._attention import ProjectedMultiheadAttention, ProjectedWindowAttention, explicit_attention
from ._onnx import is_onnx_file, onnx_probe
from ._probe_layers import (
    FILTER_TYPES,
    check_examples_independent,
    check_untied,
    deepcopy_memo,
    filter_layers,
    plain_layers,
    refuse_empty,
    refuse_scripted,
    refuse_transposed,
    uncompiled,
)
from ._utils import load_tensors, on_device, runs_channels_last


class RandomReLUProbe(nn.Module):
    """Random ReLU features ``max(0, a @ x + c)``, the probe of the paper's toy experiments.

    The paper (supplementary sec. 5, Fig. 4) embeds tasks on the unit square with ten
    features ``max(0, a x + b y + c)``, ``a, b ~ U[-1/2, 1/2]`` and ``c ~ U[-1, 1]``.
    This generalises it to ``n_features`` inputs: the weights are scaled by
    ``sqrt(2 / n_features)`` so that two inputs give exactly the paper's probe.

    Parameters
    ----------
    n_features : int
        Number of input features.
    n_hidden : int, default=64
        Number of random features, i.e. of filters in the embedding.
    seed : int, default=0
        Seed of the random weights.
    dtype : torch.dtype, default=torch.float64
        The probe is tiny, so it runs in double precision by default.
    """

    def __init__(self, n_features, n_hidden=64, seed=0, dtype=torch.float64):
        super().__init__()
        generator = torch.Generator().manual_seed(int(seed))
        self.features = nn.Linear(n_features, n_hidden, dtype=dtype)
        with torch.no_grad():
            scale = (2.0 / n_features) ** 0.5
            weight = torch.rand(n_hidden, n_features, generator=generator, dtype=dtype) - 0.5
            self.features.weight.copy_(weight * scale)
            self.features.bias.copy_(2.0 * torch.rand(n_hidden, generator=generator, dtype=dtype) - 1.0)
        self.activation = nn.ReLU()

    def forward(self, x):
        return self.activation(self.features(x))


def is_named_probe(probe):
    return isinstance(probe, str) and probe != "auto"


#: Prefix of a timm model name given as a probe: ``"timm:convnext_tiny"``.
TIMM_PREFIX = "timm:"


def check_probe_name(name):
    """Refuse a probe name :func:`build_named_probe` cannot build, before any work: neither a
    torchvision classification model, nor ``"timm:<a timm model>"`` (with timm installed), nor
    an ONNX file that exists.

    Raises
    ------
    ValueError
        Naming the probe and the names there are.
    """
    if is_onnx_file(name):
        if not os.path.isfile(name):
            raise ValueError(f"Probe {os.fspath(name)!r}: no such ONNX file.")
        return
    if not isinstance(name, str):
        raise TypeError(f"A probe given as a path must be an ONNX file (ending in .onnx), got {name!r}.")
    if name.startswith(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX) :]
        try:
            import timm
        except ImportError as exc:
            raise ValueError(
                f"Probe {name!r} needs timm: pip install 'sklearn-task2vec[timm]' (or pip install timm)."
            ) from exc
        if not timm.is_model(model):
            raise ValueError(
                f"Unknown probe {name!r}: {model!r} is not a timm model name "
                f"(timm.list_models() lists them, e.g. {', '.join(timm.list_models()[:5])})."
            )
        return
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        raise ValueError(
            f"Unknown probe {name!r}: expected 'auto', a torch.nn.Module, or one of torchvision's "
            f"classification models, e.g. 'resnet18', 'resnet34', 'resnet50', 'densenet121', "
            f"'vgg13_bn' (all: {', '.join(available)})."
        )


def build_named_probe(name, weights, seed=0):
    """A torchvision (or timm) classification model with its classifier removed.

    Parameters
    ----------
    name : str or path-like
        A torchvision classification model name, e.g. ``"resnet34"``, or ``"timm:<name>"`` for
        a model of timm (the optional extra ``[timm]``), e.g. ``"timm:convnext_tiny"``, or the
        path of an ONNX file (ending in ``.onnx``, the optional extra ``[onnx]``): the graph as
        :func:`onnx_probe` converts it, whole (its weights are the file's; ``weights`` and
        ``seed`` are ignored, and the graph's classifier, if it has one, is kept: cut it off
        with ``onnx_probe(path, output=...)``).
    weights : {"imagenet", None} or path-like
        ``"imagenet"``: torchvision's default pretrained weights, downloaded and cached by
        torch.hub (``$TORCH_HOME/hub/checkpoints``); for timm its default pretrained weights,
        cached by Hugging Face Hub. ``None``: random initialisation.
        A path: a local ``state_dict`` of the full model or of the body without its classifier,
        loaded with ``weights_only=True``.
    seed : int, default=0
        Seeds the random initialisation (torch's global generator is left as it was).
    """
    check_probe_name(name)
    if is_onnx_file(name):
        return onnx_probe(name)
    if name.startswith(TIMM_PREFIX):
        return _build_timm_probe(name[len(TIMM_PREFIX) :], weights, seed)
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None)
    if isinstance(weights, str) and weights == "imagenet":
        model.load_state_dict(_imagenet_state_dict(name))
        _drop_classifier(model, name)
    elif weights is None:
        _drop_classifier(model, name)
    elif isinstance(weights, (str, os.PathLike)):
        state_dict = load_state_dict_file(weights)
        with_classifier = _classifier_keys(model, name) <= set(state_dict)
        if not with_classifier:
            _drop_classifier(model, name)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ValueError(
                f"probe_weights file {os.fspath(weights)!r} does not fit probe {name!r}: {exc}"
            ) from exc
        if with_classifier:
            _drop_classifier(model, name)
    else:
        raise TypeError(
            f"probe_weights must be 'imagenet', None or a path to a state_dict file, got {weights!r}."
        )
    return model


def _build_timm_probe(name, weights, seed):
    """A timm model created without its classifier (``num_classes=0``: it returns its pooled
    ``(batch, d)`` features), with ``weights`` as in :func:`build_named_probe`."""
    import timm  # check_probe_name has said how to install it

    pretrained = isinstance(weights, str) and weights == "imagenet"
    if not (pretrained or weights is None or isinstance(weights, (str, os.PathLike))):
        raise TypeError(
            f"probe_weights must be 'imagenet', None or a path to a state_dict file, got {weights!r}."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = timm.create_model(name, pretrained=pretrained, num_classes=0)
        except Exception as exc:  # timm and the hub raise many kinds of errors offline
            if not pretrained:
                raise
            raise RuntimeError(
                f"Could not get the pretrained weights of probe {TIMM_PREFIX + name!r} "
                f"({type(exc).__name__}: {exc}). Either run once on a machine with internet "
                f"access (timm caches them in the Hugging Face cache, $HF_HOME), or pass "
                f"probe_weights='/path/to/state_dict.pt', or probe_weights=None for a randomly "
                f"initialised probe."
            ) from exc
    if pretrained or weights is None:
        return model
    state_dict = load_state_dict_file(weights)
    body = set(model.state_dict())
    classifier = [key for key in state_dict if key not in body]  # the head num_classes=0 removed
    try:
        model.load_state_dict({key: value for key, value in state_dict.items() if key in body})
    except RuntimeError as exc:
        raise ValueError(
            f"probe_weights file {os.fspath(weights)!r} does not fit probe {TIMM_PREFIX + name!r}: {exc}"
        ) from exc
    head = getattr(model, "pretrained_cfg", {}).get("classifier")
    unexpected = [key for key in classifier if not (head and key.startswith(f"{head}."))]
    if unexpected:
        raise ValueError(
            f"probe_weights file {os.fspath(weights)!r} does not fit probe {TIMM_PREFIX + name!r}: "
            f"unexpected keys {unexpected[:5]} besides the classifier's."
        )
    return model


def _imagenet_state_dict(name):
    import torchvision

    pretrained = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return pretrained.get_state_dict(progress=False, check_hash=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(pretrained.url))
        raise RuntimeError(
            f"Could not get the ImageNet weights of probe {name!r} ({type(exc).__name__}: {exc}). "
            f"Either run once on a machine with internet access (torchvision caches them), "
            f"or download {pretrained.url} to {cache}, or pass probe_weights='/path/to/state_dict.pt', "
            f"or probe_weights=None for a randomly initialised probe."
        ) from exc


def load_state_dict_file(path):
    """Load a ``state_dict`` from a local file, refusing anything but tensors (``weights_only``)."""
    if not os.path.isfile(path):
        raise ValueError(f"probe_weights file not found: {os.fspath(path)!r}.")
    state_dict = load_tensors(path, f"probe_weights file {os.fspath(path)!r}")
    if not isinstance(state_dict, dict):
        raise ValueError(
            f"probe_weights file {os.fspath(path)!r} holds a {type(state_dict).__name__}, "
            f"not a state_dict (a dict of tensors)."
        )
    return state_dict


def _classifier_path(model, name):
    """The module path of the final classifier: the last Linear layer registered."""
    linear_paths = [path for path, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linear_paths:
        raise ValueError(
            f"Probe {name!r} has no final Linear classifier to remove; pass it as a torch.nn.Module "
            f"that returns (batch, d) features instead."
        )
    return linear_paths[-1]


def _classifier_keys(model, name):
    path = _classifier_path(model, name)
    return {f"{path}.{key}" for key in model.get_submodule(path).state_dict()}


def _drop_classifier(model, name):
    path = _classifier_path(model, name)
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attribute, nn.Identity())


def is_transformers_model(module):
    """Whether ``module`` is a Hugging Face ``transformers`` model (without importing it)."""
    return any(
        kind.__name__ == "PreTrainedModel" and kind.__module__.startswith("transformers")
        for kind in type(module).__mro__
    )


class TransformersBody(nn.Module):
    """A Hugging Face ``transformers`` model as a probe of text.

    Its body (``base_model``: a language-modelling or classification head is not part of the
    probe, as a named torchvision probe's classifier is not), run on token batches ``(n, 2,
    length)`` (token ids and attention mask, padded on the right; the embedder makes them from
    texts) or on token ids ``(n, length)``. Its output is the last hidden states ``(n, length,
    d)``: a text classification task pools them into its head's features (the embedder's
    ``pooling``), a language-modelling task reads them at every token.

    A causal language model's output layer (``lm_head``), a Linear layer from the last hidden
    state to the vocabulary, is kept as ``output_layer``, a copy untied from the input
    embeddings: the start of a language-modelling task's head. It is not called by the
    probe's forward and not embedded. It is kept only where it is checked to compute the
    model's logits from the last hidden state directly (no transform, scaling or capping in
    between); otherwise ``output_layer`` is None and ``output_layer_missing`` says why.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Its modules are used, not copied (copy the wrapper).
    """

    def __init__(self, model):
        super().__init__()
        self.body = model.base_model
        self.output_layer, self.output_layer_missing = _language_model_output(model)

    def forward(self, tokens):
        if tokens.dim() == 3:
            return self.body(input_ids=tokens[:, 0], attention_mask=tokens[:, 1]).last_hidden_state
        return self.body(input_ids=tokens).last_hidden_state


def _language_model_output(model):
    """``(layer, None)``: an untied copy of ``model``'s output layer, checked to map the body's
    last hidden state to the model's logits; or ``(None, why not)``."""
    name = type(model).__name__
    output = model.get_output_embeddings() if model is not model.base_model else None
    if output is None:
        return (
            None,
            f"{name} has no language-modelling head: load a causal language model (AutoModelForCausalLM).",
        )
    if not isinstance(output, nn.Linear):
        return None, f"the output layer of {name} is a {type(output).__name__}, not a Linear layer."
    seen = {}

    def body_done(module, args, result):
        seen["hidden"] = getattr(result, "last_hidden_state", None)

    def output_done(module, args, result):
        seen.update(read=args[0], logits=result)

    handles = [model.base_model.register_forward_hook(body_done), output.register_forward_hook(output_done)]
    ids = torch.zeros((1, 2), dtype=torch.long, device=output.weight.device)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    except Exception as exc:  # a model that needs other inputs (an encoder-decoder)
        return (
            None,
            f"{name} does not run as a language model on token ids alone ({type(exc).__name__}: {exc}).",
        )
    finally:
        for handle in handles:
            handle.remove()
    hidden = seen.get("hidden")
    direct = hidden is not None and seen.get("read") is not None and torch.equal(seen["read"], hidden)
    if not (direct and torch.equal(seen["logits"], logits)):
        return None, (
            f"the output layer of {name} does not compute its logits from the last hidden state "
            f"directly (a transform, scaling or capping comes between), so it cannot start a head "
            f"over the probe's hidden states."
        )
    layer = nn.Linear(
        output.in_features,
        output.out_features,
        bias=output.bias is not None,
        dtype=output.weight.dtype,
        device=output.weight.device,
    )
    with torch.no_grad():
        layer.weight.copy_(output.weight)
        if output.bias is not None:
            layer.bias.copy_(output.bias)
    return layer, None


def frozen_copy(probe):
    """A deep copy of ``probe`` ready to be probed: eval mode, no weight gradients, no in-place
    ops, attention projections as modules, every weight in a plain layer.

    In-place activations are switched off because they overwrite the filter outputs
    whose gradients the Fisher hooks read. Every ``nn.MultiheadAttention`` is replaced by
    the same function with its projections called as Linear modules
    (:func:`~sklearn_task2vec._attention.explicit_attention`), so that they can be embedded;
    ``torch.compile`` wrappers, Hugging Face ``Conv1D`` layers and reparametrised weights
    become the plain layers they compute (:func:`~sklearn_task2vec._probe_layers.plain_layers`).
    A Hugging Face ``transformers`` model is probed through its body (:class:`TransformersBody`).
    """
    original = uncompiled(probe)
    refuse_scripted(original)
    if is_transformers_model(original):
        original = TransformersBody(original)
    frozen = plain_layers(explicit_attention(copy.deepcopy(original, deepcopy_memo(original))).eval())
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    for module in frozen.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return frozen


def probe_filters(probe, layers=None):
    """``[(path, module), ...]``: the filter layers of ``probe`` that the embedding covers.

    ``layers``: the probe's :class:`~sklearn_task2vec._probe_layers.ProbeLayers`, whose
    ``embedded`` layers these are; None: every Conv and Linear module with a weight, after
    refusing transposed convolutions and tied weights (for probes known to call each once).
    Either way, BatchNorm that normalises with batch statistics is refused
    (:func:`check_examples_independent`).
    """
    if layers is not None:
        filters = [(path, probe.get_submodule(path)) for path in layers.embedded]
    else:
        filters = list(filter_layers(probe).items())
        for path, module in filters:
            refuse_transposed(path, module)
        refuse_empty(filters)
        check_untied(probe, filters)
    check_examples_independent(probe)
    return filters


class FilterLeafTracer(fx.Tracer):
    """The ``torch.fx`` tracer of probes: every Conv and Linear module, subclasses included, and
    every attention module of :mod:`~sklearn_task2vec._attention` stays one call.

    fx's default tracer keeps only torch's own modules whole and traces into a subclass such
    as ``class StdConv2d(nn.Conv2d)``, turning its call into ``F.conv2d`` on its weight: the
    hooks on the module would never fire.
    """

    def is_leaf_module(self, module, qualified_name):
        if isinstance(module, (*FILTER_TYPES, ProjectedMultiheadAttention, ProjectedWindowAttention)):
            return True
        return super().is_leaf_module(module, qualified_name)


def symbolic_trace(probe):
    """``probe`` as a new ``torch.fx.GraphModule`` sharing its modules: traced by
    :class:`FilterLeafTracer`, or, for a probe that is a ``GraphModule`` already (an ONNX probe,
    :func:`~sklearn_task2vec._onnx.onnx_probe`), over a copy of its own graph, whose modules
    may run code that fx cannot trace (a reshape that reads its target's values)."""
    if isinstance(probe, fx.GraphModule):
        return fx.GraphModule(probe, copy.deepcopy(probe.graph), probe.__class__.__name__)
    graph = FilterLeafTracer().trace(probe)
    return fx.GraphModule(probe, graph, probe.__class__.__name__)


_BATCHNORM_AFTER = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


def fold_batchnorm(probe):
    """``probe`` with each eval-mode BatchNorm folded into the convolution before it.

    Returns ``(folded, scales)``: a ``torch.fx`` copy of the probe in which ``bn(conv(x))``
    is one convolution with weight ``W' = W * gamma / sigma`` (per output channel), and for
    each folded layer's path the factor ``gamma / sigma``. The folded layer computes the same
    function, and ``d loss / d W = (gamma / sigma) * d loss / d W'``, so the Fisher of the
    original filters is that of the folded ones times ``(gamma / sigma)^2``. It saves the
    BatchNorm's forward and backward in the Fisher pass. Module paths are unchanged. A probe
    that ``torch.fx`` cannot trace is returned as it is, with no scales.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        traced = symbolic_trace(probe)
    except Exception:  # control flow fx cannot follow: folding is only an optimisation
        return probe, {}
    modules = dict(traced.named_modules())
    calls = collections.Counter(node.target for node in traced.graph.nodes if node.op == "call_module")
    scales = {}
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            continue
        batchnorm, layer_node = modules[node.target], node.args[0]
        if not (isinstance(layer_node, fx.Node) and layer_node.op == "call_module"):
            continue
        layer = modules[layer_node.target]
        foldable = (
            type(layer) in _BATCHNORM_AFTER
            and isinstance(batchnorm, _BATCHNORM_AFTER[type(layer)])
            and batchnorm.running_var is not None
            and batchnorm.num_features == layer.out_channels
            and len(layer_node.users) == 1
            and calls[layer_node.target] == 1
            and not _has_hooks(layer)
            and not _has_hooks(batchnorm)
        )
        if not foldable:
            continue
        gamma = batchnorm.weight.detach() if batchnorm.affine else torch.ones_like(batchnorm.running_var)
        scales[layer_node.target] = gamma / torch.sqrt(batchnorm.running_var + batchnorm.eps)
        parent_path, _, name = layer_node.target.rpartition(".")
        parent = traced.get_submodule(parent_path) if parent_path else traced
        setattr(parent, name, fuse_conv_bn_eval(layer, batchnorm))
        node.replace_all_uses_with(layer_node)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced, scales


def _has_hooks(module):
    """Whether ``module`` has hooks of the user's that a fused replacement would not keep."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


class RunnableProbe(NamedTuple):
    """A probe ready for the Fisher pass.

    ``module`` maps the probe's input (or, with a ``stem``, the stem's output) to features;
    ``stem`` (or None) computes the activations before the first embedded layer, without
    gradients; ``filters`` pairs each embedded filter path with the module ``module`` calls;
    ``scales`` holds a folded BatchNorm's ``gamma / sigma`` per filter module, or None;
    ``digest``: the :func:`~sklearn_task2vec._utils.module_digest` of the frozen probe it was
    prepared from, naming its weights for the probe checks' verdicts, or None.
    """

    module: nn.Module
    filters: list
    scales: list
    stem: nn.Module | None = None
    digest: str | None = None


def _trace(probe, start):
    try:
        return symbolic_trace(probe)
    except Exception as exc:  # fx raises many kinds of errors on control flow it cannot follow
        raise ValueError(
            f"skip_layers={start!r} needs a probe that torch.fx can trace, to split it before "
            f"{start!r}: {type(exc).__name__}: {exc}"
        ) from exc


def split_probe(probe, start):
    """``(stem, tail)``: the probe cut just before the first call of module ``start``.

    ``stem`` maps the probe's input to the activations that enter ``start`` and ``tail``
    maps those to the features, so ``tail(stem(x)) == probe(x)``. Both are ``torch.fx``
    graph modules sharing the probe's submodules. The cut must be clean: ``tail`` may use
    nothing computed before ``start`` but that one activation (a block boundary such as
    ``"layer3"`` of a ResNet).
    """
    traced = _trace(probe, start)
    nodes = list(traced.graph.nodes)
    first = next(
        (
            node
            for node in nodes
            if node.op == "call_module" and (node.target == start or node.target.startswith(start + "."))
        ),
        None,
    )
    if first is None:
        called = [node.target for node in nodes if node.op == "call_module"]
        blocks = sorted(
            {target.split(".")[0] for target in called}, key=[t.split(".")[0] for t in called].index
        )
        raise ValueError(
            f"skip_layers={start!r} is not a layer the probe calls; its top-level blocks are {blocks}."
        )
    cut = first.args[0] if first.args else None
    if not isinstance(cut, fx.Node):
        raise ValueError(f"skip_layers={start!r}: the layer's input is not an activation of the probe.")
    stem_nodes = nodes[: nodes.index(cut) + 1]
    in_stem = set(stem_nodes)

    stem_graph = fx.Graph()
    stem_env = {}
    for node in stem_nodes:
        stem_env[node] = stem_graph.node_copy(node, stem_env.__getitem__)
    stem_graph.output(stem_env[cut])

    tail_graph = fx.Graph()
    tail_env = {cut: tail_graph.placeholder("activations")}

    def tail_value(node):
        if node not in tail_env:
            if node not in in_stem or node.op != "get_attr":
                raise ValueError(
                    f"skip_layers={start!r} does not cut the probe cleanly: layers from {start!r} "
                    f"on also use {node.name!r}, computed before it. Choose a block boundary."
                )
            tail_env[node] = tail_graph.node_copy(node)  # a constant: copied, not cached
        return tail_env[node]

    for node in nodes[len(stem_nodes) :]:
        tail_env[node] = tail_graph.node_copy(node, tail_value)
    return fx.GraphModule(traced, stem_graph), fx.GraphModule(traced, tail_graph)


def embedded_filters(probe, start=None, layers=None):
    """The filters the embedding covers: :func:`probe_filters` (of ``layers``), from layer
    ``start`` on."""
    filters = probe_filters(probe, layers)
    if start is None:
        return filters
    _, tail = split_probe(probe, start)
    kept = [(path, module) for path, module in filters if _calls(tail, path)]
    if not kept:
        raise ValueError(f"skip_layers={start!r} leaves no Conv or Linear layer to embed.")
    return kept


def _calls(graph_module, path):
    return any(node.op == "call_module" and node.target == path for node in graph_module.graph.nodes)


def folded_filters(probe, start=None, layers=None):
    """The probe to run, with BatchNorm folded, and its filters in ``probe``'s order.

    Returns a :class:`RunnableProbe`: ``filters`` pairs each filter path of ``probe`` (from
    layer ``start`` on, of ``layers``, see :func:`embedded_filters`) with the module that
    computes it in the folded probe; ``scales`` holds, per filter module, the factor its
    gradients carry (see :func:`fold_batchnorm`), or None where it is unfolded. With
    ``start``, ``stem`` is the folded probe before ``start`` and ``module`` the rest
    (:func:`split_probe`).
    """
    folded, scales = fold_batchnorm(probe)
    stem = None
    if start is not None:
        stem, folded = split_probe(folded, start)
    filters = [(path, folded.get_submodule(path)) for path, _ in embedded_filters(probe, start, layers)]
    return RunnableProbe(folded, filters, [scales.get(path) for path, _ in filters], stem)


def prepare_probe(probe, start, device, layers=None, digest=None):
    """The frozen ``probe`` ready for the Fisher pass on ``device``: a :class:`RunnableProbe`
    (BatchNorm folded, cut at layer ``start`` if given, see :func:`folded_filters`), in
    channels-last memory format where that is faster. ``layers``: the probe's
    :class:`~sklearn_task2vec._probe_layers.ProbeLayers` (None: every filter module);
    ``digest``: ``probe``'s :func:`~sklearn_task2vec._utils.module_digest`, if known.
    ``probe`` itself is not modified."""
    runnable = folded_filters(on_device(probe, device), start, layers)
    return _placed(runnable._replace(digest=digest), device)


def copy_probe(runnable, device):
    """An independent copy of a :class:`RunnableProbe` on ``device``, without tracing again.

    For workers that run side by side: each needs its own modules (the Fisher pass hooks
    them), and ``torch.fx`` tracing patches ``torch.nn.Module.__call__`` for every thread of
    the process while it runs, so it must not run beside another thread's forward pass.
    """
    copied = copy.deepcopy(runnable)
    for module in (copied.stem, copied.module):
        if module is not None:
            module.to(device)
    scales = [None if scale is None else scale.to(device) for scale in copied.scales]
    return _placed(copied._replace(scales=scales), device)


def _placed(runnable, device):
    if runs_channels_last(device):
        for module in (runnable.stem, runnable.module):
            if module is not None:
                channels_last(module)
    return runnable


def channels_last(module):
    """``module``'s 4-D parameters and buffers (2-D convolution weights) in channels-last memory
    format, in place. Others keep theirs: torch has no channels-last layout for 5-D weights
    (``Conv3d``), which ``module.to(memory_format=...)`` would try to give them."""
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def trivial_embedding(filters):
    """The prior precision of the paper's trivial embedding, per layer (``trivial_embedding_``).

    Sec. 3.1 and supplementary sec. 6: a task with constant loss or no samples gets the
    prior ``lambda^2 I``, one scale per layer, picked "according to the scale of the weights
    of each layer". We take the precision of the isotropic Gaussian that matches the layer's
    weights, ``lambda_l^2 = 1 / mean(w_l^2)``, which has the units of a Fisher entry (1/w^2).
    A single-class task's row is this prior's term in its method's estimate:
    ``(beta / N) lambda^2`` for the variational one, 0 for the point estimates
    (:func:`~sklearn_task2vec._pipeline.single_class_embedding`).
    """
    scales = []
    for _, module in filters:
        weight = module.weight.detach().double()
        second_moment = float(weight.pow(2).mean())
        precision = 1.0 / second_moment if second_moment > 0 else 1.0
        scales.append(np.full(weight.shape[0], precision))
    return np.concatenate(scales)


def filter_names(filters):
    return np.asarray(
        [f"{path}:{index}" for path, module in filters for index in range(module.weight.shape[0])],
        dtype=object,
    )
