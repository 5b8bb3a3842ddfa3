"""Every weight-bearing layer of a probe is embedded, or the probe is refused for the real reason.

The classes of the second probe audit, each with several members: weights stored in other
layer kinds (Hugging Face ``Conv1D``, parametrizations, pruning, legacy weight and spectral
norm), layers the forward never calls, forwards with their own casts, user hooks, in-place
input changes, aliased submodules, integer inputs, compiled probes and the channels-last
path. Embedded probes are compared with the brute-force oracle of ``test_probe_zoo`` (per-
example Jacobians by ``torch.func``, in float64) on the function the user's probe computes.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from test_probe_zoo import _layer_weights, assert_embedded_exactly, oracle_fisher
from torch import nn
from torch.nn.utils import parametrizations, parametrize, prune

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.probes import build_named_probe


def _fit(probe, X, n_classes=3, **params):
    y = np.arange(len(X)) % n_classes
    params = {"method": "exact", "batch_size": 5, "random_state": 0, **params}
    return FisherTaskEmbedder(probe=probe, **params).fit(X, y)


def _plain_equivalent(probe):
    """A ``Small`` probe holding, as plain parameters, the weights the parametrized ``probe``
    computes (the oracle's reference function)."""
    plain = Small().double().eval()
    with torch.no_grad():
        for name in ("conv", "fc"):
            for tensor in ("weight", "bias"):
                getattr(getattr(plain, name), tensor).copy_(getattr(getattr(probe, name), tensor))
    return plain


def _assert_same_function(probe, plain, X):
    inputs = torch.as_tensor(X)
    with torch.no_grad():
        torch.testing.assert_close(probe.eval()(inputs.clone()), plain.eval()(inputs.clone()))


# --------------------------------------------------------------- weights stored in other forms


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return torch.tanh(self.fc(torch.tanh(self.conv(x)).mean((2, 3))))


class Scale(nn.Module):
    """A custom parametrization: each output filter scaled by a fixed factor."""

    def forward(self, weight):
        factors = torch.linspace(0.5, 1.5, weight.shape[0], dtype=weight.dtype)
        return weight * factors.view(-1, *(1,) * (weight.dim() - 1))


def _weight_norm_parametrization():
    probe = Small().double()
    parametrizations.weight_norm(probe.conv)
    parametrizations.weight_norm(probe.fc, dim=0)
    return probe


def _spectral_norm_parametrization():
    probe = Small().double()
    parametrizations.spectral_norm(probe.conv)
    parametrizations.spectral_norm(probe.fc)
    return probe


def _custom_parametrization():
    probe = Small().double()
    parametrize.register_parametrization(probe.conv, "weight", Scale())
    parametrize.register_parametrization(probe.fc, "weight", Scale())
    return probe


REPARAMETRISED = {
    "parametrizations-weight-norm": _weight_norm_parametrization,
    "parametrizations-spectral-norm": _spectral_norm_parametrization,
    "custom-parametrization": _custom_parametrization,
}


@pytest.mark.parametrize("name", list(REPARAMETRISED))
def test_parametrized_weights_are_embedded_as_the_weight_the_layer_computes_with(name, one_thread):
    torch.manual_seed(0)
    probe = REPARAMETRISED[name]()
    X = np.random.RandomState(0).normal(size=(10, 2, 6, 6))
    plain = _plain_equivalent(probe)
    _assert_same_function(probe, plain, X)
    embedder = _fit(probe, X)
    expected = oracle_fisher(plain, embedder.head_, X, {"conv.weight": "conv", "fc.weight": "fc"})
    names = list(embedder.get_feature_names_out())
    np.testing.assert_allclose(
        embedder.transform(X), np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-12
    )
    assert parametrize.is_parametrized(probe.conv), "the user's probe keeps its parametrization"
    assert embedder.embedded_layers_ == ["conv", "fc"]


def _legacy(norm):
    def make():
        torch.manual_seed(0)
        probe = Small().double()
        norm(probe.conv)
        norm(probe.fc)
        return probe

    return make


@pytest.mark.parametrize(
    "norm", [torch.nn.utils.weight_norm, torch.nn.utils.spectral_norm], ids=["weight_norm", "spectral_norm"]
)
def test_legacy_hook_based_norms_are_copied_and_embedded(norm, one_thread):
    probe = _legacy(norm)().eval()
    X = np.random.RandomState(1).normal(size=(10, 2, 6, 6))
    with torch.no_grad():
        probe(torch.as_tensor(X))  # the hooks compute the weight the layers use in eval mode
        reference = Small().double()
        reference.conv.weight.copy_(probe.conv.weight)
        reference.conv.bias.copy_(probe.conv.bias)
        reference.fc.weight.copy_(probe.fc.weight)
        reference.fc.bias.copy_(probe.fc.bias)
    _assert_same_function(probe, reference, X)
    embedder = _fit(probe, X)
    expected = oracle_fisher(reference, embedder.head_, X, {"conv.weight": "conv", "fc.weight": "fc"})
    names = list(embedder.get_feature_names_out())
    np.testing.assert_allclose(
        embedder.transform(X), np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-12
    )


def _pruned(make_with_grad=True):
    context = torch.enable_grad() if make_with_grad else torch.no_grad()
    with context:
        torch.manual_seed(0)
        probe = Small().double()
        prune.l1_unstructured(probe.conv, "weight", amount=0.4)
        prune.random_unstructured(probe.fc, "weight", amount=0.5)
    return probe


def test_pruned_layers_are_embedded_through_their_masks(one_thread):
    """The pruned entries are held at zero: the Fisher of the parameter torch trains,
    ``weight_orig``, whose gradient is the layer's masked."""
    probe = _pruned()
    X = np.random.RandomState(2).normal(size=(10, 2, 6, 6))
    embedder = _fit(probe, X)
    reference = _pruned(make_with_grad=False)  # the oracle deep-copies it
    expected = oracle_fisher(
        reference, embedder.head_, X, {"conv.weight_orig": "conv", "fc.weight_orig": "fc"}
    )
    names = list(embedder.get_feature_names_out())
    rows = embedder.transform(X)
    np.testing.assert_allclose(rows, np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-12)
    unmasked = _fit(_plain_equivalent(reference), X).transform(X)
    assert not np.allclose(rows, unmasked), "the mask changes the rows: the test bites"
    with pytest.raises(ValueError, match=r"'conv' is pruned.*method='exact'"):
        _fit(probe, X, method="variational", variational_steps=2)


# --------------------------------------------------------------- Hugging Face Conv1D (GPT-2)


def _gpt2(head):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        n_layer=2, n_embd=8, n_head=2, vocab_size=23, n_positions=12, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    kind = transformers.GPT2LMHeadModel if head else transformers.GPT2Model
    return kind(config).double().eval()


class MeanHiddenState(nn.Module):
    """The oracle's view of what the package probes: the body's mean last hidden state."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, ids):
        return self.body(input_ids=ids).last_hidden_state.mean(1)


@pytest.mark.parametrize("head", [False, True], ids=["GPT2Model", "GPT2LMHeadModel"])
def test_gpt2_is_embedded_with_all_its_conv1d_layers(head, one_thread):
    model = _gpt2(head)
    ids = np.random.RandomState(0).randint(0, 23, size=(8, 5))
    embedder = _fit(model, ids, n_classes=2, head_weight_decay=0.1)
    conv1d = [path for path, module in model.named_modules() if type(module).__name__ == "Conv1D"]
    assert len(conv1d) == 8, "four Conv1D per block"
    body = model.base_model
    weights = {
        f"body.{path}.weight": f"body.{path}"
        for path, module in body.named_modules()
        if type(module).__name__ == "Conv1D"
    }
    assert sorted(embedder.embedded_layers_) == sorted(weights.values())
    assert "body.wte" in embedder.left_out_layers_, "the token embedding table is listed as not a filter"
    # The oracle differentiates the user's model itself, Conv1D's transposed weights included:
    # a filter is a column of W (its output unit).
    reference = MeanHiddenState(body)
    expected = _oracle_transposed(reference, embedder.head_, ids, weights)
    names = list(embedder.get_feature_names_out())
    np.testing.assert_allclose(
        embedder.transform(ids), np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-14
    )


def _oracle_transposed(probe, head, ids, weights):
    """``oracle_fisher`` for Conv1D weights (in, out): the Jacobian of each column."""
    model = nn.Sequential(probe, copy.deepcopy(head).double())
    params = {f"0.{name}": parameter.detach() for name, parameter in probe.named_parameters()}
    inputs = torch.as_tensor(ids)

    def logits(chosen, x):
        return torch.func.functional_call(model, {**params, **chosen}, (x.unsqueeze(0),))[0]

    chosen = {f"0.{name}": params[f"0.{name}"] for name in weights}
    jacobians = torch.func.vmap(torch.func.jacrev(logits), in_dims=(None, 0))(chosen, inputs)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)
    metric = torch.diag_embed(probs) - probs.unsqueeze(2) * probs.unsqueeze(1)
    columns = {}
    for name, path in weights.items():
        jac = jacobians[f"0.{name}"].transpose(2, 3)  # (n, classes, out, in)
        diagonal = torch.einsum("ncow,ncd,ndow->now", jac, metric, jac)
        for index in range(diagonal.shape[1]):
            columns[f"{path}:{index}"] = diagonal[:, index].mean(1).numpy()
    return columns


def test_gpt2_user_model_is_not_modified(one_thread):
    model = _gpt2(head=True)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    ids = np.random.RandomState(1).randint(0, 23, size=(6, 4))
    _fit(model, ids, n_classes=2, head_weight_decay=0.1)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    assert model.lm_head.weight is model.transformer.wte.weight, "still tied"


# --------------------------------------------------------------- layers that carry filter weights
# but are no kind the Fisher knows: refused naming them, never skipped


class MatmulDense(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return x @ self.weight.t()


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(3, 2, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.kernel)


class EinsumLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = nn.Parameter(torch.randn(4, 4))

    def forward(self, x):
        return torch.einsum("bi,ij->bj", x, self.mix)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.rnn(x)[0].mean(1))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.bilinear = nn.Bilinear(4, 4, 3)

    def forward(self, x):
        return self.bilinear(x, x)


UNKNOWN_FILTER_LAYERS = {
    "matmul-dense": (
        lambda: nn.Sequential(nn.Linear(4, 3), MatmulDense()),
        (4,),
        r"'1' \(MatmulDense\).*'weight'.*matmul",
    ),
    "functional-conv": (
        lambda: nn.Sequential(FunctionalConv(), nn.Flatten()),
        (2, 5, 5),
        r"'0' \(FunctionalConv\).*'kernel'.*conv2d",
    ),
    "einsum": (
        lambda: nn.Sequential(nn.Linear(4, 4), EinsumLayer()),
        (4,),
        r"'1' \(EinsumLayer\).*'mix'.*einsum",
    ),
    "gru": (Recurrent, (3, 4), r"'rnn' \(GRU\).*recurrent layer"),
    "bilinear": (TwoInputs, (4,), r"'bilinear' \(Bilinear\).*two inputs"),
}


@pytest.mark.parametrize("name", list(UNKNOWN_FILTER_LAYERS))
def test_unknown_filter_layers_are_refused_naming_them(name, one_thread):
    make_probe, shape, message = UNKNOWN_FILTER_LAYERS[name]
    torch.manual_seed(0)
    X = np.random.RandomState(0).normal(size=(6, *shape))
    with pytest.raises(ValueError, match=message):
        FisherTaskEmbedder(probe=make_probe(), method="exact").fit(X, np.arange(6) % 2)


# --------------------------------------------------------------- layers never called


class SpareHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 7)  # as googlenet's aux heads in eval mode

    def forward(self, x):
        return torch.tanh(self.fc(torch.tanh(self.conv(x)).mean((2, 3))))


class UntraceableAux(SpareHead):
    def forward(self, x):
        h = torch.tanh(self.conv(x)).mean((2, 3))
        if self.training and bool(h.sum() > 0):  # fx cannot follow this
            return self.aux(h)
        return torch.tanh(self.fc(h))


@pytest.mark.parametrize("make_probe", [SpareHead, UntraceableAux], ids=["traceable", "untraceable"])
def test_layers_the_forward_never_calls_are_left_out_and_listed(make_probe, one_thread):
    torch.manual_seed(0)
    probe = make_probe().double()
    X = np.random.RandomState(0).normal(size=(10, 2, 5, 5))
    embedder = assert_embedded_exactly(probe, X, {"conv.weight": "conv", "fc.weight": "fc"})
    assert embedder.embedded_layers_ == ["conv", "fc"]
    assert embedder.left_out_layers_ == {"aux": "never called by the probe's forward"}
    rows = embedder.fit_transform([(X, np.arange(10) % 2)])
    assert rows.shape == (1, 4 + 3)


@pytest.mark.slow
@pytest.mark.parametrize("name, size, aux", [("googlenet", 64, "aux"), ("inception_v3", 80, "AuxLogits")])
def test_googlenet_and_inception_named_probes_embed_without_their_aux_heads(name, size, aux):
    X = np.random.RandomState(0).normal(size=(4, 3, size, size)).astype(np.float32)
    probe = build_named_probe(name, None)
    # Randomly initialised, their eval-mode features vanish or explode; running statistics
    # from the data make them usable probes (the auxiliary heads are off for that pass).
    for module in probe.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    heads = {path: module for path, module in probe.named_children() if path.startswith(aux)}
    for path in heads:
        setattr(probe, path, None)
    with torch.no_grad():
        probe.train()(torch.as_tensor(X))
    for path, module in heads.items():
        setattr(probe, path, module)
    embedder = FisherTaskEmbedder(probe=probe, method="exact", head_weight_decay=0.1, random_state=0)
    rows = embedder.fit_transform([(X, [0, 1, 0, 1])])
    assert np.isfinite(rows).all() and rows.shape[1] == len(embedder.get_feature_names_out())
    left_out = [path for path in embedder.left_out_layers_ if path.startswith(aux)]
    assert left_out and all("never called" in embedder.left_out_layers_[path] for path in left_out)
    assert not any(path.startswith(aux) for path in embedder.embedded_layers_)
    assert (rows > 0).mean() > 0.5, "most filters get gradient"


# --------------------------------------------------------------- forwards torch runs, refused clearly


class ScriptedBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.block(x))


class TracedBlock(ScriptedBlock):
    def __init__(self):
        super().__init__()
        self.block = torch.jit.trace(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), torch.zeros(1, 4))


class NoGradBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    @torch.no_grad()
    def forward(self, x):
        if bool(x.sum() > -1e9):  # fx cannot follow this
            return self.fc(x)
        return x


class NoGradProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.frozen = NoGradBlock()

    def forward(self, x):
        return self.frozen(self.stem(x))


class InferenceModeProbe(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        with torch.inference_mode():
            return self.fc(x)


class ConditionedLinear(nn.Linear):
    def forward(self, x, condition):
        return super().forward(x) * condition


class Conditioned(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = ConditionedLinear(4, 3)

    def forward(self, x):
        return self.fc(x, x[:, :1])


class KeywordConv(nn.Conv1d):
    def forward(self, x, scale=1.0):
        return super().forward(x) * scale


class KeywordCalled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = KeywordConv(1, 3, 2)

    def forward(self, x):
        return self.conv(x.unsqueeze(1), scale=2.0).mean(2)


REFUSED = {
    "jit-script-submodule": (ScriptedBlock, r"layer 'block' is a TorchScript module"),
    "jit-trace-submodule": (TracedBlock, r"layer 'block' is a TorchScript module"),
    "no-grad-forward": (NoGradProbe, r"'frozen.fc' runs with gradients disabled \(the forward of 'frozen'"),
    "inference-mode": (InferenceModeProbe, r"'fc' runs with gradients disabled \(the probe's forward"),
    "linear-with-two-inputs": (Conditioned, r"'fc' \(ConditionedLinear\) is called with 2 positional"),
    "conv-with-a-keyword": (
        KeywordCalled,
        r"'conv' \(KeywordConv\) is called with 1 positional arguments and keywords \['scale'\]",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_forwards_the_fisher_cannot_follow_are_refused_naming_the_module(name, one_thread):
    make_probe, message = REFUSED[name]
    X = np.random.RandomState(0).normal(size=(6, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        FisherTaskEmbedder(probe=make_probe(), method="exact").fit(X, np.arange(6) % 2)


# --------------------------------------------------------------- forwards with their own precision


class CastsInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.tanh(self.fc(torch.tanh(self.conv(x.float())).mean((2, 3))))


class CastsMidway(CastsInput):
    def forward(self, x):
        h = torch.tanh(self.conv(x)).mean((2, 3)).to(torch.float32)
        return torch.tanh(self.fc(h * torch.ones(4, dtype=torch.float32)))


@pytest.mark.parametrize("make_probe", [CastsInput, CastsMidway], ids=["x.float()", "to(float32)"])
def test_a_forward_that_fixes_its_precision_is_checked_in_it(make_probe, one_thread):
    torch.manual_seed(0)
    probe = make_probe()
    X = np.random.RandomState(0).normal(size=(10, 2, 5, 5)).astype(np.float32)
    with pytest.raises(RuntimeError):  # the float64 check copy cannot run it
        copy.deepcopy(probe).double()(torch.as_tensor(X, dtype=torch.float64))
    embedder = _fit(probe, X)
    expected = oracle_fisher(
        _as_double_function(probe), embedder.head_, X, {"conv.weight": "conv", "fc.weight": "fc"}
    )
    names = list(embedder.get_feature_names_out())
    np.testing.assert_allclose(
        embedder.transform(X), np.column_stack([expected[n] for n in names]), rtol=2e-3, atol=1e-7
    )


def _as_double_function(probe):
    """The same probe with its casts to float32 read as casts to float64: the oracle's reference."""
    double = copy.deepcopy(probe).double()
    source = type(probe)

    class Double(source):
        def forward(self, x):
            with _float32_as_float64():
                return source.forward(self, x)

    double.__class__ = Double
    return double


class _float32_as_float64(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "float":
            return args[0].double()
        args = tuple(torch.float64 if arg is torch.float32 else arg for arg in args)
        kwargs = {key: torch.float64 if value is torch.float32 else value for key, value in kwargs.items()}
        return func(*args, **kwargs)


# --------------------------------------------------------------- user hooks, in-place inputs, aliases


def _output_scaling_hook(module, inputs, output):
    return output * 3.0


def _in_place_output_hook(module, inputs, output):
    output.mul_(0.5)


@pytest.mark.parametrize("hook", [_output_scaling_hook, _in_place_output_hook], ids=["returns", "in-place"])
def test_a_users_forward_hook_on_a_filter_layer_is_part_of_the_function(hook, one_thread):
    torch.manual_seed(0)
    probe = Small().double()
    probe.conv.register_forward_hook(hook)
    X = np.random.RandomState(3).normal(size=(10, 2, 6, 6))
    assert_embedded_exactly(probe, X, {"conv.weight": "conv", "fc.weight": "fc"})


class SubtractsInPlace(Small):
    def forward(self, x):
        x.sub_(0.5)
        return super().forward(x)


class Normalise(nn.Module):
    def forward(self, x):
        return x.mul_(2.0).clamp_(-3.0, 3.0)


class NormalisesInPlace(Small):
    def __init__(self):
        super().__init__()
        self.normalise = Normalise()

    def forward(self, x):
        return super().forward(self.normalise(x))


@pytest.mark.parametrize("make_probe", [SubtractsInPlace, NormalisesInPlace], ids=["sub_", "submodule"])
def test_an_in_place_input_normalisation_is_embedded_and_leaves_the_users_array(make_probe, one_thread):
    torch.manual_seed(0)
    probe = make_probe().double()
    X = np.random.RandomState(4).normal(size=(10, 2, 6, 6))
    original = X.copy()
    embedder = _fit(probe, X)
    np.testing.assert_array_equal(X, original)
    rows = embedder.transform(X)
    np.testing.assert_array_equal(X, original)
    expected = oracle_fisher(probe, embedder.head_, X, {"conv.weight": "conv", "fc.weight": "fc"})
    names = list(embedder.get_feature_names_out())
    np.testing.assert_allclose(rows, np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-12)
    task_rows = embedder.fit_transform([(X, np.arange(10) % 3), (X, np.arange(10) % 3)])
    np.testing.assert_array_equal(task_rows[0], task_rows[1])  # no pass saw another's changes
    np.testing.assert_array_equal(X, original)


class KeepsAnAlias(Small):
    def __init__(self):
        super().__init__()
        self.first = self.conv  # the same module under a second name


class AliasInList(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 3)])
        self.last = self.layers[-1]

    def forward(self, x):
        return torch.tanh(self.last(torch.tanh(self.layers[0](x))))


@pytest.mark.parametrize(
    "make_probe, shape", [(KeepsAnAlias, (2, 6, 6)), (AliasInList, (4,))], ids=["attribute", "module-list"]
)
def test_a_module_kept_under_two_names_is_one_layer_not_a_tie(make_probe, shape, one_thread):
    torch.manual_seed(0)
    probe = make_probe().double()
    X = np.random.RandomState(5).normal(size=(10, *shape))
    assert_embedded_exactly(probe, X, _layer_weights(probe))


# --------------------------------------------------------------- integer inputs


class TokenProbe(nn.Module):
    def __init__(self, offset=0):
        super().__init__()
        self.offset = offset
        self.embedding = nn.Embedding(30, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, ids):
        return torch.tanh(self.fc(self.embedding(ids - self.offset).mean(1)))


class CastsToLong(TokenProbe):
    def forward(self, ids):
        return super().forward(ids.long())


@pytest.mark.parametrize(
    "make_probe, offset", [(TokenProbe, 0), (CastsToLong, 2**24 + 1)], ids=["embedding", "long-in-forward"]
)
def test_integer_inputs_stay_integers(make_probe, offset, one_thread):
    torch.manual_seed(0)
    probe = make_probe(offset).double()
    ids = np.random.RandomState(0).randint(0, 30, size=(10, 5)) + offset
    embedder = _fit(probe, ids)
    assert embedder.probe_layers_.input_dtype == torch.int64
    expected = oracle_fisher(probe, embedder.head_, ids, {"fc.weight": "fc"})
    names = list(embedder.get_feature_names_out())
    rows = embedder.transform(ids)
    np.testing.assert_allclose(rows, np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-12)
    task_rows = embedder.fit_transform([(ids, np.arange(10) % 3), (torch.as_tensor(ids), np.arange(10) % 3)])
    np.testing.assert_allclose(task_rows[0], task_rows[1])
    assert embedder.left_out_layers_["embedding"].startswith(
        "Embedding: its parameter 'weight' is not applied"
    )


def test_float_inputs_to_an_integer_probe_must_hold_integers(one_thread):
    ids = np.random.RandomState(0).randint(0, 30, size=(6, 5))
    embedder = FisherTaskEmbedder(probe=TokenProbe(), method="exact").fit(ids, np.arange(6) % 2)
    with pytest.raises(ValueError, match="task 0: the probe takes integer inputs"):
        embedder.transform([(ids + 0.5, np.arange(6) % 2)])
    exact = embedder.transform([(ids.astype(np.float64), np.arange(6) % 2)])
    np.testing.assert_allclose(exact, embedder.transform([(ids, np.arange(6) % 2)]))


# --------------------------------------------------------------- compiled probes, channels-last


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv3d = nn.Conv3d(2, 3, (2, 3, 3))
        self.conv2d = nn.Conv2d(3, 4, 2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.conv3d(x)).mean(2)
        return torch.tanh(self.fc(torch.tanh(self.conv2d(h)).mean((2, 3))))


@pytest.mark.parametrize(
    "make_probe, shape",
    [
        (Video, (2, 3, 5, 5)),
        (lambda: nn.Sequential(nn.Conv3d(1, 3, 2), nn.Flatten(), nn.Linear(24, 3)), (1, 3, 3, 3)),
    ],
    ids=["conv3d-and-conv2d", "conv3d"],
)
def test_the_channels_last_path_keeps_5d_weights_as_they_are(make_probe, shape, monkeypatch, one_thread):
    """The CUDA path's memory format, forced on the CPU."""
    from sklearn_task2vec import _utils

    monkeypatch.setattr(_utils, "CHANNELS_LAST_DEVICES", ("cpu", "cuda"))
    torch.manual_seed(0)
    probe = make_probe().double()
    X = np.random.RandomState(6).normal(size=(10, *shape))
    assert_embedded_exactly(probe, X, _layer_weights(probe))


@pytest.mark.parametrize("where", ["whole", "submodule"])
def test_a_compiled_probe_is_embedded_as_its_original_module(where, one_thread):
    torch.manual_seed(0)
    original = Small().double()
    if where == "whole":
        probe = torch.compile(original)
    else:
        probe = copy.deepcopy(original)
        probe.conv = torch.compile(probe.conv)
    X = np.random.RandomState(7).normal(size=(10, 2, 6, 6))
    compiled = _fit(probe, X)
    plain = _fit(original, X)
    assert list(compiled.get_feature_names_out()) == list(plain.get_feature_names_out())
    assert not any("_orig_mod" in str(name) for name in compiled.get_feature_names_out())
    np.testing.assert_array_equal(compiled.transform(X), plain.transform(X))


# --------------------------------------------------------------- any stack of stored forms

STORED_FORMS = ("plain", "weight_norm", "spectral_norm", "custom", "legacy_weight_norm", "compiled")


def _stored(linear, form):
    if form == "weight_norm":
        parametrizations.weight_norm(linear)
    elif form == "spectral_norm":
        parametrizations.spectral_norm(linear)
    elif form == "custom":
        parametrize.register_parametrization(linear, "weight", Scale())
    elif form == "legacy_weight_norm":
        torch.nn.utils.weight_norm(linear)
    elif form == "compiled":
        return torch.compile(linear)
    return linear


@settings(max_examples=8)
@given(st.lists(st.tuples(st.integers(2, 4), st.sampled_from(STORED_FORMS)), min_size=1, max_size=3))
def test_any_stack_of_stored_weights_is_embedded_as_its_plain_equivalent(layers):
    """Property: however each layer stores its weight, the rows are those of the same network
    with plain weights, filter by filter (the oracle on the plain network)."""
    torch.manual_seed(0)
    stored, width = [], 3
    for n_out, form in layers:
        stored += [_stored(nn.Linear(width, n_out).double(), form), nn.Tanh()]
        width = n_out
    probe = nn.Sequential(*stored).eval()
    X = np.random.RandomState(0).normal(size=(8, 3))
    with torch.no_grad():
        probe(torch.as_tensor(X))  # legacy weight_norm computes its weight in the forward
        plain = nn.Sequential(*[copy.deepcopy(getattr(m, "_orig_mod", m)) for m in stored]).eval()
        for index in range(0, len(stored), 2):
            weight = getattr(stored[index], "_orig_mod", stored[index]).weight.detach().clone()
            plain[index] = nn.Linear(weight.shape[1], weight.shape[0]).double()
            plain[index].weight.copy_(weight)
            plain[index].bias.copy_(getattr(stored[index], "_orig_mod", stored[index]).bias)
    _assert_same_function(probe, plain, X)
    embedder = _fit(probe, X, n_classes=2, head_weight_decay=0.1)
    expected = oracle_fisher(plain, embedder.head_, X, _layer_weights(plain))
    names = list(embedder.get_feature_names_out())
    assert sorted(names) == sorted(expected)
    np.testing.assert_allclose(
        embedder.transform(X), np.column_stack([expected[n] for n in names]), rtol=1e-6, atol=1e-14
    )


def test_out_of_memory_while_inspecting_the_probe_stays_an_out_of_memory_error(one_thread):
    class Exhausted(Small):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    X = np.random.RandomState(0).normal(size=(6, 2, 6, 6))
    with pytest.raises(torch.OutOfMemoryError, match="task 0: .*simulated"):
        FisherTaskEmbedder(probe=Exhausted()).fit([(X, np.arange(6) % 2)])


class _SpareBranch(nn.Module):
    """Filter layers called in the forward whose outputs are discarded, detached or cut by an
    integer operation: none reaches the probe's output."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(4, 6)
        self.spare = nn.Linear(4, 3)

    def forward(self, x):
        spare = self.spare(x)
        features = self.fc(x)
        if self.kind == "detached":
            return features + spare.detach().sum(1, keepdim=True)
        if self.kind == "argmax":
            return features + spare.argmax(1, keepdim=True).to(features.dtype)
        return features


@pytest.mark.parametrize("kind", ["discarded", "detached", "argmax"])
def test_a_layer_whose_output_never_reaches_the_features_is_left_out(kind, one_thread):
    X = np.random.RandomState(0).normal(size=(24, 4))
    embedder = _fit(_SpareBranch(kind), X)
    assert embedder.embedded_layers_ == ["fc"]
    assert "does not reach the probe's output" in embedder.left_out_layers_["spare"]
    assert embedder.transform(X).shape == (24, 6)
