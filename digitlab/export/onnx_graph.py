"""A run's network as an ONNX graph (opset 17), built node by node with onnx.helper from the weights.

Input `image`: float32 (N, H, W), the dataset's pixels scaled to [0, 1] as digitlab stores them (MNIST value/255,
the 8x8 digits value/16). Output `probabilities`: float32 (N, classes), in the order of the metadata property
`classes` (a JSON list of digits); see export.network for what a one-unit sigmoid net gives. Metadata also names
the run (`digitlab_run`) and holds its `config` (config.yaml's text). Batch norm is a BatchNormalization node with
the running statistics; dropout is left out (the identity in inference).
"""

from __future__ import annotations

import json

import numpy as np

from digitlab.export.network import Network, describe
from digitlab.export.reading import Exportable, destination, unique_destinations
from digitlab.run import layout
from digitlab.system.storage import atomic_write, make_folder

OPSET = 17
INPUT, OUTPUT = "image", "probabilities"
SUFFIX = ".onnx"


class _Graph:
    """Nodes and initializers added in order; `add` returns the name of the node's output."""

    def __init__(self):
        from onnx import helper
        self.helper, self.nodes, self.weights = helper, [], []

    def const(self, name: str, array) -> str:
        from onnx import numpy_helper
        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(self, op: str, inputs: list[str], name: str, output: str | None = None, **attrs) -> str:
        output = output or name
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _layer(g: _Graph, step, x: str, name: str) -> str:
    o = step.options
    inputs = [x] + [g.const(f"{name}.{k}", array) for k, array in step.arrays.items()]  # in the operator's order
    if step.kind == "linear":
        return g.add("Gemm", inputs, name, transB=1)
    if step.kind == "conv2d":
        top, bottom, left, right = o["pads"]
        return g.add("Conv", inputs, name, kernel_shape=[o["kernel"]] * 2, strides=[o["stride"]] * 2,
                     pads=[top, left, bottom, right])
    if step.kind == "batchnorm":
        return g.add("BatchNormalization", inputs, name, epsilon=o["eps"])
    if step.kind in ("maxpool2d", "avgpool2d"):
        op = "MaxPool" if step.kind == "maxpool2d" else "AveragePool"
        return g.add(op, [x], name, kernel_shape=[o["size"]] * 2, strides=[o["stride"]] * 2)
    if step.kind == "leaky_relu":
        return g.add("LeakyRelu", [x], name, alpha=o["slope"])
    if step.kind == "softmax":
        return g.add("Softmax", [x], name, axis=-1)
    if step.kind == "flatten":
        return g.add("Flatten", [x], name, axis=1)
    if step.kind == "dropout":
        return x
    ops = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
    return g.add(ops[step.kind], [x], name)


def _head(g: _Graph, net: Network, x: str) -> str:
    """The model's outputs -> class probabilities (see export.network)."""
    if net.head == "softmax":
        return g.add("Identity", [x], OUTPUT)
    if net.head == "binary":
        rest = g.add("Sub", [g.const("one", np.ones((1, 1), np.float32)), x], "other_class")
        return g.add("Concat", [x, rest], OUTPUT, axis=1)
    clipped = g.add("Relu", [x], "clipped")
    total = g.add("ReduceSum", [clipped, g.const("class_axis", np.array([1], np.int64))], "total", keepdims=1)
    total = g.add("Max", [total, g.const("tiny", np.full((1, 1), 1e-12, np.float32))], "total_or_tiny")
    return g.add("Div", [clipped, total], OUTPUT)


def build(net: Network, metadata: dict[str, str]):
    """The ModelProto of a network, checked by onnx.checker."""
    import onnx
    from onnx import TensorProto, helper
    g = _Graph()
    h, w = net.image_hw
    x = g.add("Reshape", [INPUT, g.const("input_shape", np.array((-1,) + net.in_shape, np.int64))], "input")
    for step in net.steps:
        x = _layer(g, step, x, f"{step.index}.{step.kind}" if step.index is not None else f"output.{step.kind}")
    out = _head(g, net, x)
    classes = 2 if net.head == "binary" else net.outputs
    graph = helper.make_graph(
        g.nodes, "digitlab", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", h, w])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])], g.weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="digitlab")
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime releases of the last years
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def metadata(item: Exportable) -> dict[str, str]:
    return {"classes": json.dumps(item.view.classes), "digitlab_run": item.label,
            "config": (item.run.path / layout.CONFIG).read_text(encoding="utf-8")}


def export(items: list[Exportable], out: str | None, say) -> None:
    """model.onnx in each run folder, or --out (a file for one run, else a folder of <run label>.onnx)."""
    targets = [destination(out, item, SUFFIX, layout.ONNX_MODEL, len(items)) for item in items]
    unique_destinations(targets)
    for item, target in zip(items, targets):
        model = build(describe(item.view.model, item.view.image_shape), metadata(item))
        make_folder(target.parent)
        say(str(atomic_write(target, model.SerializeToString())))
