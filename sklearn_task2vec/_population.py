"""The forward pass of a population: many copies of one network, each with its own weights.

The task scores train one network per labelling and seed together, their weights stacked along
a leading model axis (``torch.func.stack_module_state``). Any network runs through
``torch.func.vmap`` over ``functional_call``. A plain ``nn.Sequential`` of convolutions, linear
layers, pools and elementwise activations (the seed's small CNN and MLP), or one such layer
alone (``nn.Linear(n_features, 2)``, a linear head on fixed features), runs through
:func:`sequential_population` instead, which computes the same numbers in layouts that the CPU
kernels are fast on: vmap turns a convolution over stacked weights into a grouped convolution
in the NCHW layout, where oneDNN is 2-3x slower than in channels-last; here the activations of
all models stay one channels-last image batch ``(batch, models * channels, height, width)``
and the linear layers are batched matrix products ``(models, batch, features)``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

#: Layers applied elementwise, hence the same on any layout of the models' activations.
ELEMENTWISE_LAYERS = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
)
#: Pools that act on each channel alone, hence on each model's channels alone.
CHANNELWISE_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def two_logits(out):
    """``(..., 2)`` logits from ``(..., 2)`` or ``(..., 1)``: one positive-class logit ``z``
    becomes ``(0, z)`` (softmax = sigmoid of z)."""
    if out.shape[-1] == 2:
        return out
    return torch.cat((torch.zeros_like(out), out), dim=-1)


def runs_stacked(template, example_shape):
    """Whether :func:`population_forward` runs ``template`` as :func:`sequential_population`:
    layers of known kinds only, none of which draws random numbers."""
    layers = _sequential_layers(template)
    return layers is not None and _runs_stacked(layers, example_shape)


def population_forward(template, example_shape):
    """``forward(weights, x)``: logits ``(n_models, batch, 2)`` of stacked models on ``x``.

    ``weights`` maps the parameter names of ``template`` to tensors with a leading model axis;
    ``x`` has shape ``(n_models, batch, *example_shape)``, each model its own batch.
    """
    if runs_stacked(template, example_shape):
        layers = _pools_before_relus(_sequential_layers(template))
        return lambda weights, x: two_logits(sequential_population(layers, weights, x))
    skeleton = copy.deepcopy(template).to("meta")

    def logits(params, x):
        out = functional_call(skeleton, params, (x,))
        return two_logits(out if out.dim() == 2 else out.reshape(out.shape[0], 1))

    return vmap(logits, in_dims=(0, 0), randomness="different")


def _sequential_layers(template):
    """``(parameter prefix, layer)`` in call order when ``template`` is nested plain Sequentials
    or one layer alone (a linear head on fixed features)."""
    if type(template) is not nn.Sequential:
        return None if any(True for _ in template.children()) else [("", template)]
    layers = []
    for name, module in template.named_modules():
        if type(module) is nn.Sequential:
            continue
        if any(True for _ in module.children()):
            return None
        layers.append((f"{name}." if name else "", module))
    return layers


def _pools_before_relus(layers):
    """``layers`` with every ReLU that a max-pool follows moved after it.

    ReLU is non-decreasing, so the max of the ReLUs of a window is the ReLU of its max, and the
    gradient reaches the same input (none where the max is not positive): the same numbers,
    with the ReLU and its backward on the pooled activations, a quarter of the size for 2x2
    pools.
    """
    layers = list(layers)
    for position in range(len(layers) - 1):
        if type(layers[position][1]) is nn.ReLU and type(layers[position + 1][1]) is nn.MaxPool2d:
            layers[position], layers[position + 1] = layers[position + 1], layers[position]
    return layers


def _runs_stacked(layers, example_shape):
    """Whether every layer has a stacked form for inputs of ``example_shape``, in order."""
    images = len(example_shape) == 3
    for _, layer in layers:
        if type(layer) is nn.Conv2d:
            if not images or layer.padding_mode != "zeros":
                return False
        elif type(layer) in CHANNELWISE_POOLS:
            if not images:
                return False
        elif type(layer) is nn.Flatten:
            if (layer.start_dim, layer.end_dim) != (1, -1):
                return False
            images = False
        elif type(layer) is nn.Linear:
            if images:
                return False
        elif type(layer) not in ELEMENTWISE_LAYERS:
            return False
    return not images


def sequential_population(layers, weights, x):
    """Stacked models of one Sequential on ``x`` (``(n_models, batch, *example)``): ``(n_models, batch, out)``.

    Images travel as one channels-last batch ``(batch, n_models * channels, height, width)``,
    model-major along the channels, so that a convolution is a grouped convolution with one
    group per model (times the layer's own groups); features travel as
    ``(n_models, batch, features)``.
    """
    n_models = x.shape[0]
    if x.dim() == 5:
        h = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)
    else:
        h = x
    for prefix, layer in layers:
        if type(layer) is nn.Conv2d:
            weight = weights[prefix + "weight"]
            bias = weights.get(prefix + "bias")
            h = nn.functional.conv2d(
                h,
                weight.flatten(0, 1),
                None if bias is None else bias.flatten(),
                layer.stride,
                layer.padding,
                layer.dilation,
                n_models * layer.groups,
            )
        elif type(layer) is nn.Flatten:
            # Features are already flat: (batch, features) per model.
            if h.dim() == 4:
                h = h.unflatten(1, (n_models, -1)).transpose(0, 1).flatten(2)
        elif type(layer) is nn.Linear:
            # (weight @ h^T)^T rather than h @ weight^T: the weight's gradient then comes out
            # in the weight's own layout, with no transposed copy of it at every step.
            weight, bias = weights[prefix + "weight"], weights.get(prefix + "bias")
            h_t = h.transpose(1, 2)
            h = (
                torch.bmm(weight, h_t) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, h_t)
            ).transpose(1, 2)
        else:
            h = layer(h)
    return h
