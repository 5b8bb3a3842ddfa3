"""ONNX graphs as probes (``onnx_probe``, ``probe="model.onnx"``).

Every graph is built here with ``onnx.helper`` (nothing is downloaded). The oracles: the
converted module computes what onnxruntime computes on the same file (the graph's output, or the
tensor it is cut at), and an ONNX probe's Fisher rows equal those of the same network built
directly in torch with the same weights (whose rows ``test_probe_zoo`` checks against per-example
Jacobians): so every Conv and every Gemm/MatMul by a constant weight is an embedded filter layer,
whatever the exporter's way of storing it (initializers or ``Constant`` nodes, a fixed batch of
1, ``Gemm`` variants). Graphs that cannot be embedded are refused naming the node.
"""

import os
import pathlib
import pickle
import shutil
import sys
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
onnxruntime = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sklearn_task2vec import FisherTaskEmbedder  # noqa: E402
from sklearn_task2vec._onnx import fold_constant_nodes  # noqa: E402
from sklearn_task2vec._probes import folded_filters  # noqa: E402
from sklearn_task2vec.probes import build_named_probe, onnx_probe  # noqa: E402
from sklearn_task2vec.zoo import Expert  # noqa: E402

OPSET = 17
CHANNELS, SIDE = 3, 8


class GraphBuilder:
    """Nodes and constants of an ONNX graph; constants as initializers or as ``Constant`` nodes
    (as paddle2onnx and ``torch.onnx.export(do_constant_folding=False)`` store weights)."""

    def __init__(self, weights="initializer"):
        self.weights = weights
        self.nodes, self.initializers = [], []

    def constant(self, name, array):
        if self.weights == "initializer":
            self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        else:
            self.nodes.append(
                helper.make_node(
                    "Constant",
                    [],
                    [name],
                    f"{name}/constant",
                    value=numpy_helper.from_array(np.asarray(array)),
                )
            )
        return name

    def node(self, op_type, inputs, name, **attributes):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name, **attributes))
        return name

    def model(self, input_shape, output, input_type=TensorProto.FLOAT, extra_inputs=()):
        inputs = [helper.make_tensor_value_info("image", input_type, input_shape), *extra_inputs]
        graph = helper.make_graph(
            self.nodes,
            "probe",
            inputs,
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def conv_network(layers, *, weights="initializer", batch="n", classifier="gemm", classes=3, seed=0):
    """``(onnx model, torch module)`` computing the same function: per layer ``(out_channels,
    kernel, stride, bias)`` a Conv, a BatchNormalization with running statistics and a Relu;
    then a global average pool, a flatten (a ``Reshape`` to ``[1, -1]`` where the batch is fixed
    to 1, as exporters write it) and a classifier (``Gemm`` with ``transB``, or ``MatMul`` +
    ``Add`` as paddle2onnx writes it). Nodes are named ``conv0``, ``bn0``, ..., ``fc``."""
    rng = np.random.RandomState(seed)
    builder = GraphBuilder(weights)
    modules, value, channels = [], "image", CHANNELS
    for index, (out, kernel, stride, bias) in enumerate(layers):
        conv = nn.Conv2d(channels, out, kernel, stride=stride, padding=kernel // 2, bias=bias)
        batchnorm = nn.BatchNorm2d(out)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(rng.normal(0, 0.5, conv.weight.shape)))
            if bias:
                conv.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, out)))
            batchnorm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, out)))
            batchnorm.bias.copy_(torch.from_numpy(rng.normal(0, 0.2, out)))
            batchnorm.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.2, out)))
            batchnorm.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, out)))
        modules += [conv, batchnorm, nn.ReLU()]
        inputs = [value, builder.constant(f"conv{index}.weight", _float32(conv.weight))]
        if bias:
            inputs.append(builder.constant(f"conv{index}.bias", _float32(conv.bias)))
        pad = kernel // 2
        value = builder.node(
            "Conv",
            inputs,
            f"conv{index}",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        statistics = [
            builder.constant(f"bn{index}.{name}", _float32(getattr(batchnorm, name)))
            for name in ("weight", "bias", "running_mean", "running_var")
        ]
        value = builder.node("BatchNormalization", [value, *statistics], f"bn{index}", epsilon=batchnorm.eps)
        value = builder.node("Relu", [value], f"relu{index}")
        channels = out
    value = builder.node("GlobalAveragePool", [value], "pool")
    if batch == 1:
        value = builder.node("Reshape", [value, builder.constant("flat_shape", np.array([1, -1]))], "flatten")
    else:
        value = builder.node("Flatten", [value], "flatten", axis=1)
    linear = nn.Linear(channels, classes)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(rng.normal(0, 0.5, linear.weight.shape)))
        linear.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, classes)))
    weight, bias = _float32(linear.weight), _float32(linear.bias)
    if classifier == "gemm":
        inputs = [value, builder.constant("fc.weight", weight), builder.constant("fc.bias", bias)]
        value = builder.node("Gemm", inputs, "fc", transB=1)
    else:
        value = builder.node("MatMul", [value, builder.constant("fc.weight", weight.T.copy())], "fc")
        value = builder.node("Add", [value, builder.constant("fc.bias", bias)], "fc_bias")
    model = builder.model([batch, CHANNELS, SIDE, SIDE], value)
    module = nn.Sequential(*modules, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear).eval()
    return model, module


def _float32(tensor):
    return tensor.detach().numpy().astype(np.float32)


def save(model, folder, name="probe.onnx"):
    path = os.path.join(folder, name)
    onnx.save(model, path)
    return path


def onnxruntime_outputs(model, inputs, output=None):
    """onnxruntime's value of the graph's output (or of tensor ``output``), example by example
    where the graph fixes its batch to 1."""
    if output is not None:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        del model.graph.output[:]
        model.graph.output.add().name = output
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    if session.get_inputs()[0].shape[0] == 1:
        return np.concatenate([session.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])
    return session.run(None, {name: inputs})[0]


def images(n=5, seed=1):
    return np.random.RandomState(seed).normal(size=(n, CHANNELS, SIDE, SIDE)).astype(np.float32)


def converted_outputs(probe, inputs):
    with torch.no_grad():
        return probe(torch.from_numpy(inputs)).numpy()


LAYERS = st.lists(
    st.tuples(st.integers(1, 4), st.sampled_from([1, 3]), st.sampled_from([1, 2]), st.booleans()),
    min_size=1,
    max_size=3,
)


# ----------------------------------------------------------------------- the converted function


@settings(max_examples=15)
@given(
    layers=LAYERS,
    weights=st.sampled_from(["initializer", "constant"]),
    batch=st.sampled_from(["n", 1]),
    classifier=st.sampled_from(["gemm", "matmul"]),
)
def test_any_conv_stack_computes_what_onnxruntime_computes_with_every_conv_a_layer(
    layers, weights, batch, classifier
):
    model, _ = conv_network(layers, weights=weights, batch=batch, classifier=classifier)
    X = images()
    with tempfile.TemporaryDirectory() as folder:
        probe = onnx_probe(save(model, folder))
    np.testing.assert_allclose(
        converted_outputs(probe, X), onnxruntime_outputs(model, X), rtol=1e-5, atol=1e-5
    )
    channels = CHANNELS
    for index, (out, kernel, stride, bias) in enumerate(layers):
        conv = probe.get_submodule(f"conv{index}")
        assert isinstance(conv, nn.Conv2d), "every Conv node is a Conv2d layer, named as its node"
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (
            channels,
            out,
            (kernel, kernel),
            (stride, stride),
        )
        assert isinstance(conv.weight, nn.Parameter) and (conv.bias is not None) == bias
        channels = out
    assert isinstance(probe.get_submodule("fc"), nn.Linear), "the classifier's weight is a Linear layer's"
    assert not [name for name, node in _constant_nodes(probe)], "no Constant node is left"


def _constant_nodes(probe):
    from onnx2torch.node_converters.constant import OnnxConstant

    return [(name, module) for name, module in probe.named_modules() if isinstance(module, OnnxConstant)]


@pytest.mark.parametrize(
    "weights, batch, classifier",
    [
        ("initializer", "n", "gemm"),
        ("constant", "n", "matmul"),
        ("initializer", 1, "matmul"),
        ("constant", 1, "gemm"),
    ],
)
def test_rows_equal_those_of_the_same_network_built_in_torch(
    weights, batch, classifier, tmp_path, one_thread
):
    layers = [(4, 3, 1, True), (3, 3, 2, False), (5, 1, 1, True)]
    model, module = conv_network(layers, weights=weights, batch=batch, classifier=classifier)
    # In float64: the head is fitted in the probe's precision, and in float32 the rounding
    # differences between two probes' features (1e-8) move it by 1e-4 (L-BFGS stops in float32's
    # noise); in float64 they agree to the heads' convergence (L-BFGS stops at a gradient of 1e-9).
    probe = onnx_probe(save(model, tmp_path)).double()
    X = images(12).astype(np.float64)
    tasks = [(X, np.arange(12) % 2), (X, X[:, 0, 0, 0] > 0)]
    params = {"method": "exact", "batch_size": 5, "random_state": 0, "device": "cpu"}
    onnx_embedder = FisherTaskEmbedder(probe=probe, **params)
    onnx_rows = onnx_embedder.fit_transform(tasks)
    torch_rows = FisherTaskEmbedder(probe=module.double(), **params).fit_transform(tasks)
    assert onnx_rows.shape == (2, 4 + 3 + 5 + 3), "one coordinate per filter: the Convs' and the classifier's"
    assert onnx_embedder.embedded_layers_ == ["conv0", "conv1", "conv2", "fc"]
    assert onnx_embedder.left_out_layers_ == {}
    assert np.abs(torch_rows).min() > 0, "every filter gets a gradient, for the comparison to bite"
    np.testing.assert_allclose(onnx_rows, torch_rows, rtol=1e-4)
    runnable = folded_filters(onnx_embedder.probe_, layers=onnx_embedder.probe_layers_)
    assert all(scale is not None for scale in runnable.scales[:3]), "BatchNorm folded into each Conv"


# ----------------------------------------------------------------------------------- the cut


@pytest.mark.parametrize("output, shape", [("relu1", (3 * 4 * 4,)), ("pool", (3,)), ("flatten", (3,))])
def test_output_cuts_the_graph_at_that_tensor(output, shape, tmp_path):
    model, _ = conv_network([(4, 3, 1, True), (3, 3, 2, False)])
    X = images()
    probe = onnx_probe(save(model, tmp_path), output=output)
    intermediate = onnxruntime_outputs(model, X, output)
    got = converted_outputs(probe, X)
    assert got.shape == (len(X), *shape), "feature maps are flattened to (n, C*H*W)"
    np.testing.assert_allclose(got, intermediate.reshape(len(X), -1), rtol=1e-5, atol=1e-5)
    modules = dict(probe.named_modules())
    assert "fc" not in modules and "conv1" in modules, "only the nodes the tensor needs are kept"
    assert probe.onnx_source.output == output


def test_an_output_name_that_is_no_tensor_is_refused_with_the_names_near_it(tmp_path):
    model, _ = conv_network([(4, 3, 1, True)])
    path = save(model, tmp_path)
    with pytest.raises(ValueError, match=r"output='relu_0' is not a tensor.*Close names: \['relu0'"):
        onnx_probe(path, output="relu_0")
    with pytest.raises(ValueError, match="is the graph's input"):
        onnx_probe(path, output="image")
    renamed = onnx.ModelProto.FromString(model.SerializeToString())
    renamed.graph.node[0].output[0] = "conv_features"
    renamed.graph.node[1].input[0] = "conv_features"
    with pytest.raises(
        ValueError, match=r"name of a node, not of a tensor: that node computes \['conv_features'\]"
    ):
        onnx_probe(save(renamed, tmp_path, "renamed.onnx"), output="conv0")


# -------------------------------------------------------------------------------- Gemm, MatMul


def gemm_network(alpha, beta, trans_a, trans_b, bias, weights, seed=0):
    """``(onnx model, torch module)``: ``tanh(alpha * x @ B' + beta * C)`` as one Gemm node named
    ``gemm`` (``trans_a``: given ``x`` transposed, by a Transpose node), and as ``Linear`` +
    ``Tanh``."""
    rng = np.random.RandomState(seed)
    builder = GraphBuilder(weights)
    matrix = rng.normal(0, 0.5, size=(5, 4)).astype(np.float32)  # (out, in), as Linear's
    operand = builder.node("Transpose", ["image"], "transposed", perm=[1, 0]) if trans_a else "image"
    inputs = [operand, builder.constant("weight", matrix if trans_b else matrix.T.copy())]
    linear = nn.Linear(4, 5, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(alpha * torch.from_numpy(matrix))
        if bias is not None:
            term = rng.normal(size=5).astype(np.float32)
            inputs.append(builder.constant("bias", term if bias == "vector" else term[None]))
            linear.bias.copy_(beta * torch.from_numpy(term))
    value = builder.node(
        "Gemm", inputs, "gemm", alpha=alpha, beta=beta, transA=int(trans_a), transB=int(trans_b)
    )
    return builder.model(["n", 4], builder.node("Tanh", [value], "tanh")), nn.Sequential(linear, nn.Tanh())


@settings(max_examples=15)
@given(
    alpha=st.sampled_from([1.0, 0.5]),
    beta=st.sampled_from([1.0, 2.0]),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    bias=st.sampled_from([None, "vector", "row"]),
    weights=st.sampled_from(["initializer", "constant"]),
)
def test_every_gemm_with_a_constant_weight_is_a_linear_layer(alpha, beta, trans_a, trans_b, bias, weights):
    model, module = gemm_network(alpha, beta, trans_a, trans_b, bias, weights)
    X = np.random.RandomState(1).normal(size=(7, 4)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        probe = onnx_probe(save(model, folder))
    got = converted_outputs(probe, X)
    np.testing.assert_allclose(got, onnxruntime_outputs(model, X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, converted_outputs(module, X), rtol=1e-5, atol=1e-6)
    linear = probe.get_submodule("gemm")
    assert isinstance(linear, nn.Linear), "the Gemm's weight is a Linear layer's, named as its node"
    torch.testing.assert_close(linear.weight, module[0].weight)


@pytest.mark.parametrize("bias", ["vector", "row"])
def test_a_gemm_embeds_as_the_linear_layer_it_is(bias, tmp_path, one_thread):
    model, module = gemm_network(0.5, 2.0, bias == "row", False, bias, "initializer")
    X = np.random.RandomState(1).normal(size=(20, 4))
    y = np.arange(20) % 3
    params = {"method": "exact", "random_state": 0, "device": "cpu"}
    # In float64 (see test_rows_equal_those_of_the_same_network_built_in_torch).
    onnx_embedder = FisherTaskEmbedder(probe=onnx_probe(save(model, tmp_path)).double(), **params).fit(X, y)
    torch_embedder = FisherTaskEmbedder(probe=module.double(), **params).fit(X, y)
    assert onnx_embedder.embedded_layers_ == ["gemm"]
    np.testing.assert_allclose(onnx_embedder.embedding_, torch_embedder.embedding_, rtol=1e-4)


def test_a_matmul_over_a_sequence_is_a_linear_layer(tmp_path):
    rng = np.random.RandomState(0)
    builder = GraphBuilder()
    value = builder.node(
        "MatMul", ["image", builder.constant("weight", rng.normal(size=(4, 6)).astype(np.float32))], "proj"
    )
    model = builder.model(["n", 3, 4], builder.node("Tanh", [value], "tanh"))
    X = rng.normal(size=(5, 3, 4)).astype(np.float32)
    probe = onnx_probe(save(model, tmp_path))
    assert isinstance(probe.get_submodule("proj"), nn.Linear)
    np.testing.assert_allclose(
        converted_outputs(probe, X), onnxruntime_outputs(model, X), rtol=1e-5, atol=1e-6
    )
    assert not list(probe.buffers()), "the weight is the layer's, not kept besides as a buffer"


# ------------------------------------------------------------------------------------ refused


def _product_graph(kind):
    """A graph whose constant weight no layer can take, and the node to blame."""
    rng = np.random.RandomState(0)
    builder = GraphBuilder()
    weight = rng.normal(size=(4, 4)).astype(np.float32)
    if kind == "left":
        value = builder.node("MatMul", [builder.constant("weight", weight), "image"], "left")
    elif kind == "einsum":
        value = builder.node(
            "Einsum", ["image", builder.constant("weight", weight)], "mix", equation="nk,kj->nj"
        )
    elif kind == "computed matmul":
        transposed = builder.node("Transpose", [builder.constant("weight", weight)], "transpose", perm=[1, 0])
        value = builder.node("MatMul", ["image", transposed], "product")
    else:  # tied
        first = builder.node("MatMul", ["image", builder.constant("weight", weight)], "first")
        value = builder.node("MatMul", [first, "weight"], "second")
    shape = ["n", 4] if kind != "left" else [4, "n"]
    return builder.model(shape, value)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("left", r"node 'left' \(MatMul\) applies the constant 'weight'"),
        ("einsum", r"node 'mix' \(Einsum\) applies the constant 'weight'"),
        (
            "computed matmul",
            r"node 'product' \(MatMul\) takes its weight .* from node 'transpose' \(Transpose\)",
        ),
        ("tied", r"nodes 'first' \(MatMul\), 'second' \(MatMul\) share the weight 'weight'"),
    ],
)
def test_weights_no_layer_can_take_are_refused_naming_the_node(kind, message, tmp_path):
    path = save(_product_graph(kind), tmp_path)
    with pytest.raises(ValueError, match=f"ONNX file .*probe.onnx.*{message}"):
        onnx_probe(path)


def test_a_conv_whose_weight_is_computed_is_refused_naming_it(tmp_path):
    builder = GraphBuilder()
    weight = builder.constant("weight", np.ones((3, 2, 3, 3), np.float32))
    flipped = builder.node("Transpose", [weight], "swap", perm=[1, 0, 2, 3])
    model = builder.model(["n", 3, 8, 8], builder.node("Conv", ["image", flipped], "conv"))
    with pytest.raises(
        ValueError, match=r"node 'conv' \(Conv\) takes its weight 'swap' from node 'swap' \(Transpose\)"
    ):
        onnx_probe(save(model, tmp_path))


def test_an_operator_onnx2torch_does_not_convert_is_refused_naming_the_node(tmp_path):
    model, _ = conv_network([(4, 3, 1, True)])
    graph = model.graph
    relu = next(node for node in graph.node if node.name == "relu0")
    graph.node.insert(
        list(graph.node).index(relu) + 1,
        helper.make_node("LpNormalization", ["relu0"], ["normed"], "norm", axis=1),
    )
    next(node for node in graph.node if node.name == "pool").input[0] = "normed"
    path = save(model, tmp_path)
    with pytest.raises(
        ValueError, match=r"probe.onnx.*cannot convert the operators of nodes 'norm' \(LpNormalization\)"
    ):
        onnx_probe(path)
    cut = onnx_probe(path, output="relu0")  # cut before it, the graph converts
    assert isinstance(cut.get_submodule("conv0"), nn.Conv2d)


def test_a_fixed_batch_graph_that_mixes_its_examples_is_refused(tmp_path):
    builder = GraphBuilder()
    value = builder.node(
        "Conv", ["image", builder.constant("weight", np.ones((2, 3, 1, 1), np.float32))], "conv"
    )
    value = builder.node("ReduceMean", [value], "over_batch", axes=[0], keepdims=1)
    model = builder.model([1, 3, 4, 4], value)
    with pytest.raises(ValueError, match=r"fixes its batch axis to 1 .*change each other's outputs"):
        onnx_probe(save(model, tmp_path))


@pytest.mark.parametrize("inputs", ["two", "integer", "one axis"])
def test_graphs_whose_input_is_not_one_floating_batch_are_refused(inputs, tmp_path):
    builder = GraphBuilder()
    extra = [helper.make_tensor_value_info("other", TensorProto.FLOAT, ["n", 3])] if inputs == "two" else []
    model = builder.model(
        ["n"] if inputs == "one axis" else ["n", 3],
        builder.node("Relu", ["image"], "relu"),
        input_type=TensorProto.INT64 if inputs == "integer" else TensorProto.FLOAT,
        extra_inputs=extra,
    )
    messages = {
        "two": r"one input .* has 2: \['image', 'other'\]",
        "integer": "not a floating tensor",
        "one axis": "shape",
    }
    with pytest.raises(ValueError, match=messages[inputs]):
        onnx_probe(save(model, tmp_path))


def test_a_missing_or_broken_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        onnx_probe(tmp_path / "missing.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not an ONNX model"):
        onnx_probe(tmp_path / "broken.onnx")


def test_without_the_extra_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx2torch", None)  # makes `import onnx2torch` fail
    with pytest.raises(ImportError, match=r"pip install 'sklearn-task2vec\[onnx\]'"):
        onnx_probe(tmp_path / "probe.onnx")


# ------------------------------------------------------------------- the shortcut, provenance


def test_a_path_is_the_probe_its_record_names_the_file_and_a_fitted_embedder_pickles(tmp_path, one_thread):
    model, _ = conv_network([(4, 3, 1, True), (3, 3, 2, False)])
    path = save(model, tmp_path)
    elsewhere = tmp_path / "copy"
    elsewhere.mkdir()
    shutil.copy(path, elsewhere / "probe.onnx")
    X, y = images(10), np.arange(10) % 2
    params = {"method": "exact", "batch_size": 4, "random_state": 0, "device": "cpu"}
    by_path = FisherTaskEmbedder(probe=path, **params).fit([(X, y)])
    by_module = FisherTaskEmbedder(probe=onnx_probe(elsewhere / "probe.onnx"), **params).fit([(X, y)])
    rows = by_path.transform([(X, y)])
    np.testing.assert_allclose(by_module.transform([(X, y)]), rows)
    with open(path, "rb") as file:
        import hashlib

        sha256 = hashlib.sha256(file.read()).hexdigest()
    assert by_path.provenance_.probe == f"onnx:probe.onnx sha256={sha256}"
    assert by_path.provenance_ == by_module.provenance_, "the same file elsewhere makes the same rows"
    assert by_path.probe_.onnx_source.path == path
    cut = FisherTaskEmbedder(probe=onnx_probe(path, output="relu1"), **params).fit([(X, y)])
    assert cut.provenance_.probe == f"onnx:probe.onnx output=relu1 sha256={sha256}"
    restored = pickle.loads(pickle.dumps(by_path))
    assert restored.probe_.onnx_source == by_path.probe_.onnx_source
    np.testing.assert_allclose(restored.transform([(X, y)]), rows)
    assert restored.provenance_ == by_path.provenance_


def test_skip_layers_names_an_onnx_node(tmp_path, one_thread):
    model, _ = conv_network([(4, 3, 1, True), (3, 3, 2, False)])
    X, y = images(10), np.arange(10) % 2
    params = {"method": "exact", "batch_size": 4, "random_state": 0, "device": "cpu"}
    whole = FisherTaskEmbedder(probe=save(model, tmp_path), **params).fit_transform([(X, y)])
    with pytest.warns(UserWarning, match="leaves 1 filter layers out"):
        tail = FisherTaskEmbedder(probe=save(model, tmp_path), skip_layers="conv1", **params).fit_transform(
            [(X, y)]
        )
    np.testing.assert_allclose(tail, whole[:, 4:], rtol=1e-5)


def test_an_onnx_probe_is_an_experts_feature_extractor_and_a_named_probe(tmp_path):
    model, _ = conv_network([(4, 3, 1, True)])
    path = save(model, tmp_path)
    expert = Expert(onnx_probe(path, output="flatten"), "onnx expert")
    with torch.no_grad():
        assert expert.module(torch.from_numpy(images())).shape == (5, 4)
    whole = build_named_probe(pathlib.Path(path), None)
    assert isinstance(whole.get_submodule("fc"), nn.Linear), "whole, as the file has it"
    with pytest.raises(TypeError, match="must be an ONNX file"):
        build_named_probe(pathlib.Path(tmp_path / "weights.pt"), None)


def test_constant_nodes_holding_numbers_become_initializers():
    nodes = [
        helper.make_node(
            "Constant", [], ["tensor"], value=numpy_helper.from_array(np.eye(2, dtype=np.float32))
        ),
        helper.make_node("Constant", [], ["float"], value_float=2.5),
        helper.make_node("Constant", [], ["ints"], value_ints=[1, -1]),
        helper.make_node("Constant", [], ["text"], value_string="a"),
        helper.make_node("Add", ["image", "float"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2])],
        value_info=[helper.make_tensor_value_info("float", TensorProto.FLOAT, [])],
    )
    assert fold_constant_nodes(graph) == ["tensor", "float", "ints"]
    values = {initializer.name: numpy_helper.to_array(initializer) for initializer in graph.initializer}
    np.testing.assert_array_equal(values["tensor"], np.eye(2))
    assert values["float"].dtype == np.float32 and values["float"] == 2.5
    assert values["ints"].dtype == np.int64 and values["ints"].tolist() == [1, -1]
    assert [node.op_type for node in graph.node] == ["Constant", "Add"], "the string stays a node"
    assert not graph.value_info, "an initializer's shape is its own"
