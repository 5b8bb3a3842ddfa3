"""The probe contract: every probe is embedded exactly, or refused with a clear error.

Each probe of the zoo is embedded with ``method="exact"`` and compared, filter by filter and
example by example, with a brute-force oracle that knows nothing of the package's machinery:
full per-example Jacobians of the logits with respect to the *user's* module's weights
(``torch.func``), contracted with the softmax metric ``diag p - p p^T``. Probes the
per-filter Fisher cannot handle must raise a ``ValueError`` that names the layer.
"""

import copy
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.probes import build_named_probe


def oracle_fisher(probe, head, X, weights):
    """Per-example exact Fisher diagonal, averaged per filter, named ``"path:index"``.

    ``weights`` maps the name of a weight of ``probe`` (as ``named_parameters`` gives it) to
    the filter paths of its row blocks: one path, or several for a weight that stacks several
    projections (``in_proj_weight``: query, key, value).
    """
    model = nn.Sequential(copy.deepcopy(probe).double().eval(), copy.deepcopy(head).double())
    params = {f"0.{name}": parameter.detach() for name, parameter in model[0].named_parameters()}
    inputs = torch.tensor(np.asarray(X))  # a copy: a probe may change its input in place
    if inputs.is_floating_point():
        inputs = inputs.double()

    def logits(chosen, x):
        return torch.func.functional_call(model, {**params, **chosen}, (x.unsqueeze(0),))[0]

    chosen = {f"0.{name}": params[f"0.{name}"] for name in weights}
    jacobians = torch.func.vmap(torch.func.jacrev(logits), in_dims=(None, 0))(chosen, inputs.clone())
    with torch.no_grad():
        probs = torch.softmax(model(inputs.clone()), dim=1)
    metric = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)
    columns = {}
    for name, paths in weights.items():
        paths = [paths] if isinstance(paths, str) else paths
        jac = jacobians[f"0.{name}"]
        diagonal = torch.einsum("ncw,ncd,ndw->nw", jac.flatten(2), metric, jac.flatten(2))
        per_filter = diagonal.view(len(X), jac.shape[2], -1).mean(2)
        for block, path in zip(per_filter.chunk(len(paths), dim=1), paths):
            for index in range(block.shape[1]):
                columns[f"{path}:{index}"] = block[:, index].numpy()
    return columns


def assert_embedded_exactly(probe, X, weights, n_classes=3, rtol=1e-6):
    """The embedder's rows equal the oracle's, column by column, and cover every oracle filter."""
    y = np.arange(len(X)) % n_classes
    embedder = FisherTaskEmbedder(probe=probe, method="exact", batch_size=5, random_state=0).fit(X, y)
    rows = embedder.transform(X)
    names = list(embedder.get_feature_names_out())
    expected = oracle_fisher(probe, embedder.head_, X, weights)
    assert sorted(names) == sorted(expected), "the embedded filters are the oracle's filters"
    expected_rows = np.column_stack([expected[name] for name in names])
    assert np.abs(expected_rows).max() > 0, "the oracle should see gradients for the test to bite"
    scale = np.abs(expected_rows).max(axis=0, keepdims=True)
    np.testing.assert_allclose(rows, expected_rows, rtol=rtol, atol=rtol * scale.max() * 1e-3)
    return embedder


# ----------------------------------------------------------------------------- probes handled


class MyConv(nn.Conv2d):
    """A subclass that changes nothing: torch.fx traces into it unless told otherwise."""


class MyLinear(nn.Linear):
    pass


class StandardisedConv(nn.Conv2d):
    """Weight standardisation (as timm's ``StdConv2d``): the gradient goes through it."""

    def forward(self, x):
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        weight = weight / (weight.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SamePaddedConv(nn.Conv2d):
    """Dynamic "same" padding computed in ``forward`` (as timm's ``Conv2dSame``)."""

    def forward(self, x):
        pad_h = max(
            (x.shape[-2] - 1) // self.stride[0] * self.stride[0] + self.kernel_size[0] - x.shape[-2], 0
        )
        pad_w = max(
            (x.shape[-1] - 1) // self.stride[1] * self.stride[1] + self.kernel_size[1] - x.shape[-1], 0
        )
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SubclassedLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = MyConv(2, 4, 3, padding=1)
        self.std = StandardisedConv(4, 4, 3)
        self.same = SamePaddedConv(4, 3, 3, stride=2)
        self.fc = MyLinear(3, 4)

    def forward(self, x):
        x = torch.tanh(self.conv(x))
        x = torch.tanh(self.same(torch.tanh(self.std(x))))
        return torch.tanh(self.fc(x.mean((2, 3))))


class ResidualDepthwise(nn.Module):
    """A residual block with eval-mode BatchNorm, a depthwise and a grouped convolution, and
    in-place ops on filter outputs (the first one included)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.grouped = nn.Conv2d(4, 4, 1, groups=2)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.stem(x)
        x.relu_()  # in place on the first filter output
        out = self.bn(self.depthwise(x))
        out += x  # in place on a folded convolution's output
        out = self.grouped(torch.relu(out))
        out.tanh_()
        return self.fc(out.mean((2, 3)))


class Normalised(nn.Module):
    """LayerNorm and GroupNorm act per example: nothing couples the batch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.group_norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 5)
        self.layer_norm = nn.LayerNorm(5)

    def forward(self, x):
        x = torch.relu(self.group_norm(self.conv(x))).mean((2, 3))
        return torch.tanh(self.layer_norm(self.fc(x)))


class TransformerProbe(nn.Module):
    """Tokens -> a Linear embedding -> one TransformerEncoderLayer -> mean over tokens."""

    def __init__(self, batch_first=True, norm_first=False):
        super().__init__()
        self.embed = nn.Linear(3, 8)
        layer = nn.TransformerEncoderLayer(
            8, 2, dim_feedforward=6, dropout=0.0, batch_first=batch_first, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.batch_first = batch_first

    def forward(self, x):
        tokens = self.embed(x)
        if not self.batch_first:
            return self.encoder(tokens.transpose(0, 1)).mean(0)
        return self.encoder(tokens).mean(1)


class AttentionFirst(nn.Module):
    """The attention is the first filter layer, with a padding mask; keys of another width."""

    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(4, 2, kdim=3, vdim=3, batch_first=True)

    def forward(self, x):
        mask = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
        mask[:, -1] = True
        queries = x[..., :1].expand(-1, -1, 4)
        output, _ = self.attention(queries, x, x, key_padding_mask=mask)
        return torch.tanh(output).mean(1)


def _layer_weights(probe):
    """Every Conv/Linear weight of ``probe`` and its path; attention projections split by role."""
    weights, attention_outputs = {}, set()
    for path, module in probe.named_modules():  # parents before their children
        if isinstance(module, nn.MultiheadAttention):
            roles = [f"{path}.{role}_proj" for role in "qkv"]
            if module.in_proj_weight is not None:
                weights[f"{path}.in_proj_weight"] = roles
            else:
                weights.update({f"{role}_weight": role for role in roles})
            weights[f"{path}.out_proj.weight"] = f"{path}.out_proj"
            attention_outputs.add(f"{path}.out_proj")
        elif isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and path not in attention_outputs:
            weights[f"{path}.weight"] = path
    return weights


def _vision_transformer():
    from torchvision.models import VisionTransformer

    model = VisionTransformer(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=6)
    model.heads = nn.Identity()
    return model


def _swin_transformer():
    from torchvision.models import SwinTransformer

    model = SwinTransformer(
        patch_size=[2, 2], embed_dim=4, depths=[2, 1], num_heads=[2, 2], window_size=[2, 2], num_classes=2
    )
    model.head = nn.Identity()
    for module in model.modules():  # a non-zero relative position bias, so that it matters
        if hasattr(module, "relative_position_bias_table"):
            nn.init.normal_(module.relative_position_bias_table)
    return model


def _convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    model = ConvNeXt([CNBlockConfig(4, 6, 1), CNBlockConfig(6, None, 1)], stochastic_depth_prob=0.0)
    model.classifier[-1] = nn.Identity()
    for module in model.modules():  # layer_scale starts at 1e-6: make the blocks matter
        if hasattr(module, "layer_scale"):
            nn.init.uniform_(module.layer_scale, 0.5, 1.5)
    return model


def _mobilenet_v3():
    from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3

    setting = [
        InvertedResidualConfig(4, 3, 8, 4, True, "RE", 2, 1, 1.0),
        InvertedResidualConfig(4, 3, 8, 4, False, "HS", 1, 1, 1.0),
    ]
    model = MobileNetV3(setting, last_channel=6)
    model.classifier[-1] = nn.Identity()
    return _randomised_batchnorm(model)


def _densenet():
    from torchvision.models import DenseNet

    model = DenseNet(growth_rate=3, block_config=(1, 1), num_init_features=4, bn_size=1)
    model.classifier = nn.Identity()
    return _randomised_batchnorm(model)


def _randomised_batchnorm(model):
    """Running statistics away from (0, 1), so that BatchNorm folding is tested."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


HANDLED = {
    "subclassed-layers": (SubclassedLayers, (2, 7, 7)),
    "residual-depthwise-bn-inplace": (ResidualDepthwise, (2, 5, 5)),
    "layernorm-groupnorm": (Normalised, (2, 5, 5)),
    "transformer-encoder": (TransformerProbe, (4, 3)),
    "transformer-encoder-norm-first": (lambda: TransformerProbe(norm_first=True), (4, 3)),
    "attention-first-kdim-mask": (AttentionFirst, (5, 3)),
    "torchvision-vit": (_vision_transformer, (3, 8, 8)),
    "torchvision-swin-shifted-windows": (_swin_transformer, (3, 10, 10)),
    "torchvision-convnext": (_convnext, (3, 16, 16)),
    "torchvision-mobilenet-v3": (_mobilenet_v3, (3, 16, 16)),
    "torchvision-densenet-untraceable": (_densenet, (3, 16, 16)),
}


@pytest.mark.parametrize("name", list(HANDLED))
def test_handled_probe_equals_the_brute_force_fisher(name, one_thread):
    make_probe, shape = HANDLED[name]
    torch.manual_seed(0)
    probe = make_probe().double()
    X = np.random.RandomState(0).normal(size=(12, *shape))
    before = copy.deepcopy(probe.state_dict())
    assert_embedded_exactly(probe, X, _layer_weights(probe))
    for key, value in probe.state_dict().items():  # the user's module is never modified
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_attention_filters_are_named_by_role(one_thread):
    probe = TransformerProbe().double()
    X = np.random.RandomState(0).normal(size=(6, 4, 3))
    names = FisherTaskEmbedder(probe=probe, method="exact").fit(X, np.arange(6) % 2).get_feature_names_out()
    attention = "encoder.layers.0.self_attn"
    for role in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert sum(str(name).startswith(f"{attention}.{role}:") for name in names) == 8
    assert not any("in_proj" in str(name) for name in names)


def test_explicit_attention_computes_the_same_function():
    from sklearn_task2vec._attention import ProjectedMultiheadAttention

    torch.manual_seed(0)
    for batch_first in (False, True):
        attention = nn.MultiheadAttention(8, 2, batch_first=batch_first, dtype=torch.float64).eval()
        projected = ProjectedMultiheadAttention(attention, "attention").eval()
        query = torch.randn(3, 4, 8, dtype=torch.float64)
        key = torch.randn(3, 5, 8, dtype=torch.float64)
        if not batch_first:
            query, key = query.transpose(0, 1), key.transpose(0, 1)
        causal = torch.rand(4, 5) > 0.6
        causal[:, 0] = False
        for kwargs in ({}, {"attn_mask": causal, "average_attn_weights": False}, {"need_weights": False}):
            expected, expected_weights = attention(query, key, key, **kwargs)
            output, weights = projected(query, key, key, **kwargs)
            torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
            if expected_weights is None:
                assert weights is None
            else:
                torch.testing.assert_close(weights, expected_weights, rtol=1e-12, atol=1e-12)


def test_attention_with_extra_key_rows_is_refused():
    probe = nn.Sequential(nn.Linear(3, 4))
    probe.attention = nn.MultiheadAttention(4, 1, add_bias_kv=True)
    with pytest.raises(ValueError, match="'attention'.*add_bias_kv"):
        FisherTaskEmbedder(probe=probe).fit(np.zeros((4, 3)), [0, 1, 0, 1])


# ----------------------------------------------------------------------------- probes refused


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return torch.tanh(self.b(torch.tanh(self.a(x))))


class FunctionalWeight(nn.Module):
    """Reads ``fc``'s weight outside ``fc``'s call, which fx can see."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.tanh(self.hidden(x))
        return torch.tanh(self.fc(h)) + F.linear(h, self.fc.weight)


class UntraceableFunctionalWeight(FunctionalWeight):
    """The same, behind control flow fx cannot follow: the gradient check catches it."""

    def forward(self, x):
        h = torch.tanh(self.hidden(x))
        if bool(h.detach().sum() > -1e9):
            return F.linear(h, self.fc.weight)
        return self.fc(h)


class BatchStatistics(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4, track_running_stats=False)

    def forward(self, x):
        return self.bn(self.fc(x))


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.tanh(self.fc(x)))


class UntraceableCalledTwice(CalledTwice):
    def forward(self, x):
        if bool(x.detach().sum() > -1e9):
            x = torch.tanh(self.fc(x))
        return self.fc(x)


REFUSED = {
    "tied-weights": (Tied, r"'a' shares its weight with \['b.weight'\].*tied"),
    "functional-weight": (FunctionalWeight, r"reads the weight of layer 'fc' outside"),
    "functional-weight-untraceable": (UntraceableFunctionalWeight, r"reads the weight of layer 'fc' outside"),
    "sequence-first-transformer": (
        lambda: TransformerProbe(batch_first=False),
        r"'encoder.layers.0.linear2' takes inputs whose first axis",
    ),
    "batch-statistics-batchnorm": (BatchStatistics, r"'bn' is a BatchNorm1d without running statistics"),
    "called-twice": (CalledTwice, r"'fc' is called more than once"),
    "called-twice-untraceable": (UntraceableCalledTwice, r"'fc' is called more than once"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_probe_is_refused_naming_the_layer(name, one_thread):
    make_probe, message = REFUSED[name]
    X = np.random.RandomState(0).normal(size=(8, 4, 3) if "transformer" in name else (8, 4))
    with pytest.raises(ValueError, match=message):
        FisherTaskEmbedder(probe=make_probe(), method="exact").fit_transform([(X, np.arange(8) % 2)])


def test_sequence_first_layers_are_refused_even_when_lengths_equal_the_batch(one_thread):
    """Two tokens per example and two examples checked: the shapes fit, the per-example
    comparison does not."""
    X = np.random.RandomState(0).normal(size=(8, 2, 3))
    with pytest.raises(ValueError, match="differ from those of the probe run on one example"):
        FisherTaskEmbedder(probe=TransformerProbe(batch_first=False), method="exact").fit(X, np.arange(8) % 2)


def test_refusal_is_recorded_per_task_under_on_error_warn(one_thread):
    """The per-example check runs on each task's data: its refusal is the task's error."""
    X = np.random.RandomState(0).normal(size=(8, 2, 3))
    embedder = FisherTaskEmbedder(probe=TransformerProbe(batch_first=False), on_error="warn")
    with pytest.warns(UserWarning, match="Task 0 failed"):
        rows = embedder.fit_transform([(X, np.arange(8) % 2)])
    assert np.isnan(rows).all()
    assert "differ from those of the probe run on one example at a time" in str(embedder.errors_[0])


def test_a_probe_refused_on_its_structure_fails_fit_whatever_on_error(one_thread):
    """Not a task's error: no task could be embedded with that probe."""
    X = np.random.RandomState(0).normal(size=(8, 4))
    with pytest.raises(ValueError, match="task 0: The probe reads the weight of layer 'fc'"):
        FisherTaskEmbedder(probe=UntraceableFunctionalWeight(), on_error="warn").fit([(X, np.arange(8) % 2)])


# ----------------------------------------------------------------------------- torchvision families

#: torchvision's families as named probes (random weights), with an input size each takes.
NAMED_FAMILIES = {
    "resnet18": 32,
    "densenet121": 32,
    "vgg11_bn": 32,
    "mobilenet_v3_small": 32,
    "efficientnet_b0": 32,
    "convnext_tiny": 32,
    "vit_b_16": 224,
    "swin_t": 32,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAMED_FAMILIES))
def test_named_torchvision_probe_is_embedded(name):
    size = NAMED_FAMILIES[name]
    n_examples = 2 if size > 32 else 3
    X = np.random.RandomState(0).normal(size=(n_examples, 3, size, size)).astype(np.float32)
    probe = name
    if name.startswith("efficientnet"):
        # Randomly initialised, its eval-mode features vanish (about 1e-14) and the Fisher with
        # them (refused as all-zero); running statistics from the data make it a usable probe.
        probe = build_named_probe(name, None)
        for module in probe.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = None
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # train mode drops blocks at random (stochastic depth)
            probe.train()(torch.as_tensor(X))
    # Two or three examples are separable by any head: weight decay keeps its probabilities off
    # 0 and 1 (a saturated head has an all-zero Fisher, which is refused).
    embedder = FisherTaskEmbedder(
        probe=probe, probe_weights=None, method="exact", batch_size=3, head_weight_decay=0.1, random_state=0
    )
    rows = embedder.fit_transform([(X, np.arange(n_examples) % 2)])
    names = embedder.get_feature_names_out()
    assert rows.shape == (1, len(names))
    assert np.isfinite(rows).all() and (rows >= 0).all()
    assert (rows > 0).mean() > 0.5, "most filters get gradient"
    if name == "vit_b_16":
        assert any(".self_attention.q_proj:" in str(filter_name) for filter_name in names)


# ----------------------------------------------------------------------------- timm probes


class FakeTimmModel(nn.Module):
    """What ``timm.create_model(name, num_classes=...)`` builds: a body and a ``head`` that
    ``num_classes=0`` makes an identity, so that the model returns its pooled features."""

    pretrained_cfg = {"classifier": "head"}

    def __init__(self, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, num_classes) if num_classes else nn.Identity()

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def fake_timm(monkeypatch):
    """A stand-in for the timm package: the real loading code runs against it, offline."""
    module = types.ModuleType("timm")
    module.calls = []

    def create_model(name, pretrained=False, num_classes=1000):
        module.calls.append((name, pretrained, num_classes))
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return FakeTimmModel(num_classes)

    module.create_model = create_model
    module.is_model = lambda name: name == "fake_net"
    module.list_models = lambda: ["fake_net"]
    monkeypatch.setitem(sys.modules, "timm", module)
    return module


def test_timm_probe_is_built_without_its_classifier_and_embedded(fake_timm, one_thread):
    X = np.random.RandomState(0).normal(size=(6, 3, 6, 6)).astype(np.float32)
    embedder = FisherTaskEmbedder(probe="timm:fake_net", probe_weights=None, method="exact", random_state=0)
    rows = embedder.fit_transform([(X, np.arange(6) % 2)])
    assert fake_timm.calls == [("fake_net", False, 0)]
    assert list(embedder.get_feature_names_out()) == [f"conv:{i}" for i in range(4)]
    assert np.isfinite(rows).all() and (rows > 0).all()


def test_timm_weights_file_with_its_classifier_loads_into_the_body(fake_timm, tmp_path):
    trained = FakeTimmModel(num_classes=10)
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    probe = build_named_probe("timm:fake_net", path)
    torch.testing.assert_close(probe.conv.weight, trained.conv.weight)
    assert isinstance(probe.head, nn.Identity)
    torch.save({**trained.state_dict(), "stray.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"unexpected keys \['stray.weight'\]"):
        build_named_probe("timm:fake_net", path)


def test_timm_offline_unknown_and_missing_are_clear_errors(fake_timm, monkeypatch):
    with pytest.raises(
        RuntimeError, match=r"pretrained weights of probe 'timm:fake_net'.*probe_weights=None"
    ):
        build_named_probe("timm:fake_net", "imagenet")
    with pytest.raises(ValueError, match=r"'nope' is not a timm model name.*fake_net"):
        build_named_probe("timm:nope", None)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    with pytest.raises(ValueError, match=r"needs timm: pip install"):
        build_named_probe("timm:fake_net", None)


def test_variational_refuses_layers_with_their_own_forward(one_thread):
    X = np.random.RandomState(0).normal(size=(8, 2, 7, 7))
    embedder = FisherTaskEmbedder(probe=SubclassedLayers(), method="variational", variational_steps=2)
    with pytest.raises(ValueError, match=r"'std' is a StandardisedConv.*method='exact'"):
        embedder.fit(X, np.arange(8) % 2)
