"""Which layers of a probe carry filters, and which of them the embedding covers.

A probe's *filters* are the output channels of its convolutions and the output units of its
linear layers (paper, sec. 3.1). A filter layer is found by what its weight does, not by its
class name: :func:`inspect_probe` runs one example through the probe and watches every linear
operation (``F.linear``, ``F.conv*``, ``addmm``, ``matmul``, ``einsum``, the recurrent kernels,
...) through a ``torch`` function mode. A parameter applied there to the probe's activations is
a filter weight; the layer that holds it is embedded if it is a kind whose per-example
gradients the Fisher pass computes (:data:`FILTER_TYPES`) and is called once, as a module, with
one input and with gradients on; otherwise the probe is refused with the reason found. Filter
layers the forward never calls are left out, as are parameters that are not applied as filters
(embedding tables, position biases); :class:`ProbeLayers` lists both with their reasons.

Before that, :func:`plain_layers` turns the storage forms of a weight into the plain layer
that computes the same function, on the probe's frozen copy: a ``torch.compile`` wrapper is
unwrapped, a Hugging Face ``Conv1D`` (``x @ W + b``, its weight stored transposed) becomes the
``nn.Linear`` it is, and a parametrized, weight-normalised or spectrally normalised weight
becomes the weight the layer computes with. A pruned weight keeps its mask: pruned entries are
held at zero, not weights, so their gradients are masked (:data:`PRUNING_MASK`).
"""

from __future__ import annotations

import collections
import hashlib
import threading
import types
from typing import NamedTuple

import torch
from torch import fx, nn
from torch.nn.utils import parametrize, prune, remove_spectral_norm, remove_weight_norm
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from ._heads import probe_input_error
from ._utils import module_digest

#: Modules whose weights are filters: one embedding coordinate per output channel/unit.
FILTER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)

#: Name of the buffer in which a pruned layer of the frozen copy keeps its pruning mask.
PRUNING_MASK = "fisher_pruning_mask"

# Functions whose tensor operands are multiplied together: a parameter of two or more
# dimensions among them, beside an activation, is applied as a filter weight.
_LINEAR_OPERATIONS = frozenset(
    {
        "linear",
        "bilinear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "conv_tbc",
        "addmm",
        "addbmm",
        "baddbmm",
        "addmv",
        "mm",
        "bmm",
        "mv",
        "matmul",
        "__matmul__",
        "__rmatmul__",
        "einsum",
        "tensordot",
        "inner",
        "lstm",
        "gru",
        "rnn_tanh",
        "rnn_relu",
        "lstm_cell",
        "gru_cell",
        "rnn_tanh_cell",
        "rnn_relu_cell",
    }
)


class ProbeRefused(ValueError):
    """A probe whose filters the Fisher cannot compute, whatever the task: the error names the
    layer and the reason. (A probe that fails on a task's inputs raises a plain ValueError: that
    is the task's error.)"""


class ProbeLayers(NamedTuple):
    """What :func:`inspect_probe` found.

    ``embedded``: the paths of the filter layers the embedding covers, in module order;
    ``left_out``: path -> why a layer holding a weight of two or more dimensions is not
    embedded (never called; not applied as a filter); ``input_dtype``: the dtype the probe
    takes its inputs in (``torch.int64`` for integer inputs it takes as integers, e.g. token
    ids, else its floating dtype).
    """

    embedded: tuple
    left_out: dict
    input_dtype: torch.dtype


# ------------------------------------------------------------------- storage forms -> plain layers


def _is_hugging_face_conv1d(module):
    """``transformers.pytorch_utils.Conv1D``: ``addmm(b, x, W)`` with ``W`` of shape (in, out)."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and type(module).__module__.startswith("transformers")
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and weight.shape[1] == getattr(module, "nf", None)
    )


def _as_linear(conv1d):
    weight = conv1d.weight.detach()
    linear = nn.Linear(
        weight.shape[0],
        weight.shape[1],
        bias=conv1d.bias is not None,
        dtype=weight.dtype,
        device=weight.device,
    )
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if conv1d.bias is not None:
            linear.bias.copy_(conv1d.bias.detach())
    return linear


def _compiled_original(module):
    """The module a ``torch.compile`` wrapper (``OptimizedModule``) wraps, or None."""
    if type(module).__name__ == "OptimizedModule" and isinstance(
        getattr(module, "_orig_mod", None), nn.Module
    ):
        return module._orig_mod
    return None


def uncompiled(module):
    """``module`` without its ``torch.compile`` wrapper, if it has one."""
    original = _compiled_original(module)
    return module if original is None else uncompiled(original)


def deepcopy_memo(module):
    """A ``copy.deepcopy`` memo that copies the computed weights of hook-based reparametrisations.

    Legacy ``weight_norm``, ``spectral_norm`` and ``prune`` keep the weight they computed as a
    plain tensor attribute with a gradient history, which ``deepcopy`` refuses; a detached
    copy of it is what the copy should hold (it is computed again from the originals anyway).
    """
    memo = {}
    for submodule in module.modules():
        for value in vars(submodule).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return memo


def plain_layers(module):
    """Turn, in place, every storage form of a weight in ``module`` (a frozen copy, in eval mode)
    into the plain layer that computes the same function. Returns ``module``.

    * ``torch.compile`` wrappers of submodules: their original module;
    * Hugging Face ``Conv1D``: the equivalent ``nn.Linear`` (weight transposed);
    * ``torch.nn.utils.parametrize`` parametrizations (``parametrizations.weight_norm``,
      ``spectral_norm``, custom ones), legacy ``weight_norm`` and ``spectral_norm``: the weight
      they compute in eval mode, as a plain parameter;
    * ``torch.nn.utils.prune``: the pruned weight, with its mask kept in the buffer
      :data:`PRUNING_MASK` (the Fisher pass masks the pruned entries' gradients).
    """
    replacements = {}
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if id(child) not in replacements:
                replacement = uncompiled(child)
                if _is_hugging_face_conv1d(replacement):
                    replacement = _as_linear(replacement)
                replacements[id(child)] = replacement
            if replacements[id(child)] is not child:
                setattr(parent, name, replacements[id(child)])
    for layer in module.modules():
        _remove_reparametrisations(layer)
    return module


def _remove_reparametrisations(layer):
    for hook in list(layer._forward_pre_hooks.values()):
        if isinstance(hook, WeightNorm):
            remove_weight_norm(layer, hook.name)
        elif isinstance(hook, SpectralNorm):
            remove_spectral_norm(layer, hook.name)
        elif isinstance(hook, prune.BasePruningMethod):
            name = hook._tensor_name
            mask = getattr(layer, f"{name}_mask").detach().clone()
            prune.remove(layer, name)
            if name == "weight":
                layer.register_buffer(PRUNING_MASK, mask)
    if parametrize.is_parametrized(layer):
        # Not parametrize.remove_parametrizations: it deletes the weight's property from the
        # layer's class, which a deep copy shares with the user's own layer.
        with torch.no_grad():
            computed = {name: getattr(layer, name).detach().clone() for name in layer.parametrizations}
        del layer._modules["parametrizations"]
        layer.__class__ = type(layer).__bases__[0]
        for name, value in computed.items():
            layer.register_parameter(name, nn.Parameter(value, requires_grad=False))


# ------------------------------------------------------------------------ verdict cache


class _Unsummarised(Exception):
    """An attribute of a kind :func:`probe_fingerprint` cannot summarise: nothing is cached."""


_SCALARS = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.memory_format)
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType, type, types.ModuleType)


class _Same:
    """An object compared by identity, and kept alive so that no other takes its ``id``."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Same) and other.value is self.value

    def __hash__(self):
        return id(self.value)


def _token(value):
    """A hashable summary of an instance attribute's value, equal only for values a forward
    cannot tell apart; code (functions, classes) by identity, the objects themselves kept in
    the token so that no other object can take their ``id``."""
    if isinstance(value, _SCALARS):
        return type(value), value
    if isinstance(value, _CODE):
        return _Same(value)
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_token(item) for item in value)
    if isinstance(value, (set, frozenset)):
        return type(value), frozenset(_token(item) for item in value)
    if isinstance(value, dict):
        return type(value), tuple((_token(key), _token(item)) for key, item in value.items())
    if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
        try:
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        except (RuntimeError, TypeError, NotImplementedError) as exc:  # no data to read (meta, sparse)
            raise _Unsummarised(type(value).__qualname__) from exc
        return "tensor", tuple(value.shape), value.dtype, value.device, hashlib.sha256(data.data).hexdigest()
    raise _Unsummarised(type(value).__qualname__)


def _class_token(module):
    """The code of ``module``'s class: every class of its method resolution order with what its
    namespace holds, by identity (a method replaced on the class changes it); a ``torch.fx``
    graph module's own class (made for each instance) by the code it generated."""
    kinds = type(module).__mro__
    if isinstance(module, fx.GraphModule):
        kinds = kinds[1:]  # GraphModule.__new__ makes a class per instance; its code is the graph's
    namespaces = tuple(
        (_Same(kind), tuple((name, _Same(value)) for name, value in vars(kind).items()))
        for kind in kinds
        if kind not in (nn.Module, object)
    )
    return (module.code if isinstance(module, fx.GraphModule) else None), namespaces


# What a module's instance dictionary holds that probe_fingerprint summarises otherwise (or,
# for a graph module's graph, through the code generated from it).
_SUMMARISED_APART = frozenset({"_parameters", "_buffers", "_modules", "_graph"})


def probe_fingerprint(module):
    """What the probe checks' verdicts depend on besides the weights' values and the inputs, or
    None where it cannot be summarised (then nothing is cached).

    For every submodule, shared ones once (the sharing is part of it): its path, its class's
    code (:func:`_class_token`), every instance attribute (hyper-parameters, flags, the
    ``training`` flag, every kind of hook registered on it, a parametrization's modules), and
    the name, kind, shape, dtype, device, layout and ``requires_grad`` of each parameter and
    buffer, with which of them are shared (tied weights); and the global module hooks. An
    instance attribute of a kind it cannot compare (an arbitrary object) makes the whole
    fingerprint None. It does not cover what the forward reads outside the probe (module
    globals) or a mutable object changed in place on a class.
    """
    import torch.nn.modules.module as module_globals

    parts, module_index, tensor_index = [], {}, {}
    try:
        for path, submodule in module.named_modules(remove_duplicate=False):
            if id(submodule) in module_index:
                parts.append((path, "same module as", module_index[id(submodule)]))
                continue
            module_index[id(submodule)] = path
            tensors = []
            for kind in ("_parameters", "_buffers"):
                for name, tensor in vars(submodule)[kind].items():
                    if tensor is None:
                        tensors.append((kind, name, None))
                        continue
                    shared = tensor_index.setdefault(id(tensor), (path, name))
                    tensors.append(
                        (kind, name, type(tensor), tuple(tensor.shape), tensor.stride(), tensor.dtype)
                        + (tensor.device, tensor.requires_grad, shared)
                    )
            attributes = tuple(
                (name, _token(value))
                for name, value in vars(submodule).items()
                if name not in _SUMMARISED_APART
            )
            parts.append((path, _class_token(submodule), attributes, tuple(tensors)))
        hooks = tuple(
            (name, _token(value))
            for name, value in sorted(vars(module_globals).items())
            if name.startswith("_global_") and isinstance(value, dict)
        )
    except _Unsummarised:
        return None
    return tuple(parts), hooks


class ProbeVerdicts:
    """The verdicts of the probe checks, kept by what they depend on, so that each probe is
    checked once (:func:`inspect_probe`, :func:`~sklearn_task2vec._fisher.check_per_example_gradients`).

    The key is the check's name, :func:`probe_fingerprint`, the weights' values (the
    frozen probe's :func:`~sklearn_task2vec._utils.module_digest`: a check passed by
    particular weights, a zero-initialised branch, must not vouch for others) and the inputs'
    shape and dtype; only accepted probes are kept (a refusal runs again and says again why).
    Not kept where the fingerprint is None. The last ``size`` verdicts are kept.
    """

    def __init__(self, size=64):
        self.size = size
        self._verdicts = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(check, module, digest, inputs):
        """The key of ``check`` on ``module`` (weights ``digest``, or None: hashed here) and
        ``inputs`` (a tensor or an array, batch axis first), or None where nothing may be cached."""
        fingerprint = probe_fingerprint(module)
        if fingerprint is None:
            return None
        digest = module_digest(module) if digest is None else digest
        return check, fingerprint, digest, tuple(inputs.shape[1:]), str(inputs.dtype)

    def clear(self):
        """Forget every verdict."""
        with self._lock:
            self._verdicts.clear()

    def get(self, key):
        """The verdict kept under ``key``, or None."""
        if key is None:
            return None
        with self._lock:
            if key in self._verdicts:
                self._verdicts.move_to_end(key)
                return self._verdicts[key]
        return None

    def put(self, key, verdict):
        if key is None:
            return
        with self._lock:
            self._verdicts[key] = verdict
            while len(self._verdicts) > self.size:
                self._verdicts.popitem(last=False)


#: The process's verdicts of the probe checks.
PROBE_VERDICTS = ProbeVerdicts()


# ------------------------------------------------------------------------------- inspection


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class _WeightUses(TorchFunctionMode):
    """Records each parameter applied by a linear operation to an activation of the probe.

    Tensors computed from the input are activations; tensors computed from parameters alone
    (``W.t()``, a standardised weight) carry the parameters they come from, so a weight is
    recognised through the views and arithmetic its layer applies to it.
    """

    def __init__(self, parameter_ids, calls):
        super().__init__()
        self.parameter_ids = parameter_ids
        self.calls = calls
        self.activations = WeakIdKeyDictionary()
        self.sources = WeakIdKeyDictionary()
        self.uses = []

    def mark_activation(self, tensor):
        self.activations[tensor] = True

    def _origins(self, tensor):
        if id(tensor) in self.parameter_ids:
            return {id(tensor)}
        return self.sources.get(tensor, set())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        operands = list(_tensors((args, kwargs)))
        on_activation = any(tensor in self.activations for tensor in operands)
        name = getattr(func, "__name__", "")
        if on_activation and name in _LINEAR_OPERATIONS:
            caller = self.calls.stack[-1] if self.calls.stack else None
            for tensor in operands:
                if tensor.dim() >= 2 and tensor not in self.activations:
                    for origin in self._origins(tensor):
                        self.uses.append((origin, name, caller, tuple(self.calls.stack)))
        origins = set().union(*(self._origins(tensor) for tensor in operands)) if operands else set()
        for tensor in _tensors(result):
            if on_activation:
                self.activations[tensor] = True
            elif origins:
                self.sources[tensor] = origins
        return result


class _ModuleCalls:
    """Forward hooks on every module: the stack of module calls, each call's arguments, and
    whether gradients were enabled when it started."""

    def __init__(self, probe):
        self.paths = {}
        for path, module in probe.named_modules():
            self.paths.setdefault(id(module), path)
        self.modules = dict(probe.named_modules())
        self.stack = []
        self.count = collections.Counter()
        self.arguments = {}
        self.without_grad = {}
        self._grad_at_entry = []
        self.markers = {}
        self._handles = []
        for module in self.modules.values():
            self._handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module, args, kwargs):
        path = self.paths[id(module)]
        self.count[path] += 1
        self.arguments.setdefault(path, (len(args), sorted(kwargs)))
        enabled = torch.is_grad_enabled()
        if not enabled and path not in self.without_grad:
            # The innermost caller that started with gradients on switched them off.
            callers = [caller for caller, on in zip(self.stack, self._grad_at_entry) if on]
            self.without_grad[path] = callers[-1] if callers else None
        self.stack.append(path)
        self._grad_at_entry.append(enabled)

    def _leave(self, module, args, output):
        self.stack.pop()
        self._grad_at_entry.pop()
        path = self.paths[id(module)]
        if (
            isinstance(module, FILTER_TYPES)
            and isinstance(output, torch.Tensor)
            and output.is_floating_point()
            and torch.is_grad_enabled()
            and path not in self.markers
        ):
            # A zero that autograd follows: whether the probe's output depends on it says
            # whether this layer's output reaches the probe's (unused_outputs).
            marker = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            self.markers[path] = marker
            return output + marker
        return None

    def unused_outputs(self, result):
        """The filter layers whose output the probe's ``result`` does not depend on (BERT's
        pooler beside its last hidden states): their gradients, and rows, would be zero."""
        outputs = [tensor for tensor in _tensors(result) if tensor.requires_grad]
        if not outputs or not self.markers:
            return []
        paths = list(self.markers)
        total = sum(output.sum().to(torch.float64) for output in outputs)
        try:
            gradients = torch.autograd.grad(total, [self.markers[path] for path in paths], allow_unused=True)
        except RuntimeError:  # an operation without a backward: the Fisher pass reports it
            return []
        return [path for path, gradient in zip(paths, gradients) if gradient is None]

    def remove(self):
        for handle in self._handles:
            handle.remove()


def refuse_scripted(probe):
    for path, module in probe.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            where = f"layer {path!r}" if path else "The probe"
            raise ProbeRefused(
                f"Probe {where} is a TorchScript module ({type(module).__name__}, from torch.jit.script "
                f"or torch.jit.trace): its layers run inside TorchScript, where the Fisher pass cannot "
                f"watch them. Use the original torch.nn.Module."
            )


def filter_layers(probe):
    """``{path: module}`` of the modules of :data:`FILTER_TYPES` with a weight, each once."""
    return {
        path: module
        for path, module in probe.named_modules()
        if isinstance(module, FILTER_TYPES) and getattr(module, "weight", None) is not None
    }


def _weight_holders(probe):
    """``{id(parameter): [(path, module, name), ...]}`` over distinct modules: a module kept
    under two names is one holder."""
    holders = collections.defaultdict(list)
    seen = set()
    for path, module in probe.named_modules(remove_duplicate=False):
        if id(module) in seen:
            continue
        seen.add(id(module))
        for name, parameter in module.named_parameters(recurse=False):
            holders[id(parameter)].append((path, module, name))
    return holders


def check_untied(probe, filters):
    """Refuse a filter weight that two modules hold (tied weights): its per-example gradient is
    the sum over both uses, which per-module hooks square separately. The same module kept
    under two names (``self.first = self.body[0]``) is one layer, not a tie."""
    holders = _weight_holders(probe)
    for path, module in filters:
        shared = holders[id(module.weight)]
        if len(shared) > 1:
            others = sorted(
                f"{other}.{name}" if other else name for other, held, name in shared if held is not module
            )
            raise ProbeRefused(
                f"Probe layer {path!r} shares its weight with {others} (tied weights): its "
                f"per-example gradient is the sum over both uses, which the per-filter Fisher does "
                f"not compute. Untie them in a copy of the probe (e.g. module.weight = "
                f"torch.nn.Parameter(module.weight.detach().clone()))."
            )


def check_examples_independent(probe):
    """Refuse modules whose eval-mode output for one example depends on the others in its batch."""
    for path, module in probe.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is None:
            raise ProbeRefused(
                f"Probe layer {path!r} is a {type(module).__name__} without running statistics "
                f"(track_running_stats=False): even in eval mode it normalises with the batch's "
                f"statistics, so each example's Fisher depends on the others in its batch and the "
                f"rows change with batch_size. Give it running statistics (track_running_stats=True, "
                f"then estimate them in train mode over some data), or use GroupNorm or LayerNorm."
            )


def _input_tensor(example, dtype):
    tensor = torch.as_tensor(example)
    return tensor.to(dtype) if tensor.dtype != dtype else tensor.clone()


def inspect_probe(probe, example, float_dtype, *, digest=None):
    """:class:`ProbeLayers` of a frozen probe (after :func:`plain_layers`), from one forward pass.

    Once per probe: a probe accepted before with the same structure, weights and example
    shape and dtype gets the same answer at once (:data:`PROBE_VERDICTS`).

    Parameters
    ----------
    probe : torch.nn.Module
        The frozen probe.
    example : array-like or tensor
        One example with its batch axis, as the task gives it (integers stay integers when the
        probe takes them so: token ids).
    float_dtype : torch.dtype
        The probe's floating dtype, for inputs it does not take as integers.
    digest : str or None, default=None
        The probe's :func:`~sklearn_task2vec._utils.module_digest`, if known (else computed).

    Raises
    ------
    ValueError
        Naming the layer and the reason, for a probe whose filters the Fisher cannot compute.
    """
    key = PROBE_VERDICTS.key(("inspect_probe", float_dtype), probe, digest, example)
    known = PROBE_VERDICTS.get(key)
    if known is not None:
        return known._replace(left_out=dict(known.left_out))
    layers = _inspect_probe(probe, example, float_dtype)
    PROBE_VERDICTS.put(key, layers._replace(left_out=dict(layers.left_out)))
    return layers


def _inspect_probe(probe, example, float_dtype):
    filters = filter_layers(probe)
    check_untied(probe, list(filters.items()))
    check_examples_independent(probe)
    integer = (
        not torch.as_tensor(example).is_floating_point() and torch.as_tensor(example).dtype != torch.bool
    )
    candidates = [torch.int64, float_dtype] if integer else [float_dtype]
    for attempt, dtype in enumerate(candidates):
        inputs = _input_tensor(example, dtype)
        try:
            calls, uses = _watched_forward(probe, inputs)
            break
        except torch.OutOfMemoryError:
            raise  # the machine's limit, not the inputs': it stays catchable as what it is
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # the last dtype's is reported
            if attempt + 1 < len(candidates):
                continue
            raise ValueError(probe_input_error(probe, inputs, exc)) from exc
    holders = _weight_holders(probe)
    applied = collections.defaultdict(list)
    for origin, operation, caller, stack in uses:
        for path, _holder, name in holders[origin]:
            applied[path].append((name, operation, caller, stack))
    for path, module in probe.named_modules():
        if path in applied and path not in filters:
            _refuse_unknown_filter_layer(path, module, applied[path][0])
    embedded, left_out = [], {}
    for path, module in filters.items():
        for _name, operation, caller, stack in applied.get(path, ()):
            if path not in stack:
                where = f"in the forward of {caller!r}" if caller else "in the probe's forward"
                raise ProbeRefused(
                    f"The probe reads the weight of layer {path!r} outside the layer's own call "
                    f"({operation} {where}, e.g. F.linear(x, self.layer.weight)): the per-filter "
                    f"Fisher only sees the layer's calls. Call the layer as a module instead."
                )
        if calls.count[path] == 0:
            left_out[path] = "never called by the probe's forward"
            continue
        if path in calls.unused:
            left_out[path] = (
                "called, but its output does not reach the probe's output (its rows would be zero)"
            )
            continue
        _check_filter_call(path, module, calls)
        embedded.append(path)
    for path, module in probe.named_modules():
        if path in filters or path in left_out:
            continue
        big = [name for name, parameter in module.named_parameters(recurse=False) if parameter.dim() >= 2]
        if big:
            left_out[path] = (
                f"{type(module).__name__}: its parameter {big[0]!r} is not applied as a filter to the "
                f"probe's activations (a lookup table or a bias term)"
            )
    refuse_empty(embedded)
    return ProbeLayers(tuple(embedded), left_out, dtype)


def _watched_forward(probe, inputs):
    parameter_ids = {id(parameter) for parameter in probe.parameters()}
    calls = _ModuleCalls(probe)
    mode = _WeightUses(parameter_ids, calls)
    mode.mark_activation(inputs)
    try:
        with torch.enable_grad(), mode:
            result = probe(inputs)
    finally:
        calls.remove()
    with torch.enable_grad():
        calls.unused = calls.unused_outputs(result)
    return calls, mode.uses


def _check_filter_call(path, module, calls):
    if calls.count[path] > 1:
        raise ProbeRefused(
            f"Probe layer {path!r} is called more than once per forward pass ({calls.count[path]} "
            f"times); the per-filter Fisher needs each filter layer to be used once."
        )
    if path in calls.without_grad:
        culprit = calls.without_grad[path]
        where = f"the forward of {culprit!r}" if culprit else "the probe's forward"
        raise ProbeRefused(
            f"Probe layer {path!r} runs with gradients disabled ({where} runs under torch.no_grad() "
            f"or torch.inference_mode()): the Fisher needs its gradients. Remove the decorator or "
            f"context from that forward."
        )
    n_args, keywords = calls.arguments[path]
    if n_args != 1 or keywords:
        extra = f"{n_args} positional arguments" + (f" and keywords {keywords}" if keywords else "")
        raise ProbeRefused(
            f"Probe layer {path!r} ({type(module).__name__}) is called with {extra}; the per-filter "
            f"Fisher differentiates each filter layer as a function of its one input. Pass the "
            f"other arguments another way (e.g. as attributes), or use a layer that takes one input."
        )
    refuse_transposed(path, module)


def refuse_transposed(path, module):
    """Refuse a transposed convolution: its filters are not output channels of its weight."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        raise ProbeRefused(
            f"Probe layer {path!r} is a transposed convolution; its filters are not output "
            f"channels of its weight, so it cannot be embedded. Use a probe without it."
        )


def refuse_empty(filters):
    """Refuse a probe without filter layers: its Fisher embedding would be empty."""
    if not filters:
        raise ProbeRefused("The probe has no Conv or Linear layer: its Fisher embedding would be empty.")


def _refuse_unknown_filter_layer(path, module, use):
    name, operation, _, _ = use
    what = f"Probe layer {path!r} ({type(module).__name__}) applies its parameter {name!r} as a filter weight ({operation})"
    if isinstance(module, nn.RNNBase):
        reason = (
            "a recurrent layer applies its weights at every step of a sequence, which the "
            "per-filter Fisher's layer hooks do not see. Start the embedding after it "
            "(skip_layers), or use a probe without it"
        )
    elif isinstance(module, nn.Bilinear):
        reason = "a bilinear layer has two inputs; the per-filter Fisher takes layers of one input"
    else:
        reason = (
            "but it is not a layer kind whose filters the package knows (Conv1d/2d/3d, Linear and "
            "their subclasses, Hugging Face Conv1D), so its filters would be left out. Make it a "
            "subclass of torch.nn.Linear or of a torch.nn.Conv class"
        )
    raise ProbeRefused(f"{what}: {reason}.")
