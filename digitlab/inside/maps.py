"""Activation maps: what each convolution layer's channels light up on for one probe digit (CNN Explainer's
view). Each map is taken after the layers that finish the convolution's block (batch norm, the activation)."""

from __future__ import annotations

import numpy as np

from digitlab.inside.probe import trace
from digitlab.nn import BatchNorm, Conv2d, LeakyReLU, ReLU, Sequential, Sigmoid, Tanh
from digitlab.nn.registry import layer_name

BLOCK = (BatchNorm, ReLU, LeakyReLU, Sigmoid, Tanh)


def conv_maps(model: Sequential, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """For one input (model.in_shape), each conv layer's output channels (C, H, W) after its block, labelled
    'conv2d 0 + batchnorm + relu'. Empty for a model without convolutions."""
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2d)]
    if not convs:
        return []
    outputs = trace(model, image[None], upto=len(model.layers)).outputs
    maps = []
    for i in convs:
        end = i
        while end + 1 < len(model.layers) and isinstance(model.layers[end + 1], BLOCK):
            end += 1
        names = " + ".join(layer_name(type(layer)) for layer in model.layers[i:end + 1])
        maps.append((f"layer {i}: {names}", np.asarray(outputs[end][0], dtype=np.float32)))
    return maps
