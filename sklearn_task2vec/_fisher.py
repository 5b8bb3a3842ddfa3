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

import copy

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


def squared_filter_gradients(module, activation, output_grad):
    """Sum over each filter's weights of the per-example squared weight gradient, (n, n_filters)."""
    if isinstance(module, nn.Linear):
        return _linear_squared_gradients(activation, output_grad)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return _conv_squared_gradients(module, activation, output_grad)
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
            if not output.requires_grad:
                output.requires_grad_()

            def on_gradient(output_grad):
                self._computing = True
                try:
                    squared = squared_filter_gradients(
                        module, _full_precision(activation), _full_precision(output_grad.detach())
                    )
                finally:
                    self._computing = False
                self.rows[:, columns] += squared.to(torch.float64) * factor

            output.register_hook(on_gradient)
            return output

        return on_forward


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
    rows = []
    with FilterFisherRecorder(probe.filters, probe.scales) as recorder:
        total = torch.zeros(recorder.n_filters, dtype=torch.float64, device=device)
        for inputs, _ in task.batches(batch_size):
            with autocast_context(autocast, device):
                batch_rows = per_example_fisher(
                    probe.module, head, to_device(inputs, device), method, generator, recorder
                )
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


class VariationalFilterNoise:
    """Gaussian perturbation ``w ~ N(w_hat, Lambda^-1)`` of a probe's filters, one precision per filter.

    With the local reparametrisation trick (Kingma et al., 2015) the perturbation is not drawn
    on the weights but on each filter module's output: a layer ``o = w * x`` with independent
    weight noise of variance ``sigma_k^2`` on filter ``k`` has Gaussian outputs of mean
    ``w_hat * x`` and variance ``sigma_k^2 * sum(x^2 over the receptive field)``. The sum is
    the same for every filter of a convolution group, so it costs one convolution of ``x^2``
    with a single all-ones filter per group; for a Linear layer it is ``||x||^2``.

    Used as a context manager: while entered, forward hooks add the noise to every filter
    module's output. Parameters: ``log_precisions`` (one tensor per filter module, ``log
    Lambda_k`` of the probe's original filters) and ``log_priors`` (one ``log lambda_l^2`` per
    module), both trained. A folded BatchNorm (``scales``) multiplies a filter's weights by
    ``gamma / sigma``, so the folded layer's noise variance is ``(gamma / sigma)^2 / Lambda_k``.
    """

    def __init__(self, filters, scales, prior, initial_precision, generator):
        self.filters = filters
        self.generator = generator
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
            squares = inputs[0].pow(2)
            if isinstance(module, nn.Linear):
                spread = squares.sum(-1, keepdim=True) * variances
            elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
                ones = squares.new_ones(
                    (module.groups, module.in_channels // module.groups, *module.kernel_size)
                )
                per_group = module._conv_forward(squares, ones, None)
                spatial = (1,) * (per_group.dim() - 2)
                spread = per_group.repeat_interleave(module.out_channels // module.groups, dim=1)
                spread = spread * variances.view(1, -1, *spatial)
            else:
                raise ValueError(
                    f"method='variational' perturbs Conv and Linear layers; probe layer "
                    f"{self.filters[index][0]!r} is a {type(module).__name__}."
                )
            noise = torch.randn(
                output.shape, generator=self.generator, device=output.device, dtype=output.dtype
            )
            # The clamp keeps sqrt differentiable where a receptive field is all zeros.
            return output + torch.sqrt(spread.clamp_min(torch.finfo(spread.dtype).tiny)) * noise

        return on_forward

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

    def precisions(self):
        """``(Lambda, lambda^2)``, one value per filter each, float64 numpy."""
        precisions = torch.cat([value.detach().double() for value in self.log_precisions]).exp()
        priors = torch.cat(
            [value.detach().double().expand(len(p)) for value, p in zip(self.log_priors, self.log_precisions)]
        ).exp()
        return precisions.cpu().numpy(), priors.cpu().numpy()


def variational_fisher(
    probe, head, batches, n_examples, *, prior, initial_precision, beta, n_steps, learning_rate, generator
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

    biased towards the prior ``(beta / N) lambda^2`` (the trivial embedding) when the task is
    small or its loss flat, instead of being degenerate. (The paper writes ``beta / 2N``; the
    constant only rescales the embedding.) The head is trained jointly at the paper's low
    learning rate (:data:`VARIATIONAL_HEAD_LEARNING_RATE`), the precisions and priors at
    ``learning_rate`` (Adam), with ``Lambda = exp(log Lambda)`` kept positive.

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
        Initial prior precision per filter (the trivial embedding).
    initial_precision : ndarray of shape (n_filters,)
        Where the optimisation of ``Lambda`` starts. Stochastic gradients of ``log Lambda``
        are weak and noisy where the perturbation is small, so a start far from the optimum
        costs thousands of steps; the second-order solution ``prior + (N / beta) F`` from a
        point estimate of ``F`` is a start the objective then corrects.
    beta : float
        Weight of the KL term against the summed cross-entropy (1 is the evidence lower bound).
    n_steps : int
        Optimisation steps (batches), cycling over epochs.
    learning_rate : float
        Adam learning rate of ``log Lambda`` and ``log lambda^2``.
    generator : torch.Generator
        Source of the perturbations, on the probe's device.

    Returns
    -------
    estimate, prior_term : ndarray of shape (n_filters,), float64
        ``(beta / N) Lambda`` and ``(beta / N) lambda^2``.
    """
    head = copy.deepcopy(head).requires_grad_()
    noise = VariationalFilterNoise(probe.filters, probe.scales, prior, initial_precision, generator)
    optimizer = torch.optim.Adam(
        [
            {"params": noise.parameters(), "lr": learning_rate},
            {"params": head.parameters(), "lr": VARIATIONAL_HEAD_LEARNING_RATE},
        ]
    )
    kl_weight = beta / n_examples
    step = 0
    with noise, torch.enable_grad():
        while step < n_steps:
            for inputs, codes in batches():
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(head(probe.module(inputs)), codes) + kl_weight * noise.kl_divergence()
                loss.backward()
                optimizer.step()
                step += 1
                if step == n_steps:
                    break
    precisions, priors = noise.precisions()
    return kl_weight * precisions, kl_weight * priors
