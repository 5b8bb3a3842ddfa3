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
trained by stochastic variational Bayes; it is not a sum over examples.

Each backward direction gives, at every filter module, the output gradient ``g_n`` of each
example ``n``; with the module's input ``a_n`` the per-example weight gradient is
``G_n^T U_n`` (``U_n`` the unfolded input). Its squared norm per filter is taken without
materialising a weight gradient per example where the Gram form ``G_n (U_n U_n^T) G_n^T`` is
cheaper (:func:`_rowwise_squared_norms`), and the probe's weights never get gradients at all:
the backward pass computes input gradients only.
"""

from __future__ import annotations

import collections
import copy
import itertools
import weakref
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._utils import autocast_context, to_device

#: Estimators of the Fisher diagonal that :func:`per_example_fisher` implements.
METHODS = ("montecarlo", "exact", "variational")

#: ``method="auto"`` takes the exact expectation up to this many classes (at most two
#: backward directions per example), and Monte Carlo sampling above it.
EXACT_MAX_CLASSES = 3

# Examples of a task's first batch on which check_per_example_gradients verifies the probe.
_CHECKED_EXAMPLES = 2

# The probe modules check_per_example_gradients has accepted.
_CHECKED_PROBES = weakref.WeakSet()

# Bound on the elements of one intermediate of the per-example products (256 MiB in float32).
_CHUNK_ELEMENTS = 1 << 26


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
    """``e_y - p`` with ``y ~ p`` for each example: the score of a sampled label, shape (n, C, 1)."""
    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    one_hot = F.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return (one_hot - probs).unsqueeze(2)


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


def _generic_squared_gradients(module, activation, output_grad):
    """Any other filter module (Conv3d, ...): per-example weight gradients by ``torch.func``."""

    def weight_gradient(example, example_grad):
        def forward(weight):
            return torch.func.functional_call(module, {"weight": weight}, (example.unsqueeze(0),))

        _, pullback = torch.func.vjp(forward, module.weight)
        return pullback(example_grad.unsqueeze(0))[0]

    gradients = torch.func.vmap(weight_gradient)(activation, output_grad)
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
    if computes_plain_layer(module) and isinstance(module, nn.Linear):
        return _linear_squared_gradients(activation, output_grad)
    if computes_plain_layer(module) and isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_squared_gradients(module, activation, output_grad)
    # Conv3d, and subclasses differentiated through their own forward.
    return _generic_squared_gradients(module, activation, output_grad)


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
    """

    def __init__(self, filters, scales=None):
        self.filters = filters
        self.scales = scales if scales is not None else [None] * len(filters)
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
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))
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
                    squared = squared_filter_gradients(
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


def check_per_example_gradients(module, filters, inputs):
    """Refuse a probe whose per-example filter gradients the hooks would get wrong.

    On ``inputs`` (a few examples) and a random direction ``r`` on the features, compares
    the squared filter gradients of ``(features * r).sum()`` that :class:`FilterFisherRecorder`
    computes for the batch with those of autograd on its first example run alone. They agree for
    every probe the hooks handle. They differ when a weight is read outside its module's call
    (``F.linear(x, self.fc.weight)``, or a fused kernel bypassing the module), which the hooks
    miss, or when a layer mixes examples (a first axis that is not the batch, as in a
    sequence-first transformer; batch statistics), which per-example rows cannot express.

    It runs on a float64 copy on the CPU, once per probe module (later calls return at once):
    in float32 a deep network's batched and single-example gradients differ by several
    percent (EfficientNet's squeeze-excitation layers: 4%), in float64 by 1e-11.
    """
    if module in _CHECKED_PROBES:
        return
    memo = {}
    copied = copy.deepcopy(module, memo).to(device="cpu", dtype=torch.float64)
    _compare_per_example_gradients(
        copied, [(path, memo[id(layer)]) for path, layer in filters], inputs.to("cpu", torch.float64)
    )
    _CHECKED_PROBES.add(module)


def _compare_per_example_gradients(module, filters, inputs):
    weights = [layer.weight for _, layer in filters]
    generator = torch.Generator().manual_seed(0)
    with torch.enable_grad(), FilterFisherRecorder(filters) as recorder:
        recorder.start_batch(len(inputs), inputs.device)
        features = module(inputs)
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
        output = (module(inputs[:1])[0] * direction[0]).sum()
        gradients = torch.autograd.grad(output, weights, allow_unused=True)
    alone = torch.cat(
        [
            torch.zeros(len(weight), dtype=torch.float64)
            if gradient is None
            else gradient.square().flatten(1).mean(1)
            for weight, gradient in zip(weights, gradients)
        ]
    ).unsqueeze(0)
    hooked = hooked[:1]
    if not (torch.isfinite(alone).all() and torch.isfinite(hooked).all()):
        raise ValueError(
            "The probe's gradients overflow on this task's first examples (non-finite values): "
            "inputs of very large magnitude do this; standardise them."
        )
    tolerance = 1e-6  # float64 rounding through a deep network stays below 1e-10
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


def per_example_fisher(probe, head, inputs, method, generator, recorder):
    """Each example's contribution to the Fisher diagonal of the probe's filters, (n, n_filters).

    Their mean over a task is the task's embedding (sec. 3.1). ``recorder`` must be entered
    on ``probe``'s filters; ``head`` maps probe features to logits and is held fixed.
    """
    recorder.start_batch(inputs.shape[0], inputs.device)
    with torch.enable_grad():
        features = probe(inputs)
        logits = head(features)
        if not logits.requires_grad:
            raise ValueError("The probe's output does not depend on any of its filters.")
        probs = torch.softmax(logits.detach().to(torch.float64), dim=1)
        if method == "exact":
            directions = exact_logit_directions(probs)
        elif method == "montecarlo":
            directions = sampled_logit_directions(probs, generator)
        else:
            raise ValueError(f"per_example_fisher takes 'exact' or 'montecarlo', not {method!r}.")
        directions = directions.to(logits.dtype)
        n_directions = directions.shape[2]
        for index in range(n_directions):
            logits.backward(directions[:, :, index], retain_graph=index < n_directions - 1)
    return recorder.rows


def task_fisher(
    probe, head, task, *, method, batch_size, generator, autocast=None, per_example=False, progress=None
):
    """The Fisher diagonal of a task's examples: their sum, or each example's row.

    One pass over ``task``'s batches (a coerced task, in its own order) through ``probe`` (a
    :class:`~sklearn_task2vec._probes.RunnableProbe`) and ``head``, on the head's device, with
    :func:`per_example_fisher` under the recorder's hooks. ``generator`` draws the Monte Carlo
    labels; ``autocast`` is a reduced precision for the passes; ``progress`` (a tqdm bar or
    None) is advanced by each batch's examples.

    Returns
    -------
    ndarray of shape (n_filters,) or (n_examples, n_filters), float64
        The sum over the examples (``per_example=False``), or every example's row.
    """
    device = next(iter(head.parameters())).device
    batches = (to_device(inputs, device) for inputs, _ in task.batches(batch_size))
    first = next(batches, None)
    if first is not None:
        check_per_example_gradients(probe.module, probe.filters, first[:_CHECKED_EXAMPLES])
        batches = itertools.chain([first], batches)
    rows = []
    with FilterFisherRecorder(probe.filters, probe.scales) as recorder:
        total = torch.zeros(recorder.n_filters, dtype=torch.float64, device=device)
        for inputs in batches:
            with autocast_context(autocast, device):
                batch_rows = per_example_fisher(probe.module, head, inputs, method, generator, recorder)
            if per_example:
                rows.append(batch_rows)
            else:
                total += batch_rows.sum(0)
            if progress is not None:
                progress.update(len(inputs))
    if per_example:
        return torch.cat(rows).cpu().numpy()
    return total.cpu().numpy()


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

# Bounds on the window of variational_fisher's stopping rule, in steps.
_MIN_WINDOW, _MAX_WINDOW = 8, 50

# Adam's moments of the precisions restart every this many steps (see variational_fisher).
_ADAM_RESTART = 100


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
    module's output. Parameters: ``log_precisions`` (one tensor per filter module, ``log
    Lambda_k`` of the probe's original filters) and ``log_priors`` (one ``log lambda_l^2`` per
    module), both trained. A folded BatchNorm (``scales``) multiplies a filter's weights by
    ``gamma / sigma``, so the folded layer's noise variance is ``(gamma / sigma)^2 / Lambda_k``.
    """

    def __init__(
        self, filters, scales, prior, initial_precision, generator, noise="per_example", antithetic=False
    ):
        if noise not in VARIATIONAL_NOISES:
            raise ValueError(f"noise must be one of {VARIATIONAL_NOISES}, got {noise!r}.")
        for path, module in filters:
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
        self.weight_scales, self.log_precisions, self.log_priors = [], [], []
        self.squared_weight_sums, self.weights_per_filter = [], []
        offset = 0
        for (_, module), scale in zip(filters, scales):
            weight = module.weight.detach()
            n_out = weight.shape[0]
            factor = torch.ones(n_out, dtype=weight.dtype, device=weight.device) if scale is None else scale
            factor = factor.to(weight.dtype)
            original = weight.reshape(n_out, -1) / factor.unsqueeze(1)  # the probe's weights before folding
            log_prior = torch.tensor(float(np.log(prior[offset])), dtype=weight.dtype, device=weight.device)
            initial = torch.from_numpy(np.log(initial_precision[offset : offset + n_out]))
            self.weight_scales.append(factor.square())
            self.log_precisions.append(initial.to(dtype=weight.dtype, device=weight.device))
            self.log_priors.append(log_prior)
            self.squared_weight_sums.append(original.pow(2).sum())
            self.weights_per_filter.append(original.shape[1])
            offset += n_out
        for tensor in (*self.log_precisions, *self.log_priors):
            tensor.requires_grad_()
        self._handles = []

    def parameters(self):
        return [*self.log_precisions, *self.log_priors]

    def __enter__(self):
        for index, (_, module) in enumerate(self.filters):
            self._handles.append(module.register_forward_hook(self._perturb(index)))
        return self

    def __exit__(self, *exc_info):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _perturb(self, index):
        def on_forward(module, inputs, output):
            variances = self.weight_scales[index] * torch.exp(-self.log_precisions[index])
            activation = inputs[0]
            if self.noise == "per_example" and _positions_per_example(module, activation, output) > 1:
                return output + self._shared_weight_noise(module, activation, variances.sqrt())
            return output + self._independent_output_noise(module, activation, output, variances)

        return on_forward

    def _per_example(self, draw, shape, flip):
        """``draw(shape)`` for a batch of ``shape[0]`` examples. In antithetic pairs the second
        half of the batch repeats the first (negated when ``flip``)."""
        if not self.antithetic:
            return draw(shape)
        first = draw((shape[0] // 2, *shape[1:]))
        return torch.cat([first, -first if flip else first])

    def _signs(self, shape, like, flip):
        def draw(size):
            signs = torch.randint(0, 2, size, generator=self.generator, device=like.device)
            return (2 * signs - 1).to(like.dtype)

        return self._per_example(draw, shape, flip)

    def _shared_weight_noise(self, module, activation, deviations):
        """Flipout: ``s_n * layer(x_n * r_n, sigma * epsilon)``, one ``epsilon`` per batch."""
        weight = module.weight
        epsilon = torch.randn(
            weight.shape, generator=self.generator, device=weight.device, dtype=weight.dtype
        )
        n = activation.shape[0]
        if isinstance(module, nn.Linear):
            between = (1,) * (activation.dim() - 2)
            in_signs = self._signs((n, *between, activation.shape[-1]), activation, flip=False)
            out_signs = self._signs((n, *between, weight.shape[0]), activation, flip=True)
            return out_signs * deviations * F.linear(activation * in_signs, epsilon)
        spatial = (1,) * (activation.dim() - 2)
        in_signs = self._signs((n, activation.shape[1], *spatial), activation, flip=False)
        out_signs = self._signs((n, weight.shape[0], *spatial), activation, flip=True)
        perturbation = module._conv_forward(activation * in_signs, epsilon, None)
        return out_signs * deviations.view(1, -1, *spatial) * perturbation

    def _independent_output_noise(self, module, activation, output, variances):
        """Local reparametrisation: Gaussian outputs, independent across output positions."""
        squares = activation.pow(2)
        if isinstance(module, nn.Linear):
            spread = squares.sum(-1, keepdim=True) * variances
        else:
            ones = squares.new_ones((module.groups, module.in_channels // module.groups, *module.kernel_size))
            per_group = module._conv_forward(squares, ones, None)
            spatial = (1,) * (per_group.dim() - 2)
            spread = per_group.repeat_interleave(module.out_channels // module.groups, dim=1)
            spread = spread * variances.view(1, -1, *spatial)
        noise = self._per_example(
            lambda size: torch.randn(
                size, generator=self.generator, device=output.device, dtype=output.dtype
            ),
            output.shape,
            flip=True,
        )
        # The clamp keeps sqrt differentiable where a receptive field is all zeros.
        return torch.sqrt(spread.clamp_min(torch.finfo(spread.dtype).tiny)) * noise

    def kl_divergence(self):
        """``KL(N(w_hat, Lambda^-1) || N(0, lambda^-2 I))``, summed over the filters' weights.

        Per layer (supplementary sec. 6): ``1/2 sum_k n_k (lambda^2 / Lambda_k - log(lambda^2 /
        Lambda_k) - 1) + 1/2 lambda^2 ||w_hat||^2``, with ``n_k`` the weights per filter.
        """
        total = 0.0
        for log_precision, log_prior, n_weights, squared_sum in zip(
            self.log_precisions, self.log_priors, self.weights_per_filter, self.squared_weight_sums
        ):
            ratio = log_prior - log_precision
            total = total + 0.5 * n_weights * (torch.exp(ratio) - ratio - 1.0).sum()
            total = total + 0.5 * torch.exp(log_prior) * squared_sum
        return total

    def state(self):
        """The trained values, ``log Lambda`` then ``log lambda^2`` per filter, one float64 vector."""
        per_filter = [
            prior.detach().double().expand(len(precision))
            for prior, precision in zip(self.log_priors, self.log_precisions)
        ]
        return torch.cat([value.detach().double() for value in self.log_precisions] + per_filter)

    def precisions(self, state=None):
        """``(Lambda, lambda^2)`` of ``state`` (default: the current one), per filter, float64 numpy."""
        values = (self.state() if state is None else state).exp().cpu().numpy()
        n_filters = len(values) // 2
        return values[:n_filters], values[n_filters:]


def _positions_per_example(module, activation, output):
    """At how many positions of one example ``module`` applies its weights."""
    if isinstance(module, nn.Linear):
        return activation[0].numel() // activation.shape[-1] if activation.dim() > 1 else 1
    return output[0, 0].numel()


class VariationalResult(NamedTuple):
    """What :func:`variational_fisher` returns.

    ``estimate`` and ``prior_term``: ``(beta / N) Lambda`` and ``(beta / N) lambda^2``, float64
    arrays of shape (n_filters,); ``n_steps``: the steps taken; ``converged``: whether the
    stopping rule ended the run (else ``max_steps`` did).
    """

    estimate: np.ndarray
    prior_term: np.ndarray
    n_steps: int
    converged: bool


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
    learning_rate,
    head_weight_decay,
    generator,
    noise="per_example",
):
    """The paper's robust Fisher estimate of the probe's filters (sec. 3.1, supplementary sec. 6).

    Minimises over the per-filter precisions ``Lambda`` (and the per-layer prior precisions
    ``lambda^2``), by stochastic gradient variational Bayes,

        L(w_hat; Lambda) = E_{w ~ N(w_hat, Lambda^-1)} [ H_{p_w, p_hat}(y|x) ] + beta KL(N(w_hat, Lambda^-1) || N(0, lambda^-2 I))

    with ``H`` the cross-entropy on the task's labels summed over its ``N`` examples (here
    the mean over a batch plus ``beta / N`` times the KL). To second order its minimum is at
    ``Lambda_k = lambda^2 + (N / beta) F_k``, with ``F_k`` the Fisher averaged over filter
    ``k``'s weights (the embedding of the point estimators), hence the estimate

        (beta / N) Lambda = F + (beta / N) lambda^2,

    biased towards the prior term ``(beta / N) lambda^2`` (the trivial embedding) when the
    task is small or its loss flat, instead of being degenerate. (The paper writes ``beta /
    2N``; the constant only rescales the embedding.) That optimum needs the perturbation of
    a weight shared across the positions where the layer applies it, ``noise="per_example"``;
    ``"per_position"`` is the paper's cheaper approximation, whose optimum is the
    position-diagonal part of the Fisher (:class:`VariationalFilterNoise`). The head is
    trained jointly at the paper's low learning rate (:data:`VARIATIONAL_HEAD_LEARNING_RATE`),
    the precisions and priors at ``learning_rate`` (Adam), with ``Lambda = exp(log Lambda)``
    kept positive. Far below its optimum the gradient of ``log Lambda`` is larger by the
    ratio ``Lambda* / Lambda`` (thousands, from the prior), and Adam's second moment, which
    remembers about 1,000 steps, would then shrink the later steps to nothing: the
    precisions' Adam moments restart every 100 steps. The head's loss keeps the L2 penalty
    it was trained with. Each batch is evaluated in antithetic pairs, at ``w_hat + delta_n``
    and ``w_hat - delta_n`` for each example: the loss's term linear in ``delta`` has mean
    zero but the largest variance (only the head, not the probe, is at a minimum of the
    task's loss), and it cancels within each pair, leaving the second-order term that
    carries the Fisher. A step therefore costs a forward and backward pass of twice the
    batch.

    Stopping rule: the steps are cut into windows of half an epoch (at least 8 steps, at
    most 50), so that the first two windows cover the first epoch: the earliest stop sees
    every example once. At the end of each window from the second on, the run stops when the
    window's mean objective is not below the previous window's by more than ``tol`` times its
    magnitude, ``mean_previous - mean_last <= tol * |mean_last|``, or after ``max_steps``
    steps. The result is the geometric mean of ``Lambda`` (and ``lambda^2``) over the last
    window's steps, which averages out the steps' jitter.

    Parameters
    ----------
    probe : RunnableProbe
        The probe to perturb (:func:`~sklearn_task2vec._probes.folded_filters`).
    head : torch.nn.Linear
        The head trained on the task; a copy is trained further here.
    batches : callable
        ``batches()`` iterates over one epoch of ``(inputs, codes)`` on the probe's device.
    n_examples : int
        ``N``, the examples in the task.
    prior : ndarray of shape (n_filters,)
        Initial prior precision per filter (``lambda^2``, the probe's ``trivial_embedding_``).
    initial_precision : ndarray of shape (n_filters,)
        Where the optimisation of ``Lambda`` starts. Stochastic gradients of ``log Lambda``
        are weak and noisy where the perturbation is small, so a start far from the optimum
        costs thousands of steps; the second-order solution ``prior + (N / beta) F`` from a
        point estimate of ``F`` is a start the objective then corrects.
    beta : float
        Weight of the KL term against the summed cross-entropy (1 is the evidence lower bound).
    max_steps : int
        Most optimisation steps (batches), cycling over epochs.
    tol : float
        Relative decrease of the windowed objective below which the run stops; 0 turns the
        rule off (``max_steps`` steps).
    learning_rate : float
        Adam learning rate of ``log Lambda`` and ``log lambda^2``.
    head_weight_decay : float
        The head's L2 penalty ``head_weight_decay / 2 * ||W||^2``, as in its training
        (:func:`~sklearn_task2vec._heads.train_head`): the head stays at the optimum it was
        fitted to instead of growing, which would change the Fisher being estimated.
    generator : torch.Generator
        Source of the perturbations, on the probe's device.
    noise : {"per_example", "per_position"}, default="per_example"
        How layers applied at several positions are perturbed (:class:`VariationalFilterNoise`).

    Returns
    -------
    VariationalResult
    """
    head = copy.deepcopy(head).requires_grad_()
    perturbation = VariationalFilterNoise(
        probe.filters, probe.scales, prior, initial_precision, generator, noise, antithetic=True
    )
    optimizer = torch.optim.Adam(
        [
            {"params": perturbation.parameters(), "lr": learning_rate},
            {"params": head.parameters(), "lr": VARIATIONAL_HEAD_LEARNING_RATE},
        ]
    )
    kl_weight = beta / n_examples
    objectives, states = [], collections.deque(maxlen=_MAX_WINDOW)
    window, converged = None, False
    with perturbation, torch.enable_grad():
        while not converged and len(objectives) < max_steps:
            epoch_start = len(objectives)
            for inputs, codes in batches():
                optimizer.zero_grad(set_to_none=True)
                twins, twin_codes = torch.cat([inputs, inputs]), torch.cat([codes, codes])
                loss = (
                    F.cross_entropy(head(probe.module(twins)), twin_codes)
                    + kl_weight * perturbation.kl_divergence()
                    + 0.5 * head_weight_decay * head.weight.pow(2).sum()
                )
                loss.backward()
                optimizer.step()
                if len(objectives) % _ADAM_RESTART == _ADAM_RESTART - 1:
                    for parameter in perturbation.parameters():
                        optimizer.state.pop(parameter, None)  # Adam starts afresh at the next step
                objectives.append(loss.detach())
                states.append(perturbation.state())
                if window is None and len(objectives) == 2 * _MAX_WINDOW:
                    window = _MAX_WINDOW  # an epoch longer than two windows
                converged = _objective_has_converged(objectives, window, tol)
                if converged or len(objectives) == max_steps:
                    break
            if len(objectives) == epoch_start:
                raise ValueError("method='variational' got a task with no batches to train on.")
            if window is None:
                half_epoch = -(-len(objectives) // 2)
                window = min(_MAX_WINDOW, max(_MIN_WINDOW, half_epoch))
                converged = _objective_has_converged(objectives, window, tol)
    last_steps = list(states)[-(window or len(states)) :]
    precisions, priors = perturbation.precisions(torch.stack(last_steps).mean(0))
    return VariationalResult(kl_weight * precisions, kl_weight * priors, len(objectives), converged)


def _objective_has_converged(objectives, window, tol):
    """The stopping rule of :func:`variational_fisher`, checked at the end of each window."""
    steps = len(objectives)
    if window is None or tol <= 0 or steps < 2 * window or steps % window:
        return False
    previous, last = torch.stack(objectives[-2 * window :]).double().view(2, window).mean(1)
    return bool(previous - last <= tol * last.abs())
