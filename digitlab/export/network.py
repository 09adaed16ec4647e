"""A trained Sequential as the steps another framework builds it from: one Step per digitlab layer, in the model's
order and with its index (so "3.running_mean" stays layer 3's), with the options and arrays that framework needs
in its own layout, and the head that turns the model's outputs into class probabilities.

The engine's image layers see (N, C, H, W), as ONNX and PyTorch do, and a conv weight is (filters, channels, k, k)
as theirs; a Linear weight is (in, out) here and (out, in) there; a flatten gives channels, then rows, then
columns, as theirs. The class-means layer is a linear layer in other frameworks: x . m_c (dot), or
2 x . m_c - |m_c|^2 (euclidean). Dropout is the identity in evaluation.

The head gives what `digitlab predict` reports (nn.metrics.class_probabilities): a softmax output as it is; one
output p (a sigmoid unit for two classes) as the two columns [p, 1 - p], class 0 (the first digit listed) when p is
high; several outputs that are no distribution (MSE on sigmoids, class-means scores) clipped at 0 and scaled to
sum to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from digitlab.nn import Sequential
from digitlab.nn.registry import LAYERS, layer_name

PLAIN = ("relu", "sigmoid", "tanh", "softmax", "flatten")  # layers with neither options nor arrays


@dataclass
class Step:
    """One layer: `kind` (linear, conv2d, batchnorm, relu, leaky_relu, sigmoid, tanh, softmax, maxpool2d,
    avgpool2d, flatten, dropout), `index` its place in the model (None for the output activation), `options`
    (kernel, stride, pads as (top, bottom, left, right), slope, eps, momentum, p...) and `arrays` (weight in
    the (out, in) or (filters, channels, k, k) layout, bias, running_mean, running_var), in the order ONNX's
    Gemm, Conv and BatchNormalization take them."""

    kind: str
    index: int | None
    options: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Network:
    """The steps, the input shape the first step takes per image ((C, H, W), or (H*W,) for a model that starts
    dense), the image's (H, W), the number of outputs and the head: `softmax` (the outputs are the probabilities),
    `binary` (one output p: [p, 1 - p]) or `normalise` (clipped at 0, divided by their sum)."""

    steps: list[Step]
    in_shape: tuple[int, ...]
    image_hw: tuple[int, int]
    outputs: int
    head: str


def _step(index: int | None, layer) -> Step:
    kind = layer_name(type(layer)) if type(layer) in LAYERS.values() else None
    if kind == "linear":
        arrays = {"weight": layer.weight.data.T.copy()}
        if layer.bias is not None:
            arrays["bias"] = layer.bias.data.copy()
        return Step("linear", index, {"in": layer.in_shape[0], "out": layer.units}, arrays)
    if kind == "class_means":
        means = layer.weight.data.astype(np.float32)
        if layer.metric == "dot":
            return Step("linear", index, {"in": means.shape[0], "out": means.shape[1]}, {"weight": means.T.copy()})
        bias = -np.einsum("ij,ij->j", means, means)
        return Step("linear", index, {"in": means.shape[0], "out": means.shape[1]},
                    {"weight": (2 * means).T.copy(), "bias": bias.astype(np.float32)})
    if kind == "conv2d":
        arrays = {"weight": layer.weight.data.copy()}
        if layer.bias is not None:
            arrays["bias"] = layer.bias.data.copy()
        return Step("conv2d", index, {"in": layer.in_shape[0], "out": layer.filters, "kernel": layer.kernel,
                                      "stride": layer.stride, "pads": tuple(layer.pad)}, arrays)
    if kind == "batchnorm":
        return Step("batchnorm", index, {"channels": layer.channels, "eps": layer.eps, "momentum": layer.momentum,
                                         "image": len(layer.in_shape) == 3},
                    {"weight": layer.gamma.data.copy(), "bias": layer.beta.data.copy(),
                     "running_mean": layer.running_mean.copy(), "running_var": layer.running_var.copy()})
    if kind in ("maxpool2d", "avgpool2d"):
        return Step(kind, index, {"size": layer.size, "stride": layer.step})
    if kind == "leaky_relu":
        return Step("leaky_relu", index, {"slope": layer.slope})
    if kind == "dropout":
        return Step("dropout", index, {"p": layer.p})
    if kind in PLAIN:
        return Step(kind, index)
    raise ValueError(f"no export for the layer {type(layer).__name__}")


def describe(model: Sequential, image_shape: tuple[int, int, int]) -> Network:
    """The model's steps (the output activation last, without an index) and its head, for images of the dataset's
    (channels, rows, cols)."""
    steps = [_step(i, layer) for i, layer in enumerate(model.layers)]
    if model.output_activation is not None:
        steps.append(_step(None, model.output_activation))
    outputs = model.out_shape[0]
    last = steps[-1].kind if steps else None
    head = "binary" if outputs == 1 else "softmax" if last == "softmax" else "normalise"
    return Network(steps, tuple(model.in_shape), tuple(image_shape[1:]), outputs, head)
