"""Fisher Information of a probe's filters, per example, at the cost of one backward pass.

The paper (sec. 3) defines, for the probe weights ``w`` and a head trained on the task,

    F = E_{x ~ p_hat(x)} E_{y ~ p_w(y|x)} [ grad_w log p_w(y|x) grad_w log p_w(y|x)^T ]     (sec. 3, FIM)

and the TASK2VEC embedding keeps its diagonal, averaged over the weights of each filter
(sec. 3.1). ``y`` is drawn from the model, never taken from the dataset.

Writing ``s`` for the logits and ``p = softmax(s)``, ``grad_s log p_y = e_y - p``, so the
expectation over ``y`` is a quadratic form in logit space:

    F_x = J^T (diag p - p p^T) J,      J = ds/dw.

Two estimators of it, per example:

* ``"montecarlo"``: one ``y ~ p_w(y|x)`` per example, backward direction ``e_y - p``.
  Unbiased; one backward pass.
* ``"exact"``: ``diag p - p p^T = D D^T`` with ``D`` of shape ``(C, C - 1)``
  (:func:`exact_logit_directions`), so ``diag F_x = sum_j (D_j^T J)^2``: ``C - 1``
  backward directions, one for a binary task, no sampling noise.

and the paper's robust estimator, ``"variational"`` (:func:`variational_fisher`): the
precision of the largest Gaussian perturbation of each filter that the task's loss tolerates,
the stationary point of the paper's variational objective; it is not a sum over examples. Its
default curvature is the Fisher above at the perturbed weights (the Gauss-Newton part of the
loss's Hessian), recorded by the same hooks under the noise of :class:`VariationalFilterNoise`.

Each backward direction gives, at every filter module, the output gradient ``g_n`` of each
example ``n``; with the module's input ``a_n`` the per-example weight gradient is
``G_n^T U_n`` (``U_n`` the unfolded input). Its squared norm per filter is taken without
materialising a weight gradient per example where the Gram form ``G_n (U_n U_n^T) G_n^T`` is
cheaper (:func:`_rowwise_squared_norms`), and the probe's weights never get gradients at all:
the backward pass computes input gradients only.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import itertools
import threading
import warnings
import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import forward_ad

from ._heads import run_probe, run_without_gradient
from ._probe_layers import PROBE_VERDICTS, PRUNING_MASK
from ._utils import autocast_context, module_dtype, to_device

#: Estimators of the Fisher diagonal that :func:`per_example_fisher` implements.
METHODS = ("montecarlo", "exact", "variational")

#: ``method="auto"`` takes the exact expectation up to this many classes (at most two
#: backward directions per example), and Monte Carlo sampling above it.
EXACT_MAX_CLASSES = 3

# Examples of a task's first batch on which check_per_example_gradients verifies the probe.
_CHECKED_EXAMPLES = 2

# The probe modules check_per_example_gradients has accepted, for those PROBE_VERDICTS cannot
# key (a module is private to its prepared probe, which nothing changes).
_CHECKED_PROBES = weakref.WeakSet()

# Steps after which method='variational' judges its control variate, once, at the end of an
# epoch, and drops it if it barely helps.
_CONTROL_VARIATE_TRIAL_STEPS = 8

# Bound on the elements of one intermediate of the per-example products (256 MiB in float32).
_CHUNK_ELEMENTS = 1 << 26
# Serialises the forward-mode AD passes of tasks run side by side in threads (see its use).
_FORWARD_AD_LOCK = threading.Lock()


def resolve_method(method, n_classes):
    """The estimator that ``method`` stands for on a task with ``n_classes`` classes."""
    if method == "auto":
        return "exact" if n_classes <= EXACT_MAX_CLASSES else "montecarlo"
    return method


def exact_logit_directions(probs):
    """``D`` with ``D D^T = diag(p) - p p^T`` and ``C - 1`` columns, per example.

    ``R = (I - p 1^T) diag(sqrt p)`` satisfies ``R R^T = diag p - p p^T`` (its column ``y`` is
    ``sqrt(p_y) (e_y - p)``, the term of the expectation over ``y``) and ``R sqrt(p) = 0``.
    A Householder reflection ``H`` that maps ``e_C`` to ``-sqrt(p)`` turns the last column of
    ``R H`` into zero, so the first ``C - 1`` columns carry all of it:
    ``D D^T = R (I - sqrt p sqrt p^T) R^T = R R^T``.

    Parameters
    ----------
    probs : tensor of shape (n, C)
        Predicted class probabilities, rows summing to one.

    Returns
    -------
    tensor of shape (n, C, C - 1)
    """
    n_classes = probs.shape[1]
    root = probs.clamp_min(0).sqrt()
    eye = torch.eye(n_classes, dtype=probs.dtype, device=probs.device)
    spread = (eye - probs.unsqueeze(2)) * root.unsqueeze(1)
    reflector = root.clone()
    reflector[:, -1] += 1.0
    householder = eye - 2.0 * reflector.unsqueeze(2) * reflector.unsqueeze(1) / (
        reflector.pow(2).sum(1).view(-1, 1, 1)
    )
    return spread @ householder[:, :, : n_classes - 1]


def sampled_logit_directions(probs, generator):
    """``e_y - p`` with ``y ~ p`` for each example: the score of a sampled label, shape (n, C, 1).

    Over many classes (a language model's vocabulary) ``y`` is drawn by inverting the
    cumulative distribution, summed in float64, with one uniform number per example:
    ``torch.multinomial`` draws one exponential number per class, which over 50,000 classes
    costs more than the whole backward pass.
    """
    if probs.numel() > _FLOAT64_LOGITS:
        cumulative = probs.cumsum(1, dtype=torch.float64)
        uniform = torch.rand((len(probs), 1), generator=generator, dtype=torch.float64, device=probs.device)
        labels = torch.searchsorted(cumulative, uniform * cumulative[:, -1:], right=True)
        labels = labels.clamp_max(probs.shape[1] - 1)
    else:
        labels = torch.multinomial(probs, 1, generator=generator)
    directions = -probs
    directions.scatter_add_(1, labels, torch.ones_like(labels, dtype=probs.dtype))
    return directions.unsqueeze(2)


#: Above this many logits in a batch (a language model's vocabulary at every token), the
#: class probabilities of a Monte Carlo draw stay in the logits' precision: float64 copies of
#: tensors of hundreds of millions of numbers would cost more than the whole backward pass,
#: and rounding ``p`` to float32 (1e-7, relative) is far below the sampling noise.
_FLOAT64_LOGITS = 1 << 22


def gram_is_cheaper(n_out, positions, n_in):
    """Whether ``G (U U^T) G^T`` beats the direct ``G U`` for per-example row norms.

    The direct product costs ``K T I`` per example and holds ``K I`` numbers; the Gram form
    costs ``T^2 (I + K)`` and holds ``T^2``. Deep layers (few positions ``T``) and linear
    layers (``T = 1``) favour the Gram form; early convolutions with many positions the direct
    product (the trade-off of per-example "ghost" gradient norms).
    """
    return positions * positions * (n_in + n_out) < n_out * positions * n_in


def _chunks(n_examples, elements_per_example):
    """Example ranges whose intermediates stay under ``_CHUNK_ELEMENTS`` elements."""
    step = max(1, _CHUNK_ELEMENTS // max(elements_per_example, 1))
    return [(start, min(start + step, n_examples)) for start in range(0, n_examples, step)]


def _rowwise_squared_norms(output_grads, inputs):
    """``||(G_b U_b)_k||^2`` for ``G`` of shape (B, K, T) and ``U`` of shape (B, T, I): (B, K)."""
    batch, n_out, positions = output_grads.shape
    n_in = inputs.shape[2]
    use_gram = gram_is_cheaper(n_out, positions, n_in)
    pieces = []
    for start, stop in _chunks(batch, positions * positions if use_gram else n_out * n_in):
        grads, acts = output_grads[start:stop], inputs[start:stop]
        if use_gram:
            gram = acts @ acts.transpose(1, 2)
            pieces.append(((grads @ gram) * grads).sum(2))
        else:
            pieces.append(torch.linalg.vector_norm(grads @ acts, dim=2).square())
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def _conv_squared_gradients(module, activation, output_grad):
    """Per-example squared weight gradient of each output channel of a Conv1d/Conv2d: (n, C_out)."""
    if isinstance(module, nn.Conv1d):
        activation = activation.unsqueeze(2)
        output_grad = output_grad.unsqueeze(2)
        kernel, stride, dilation = (1, *module.kernel_size), (1, *module.stride), (1, *module.dilation)
    else:
        kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    padding = module.padding
    if isinstance(padding, str) or module.padding_mode != "zeros":
        # torch pads these itself before the convolution; do the same, then convolve unpadded.
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        reversed_padding = module._reversed_padding_repeated_twice
        if isinstance(module, nn.Conv1d):
            reversed_padding = (*reversed_padding, 0, 0)
        activation = F.pad(activation, reversed_padding, mode=mode)
        padding = (0, 0)
    elif isinstance(module, nn.Conv1d):
        padding = (0, *padding)
    n, groups = activation.shape[0], module.groups
    n_out = module.weight.shape[0] // groups
    positions = output_grad.shape[2] * output_grad.shape[3]
    if not gram_is_cheaper(n_out, positions, module.weight[0].numel()):
        return _per_example_conv_weight_squares(
            activation, output_grad, kernel, stride, padding, dilation, groups
        )
    if kernel == (1, 1) and tuple(padding) == (0, 0):
        # A 1x1 convolution reads its input at the strided positions: no unfolding needed.
        unfolded = activation[:, :, :: stride[0], :: stride[1]].reshape(n, activation.shape[1], -1)
    else:
        unfolded = F.unfold(activation, kernel, dilation=dilation, padding=padding, stride=stride)
    unfolded = unfolded.reshape(n * groups, -1, positions).transpose(1, 2)
    grads = output_grad.reshape(n * groups, n_out, positions)
    return _rowwise_squared_norms(grads, unfolded).view(n, -1)


def _per_example_conv_weight_squares(activation, output_grad, kernel, stride, padding, dilation, groups):
    """Direct form for convolutions: each example's weight gradient, squared and summed per filter.

    Stacking the examples as groups of one grouped convolution makes its weight gradient the
    per-example weight gradients, computed by the convolution backward kernel without
    unfolding the input.
    """
    n, channels_in = activation.shape[:2]
    channels_out = output_grad.shape[1]
    weights_per_example = channels_out * (channels_in // groups) * kernel[0] * kernel[1]
    pieces = []
    for start, stop in _chunks(n, weights_per_example):
        count = stop - start
        gradients = torch.nn.grad.conv2d_weight(
            activation[start:stop].reshape(1, count * channels_in, *activation.shape[2:]),
            (count * channels_out, channels_in // groups, *kernel),
            output_grad[start:stop].reshape(1, count * channels_out, *output_grad.shape[2:]),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=count * groups,
        )
        pieces.append(torch.linalg.vector_norm(gradients.view(count, channels_out, -1), dim=2).square())
    return torch.cat(pieces) if len(pieces) > 1 else pieces[0]


def _linear_squared_gradients(activation, output_grad):
    """Per-example squared weight gradient of each output unit of a Linear layer: (n, out)."""
    n = activation.shape[0]
    if activation.dim() == 2:
        # grad W_n = g_n a_n^T: the row norms are g_nk^2 ||a_n||^2, nothing to materialise.
        return output_grad.square() * activation.square().sum(1, keepdim=True)
    inputs = activation.reshape(n, -1, activation.shape[-1])
    grads = output_grad.reshape(n, -1, output_grad.shape[-1]).transpose(1, 2)
    return _rowwise_squared_norms(grads, inputs)


def _generic_squared_gradients(module, activation, output_grad, mask=None):
    """Any other filter module (Conv3d, ...): per-example weight gradients by ``torch.func``,
    times ``mask`` (a pruned layer's: its pruned entries are held at zero, not weights)."""

    def weight_gradient(example, example_grad):
        def forward(weight):
            return torch.func.functional_call(module, {"weight": weight}, (example.unsqueeze(0),))

        _, pullback = torch.func.vjp(forward, module.weight)
        return pullback(example_grad.unsqueeze(0))[0]

    gradients = torch.func.vmap(weight_gradient)(activation, output_grad)
    if mask is not None:
        gradients = gradients * mask
    return gradients.square().flatten(2).sum(2)


def computes_plain_layer(module):
    """Whether ``module`` computes exactly its base class's ``x -> w * x + b`` (Linear or
    Conv1d/2d/3d): the function that the closed forms of the per-example gradients and the
    variational output noise assume. A subclass that overrides ``forward`` (a standardised or
    dynamically padded convolution) computes something else of its weight."""
    for base in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(module, base):
            kind = type(module)
            same_forward = kind.forward is base.forward
            return same_forward and getattr(kind, "_conv_forward", None) is getattr(
                base, "_conv_forward", None
            )
    return False


def squared_filter_gradients(module, activation, output_grad):
    """Sum over each filter's weights of the per-example squared weight gradient, (n, n_filters)."""
    mask = getattr(module, PRUNING_MASK, None)
    if mask is not None:
        # The closed forms sum over every entry of a filter; a mask needs each entry's gradient.
        return _generic_squared_gradients(module, activation, output_grad, mask)
    if computes_plain_layer(module) and isinstance(module, nn.Linear):
        return _linear_squared_gradients(activation, output_grad)
    if computes_plain_layer(module) and isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_squared_gradients(module, activation, output_grad)
    # Conv3d, and subclasses differentiated through their own forward.
    return _generic_squared_gradients(module, activation, output_grad)


def receptive_field_squares(module, activation):
    """``||u_t||^2``, the squared norm of the input that each output of a plain Linear or Conv
    layer reads (its receptive field, padding included), shaped to broadcast against the
    layer's output: ``(..., 1)`` for a Linear layer, ``(n, C_out, *positions)`` for a
    convolution (one convolution of ``activation^2`` with an all-ones filter per group)."""
    squares = activation.pow(2)
    if isinstance(module, nn.Linear):
        return squares.sum(-1, keepdim=True)
    ones = squares.new_ones((module.groups, module.in_channels // module.groups, *module.kernel_size))
    return module._conv_forward(squares, ones, None).repeat_interleave(
        module.out_channels // module.groups, dim=1
    )


def position_diagonal_squared_gradients(module, activation, output_grad):
    """``sum_t ||u_t||^2 g_tk^2`` per example and output channel ``k``, (n, n_filters).

    The squared weight gradient of filter ``k`` is ``||sum_t g_tk u_t||^2`` (``u_t`` the input
    the layer reads at output position ``t``, ``g_tk`` the output gradient there); this is its
    position-diagonal part, the cross terms ``t != t'`` dropped: what a weight copy of its own
    at every position would give, the curvature of the paper's per-position noise
    (:func:`variational_fisher`). Equal to the full square where the layer has one position
    per example. ``module`` is a plain Linear or Conv layer (:func:`computes_plain_layer`).
    """
    squares = receptive_field_squares(module, activation) * output_grad.square()
    if isinstance(module, nn.Linear):
        return squares.reshape(len(squares), -1, squares.shape[-1]).sum(1)
    return squares.flatten(2).sum(2)


def _full_precision(tensor):
    """``tensor`` in float32 if autocast gave it a 16-bit type: squares and sums of per-example
    gradients lose too much in 16 bits."""
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


class FilterFisherRecorder:
    """Hooks on a probe's filter modules that add each example's squared filter gradients to ``rows``.

    Used as a context manager around forward and backward passes of the probe. The forward
    hook keeps the module's input and marks its output as needing a gradient (the probe's
    weights need none); the output's gradient hook turns (input, output gradient) into
    per-example squared norms per filter, divided by the filter's number of weights (the
    average of sec. 3.1), and adds them to ``rows[:, filter_slice]``. ``scales`` gives, per
    filter module, the factor its weight gradients carry (a folded BatchNorm's
    ``gamma / sigma``, see :func:`~sklearn_task2vec._probes.fold_batchnorm`), or None.

    ``position_diagonal=True`` adds instead the position-diagonal part of each square,
    :func:`position_diagonal_squared_gradients` (plain Linear and Conv layers only): the
    curvature of ``method="variational"`` with ``variational_noise="per_position"``.
    """

    def __init__(self, filters, scales=None, *, position_diagonal=False):
        self.filters = filters
        self.scales = scales if scales is not None else [None] * len(filters)
        self.squares = position_diagonal_squared_gradients if position_diagonal else squared_filter_gradients
        self.slices = []
        offset = 0
        for _, module in filters:
            width = module.weight.shape[0]
            self.slices.append(slice(offset, offset + width))
            offset += width
        self.n_filters = offset
        self.rows = None
        self._called = set()
        self._handles = []
        self._computing = False

    def __enter__(self):
        for index, (_, module) in enumerate(self.filters):
            # First among the module's hooks: a user's hook that changes the output comes after
            # the layer, as its next operation.
            self._handles.append(module.register_forward_hook(self._forward_hook(index), prepend=True))
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._called = set()

    def start_batch(self, n_examples, device):
        self.rows = torch.zeros(n_examples, self.n_filters, dtype=torch.float64, device=device)
        self._called = set()

    def _forward_hook(self, index):
        path, module = self.filters[index]
        weights_per_filter = module.weight[0].numel()
        columns = self.slices[index]
        # A folded BatchNorm scales the gradient of each filter: undo it on the squares.
        scale = self.scales[index]
        factor = 1.0 / weights_per_filter if scale is None else scale.double().square() / weights_per_filter

        def on_forward(module, inputs, output):
            if self._computing:
                return output  # the generic per-example gradient re-runs the module itself
            if index in self._called:
                raise ValueError(
                    f"Probe layer {path!r} is called more than once per forward pass; the "
                    f"per-filter Fisher needs each filter layer to be used once."
                )
            self._called.add(index)
            activation = inputs[0].detach()
            version = activation._version
            watched = output
            if not output.requires_grad:
                # The first filter layer's output: a leaf that needs a gradient. The probe gets a
                # copy of it, so that an in-place op on it (x = conv(x); x.relu_()) is allowed.
                watched = output.detach().requires_grad_()
                output = watched.clone()

            def on_gradient(output_grad):
                if activation._version != version:
                    raise ValueError(
                        f"The input of probe layer {path!r} was modified in place after the layer "
                        f"read it, so its weight gradients cannot be recovered. Avoid in-place "
                        f"operations on tensors that a Conv or Linear layer reads."
                    )
                self._computing = True
                try:
                    squared = self.squares(
                        module, _full_precision(activation), _full_precision(output_grad.detach())
                    )
                finally:
                    self._computing = False
                if squared.shape[0] != self.rows.shape[0]:
                    raise ValueError(
                        f"Probe layer {path!r} takes inputs whose first axis has "
                        f"{squared.shape[0]} entries for a batch of {self.rows.shape[0]} "
                        f"examples: the per-filter Fisher needs every Conv and Linear layer to "
                        f"take the examples along the first axis (e.g. batch_first=True)."
                    )
                self.rows[:, columns] += squared.to(torch.float64) * factor

            watched.register_hook(on_gradient)
            return output

        return on_forward


def check_per_example_gradients(module, filters, inputs, digest=None):
    """Refuse a probe whose per-example filter gradients the hooks would get wrong.

    On ``inputs`` (a few examples) and a random direction ``r`` on the features, compares
    the squared filter gradients of ``(features * r).sum()`` that :class:`FilterFisherRecorder`
    computes for the batch with those of autograd on its first example run alone. They agree for
    every probe the hooks handle. They differ when a weight is read outside its module's call
    (``F.linear(x, self.fc.weight)``, or a fused kernel bypassing the module), which the hooks
    miss, or when a layer mixes examples (a first axis that is not the batch, as in a
    sequence-first transformer; batch statistics), which per-example rows cannot express.

    Once per probe: a probe accepted before with the same structure, weights (``digest``: the
    :func:`~sklearn_task2vec._utils.module_digest` of the frozen probe ``module`` was prepared
    from; None: ``module``'s, computed here) and input shape and dtype returns at once
    (:data:`~sklearn_task2vec._probe_layers.PROBE_VERDICTS`), as does a module accepted before.
    It runs on a float64 copy on the CPU:
    in float32 a deep network's batched and single-example gradients differ by several
    percent (EfficientNet's squeeze-excitation layers: 4%), in float64 by 1e-11. A probe whose
    forward fixes its own precision (``x.float()``, a float32 constant it multiplies a weight
    by) cannot run in float64: it is checked in its own precision, with the tolerance that
    precision allows (:data:`OWN_PRECISION_TOLERANCE`), which still catches the gross errors
    above (a layer that mixes examples moves its rows by far more). Integer inputs (token
    ids) stay integers. The inputs are copied for each run: a forward that modifies its input
    in place must see the same input both times.
    """
    if module in _CHECKED_PROBES:
        return
    key = PROBE_VERDICTS.key(
        ("per-example gradients", *(path for path, _ in filters)), module, digest, inputs
    )
    if PROBE_VERDICTS.get(key):
        return
    try:
        _compare_per_example_gradients(*_cpu_copy(module, filters, torch.float64), inputs, FLOAT64_TOLERANCE)
    except RuntimeError:  # torch's dtype errors: the forward casts to a precision of its own
        own = module_dtype(module)
        _compare_per_example_gradients(*_cpu_copy(module, filters, own), inputs, OWN_PRECISION_TOLERANCE)
    _CHECKED_PROBES.add(module)
    PROBE_VERDICTS.put(key, True)


#: Relative tolerance of :func:`check_per_example_gradients` in float64, where rounding through
#: a deep network stays below 1e-10.
FLOAT64_TOLERANCE = 1e-6

#: Relative tolerance of :func:`check_per_example_gradients` for a probe that only runs in its
#: own (float32) precision, where a deep network's batched and single-example gradients differ
#: by a few percent.
OWN_PRECISION_TOLERANCE = 0.1


def _cpu_copy(module, filters, dtype):
    """A copy of ``module`` on the CPU in floating ``dtype`` and its ``filters``' copies."""
    memo = {}
    copied = copy.deepcopy(module, memo).to(device="cpu", dtype=dtype)
    return copied, [(path, memo[id(layer)]) for path, layer in filters]


def _compare_per_example_gradients(module, filters, inputs, tolerance):
    dtype = module_dtype(module)
    inputs = inputs.to("cpu", dtype) if inputs.is_floating_point() else inputs.cpu()
    weights = [layer.weight for _, layer in filters]
    generator = torch.Generator().manual_seed(0)
    with torch.enable_grad(), FilterFisherRecorder(filters) as recorder:
        recorder.start_batch(len(inputs), inputs.device)
        features = module(inputs.clone())
        direction = torch.randn(features.shape, generator=generator, dtype=torch.float64)
        direction = direction.to(device=features.device, dtype=features.dtype)
        if features.requires_grad:
            (features * direction).sum().backward()
        hooked = recorder.rows
    for weight in weights:
        weight.requires_grad_(True)  # on the copy: autograd's reference gradients
    # The first example alone is enough: a missed use of a weight changes its row, and so does
    # mixing it with the second example of the batch.
    with torch.enable_grad():
        output = (module(inputs[:1].clone())[0] * direction[0]).sum()
        gradients = torch.autograd.grad(output, weights, allow_unused=True)
    alone = torch.cat(
        [
            torch.zeros(len(weight), dtype=torch.float64)
            if gradient is None
            else _masked(gradient, layer).double().square().flatten(1).mean(1)
            for (_, layer), weight, gradient in zip(filters, weights, gradients)
        ]
    ).unsqueeze(0)
    hooked = hooked[:1]
    if not (torch.isfinite(alone).all() and torch.isfinite(hooked).all()):
        raise ValueError(
            "The probe's gradients overflow on this task's first examples (non-finite values): "
            "inputs of very large magnitude do this; standardise them."
        )
    for (path, _), columns in zip(filters, recorder.slices):
        expected, computed = alone[:, columns], hooked[:, columns]
        scale = float(expected.abs().max().clamp_min(computed.abs().max()))
        if not torch.allclose(computed, expected, rtol=tolerance, atol=tolerance * scale):
            raise ValueError(
                f"The per-example gradients of probe layer {path!r} differ from those of the probe "
                f"run on one example at a time, so its Fisher would be wrong. Either its weight is "
                f"read outside the layer's own call (functionally, e.g. F.linear(x, "
                f"self.layer.weight), or by a fused kernel), or the layer mixes the examples of a "
                f"batch (e.g. a sequence-first transformer: use batch_first=True). Call the layer "
                f"as a module on inputs whose first axis is the batch."
            )


def _masked(gradient, layer):
    mask = getattr(layer, PRUNING_MASK, None)
    return gradient if mask is None else gradient * mask


def per_example_fisher(probe, head, inputs, method, generator, recorder, *, label_draws=1):
    """Each example's contribution to the Fisher diagonal of the probe's filters, (n, n_filters).

    Their mean over a task is the task's embedding (sec. 3.1). ``recorder`` must be entered
    on ``probe``'s filters; ``head`` (a :class:`~sklearn_task2vec._heads.Readout`) maps the
    probe's output to the logits of each example's label slots and is held fixed. The
    backward passes are :func:`fisher_backward`'s.
    """
    recorder.start_batch(inputs.shape[0], inputs.device)
    with torch.enable_grad():
        features = probe(inputs)
    return fisher_backward(head, features, inputs, method, generator, recorder, label_draws=label_draws)


def fisher_backward(head, features, inputs, method, generator, recorder, *, label_draws=1):
    """The backward passes of :func:`per_example_fisher` from ``features``, the probe's output
    on ``inputs`` computed under ``recorder``'s hooks, with its graph; the rows they record.
    They are :func:`backward_label_directions`': for ``"montecarlo"``, ``label_draws``
    independent draws over the same forward pass, their squares averaged (the variance falls
    as ``1 / label_draws``).
    """
    with torch.enable_grad():
        logits, valid = head(features, inputs)
        if not logits.requires_grad:
            raise ValueError("The probe's output does not depend on any of its filters.")
        draws = backward_label_directions(logits, valid, method, generator, label_draws=label_draws)
    # The recorder summed the draws' squares: their mean is the estimate.
    return recorder.rows / draws if draws > 1 else recorder.rows


def backward_label_directions(logits, valid, method, generator, *, label_draws=1):
    """Backward passes from ``logits`` along the scores of the model's own labels: under a
    :class:`FilterFisherRecorder`, they add each example's Fisher diagonal to its rows, times
    the number of draws returned (``label_draws`` for ``"montecarlo"``, else 1).

    ``logits`` of shape (n, slots, classes) and ``valid`` (n, slots), which slots hold a label
    (:class:`~sklearn_task2vec._heads.Readout`). An example with several label slots (a
    language-modelling task: one per token that has a next token) is one sequence whose model
    is the product of its slots' predictions given the true prefix, ``p(y | x) = prod_t p(y_t
    | x_<t)``. Its Fisher is the expectation over ``y`` of the squared gradient of ``log p(y |
    x) = sum_t log p(y_t | x_<t)``; the ``y_t`` are drawn independently and each score has
    mean zero, so the cross terms vanish and the sequence's Fisher is the sum of its slots'
    (eq. 1 per slot). ``"montecarlo"`` draws every slot's ``y_t`` from ``generator`` and
    backpropagates the gradient of their summed log-likelihood (one backward pass, unbiased),
    ``label_draws`` times independently (the forward pass shared); ``"exact"`` takes each slot's expectation in closed form (``C - 1`` backward passes per
    slot, :func:`exact_logit_directions`).
    """
    n_examples, n_slots, n_classes = logits.shape
    small = logits.numel() <= _FLOAT64_LOGITS
    precision = torch.float64 if small or method == "exact" else logits.dtype
    probs = torch.softmax(logits.detach().to(precision), dim=2).reshape(-1, n_classes)
    # Slots without a label get no direction (masked in place: no host sync per batch).
    unlabelled = ~valid.reshape(-1, 1, 1)
    if method == "montecarlo":
        for draw in range(label_draws):
            directions = sampled_logit_directions(probs, generator).masked_fill_(unlabelled, 0)
            logits.backward(
                directions.reshape(n_examples, n_slots, n_classes).to(logits.dtype),
                retain_graph=draw < label_draws - 1,
            )
        return label_draws
    if method != "exact":
        raise ValueError(f"The Fisher's expectation over labels is 'exact' or 'montecarlo', not {method!r}.")
    directions = exact_logit_directions(probs).masked_fill_(unlabelled, 0).to(logits.dtype)
    directions = directions.reshape(n_examples, n_slots, n_classes, n_classes - 1)
    labelled = valid.any(0).nonzero().flatten().tolist()  # one host sync per batch
    passes = [(slot, index) for slot in labelled for index in range(n_classes - 1)]
    for number, (slot, index) in enumerate(passes):
        direction = directions[:, :, :, index]
        if n_slots > 1:
            # One slot at a time: the squares of its gradients, not of their sum over slots.
            direction = torch.zeros_like(direction)
            direction[:, slot] = directions[:, slot, :, index]
        logits.backward(direction, retain_graph=number < len(passes) - 1)
    return 1


#: Most bytes that the features pass keeps of its forwards for the Fisher pass
#: (:class:`RetainedForwards`): the tensors their graphs save for the backward passes.
RETAINED_FORWARD_BYTES = 1 << 29  # 512 MiB


class RetainedForwards:
    """The features pass's forwards, kept with their graphs for the Fisher pass to reuse.

    The Fisher pass needs the head, which is trained on the features of every example, so
    its backward passes must wait for the features pass to end; its forwards need not. Run
    from the features pass (as its ``run``, :func:`~sklearn_task2vec._heads.task_features`)
    with gradients on and under the Fisher recorder's hooks, each batch's forward gives the
    features and is kept with its graph; :func:`task_fisher` then runs only the backward
    passes. That saves one forward of the probe over the task (about a quarter of a plain
    forward and backward pass), at the cost of holding every batch's graph at once: the
    tensors it saves for the backward pass (for resnet18 on 3x32x32 images about 0.25 MB per
    example; at 224x224 about 50 times that).

    They are kept while those tensors' bytes, counted as they are saved, and extrapolated to
    the task's number of examples where it is known, stay within ``limit`` (default
    :data:`RETAINED_FORWARD_BYTES`; on a GPU also half of its free memory). Past it, every
    kept graph is dropped, the rest of the pass runs without gradients, and the Fisher pass
    runs its own forwards: the same rows either way, at the same peak memory as without
    this reuse plus at most ``limit``.

    A saved tensor modified in place after it was saved (by the probe's forward) is refused
    by the backward pass, as autograd does: its gradient would be wrong.

    Parameters
    ----------
    probe : RunnableProbe
        The prepared probe, whose ``module`` the features pass runs.
    n_examples : int or None
        The task's examples, if known: the rule stops at the first batch whose bytes,
        extrapolated to them, exceed the limit.
    limit : int or None, default=None
        Most bytes kept; None: :data:`RETAINED_FORWARD_BYTES`.
    """

    def __init__(self, probe, n_examples=None, limit=None):
        self.module = probe.module
        self.recorder = FilterFisherRecorder(probe.filters, probe.scales)
        self.n_examples = n_examples
        self.limit = RETAINED_FORWARD_BYTES if limit is None else limit
        self.kept = []  # (inputs as the task gave them, the forward's output with its graph)
        self.keeping = self.limit > 0
        self.saved_bytes = 0
        # The probe's own weights are held anyway: the graphs' references to them cost nothing.
        self._weights = {
            _storage_key(tensor) for tensor in (*probe.module.parameters(), *probe.module.buffers())
        }
        self._storages = set(self._weights)
        self._examples = 0

    def run(self, module, inputs, where):
        """``module(inputs)``: with its graph, kept, while the limit allows; else without gradients."""
        if module is not self.module or not self.keeping:
            return run_without_gradient(module, inputs, where)
        given = inputs.clone()  # the forward may modify its input in place; the head reads it
        with self.recorder, torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
            self.recorder.start_batch(len(inputs), inputs.device)
            outputs = run_probe(module, inputs, where, gradient=True)
        self._count(given)
        self.kept.append((given, outputs))
        self._examples += len(inputs)
        expected = self.saved_bytes
        if self.n_examples is not None:
            expected = self.saved_bytes * max(self.n_examples / self._examples, 1.0)
        if expected > self._limit(inputs.device):
            self.keeping = False
            self.kept = []
            self._storages = set(self._weights)
        return outputs

    def take(self):
        """The kept ``(inputs, outputs)`` of every batch, in order, handed over once; None
        where the pass dropped them (the Fisher pass then runs its own forwards)."""
        if not self.keeping:
            return None
        kept, self.kept, self.keeping = self.kept, [], False
        return kept

    def _limit(self, device):
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return min(self.limit, free // 2)
        return self.limit

    def _count(self, tensor):
        key = _storage_key(tensor)
        if key not in self._storages:
            self._storages.add(key)
            self.saved_bytes += tensor.untyped_storage().nbytes()

    def _pack(self, tensor):
        # Detached: an output saved with its own graph would hold a reference cycle.
        self._count(tensor)
        return tensor.detach(), tensor._version

    def run_backward(self, head, outputs, inputs, method, generator, label_draws=1):
        """:func:`fisher_backward` of one kept forward: the batch's rows."""
        self.recorder.start_batch(inputs.shape[0], inputs.device)
        return fisher_backward(
            head, outputs, inputs, method, generator, self.recorder, label_draws=label_draws
        )


def _storage_key(tensor):
    storage = tensor.untyped_storage()
    return storage.device, storage.data_ptr()


def _unpack(packed):
    tensor, version = packed
    if tensor._version != version:
        raise RuntimeError(
            "One of the tensors that the probe's forward saved for the backward pass was modified "
            "by an in-place operation afterwards, so its gradients cannot be computed. Avoid "
            "in-place operations on the probe's activations."
        )
    return tensor


def task_fisher(
    probe,
    head,
    task,
    *,
    method,
    batch_size,
    generator,
    label_draws=1,
    autocast=None,
    per_example=False,
    progress=None,
    retained=None,
):
    """The Fisher diagonal of a task's examples: their sum, or each example's row.

    One pass over ``task``'s batches (a coerced task, in its own order) through ``probe`` (a
    :class:`~sklearn_task2vec._probes.RunnableProbe`) and ``head``, on the head's device, with
    :func:`per_example_fisher` under the recorder's hooks. ``generator`` draws the Monte Carlo
    labels, ``label_draws`` of them per example for ``"montecarlo"``; ``autocast`` is a
    reduced precision for the passes; ``progress`` (a tqdm bar or None) is advanced by each
    batch's examples. ``retained``: the :class:`RetainedForwards` of the features pass over
    the same batches; where it kept them all, only the backward passes run
    (:func:`fisher_backward`), on the kept forwards, and ``task`` is not read again.

    Returns
    -------
    ndarray of shape (n_filters,) or (n_examples, n_filters), float64
        The sum over the examples (``per_example=False``), or every example's row.
    """
    device = next(iter(head.parameters())).device
    kept = None if retained is None else retained.take()
    if kept is None:
        batches = (to_device(inputs, device) for inputs, _ in task.batches(batch_size))
        first = next(batches, None)
        batches = itertools.chain([first] if first is not None else [], batches)
    else:
        first = kept[0][0] if kept else None
    if first is not None:
        check_per_example_gradients(probe.module, probe.filters, first[:_CHECKED_EXAMPLES], probe.digest)
    recorder = FilterFisherRecorder(probe.filters, probe.scales)
    if kept is None:
        hooks = recorder
        passes = (
            (
                inputs,
                functools.partial(
                    per_example_fisher,
                    probe.module,
                    head,
                    inputs,
                    method,
                    generator,
                    recorder,
                    label_draws=label_draws,
                ),
            )
            for inputs in batches
        )
    else:
        hooks = contextlib.nullcontext()  # the kept forwards ran under the retained recorder's
        passes = _kept_backward_passes(kept, retained, head, method, generator, label_draws)
    rows = []
    total = torch.zeros(recorder.n_filters, dtype=torch.float64, device=device)
    with hooks:
        for inputs, run_batch in passes:
            with autocast_context(autocast, device):
                batch_rows = run_batch()
            if per_example:
                rows.append(batch_rows)
            else:
                total += batch_rows.sum(0)
            if progress is not None:
                progress.update(len(inputs))
    if per_example:
        return torch.cat(rows).cpu().numpy()
    return total.cpu().numpy()


def _kept_backward_passes(kept, retained, head, method, generator, label_draws):
    """``(inputs, rows of the batch)`` per kept forward, run backward only, each graph freed
    once its backward passes are done."""
    while kept:
        inputs, outputs = kept.pop(0)
        yield (
            inputs,
            functools.partial(retained.run_backward, head, outputs, inputs, method, generator, label_draws),
        )
        del outputs


# ------------------------------------------------------------------------------------------
# The robust (variational) estimator: sec. 3.1 "Robust Fisher computation", supplementary 6
# ------------------------------------------------------------------------------------------

#: Learning rate of the head while it is trained jointly with the precisions (sec. 4, "we use
#: a low learning rate (1e-4)" for the classifier).
VARIATIONAL_HEAD_LEARNING_RATE = 1e-4


#: How ``method="variational"`` perturbs a filter layer that applies its weights at several
#: positions of an example (a convolution, a Linear layer on a sequence); see
#: :class:`VariationalFilterNoise`.
VARIATIONAL_NOISES = ("per_example", "per_position")

#: How ``method="variational"`` estimates the loss's response to the noise: the Gauss-Newton
#: (Fisher) part of its curvature, or the full Hessian's pathwise estimate; see
#: :func:`variational_fisher`.
VARIATIONAL_CURVATURES = ("gauss_newton", "hessian")


class VariationalFilterNoise:
    """Gaussian perturbation ``w ~ N(w_hat, Lambda^-1)`` of a probe's filters, one precision per filter.

    Each example ``n`` of a batch sees its own weights ``w_hat + delta_n``, ``delta_n ~ N(0,
    Lambda^-1)``; where a layer applies its weights at several positions of the example (the
    output positions of a convolution, the tokens of a sequence), the same ``delta_n`` at all
    of them, as a weight perturbation is. It is drawn without a weight tensor per example:

    * a layer applied once per example (a Linear layer on ``(n, features)``, a convolution
      with one output position): the local reparametrisation trick (Kingma et al., 2015)
      draws the output instead, ``delta_n x_n`` being Gaussian with variance ``sigma_k^2
      ||x_n||^2`` on output ``k``. Exact.
    * a layer applied at several positions, ``noise="per_example"`` (the default): one
      ``epsilon ~ N(0, I)`` of the weights' shape per batch, decorrelated across examples by
      random signs (Flipout, Wen et al., 2018): ``delta_n = sigma * epsilon * (s_n r_n^T)``,
      ``r_n`` one sign per input channel and ``s_n`` one per output channel, i.e. the
      perturbation ``s_n * conv(x_n * r_n, sigma * epsilon)``. Each example's ``delta_n`` is
      exactly ``N(0, Lambda^-1)`` and shared across its positions, so the objective's
      expectation and gradient are those of weight noise and its optimum is ``Lambda =
      lambda^2 + (N / beta) F`` (:func:`variational_fisher`). The examples of a batch share
      ``epsilon`` up to the signs, which adds variance to a batch's estimate, no bias. It
      costs one more convolution per layer and step, and ``sigma`` multiplies that
      convolution's output, so no weight gradient is computed.
    * ``noise="per_position"``: the paper's approximation (and its reference code's): the
      local reparametrisation at every output position independently, variance ``sigma_k^2
      * sum(x^2 over the receptive field)`` (one convolution of ``x^2`` with an all-ones
      filter per group). It drops the correlation one weight perturbation induces across
      positions, so its optimum is ``lambda^2 + (N / beta) F~`` with ``F~ = sum_t delta_t^2
      ||u_t||^2 / n_k``, the position-diagonal part of the Fisher: far below ``F`` where the
      probe pools over positions (14-27x on a convolution followed by average pooling).
      Cheaper per step, and as the paper computes it.

    With ``antithetic=True`` the batch is made of pairs, its second half repeating its first:
    the twin of example ``n`` gets the perturbation ``-delta_n`` (every draw above negated),
    so that the loss's term linear in ``delta`` cancels within each pair (each half still has
    exactly the perturbation's distribution).

    Used as a context manager: while entered, forward hooks add the noise to every filter
    module's output. ``log_precisions`` holds one tensor per filter module, ``log Lambda_k`` of
    the probe's original filters; with ``differentiable=True`` they require gradients, so that
    a backward pass gives the loss's derivative in the noise variance (:meth:`curvatures`);
    :meth:`set_precisions` moves them. A folded BatchNorm (``scales``) multiplies a filter's weights by ``gamma /
    sigma``, so the folded layer's noise variance is ``(gamma / sigma)^2 / Lambda_k``.
    """

    def __init__(
        self,
        filters,
        scales,
        initial_precision,
        generator,
        noise="per_example",
        antithetic=False,
        differentiable=True,
    ):
        if noise not in VARIATIONAL_NOISES:
            raise ValueError(f"noise must be one of {VARIATIONAL_NOISES}, got {noise!r}.")
        for path, module in filters:
            if hasattr(module, PRUNING_MASK):
                raise ValueError(
                    f"method='variational' perturbs every weight of a filter; probe layer {path!r} is "
                    f"pruned (its pruned entries are held at zero). Use method='exact' or 'montecarlo'."
                )
            if not computes_plain_layer(module):
                raise ValueError(
                    f"method='variational' perturbs the outputs of plain Conv and Linear layers; "
                    f"probe layer {path!r} is a {type(module).__name__}, which computes its output "
                    f"otherwise (its own forward). Use method='exact' or 'montecarlo'."
                )
        self.filters = filters
        self.generator = generator
        self.noise = noise
        self.antithetic = antithetic
        self.weight_scales, self.log_precisions, weights_per_filter = [], [], []
        offset = 0
        for (_, module), scale in zip(filters, scales):
            weight = module.weight.detach()
            n_out = weight.shape[0]
            factor = torch.ones(n_out, dtype=weight.dtype, device=weight.device) if scale is None else scale
            initial = torch.from_numpy(np.log(initial_precision[offset : offset + n_out]))
            self.weight_scales.append(factor.to(weight.dtype).square())
            self.log_precisions.append(
                initial.to(dtype=weight.dtype, device=weight.device).requires_grad_(differentiable)
            )
            weights_per_filter.append(np.full(n_out, weight[0].numel(), dtype=np.float64))
            offset += n_out
        #: ``n_k``, the weights of each filter, float64 numpy of shape (n_filters,).
        self.weights_per_filter = np.concatenate(weights_per_filter) if weights_per_filter else np.zeros(0)
        self._handles = []
        #: The random draws of the last forward through each filter module: Flipout's
        #: ``("flipout", epsilon, input signs, output signs)`` (``epsilon`` of the weight's
        #: shape, one sign per example and channel), or the local reparametrisation's
        #: ``("outputs", gaussians)`` of the output's shape.
        self.last_draws = [None] * len(filters)
        self._replayed = None

    def __enter__(self):
        for index, (_, module) in enumerate(self.filters):
            self._handles.append(module.register_forward_hook(self._perturb(index), prepend=True))
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _perturb(self, index):
        def on_forward(module, inputs, output):
            activation = inputs[0]
            if self._replayed is None:
                draws = self._draw(module, activation, output)
                self.last_draws[index] = draws
                coefficient = (self.weight_scales[index] * torch.exp(-self.log_precisions[index])).sqrt()
                twins = self.antithetic
            else:
                draws, coefficient, twins = self.last_draws[index], self._replayed[index], False
            if not isinstance(module, nn.Linear):
                coefficient = coefficient.view(1, -1, *(1,) * (output.dim() - 2))
            return output + coefficient * self._unit_noise(module, activation, draws, twins)

        return on_forward

    def _draw(self, module, activation, output):
        """The random draws of one forward through ``module``, for the first half of the batch in
        antithetic pairs (the twins reuse them): Flipout's ``epsilon`` and signs where the layer
        applies its weights at several positions of an example, else the outputs' Gaussians."""
        n = activation.shape[0] // 2 if self.antithetic else activation.shape[0]
        device, dtype = activation.device, activation.dtype
        if self.noise == "per_example" and _positions_per_example(module, activation, output) > 1:
            weight = module.weight
            epsilon = torch.randn(weight.shape, generator=self.generator, device=device, dtype=weight.dtype)
            if isinstance(module, nn.Linear):
                between = (1,) * (activation.dim() - 2)
                in_shape, out_shape = (n, *between, activation.shape[-1]), (n, *between, weight.shape[0])
            else:
                spatial = (1,) * (activation.dim() - 2)
                in_shape, out_shape = (n, activation.shape[1], *spatial), (n, weight.shape[0], *spatial)
            signs = [
                (2 * torch.randint(0, 2, shape, generator=self.generator, device=device) - 1).to(dtype)
                for shape in (in_shape, out_shape)
            ]
            return ("flipout", epsilon, *signs)
        gaussians = torch.randn(
            (n, *output.shape[1:]), generator=self.generator, device=device, dtype=output.dtype
        )
        return ("outputs", gaussians)

    def _unit_noise(self, module, activation, draws, twins):
        """The perturbation of ``module``'s output for a unit deviation of every filter (the hook
        scales it per filter). ``twins``: the batch is the draws' examples then their twins,
        whose perturbation is negated."""

        def per_example(first, flip):
            if not twins:
                return first
            return torch.cat([first, -first if flip else first])

        kind, *tensors = draws
        if kind == "flipout":
            # Flipout: s_n * layer(x_n * r_n, epsilon), one epsilon per batch.
            epsilon, in_signs, out_signs = tensors
            in_signs, out_signs = per_example(in_signs, False), per_example(out_signs, True)
            if isinstance(module, nn.Linear):
                return out_signs * F.linear(activation * in_signs, epsilon)
            return out_signs * module._conv_forward(activation * in_signs, epsilon, None)
        # Local reparametrisation: Gaussian outputs of standard deviation ||receptive field||,
        # independent across output positions.
        spread = receptive_field_squares(module, activation)
        # The clamp keeps sqrt differentiable where a receptive field is all zeros.
        return torch.sqrt(spread.clamp_min(torch.finfo(spread.dtype).tiny)) * per_example(tensors[0], True)

    def deviations(self):
        """The current deviations of the folded filters' noise, one detached tensor per module."""
        return [
            (scale * torch.exp(-log_precision.detach())).sqrt()
            for scale, log_precision in zip(self.weight_scales, self.log_precisions)
        ]

    @contextlib.contextmanager
    def replaying(self, coefficients):
        """Within: forwards reuse the last draws' first half, on the clean activations, scaled
        per filter by ``coefficients`` (one tensor per module) instead of the deviations."""
        self._replayed = coefficients
        try:
            yield
        finally:
            self._replayed = None

    def quadratic_curvatures(self, model, inputs):
        """``dQ / d sigma_k^2`` of the last draws, ``Q`` the loss's second-order model.

        ``model`` maps ``inputs`` (the first half of the last batch) to logits. With ``u_n = J_n
        delta_n`` the first-order change of example ``n``'s logits under its perturbation
        ``delta_n`` and ``H_n = diag p_n - p_n p_n^T``, ``Q = mean_n u_n^T H_n u_n / 2``, whose
        expectation over the draws is ``sum_k sigma_k^2 n_k F_k / 2``: its derivative, of
        known mean ``n_k F_k / 2``, is a control variate of :meth:`curvatures` that carries the
        same noise from the draws where the loss is quadratic. ``u`` comes from one forward-mode
        pass (the deviations as tangents), ``dQ / d sigma_k`` from one reverse pass with the
        cotangent ``H u / N`` at zero noise.
        """
        deviations = self.deviations()
        # One thread at a time: torch's forward-mode AD level is global to the process, and a
        # second thread entering it (a threading joblib backend) fails with "Nested forward mode
        # AD is not supported".
        with _FORWARD_AD_LOCK, torch.no_grad(), forward_ad.dual_level(), warnings.catch_warnings():
            # torch's first make_dual loads its forward-mode decompositions through
            # torch.jit.script, which warns of its own deprecation once per decomposition:
            # torch's internals, nothing a user of this package can act on.
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)
            tangents = [forward_ad.make_dual(torch.zeros_like(d), d) for d in deviations]
            with self.replaying(tangents):
                logits, change = forward_ad.unpack_dual(model(inputs))
        probs = torch.softmax(logits.float(), dim=-1)
        change = change.float()
        cotangent = (probs * change - probs * (probs * change).sum(-1, keepdim=True)) / len(inputs)
        scales = [torch.zeros_like(d, requires_grad=True) for d in deviations]
        with torch.enable_grad(), self.replaying(scales):
            slopes = torch.autograd.grad(model(inputs), scales, cotangent.to(logits.dtype), allow_unused=True)
        # dQ / d sigma_k^2 = dQ / d s_k * s_k / (2 sigma_k^2), s_k the folded filter's deviation.
        return torch.cat(
            [
                (
                    torch.zeros_like(d) if slope is None else slope * d * log_precision.detach().exp() / 2
                ).double()
                for slope, d, log_precision in zip(slopes, deviations, self.log_precisions)
            ]
        )

    def curvatures(self):
        """``dL / d sigma_k^2`` per filter after a backward pass of ``L``, float64 on the device.

        ``sigma_k^2 = 1 / Lambda_k``, so ``dL / d sigma_k^2 = -Lambda_k dL / d log Lambda_k``.
        To second order in the perturbation it is ``n_k F_k / 2`` (the loss's Hessian summed
        over filter ``k``'s weights, halved), whatever ``Lambda``.
        """
        return torch.cat(
            [
                -(log_precision.detach().exp() * log_precision.grad).double()
                for log_precision in self.log_precisions
            ]
        )

    def set_precisions(self, precisions):
        """Perturb with ``precisions`` (a tensor of shape (n_filters,)) from now on."""
        offset = 0
        with torch.no_grad():
            for log_precision in self.log_precisions:
                n_out = len(log_precision)
                log_precision.copy_(precisions[offset : offset + n_out].log())
                offset += n_out


def _positions_per_example(module, activation, output):
    """At how many positions of one example ``module`` applies its weights."""
    if isinstance(module, nn.Linear):
        return activation[0].numel() // activation.shape[-1] if activation.dim() > 1 else 1
    return output[0, 0].numel()


class VariationalResult(NamedTuple):
    """What :func:`variational_fisher` returns.

    ``estimate`` and ``prior_term``: ``(beta / N) Lambda`` and ``(beta / N) lambda^2``, float64
    arrays of shape (n_filters,); ``n_steps``: the steps taken; ``converged``: whether the
    stopping rule ended the run (else ``max_steps`` did); ``relative_error``: the estimated
    standard error of ``estimate`` at the end, relative to it (L2 norms over the filters).
    """

    estimate: np.ndarray
    prior_term: np.ndarray
    n_steps: int
    converged: bool
    relative_error: float


def variational_fisher(
    probe,
    head,
    batches,
    n_examples,
    *,
    prior,
    initial_precision,
    beta,
    max_steps,
    tol,
    head_weight_decay,
    generator,
    noise="per_example",
    curvature="gauss_newton",
    label_method="montecarlo",
    fisher=None,
):
    """The paper's robust Fisher estimate of the probe's filters (sec. 3.1, supplementary sec. 6).

    The precisions ``Lambda`` (one per filter) minimise

        L(w_hat; Lambda) = E_{w ~ N(w_hat, Lambda^-1)} [ H_{p_w, p_hat}(y|x) ] + beta KL(N(w_hat, Lambda^-1) || N(0, lambda^-2 I))

    with ``H`` the cross-entropy on the task's labels summed over its ``N`` examples and
    ``lambda^2`` the prior precision of the filter's layer. Per filter ``k`` of ``n_k``
    weights, with ``sigma_k^2 = 1 / Lambda_k``, the KL is ``n_k / 2 (lambda^2 sigma_k^2 -
    log(lambda^2 sigma_k^2) - 1)`` plus a term free of ``Lambda``, so ``dL / d sigma_k^2 = 0``
    reads

        Lambda_k = lambda^2 + (2 N / (beta n_k)) g_k,      g_k = d E[H / N] / d sigma_k^2,

    and the row is ``(beta / N) Lambda_k = (beta / N) lambda^2 + 2 g_k / n_k``. By Price's
    (Bonnet's) theorem, ``d E[f(w)] / d Sigma_ii = E[d^2 f / d w_i^2] / 2`` for ``w ~ N(w_hat,
    Sigma)``, so ``g_k = (1/2) sum_{i in k} E_delta[d^2 (H / N) / d w_i^2 (w_hat + delta)]``.
    The loss's Hessian is its Gauss-Newton part ``J^T (diag p - p p^T) J`` (``J`` the logits'
    Jacobian, ``p`` the model's prediction; for the softmax cross-entropy it is the Fisher of
    the model's predictive, free of the labels) plus ``sum_c (p_c - [y = c]) d^2 s_c / d w^2``,
    the logits' own curvature weighted by the residuals. Two estimators of ``g``
    (``curvature``):

    * ``"gauss_newton"`` (default): the Hessian replaced by its Gauss-Newton part,

          g_k = (n_k / 2) E_delta[ F_k(w_hat + delta) ],    (beta / N) Lambda_k = (beta / N) lambda^2 + E_delta[ F_k(w_hat + delta) ],

      the Fisher (per example, averaged over filter ``k``'s weights, as the point estimates
      compute it) at the perturbed weights, averaged over the noise. It is the stationary
      point of the objective with the loss's curvature replaced by its Gauss-Newton part: the
      paper's estimator wherever the residual term vanishes (logits linear in the filters'
      weights over the noise's reach, e.g. a convolution followed by average pooling: the
      loss's second-order model in the weights is then the Gauss-Newton one), the second-order
      optimum ``F(w_hat) + (beta / N) lambda^2`` as the noise vanishes, and beyond second
      order the Fisher of the networks that the noise the task tolerates reaches (the noise's
      effect on the activations is kept; the residual term, ReLU kinks included, dropped).
      Each step runs the batch forward with the noise (:class:`VariationalFilterNoise`:
      Flipout per example or the local reparametrisation), then the backward passes of
      :func:`backward_label_directions` (one with ``label_method="montecarlo"``, a label drawn
      from the perturbed model; ``C - 1`` with ``"exact"``): the filter layers are linear in
      their weights, so the inputs and output gradients that :class:`FilterFisherRecorder`
      reads at the perturbed network give each example's gradient at ``w_hat + delta_n``. A
      step's estimate is a mean of squares, nonnegative, and its spread is that of the
      per-example Fisher over the batch's examples and labels: no antithetic pairs or control
      variate are needed. With ``noise="per_position"`` (independent noise at every output
      position, as if each position had a weight copy of its own) the curvature of those
      copies is the position-diagonal part of the Fisher,
      :func:`position_diagonal_squared_gradients`.
    * ``"hessian"``: the unbiased reparametrisation (pathwise) estimate of ``g`` with the full
      Hessian, the derivative in ``sigma^2`` of the loss at the perturbed weights
      (:meth:`VariationalFilterNoise.curvatures`), on antithetic pairs (``w_hat + delta_n`` and
      ``w_hat - delta_n``: the loss's term linear in ``delta``, of mean zero and the largest
      variance, cancels within each pair), with a second-order control variate (``fisher``).
      The gradient of the paper's exact objective, but on deep ReLU networks each step's
      estimate has a relative standard deviation of about 9 (the kinks' terms): hundreds to
      thousands of steps, each a forward and backward pass of twice the batch.

    The stationarity condition is solved by stochastic fixed-point iteration (Robbins-Monro)
    rather than by descending ``L``: ``L`` is nearly flat in ``Lambda`` (the cross-entropy
    dominates it) and its stochastic gradients in ``log Lambda`` are weak and noisy, so
    gradient steps take thousands of steps to settle. ``Lambda`` after ``t`` steps is the
    fixed point's right-hand side at the mean of the ``t`` estimates of ``g`` and of the
    start's own ``g`` (counted as one), so the noise of the next step has the size the
    estimate so far says; a filter whose mean ``g`` is not positive (its loss does not rise
    under noise, ``"hessian"`` only) is held at its prior, ``Lambda_k = lambda^2``.
    ``lambda^2`` stays at its given value, the layer's weight scale (training it jointly, as
    the paper does, has no finite optimum on a task the data do not determine: with this KL it
    falls to 0). The head is trained jointly on the task's labels at the paper's low learning
    rate (:data:`VARIATIONAL_HEAD_LEARNING_RATE`, Adam), with the L2 penalty it was trained
    with; with ``"gauss_newton"`` its gradient is taken on the perturbed features, detached (a
    backward pass through the head only).

    Stopping rule: the standard error of the mean ``g`` per filter, from the spread of the
    steps' estimates, gives that of the row; the run stops at the first step, from the end of
    the first epoch on (every example seen once), where that standard error is at most
    ``tol`` times the row (L2 norms over the filters), or after ``max_steps`` steps.

    Parameters
    ----------
    probe : RunnableProbe
        The probe to perturb (:func:`~sklearn_task2vec._probes.folded_filters`).
    head : Readout
        The head trained on the task (:class:`~sklearn_task2vec._heads.Readout`, one label slot
        per example); a copy is trained further here.
    batches : callable
        ``batches()`` iterates over one epoch of ``(inputs, codes)`` on the probe's device.
    n_examples : int
        ``N``, the examples in the task.
    prior : ndarray of shape (n_filters,)
        The prior precision ``lambda^2`` of each filter's layer (the probe's
        ``trivial_embedding_``).
    initial_precision : ndarray of shape (n_filters,)
        Where the iteration starts: the second-order solution ``prior + (N / beta) F`` from a
        point estimate of ``F`` puts the first steps' noise at about its final size.
    beta : float
        Weight of the KL term against the summed cross-entropy (1 is the evidence lower bound).
    max_steps : int
        Most steps (batches), cycling over epochs.
    tol : float
        Relative standard error of the row at which the run stops; 0 turns the rule off
        (``max_steps`` steps).
    head_weight_decay : float
        The head's L2 penalty ``head_weight_decay / 2 * ||W||^2``, as in its training
        (:func:`~sklearn_task2vec._heads.train_head`): the head stays at the optimum it was
        fitted to instead of growing, which would change the Fisher being estimated.
    generator : torch.Generator
        Source of the perturbations (and of the sampled labels), on the probe's device.
    noise : {"per_example", "per_position"}, default="per_example"
        How layers applied at several positions are perturbed (:class:`VariationalFilterNoise`).
    curvature : {"gauss_newton", "hessian"}, default="gauss_newton"
        The estimator of ``g``, above.
    label_method : {"montecarlo", "exact"}, default="montecarlo"
        With ``curvature="gauss_newton"``: the Fisher's expectation over the model's labels,
        sampled or in closed form (:func:`backward_label_directions`).
    fisher : ndarray of shape (n_filters,) or None, default=None
        With ``curvature="hessian"``: a point estimate of ``F`` (per example, averaged over
        each filter's weights), the mean of the control variate
        (:meth:`VariationalFilterNoise.quadratic_curvatures`) with ``noise="per_example"``;
        ``None``, or ``"per_position"`` (whose second-order term is not ``F``): no control
        variate. A control variate that removes less than a fifth of the variance by the end
        of the first epoch of at least eight steps is dropped
        (:meth:`_CurvatureMean.control_variate_helps`): its passes cost about a step's.

    Returns
    -------
    VariationalResult
    """
    if curvature not in VARIATIONAL_CURVATURES:
        raise ValueError(f"curvature must be one of {VARIATIONAL_CURVATURES}, got {curvature!r}.")
    gauss_newton = curvature == "gauss_newton"
    head = copy.deepcopy(head).requires_grad_()
    perturbation = VariationalFilterNoise(
        probe.filters,
        probe.scales,
        initial_precision,
        generator,
        noise,
        antithetic=not gauss_newton,
        differentiable=not gauss_newton,
    )
    optimizer = torch.optim.Adam(head.parameters(), lr=VARIATIONAL_HEAD_LEARNING_RATE)
    device = perturbation.log_precisions[0].device if perturbation.log_precisions else torch.device("cpu")
    weights = torch.from_numpy(perturbation.weights_per_filter).to(device)
    prior_precision = torch.as_tensor(np.asarray(prior, dtype=np.float64), device=device)
    to_precision = 2.0 * n_examples / (beta * weights)
    start = torch.as_tensor(np.asarray(initial_precision, dtype=np.float64), device=device)
    start_curvature = (start - prior_precision) / to_precision
    quadratic_mean = None
    if fisher is not None and noise == "per_example" and not gauss_newton:
        quadratic_mean = 0.5 * weights * torch.as_tensor(np.asarray(fisher, dtype=np.float64), device=device)

    def model(inputs):
        return _single_slot_logits(head, probe.module, inputs)

    def train_head(logits, codes):
        loss = F.cross_entropy(logits, codes) + 0.5 * head_weight_decay * head.linear.weight.pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if gauss_newton:
        recorder = FilterFisherRecorder(
            probe.filters, probe.scales, position_diagonal=noise == "per_position"
        )
        # Entered after the recorder, the noise's hooks run first: the recorder reads each
        # layer's perturbed output, whose gradient is the one at the perturbed weights.
        hooks = (recorder, perturbation)

        def step(inputs, codes):
            recorder.start_batch(len(inputs), inputs.device)
            features = probe.module(inputs)
            logits, valid = head(features, inputs)
            backward_label_directions(logits, valid, label_method, generator)
            train_head(head(features.detach(), inputs)[0][:, 0], codes)
            return 0.5 * weights * recorder.rows.mean(0), None

    else:
        hooks = (perturbation,)

        def step(inputs, codes):
            for log_precision in perturbation.log_precisions:
                log_precision.grad = None
            train_head(model(torch.cat([inputs, inputs])), torch.cat([codes, codes]))
            quadratic = None if quadratic_mean is None else perturbation.quadratic_curvatures(model, inputs)
            return perturbation.curvatures(), quadratic

    curvature_mean = _CurvatureMean(start_curvature, quadratic_mean)
    n_steps, epochs, converged, judged = 0, 0, False, False
    precision = start

    def relative_error():
        # Lambda_k moves by to_precision_k per unit of the mean g_k (the common beta / N cancels).
        return float((to_precision * curvature_mean.standard_error()).norm() / precision.norm())

    with contextlib.ExitStack() as entered, torch.enable_grad():
        for hook in hooks:
            entered.enter_context(hook)
        while not converged and n_steps < max_steps:
            for inputs, codes in batches():
                curvature_mean.add(*step(inputs, codes))
                n_steps += 1
                precision = torch.maximum(
                    prior_precision + to_precision * curvature_mean.mean(), prior_precision
                )
                perturbation.set_precisions(precision)
                converged = bool(epochs and tol > 0 and relative_error() <= tol)
                if converged or n_steps == max_steps:
                    break
            if n_steps == 0:
                raise ValueError("method='variational' got a task with no batches to train on.")
            epochs += 1
            if (
                curvature_mean.quadratic_mean is not None
                and not judged
                and curvature_mean.count >= _CONTROL_VARIATE_TRIAL_STEPS
            ):
                judged = True
                if not curvature_mean.control_variate_helps(to_precision):
                    # Its passes cost about as much as the step's own; the plain mean of the
                    # steps (kept all along) is then about as precise.
                    quadratic_mean = None
                    curvature_mean.drop_control_variate()
            converged = converged or bool(tol > 0 and relative_error() <= tol)
    kl_weight = beta / n_examples
    estimate = (kl_weight * precision).cpu().numpy()
    return VariationalResult(
        estimate, kl_weight * np.asarray(prior, dtype=np.float64), n_steps, converged, relative_error()
    )


def _single_slot_logits(head, module, inputs):
    """The logits of a task with one label slot per example, (n, classes)."""
    logits, _ = head(module(inputs), inputs)
    return logits[:, 0]


class _CurvatureMean:
    """The running estimate of ``g = d E[H / N] / d sigma^2`` per filter of :func:`variational_fisher`.

    The mean of the steps' estimates ``g_t`` and of the start's own ``g`` (counted as one
    step). With the control variate ``q_t`` of known mean ``q_mean`` (the second-order
    model's, :meth:`VariationalFilterNoise.quadratic_curvatures`), the steps' mean is the
    regression estimate ``mean(g) - c (mean(q) - q_mean)``, ``c = cov(g, q) / var(q)`` per
    filter from the steps so far (1 before there are three; clipped to [0, 2]): where the loss
    is quadratic in the noise ``c = 1`` and the draws' noise cancels, and where it is not (the
    kinks of ReLU networks) ``c`` falls to what the correlation supports. Its standard error
    is that of the steps' mean, from their spread (``var(g) - c cov(g, q)`` with the control
    variate).
    """

    def __init__(self, start, quadratic_mean=None):
        self.start, self.quadratic_mean = start, quadratic_mean
        self.count = 0
        self.sums = collections.defaultdict(lambda: torch.zeros_like(start))

    def add(self, curvature, quadratic=None):
        self.count += 1
        self.sums["g"] += curvature
        self.sums["gg"] += curvature.square()
        if quadratic is not None:
            self.sums["q"] += quadratic
            self.sums["qq"] += quadratic.square()
            self.sums["gq"] += curvature * quadratic

    def _moments(self):
        n = self.count
        mean_g = self.sums["g"] / n
        variance_g = (self.sums["gg"] / n - mean_g.square()).clamp_min(0.0)
        if self.quadratic_mean is None:
            return mean_g, variance_g
        mean_q = self.sums["q"] / n
        variance_q = (self.sums["qq"] / n - mean_q.square()).clamp_min(0.0)
        covariance = self.sums["gq"] / n - mean_g * mean_q
        if n < 3:
            slope = torch.ones_like(mean_g)
        else:
            slope = (covariance / variance_q.clamp_min(torch.finfo(variance_q.dtype).tiny)).clamp(0.0, 2.0)
        mean = mean_g - slope * (mean_q - self.quadratic_mean)
        variance = (variance_g - 2 * slope * covariance + slope.square() * variance_q).clamp_min(0.0)
        return mean, variance

    def control_variate_helps(self, scale):
        """Whether the control variate removes more than a fifth of the variance of the steps'
        mean: its standard error below 0.9 of the plain mean's, in the L2 norm over the filters
        of ``scale`` times it (the stopping rule's norm)."""
        _, variance = self._moments()
        plain = (self.sums["gg"] / self.count - (self.sums["g"] / self.count).square()).clamp_min(0.0)
        weights = scale.square()
        return bool((weights * variance).sum() < 0.81 * (weights * plain).sum())

    def drop_control_variate(self):
        """From now on (and for the steps so far) the plain mean of the steps' estimates."""
        self.quadratic_mean = None

    def mean(self):
        mean, _ = self._moments()
        return (self.start + self.count * mean) / (self.count + 1)

    def standard_error(self):
        """Of :meth:`mean` per filter; infinite before there are two steps."""
        if self.count < 2:
            return torch.full_like(self.start, float("inf"))
        _, variance = self._moments()
        return (
            (variance * self.count / (self.count - 1)).sqrt()
            * self.count
            / (self.count + 1)
            / self.count**0.5
        )
