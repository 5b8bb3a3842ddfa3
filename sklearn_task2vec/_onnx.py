"""ONNX graphs as probes: an ``.onnx`` file converted to a torch module whose filters can be embedded.

:func:`onnx_probe` loads the graph (``onnx``), rewrites it so that every weight of a filter is a
constant the converter turns into a layer's parameter, converts it to a ``torch.fx.GraphModule``
(``onnx2torch``) and turns the remaining constant weights of matrix products into
``nn.Linear`` layers. Every step either keeps the function of the graph or refuses it with a
``ValueError`` naming the file, the node (its name and operator) and the reason: a filter weight
is embedded or refused, never dropped (see the user guide's probe contract).

The rewrites, all on the graph (before conversion) unless said otherwise:

1. The cut (``output=``): the graph is pruned to the nodes that compute the named tensor.
2. ``Constant`` nodes become initializers: some exporters (paddle2onnx, ``torch.onnx`` without
   constant folding) store weights so, and the converter builds a layer only from initializers
   (a Conv would fail, a Gemm or a MatMul would apply its weight functionally, unseen).
3. A ``Gemm`` with a constant weight that the converter would not build as ``nn.Linear`` (its
   input transposed, a bias of two dimensions) becomes ``MatMul`` (+ ``Add``), its ``alpha``,
   ``beta`` and ``transB`` folded into the constants.
4. A batch axis fixed to 1 in the graph is freed, and ``Reshape`` targets that fix it (a leading
   1) copy it instead; the converted module is then checked to compute each example of a batch
   on its own, as the embedder needs (else refused).
5. An output of four or more dimensions (feature maps ``(n, C, H, W)``) is flattened to
   ``(n, C*H*W)``: a probe gives ``(n, d)`` features (or ``(n, length, d)`` sequences).
6. After conversion (on the ``torch.fx`` graph), each ``MatMul`` by a constant 2-D weight
   becomes the ``nn.Linear`` layer it is (no bias), named as its node.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import os
from typing import NamedTuple

import numpy as np
import torch
from sklearn.utils._param_validation import validate_params
from torch import fx, nn

#: Suffix of a probe given as an ONNX file: ``probe="path/to/model.onnx"``.
ONNX_SUFFIX = ".onnx"

# ONNX TensorProto element types a probe may take as its input: the floating ones.
_FLOAT_TYPES = {1: torch.float32, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
# Side of the examples that check a freed batch axis, where the graph does not fix it.
_CHECK_SIDE = 64
# Operators that multiply their operands, a constant operand being a filter weight: how many of
# their first inputs are multiplied (None: all; a Conv's weight is its input 1).
_PRODUCTS = {"Conv": None, "Gemm": 2, "MatMul": 2, "Einsum": None}


def is_onnx_file(probe):
    """Whether ``probe`` names an ONNX file: a string or path ending in ``.onnx``."""
    return isinstance(probe, (str, os.PathLike)) and os.fspath(probe).lower().endswith(ONNX_SUFFIX)


def import_onnx():
    """The ``onnx`` and ``onnx2torch`` modules, or an ImportError that says how to install them."""
    try:
        return importlib.import_module("onnx"), importlib.import_module("onnx2torch")
    except ImportError as exc:
        raise ImportError(
            "ONNX probes need onnx and onnx2torch: pip install 'sklearn-task2vec[onnx]'."
        ) from exc


class OnnxSource(NamedTuple):
    """Where an ONNX probe comes from: the file (``path``, as given), the SHA-256 of its bytes
    and the tensor it was cut at (``output``, None for the graph's output)."""

    path: str
    sha256: str
    output: str | None

    @property
    def record(self):
        """How a provenance record names the probe: the file's name, the cut and the SHA-256 of
        its bytes (not its folder: the same file elsewhere makes the same rows)."""
        cut = "" if self.output is None else f" output={self.output}"
        return f"onnx:{os.path.basename(self.path)}{cut} sha256={self.sha256}"


class OnnxProbe(fx.GraphModule):
    """The ``torch.fx.GraphModule`` :func:`onnx_probe` returns; ``onnx_source`` (an
    :class:`OnnxSource`) says which file it was converted from. Copies and pickles keep both the
    class and the source (a plain ``GraphModule`` would lose them)."""

    def __init__(self, root, graph, onnx_source):
        super().__init__(root, graph, class_name=type(self).__name__)
        self.onnx_source = onnx_source

    def extra_repr(self):
        # In the repr, hence in the probe's digest (the cache key): the file's content and the
        # cut identify the function, which the modules and weights alone do not (the wiring).
        return f"sha256={self.onnx_source.sha256}, output={self.onnx_source.output!r}"

    def __deepcopy__(self, memo):
        copied = super().__deepcopy__(memo)
        copied.onnx_source = self.onnx_source
        return copied

    def __reduce__(self):
        return (_rebuilt_probe, (super().__reduce__(), self.onnx_source))


def _rebuilt_probe(reduced, onnx_source):
    rebuild, arguments = reduced
    module = rebuild(*arguments)
    return OnnxProbe(module, module.graph, onnx_source)


@validate_params({"path": [str, os.PathLike], "output": [str, None]}, prefer_skip_nested_validation=True)
def onnx_probe(path, *, output=None):
    """An ONNX graph as a probe: a torch module computing the graph, or the tensor named ``output``.

    Needs the optional extra ``[onnx]`` (``onnx`` and ``onnx2torch``). The graph must have one
    input, a floating tensor with the batch on its first axis (images ``(n, C, H, W)``, or
    features ``(n, d)``); a batch axis the graph fixes to 1 is freed, and refused if the graph
    then mixes the examples of a batch. Every ``Conv`` of the graph becomes an ``nn.Conv*`` layer,
    and every ``Gemm`` and ``MatMul`` by a constant weight an ``nn.Linear`` layer, named as their
    nodes: the filters of :class:`~sklearn_task2vec.FisherTaskEmbedder` (rows named
    ``"<node>:<filter>"``). Weights stored as ``Constant`` nodes are handled as initializers.
    An output of four or more dimensions is flattened from its second axis on (feature maps
    ``(n, C, H, W)`` become ``(n, C*H*W)`` features). ``FisherTaskEmbedder(probe="model.onnx")``
    calls this function (without ``output``).

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file (external data next to it is loaded with it).
    output : str or None, default=None
        The name of a tensor of the graph to cut it at, e.g. the pooled features before a
        classifier: the probe computes that tensor, from only the nodes it needs. ``None``: the
        graph's output (which must be one).

    Returns
    -------
    probe : torch.fx.GraphModule
        In eval mode; ``probe.onnx_source`` holds the file's ``path``, the SHA-256 of its bytes
        and ``output``. A fitted embedder records the file's name, the cut and the SHA-256 in
        its provenance (``provenance_.probe``).

    Raises
    ------
    ValueError
        Naming the file and, where one is to blame, the node (its name and operator): a graph
        with another input than one floating tensor, an ``output`` that is not a tensor of the
        graph, an operator the converter does not support, a filter weight that is computed
        rather than constant, shared by two nodes, or applied where no layer can take it
        (a constant on the left of a product, an ``Einsum``), a graph that mixes the examples
        of a batch.
    ImportError
        Without ``onnx`` or ``onnx2torch``.

    Examples
    --------
    A graph of a Conv and a global average pool, written with ``onnx.helper``:

    >>> import os, tempfile
    >>> import numpy as np, torch
    >>> from onnx import TensorProto, helper, numpy_helper, save
    >>> from sklearn_task2vec.probes import onnx_probe
    >>> weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "weight")
    >>> graph = helper.make_graph(
    ...     [helper.make_node("Conv", ["image", "weight"], ["maps"], name="conv"),
    ...      helper.make_node("GlobalAveragePool", ["maps"], ["pooled"], name="pool")],
    ...     "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 8, 8])],
    ...     [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", 4, 1, 1])], [weight])
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.onnx")
    >>> save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    >>> probe = onnx_probe(path)
    >>> probe(torch.ones(2, 3, 8, 8)).shape  # (n, 4, 1, 1) flattened
    torch.Size([2, 4])
    >>> probe.get_submodule("conv")
    Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), bias=False)
    >>> probe.onnx_source.output is None
    True
    """
    onnx, _ = import_onnx()
    where = f"ONNX file {os.fspath(path)!r}"
    if not os.path.isfile(path):
        raise ValueError(f"{where}: no such file.")
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    try:
        model = onnx.load(os.fspath(path))
    except Exception as exc:  # protobuf's DecodeError and onnx's own, for a file that is no model
        raise ValueError(f"{where}: not an ONNX model ({type(exc).__name__}: {exc}).") from exc
    graph = model.graph
    image = _probe_input(graph, where)
    _cut(graph, image.name, output, where)
    fold_constant_nodes(graph)
    _refuse_computed_weights(graph, where)
    _gemm_as_matmul(graph)
    fixed_batch = _free_batch_axis(graph, image)
    _flatten_output(onnx, model)
    module = _converted(model, where)
    _matmul_as_linear(module, graph, where)
    probe = OnnxProbe(module, module.graph, OnnxSource(os.fspath(path), sha256, output)).eval()
    if fixed_batch:
        _check_batch_freed(probe, image, where)
    return probe


class _Input(NamedTuple):
    name: str
    shape: tuple  # int or None per axis; None: the graph does not say
    dtype: torch.dtype


def _node_name(node):
    return f"{node.name!r} ({node.op_type})" if node.name else f"{node.op_type} computing {node.output[0]!r}"


def _probe_input(graph, where):
    """The graph's one input (initializers listed as inputs, as older exporters do, are not)."""
    constants = {initializer.name for initializer in graph.initializer}
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise ValueError(
            f"{where}: a probe takes one input (a batch of images or features); the graph has "
            f"{len(inputs)}: {[value.name for value in inputs]}."
        )
    from onnx import TensorProto

    value = inputs[0]
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type not in _FLOAT_TYPES:
        kind = (
            TensorProto.DataType.Name(tensor.elem_type)
            if value.type.HasField("tensor_type")
            else "not a tensor"
        )
        raise ValueError(
            f"{where}: the graph's input {value.name!r} is not a floating tensor ({kind}); a probe "
            f"takes floating images or features."
        )
    shape = None
    if tensor.HasField("shape"):
        # Some exporters write -1 or 0 for an axis of any size.
        shape = tuple(dim.dim_value if dim.dim_value > 0 else None for dim in tensor.shape.dim)
        if len(shape) < 2:
            raise ValueError(
                f"{where}: the graph's input {value.name!r} has shape {list(shape)}; a probe takes a "
                f"batch on the first axis, of images (n, C, H, W) or features (n, d)."
            )
    return _Input(value.name, shape, _FLOAT_TYPES[tensor.elem_type])


def _cut(graph, input_name, output, where):
    """Prune ``graph`` to the nodes that compute ``output`` (None: its one output, checked)."""
    if output is None:
        if len(graph.output) != 1:
            raise ValueError(
                f"{where}: the graph has {len(graph.output)} outputs "
                f"{[value.name for value in graph.output]}; choose one with output=<tensor name>."
            )
        return
    producers = {name: node for node in graph.node for name in node.output}
    if output not in producers:
        near = difflib.get_close_matches(output, list(producers), n=5, cutoff=0.5)
        last = [name for node in graph.node[-5:] for name in node.output]
        named = [node for node in graph.node if node.name == output]
        if output == input_name:
            why = "is the graph's input, not computed by it"
        elif named:
            why = f"is the name of a node, not of a tensor: that node computes {list(named[0].output)}"
        else:
            why = "is not a tensor of the graph"
        raise ValueError(
            f"{where}: output={output!r} {why}. "
            + (f"Close names: {near}. " if near else "")
            + f"The graph's nodes compute {len(producers)} tensors; the last ones: {last} "
            f"(all: [name for node in onnx.load(path).graph.node for name in node.output])."
        )
    position = {name: index for index, node in enumerate(graph.node) for name in node.output}
    needed, reached, stack = set(), set(), [output]
    while stack:
        name = stack.pop()
        reached.add(name)
        if name in position and position[name] not in needed:
            needed.add(position[name])
            stack.extend(name for name in graph.node[position[name]].input if name)
    if input_name not in reached:
        raise ValueError(f"{where}: output={output!r} does not depend on the graph's input {input_name!r}.")
    kept = [node for index, node in enumerate(graph.node) if index in needed]
    known = {value.name: value for value in [*graph.value_info, *graph.output]}
    result = known.get(output)
    del graph.node[:]
    graph.node.extend(kept)
    del graph.output[:]
    if result is None:
        graph.output.add().name = output
    else:
        graph.output.append(result)
    used = {name for node in kept for name in node.input}
    for field in (graph.initializer, graph.input):  # older exporters list initializers as inputs
        kept_values = [value for value in field if value.name in used or value.name == input_name]
        del field[:]
        field.extend(kept_values)


def fold_constant_nodes(graph):
    """Turn every ``Constant`` node of ``graph`` (its top level) that holds a numeric tensor into
    the initializer it is, in place, so that the converter builds layers from the weights it
    holds. Returns the names of the tensors folded.

    Some exporters store weights as ``Constant`` nodes rather than initializers (paddle2onnx,
    ``torch.onnx.export(do_constant_folding=False)``); to onnx2torch a Conv weight must be an
    initializer, and a MatMul's constant operand would be a buffer applied functionally.
    """
    from onnx import helper, numpy_helper

    folded, kept = [], []
    for node in graph.node:
        value = _constant_value(node, helper, numpy_helper)
        if value is None:
            kept.append(node)
            continue
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node.output[0])
    del graph.node[:]
    graph.node.extend(kept)
    _drop_value_info(graph, set(folded))
    return folded


def _constant_value(node, helper, numpy_helper):
    """The numeric array a ``Constant`` node holds, or None (another node, a string, sparse)."""
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attribute) != 1:
        return None
    attribute = node.attribute[0]
    if attribute.name == "value":
        value = numpy_helper.to_array(attribute.t)
        return None if value.dtype == object else value
    kinds = {
        "value_float": np.float32,
        "value_floats": np.float32,
        "value_int": np.int64,
        "value_ints": np.int64,
    }
    if attribute.name in kinds:
        return np.asarray(helper.get_attribute_value(attribute), dtype=kinds[attribute.name])
    return None


def _drop_value_info(graph, names):
    kept = [value for value in graph.value_info if value.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _refuse_computed_weights(graph, where):
    """Refuse a filter weight that is not a constant, or that two nodes share.

    A Conv whose weight or bias is not a constant cannot be converted to a layer; a product
    (MatMul, Gemm, Einsum) whose operand is computed from constants alone (a ``Transpose`` or a
    ``DequantizeLinear`` of a weight) would apply that weight functionally, unseen. A weight
    shared by two nodes would become two layers holding separate copies, whose rows are not the
    shared weight's Fisher (its per-example gradient is the sum over both uses).
    """
    constants = {initializer.name for initializer in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    users = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in _PRODUCTS:
            continue
        if node.op_type == "Conv":
            weights, fixed = node.input[1:2], node.input[1:3]
        else:
            weights = node.input[: _PRODUCTS[node.op_type]]
            fixed = [
                name
                for name in weights
                if name in producers and _from_constants(producers[name], producers, constants)
            ]
        for name in fixed:
            if name and name not in constants:
                origin = f"node {_node_name(producers[name])}" if name in producers else "the graph's input"
                raise ValueError(
                    f"{where}: node {_node_name(node)} takes its weight {name!r} from {origin}, not "
                    f"from a constant: its filters cannot become a layer's parameters. Fold the "
                    f"graph's constants first (e.g. python -m onnxsim in.onnx out.onnx, or "
                    f"torch.onnx.export(..., do_constant_folding=True))."
                )
        for name in weights:
            if name in constants:
                users.setdefault(name, []).append(node)
    for name, nodes in users.items():
        if len(nodes) > 1:
            raise ValueError(
                f"{where}: nodes {', '.join(_node_name(node) for node in nodes)} share the weight "
                f"{name!r} (tied weights): its per-example gradient is the sum over their uses, "
                f"which the per-filter Fisher does not compute."
            )


def _from_constants(node, producers, constants):
    """Whether ``node``'s inputs are all constants, or computed from constants alone."""
    pending, seen = [node], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if not current.input:
            return False  # a generator (random numbers) or a Constant not folded: not a weight
        for name in current.input:
            if name in constants or not name:
                continue
            if name not in producers:
                return False  # the graph's input
            pending.append(producers[name])
    return True


def _gemm_as_matmul(graph):
    """Each ``Gemm`` with a constant weight that onnx2torch would not build as ``nn.Linear``
    (``transA``, or a bias that is not a 1-D constant) as ``[Transpose] -> MatMul [-> Add]``, in
    place: ``alpha * A' @ B' + beta * C`` with ``alpha * B'`` and ``beta * C`` folded into new
    constants, so that the MatMul becomes a Linear layer after conversion. The MatMul keeps the
    Gemm's name (its filters' names)."""
    from onnx import helper, numpy_helper

    constants = {initializer.name: initializer for initializer in graph.initializer}
    rewritten = []
    for node in graph.node:
        weight = node.input[1] if node.op_type == "Gemm" and len(node.input) > 1 else None
        if weight not in constants or node.domain not in ("", "ai.onnx"):
            rewritten.append(node)
            continue
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        linear = not attributes.get("transA", 0) and (
            bias is None or (bias in constants and len(constants[bias].dims) == 1)
        )
        if linear:
            rewritten.append(node)
            continue
        name, result = node.name or f"Gemm_{node.output[0]}", node.output[0]
        matrix = numpy_helper.to_array(constants[weight])
        matrix = matrix.T if attributes.get("transB", 0) else matrix
        scaled = numpy_helper.from_array(
            (attributes.get("alpha", 1.0) * matrix).astype(matrix.dtype), f"{name}/weight"
        )
        graph.initializer.append(scaled)
        operand = node.input[0]
        if attributes.get("transA", 0):
            rewritten.append(
                helper.make_node("Transpose", [operand], [f"{result}/a"], f"{name}/a", perm=[1, 0])
            )
            operand = f"{result}/a"
        product = result if bias is None else f"{result}/product"
        rewritten.append(helper.make_node("MatMul", [operand, scaled.name], [product], name))
        if bias is not None:
            beta = attributes.get("beta", 1.0)
            if bias in constants:
                term = numpy_helper.to_array(constants[bias])
                graph.initializer.append(
                    numpy_helper.from_array((beta * term).astype(term.dtype), f"{name}/bias")
                )
                bias = f"{name}/bias"
            elif beta != 1.0:
                graph.initializer.append(
                    numpy_helper.from_array(np.array(beta, matrix.dtype), f"{name}/beta")
                )
                rewritten.append(
                    helper.make_node("Mul", [bias, f"{name}/beta"], [f"{result}/bias"], f"{name}/beta")
                )
                bias = f"{result}/bias"
            rewritten.append(helper.make_node("Add", [product, bias], [result], f"{name}/add"))
    del graph.node[:]
    graph.node.extend(rewritten)


def _free_batch_axis(graph, image):
    """Free a batch axis that ``graph`` fixes to 1, in place: the input's and outputs' first axis
    become symbolic, ``Reshape`` targets with a leading 1 copy the batch instead (0, ONNX's
    "as the input"), the shapes recorded between nodes are dropped (the converter infers them
    again). Returns whether it was fixed (then the converted module must be checked)."""
    if image.shape is None or image.shape[0] != 1:
        return False
    from onnx import numpy_helper

    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "batch"
    constants = {initializer.name: initializer for initializer in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        target = numpy_helper.to_array(constants[node.input[1]])
        if target.ndim == 1 and len(target) > 0 and target[0] == 1:
            name = f"{node.input[1]}/{node.name or node.output[0]}/batch"
            graph.initializer.append(
                numpy_helper.from_array(np.concatenate([[0], target[1:]]).astype(target.dtype), name)
            )
            node.input[1] = name
    del graph.value_info[:]
    return True


def _flatten_output(onnx, model):
    """Flatten the graph's output from its second axis on when shape inference says it has four
    or more axes (feature maps); the output keeps its name."""
    graph = model.graph
    name = graph.output[0].name
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference fails on some graphs that run: then the output stays as it is
        return
    values = {value.name: value for value in [*inferred.graph.value_info, *inferred.graph.output]}
    value = values.get(name)
    if value is None or not value.type.tensor_type.HasField("shape"):
        return
    if len(value.type.tensor_type.shape.dim) < 4:
        return
    maps = f"{name}/maps"
    for node in graph.node:
        node.output[:] = [maps if output == name else output for output in node.output]
        node.input[:] = [maps if used == name else used for used in node.input]
    graph.node.append(onnx.helper.make_node("Flatten", [maps], [name], "flatten_output", axis=1))
    del graph.output[:]
    graph.output.add().name = name


def _converted(model, where):
    """``onnx2torch.convert(model)``, its failures refused naming the node to blame."""
    from onnx2torch import convert
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph
    from onnx2torch.utils.safe_shape_inference import safe_shape_inference

    versions = {opset.domain: opset.version for opset in model.opset_import}
    unsupported = []
    for node in model.graph.node:
        try:
            get_converter(
                domain=node.domain, operation_type=node.op_type, version=versions.get(node.domain, 1)
            )
        except NotImplementedError:
            unsupported.append(node)
    if unsupported:
        named = ", ".join(
            f"{_node_name(node)}{' of domain ' + repr(node.domain) if node.domain else ''}"
            for node in unsupported[:5]
        )
        more = f" and {len(unsupported) - 5} more" if len(unsupported) > 5 else ""
        raise ValueError(
            f"{where}: onnx2torch cannot convert the operators of nodes {named}{more}. Cut the graph "
            f"before them (output=<tensor name>), or export the model with other operators."
        )
    try:
        return convert(model)
    except Exception as exc:  # a converter's own refusal (an attribute it does not support)
        graph = OnnxGraph(safe_shape_inference(model).graph)  # as convert sees it
        for node in graph.nodes.values():
            try:
                get_converter(
                    domain=node.domain, operation_type=node.operation_type, version=versions[node.domain]
                )(node, graph)
            except Exception as error:
                raise ValueError(
                    f"{where}: onnx2torch cannot convert node {_node_name(node.proto)}: "
                    f"{type(error).__name__}: {error}"
                ) from exc
        raise ValueError(
            f"{where}: onnx2torch cannot convert the graph: {type(exc).__name__}: {exc}"
        ) from exc


def _matmul_as_linear(module, graph, where):
    """In the converted ``module`` (in place): each MatMul by a constant 2-D weight as the
    ``nn.Linear`` layer it is (``x @ W == Linear(W.T)(x)`` for ``x`` of any rank), under the
    node's name. A constant of two or more dimensions applied otherwise (on the left of a
    product, of another rank, in an Einsum) is a weight no layer takes: refused, naming the node."""
    from onnx2torch.node_converters.einsum import OnnxEinsum
    from onnx2torch.node_converters.gemm import OnnxGemm
    from onnx2torch.node_converters.matmul import OnnxMatMul
    from onnx2torch.onnx_graph import OnnxGraph

    nodes = OnnxGraph(graph).nodes
    for node in list(module.graph.nodes):
        if node.op != "call_module" or not isinstance(
            module.get_submodule(node.target), (OnnxMatMul, OnnxGemm, OnnxEinsum)
        ):
            continue
        operands = [argument for argument in node.args if isinstance(argument, fx.Node)]
        if all(operand.op == "get_attr" for operand in operands):
            continue  # a product of constants: no activation, no filter
        weights = [
            (position, _attribute(module, argument.target))
            for position, argument in enumerate(node.args)
            if isinstance(argument, fx.Node) and argument.op == "get_attr"
        ]
        weights = [
            (position, value) for position, value in weights if value.is_floating_point() and value.dim() >= 2
        ]
        if not weights:
            continue
        position, weight = weights[0]
        matmul = isinstance(module.get_submodule(node.target), OnnxMatMul)
        if matmul and position == 1 and weight.dim() == 2:
            _as_linear(module, node, weight)
            continue
        source = nodes[node.target].proto
        raise ValueError(
            f"{where}: node {_node_name(source)} applies the constant {source.input[position]!r} "
            f"(shape {list(weight.shape)}) as a weight that no layer takes (only a 2-D weight on the "
            f"right of a MatMul or Gemm becomes a Linear layer): its filters would be left out."
        )
    module.graph.lint()
    module.recompile()


def _attribute(module, target):
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def _as_linear(module, node, weight):
    """Replace the MatMul ``node`` of ``module`` by ``nn.Linear`` computing ``x @ weight``; the
    constant's buffer goes when nothing else reads it."""
    constant = node.args[1]
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=False, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
    module.add_submodule(node.target, linear)
    node.args = (node.args[0],)
    if not constant.users:
        module.graph.erase_node(constant)
        owner, _, name = constant.target.rpartition(".")
        delattr(module.get_submodule(owner) if owner else module, name)


def _check_batch_freed(probe, image, where):
    """Refuse a graph whose batch axis was fixed to 1 if, once freed, it does not compute each
    example of a batch on its own (a reshape that moves the batch, a tensor of batch 1 built
    into the graph)."""
    shape = [_CHECK_SIDE if side is None else side for side in image.shape[1:]]
    generator = torch.Generator().manual_seed(0)
    examples = torch.randn(2, *shape, generator=generator).to(image.dtype)
    why = None
    try:
        with torch.no_grad():
            together = probe(examples)
            alone = torch.cat([probe(examples[index : index + 1]) for index in range(len(examples))])
        if together.shape != alone.shape or not torch.allclose(together, alone, rtol=1e-4, atol=1e-5):
            why = "the examples of a batch change each other's outputs"
    except Exception as exc:  # a reshape or a tensor of the graph that keeps the batch at 1
        why = f"a batch of 2 fails ({type(exc).__name__}: {exc})"
    if why is not None:
        raise ValueError(
            f"{where}: the graph fixes its batch axis to 1 (input {image.name!r} of shape "
            f"{[1, *image.shape[1:]]}) and once freed, {why}. Export it with a dynamic batch axis "
            f"(torch.onnx.export(..., dynamic_axes={{'input': {{0: 'batch'}}}}))."
        )
