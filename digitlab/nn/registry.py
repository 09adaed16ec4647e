"""Names -> classes: the layers, losses, optimizers and schedules a config can name, and building a model from a
config's layer list. The registry imports the modules that define things; they never import it back, so adding
a layer is its class in its module, one entry here and its test.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.nn.activations import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from digitlab.nn.base import Layer
from digitlab.nn.conv import Conv2d
from digitlab.nn.layers import Dropout, Flatten, Linear
from digitlab.nn.losses import BCELoss, CrossEntropyLoss, Loss, MSELoss
from digitlab.nn.means import ClassMeans
from digitlab.nn.model import Sequential
from digitlab.nn.normalization import BatchNorm
from digitlab.nn.optim import SGD, Adadelta, Adam, AdamW, Optimizer, RMSprop
from digitlab.nn.pooling import AvgPool2d, MaxPool2d
from digitlab.nn.schedules import CosineLR, OneCycleLR, Schedule, StepLR

# Config names -> classes. Aliases map to the same class; the first name of a class is the one saved.
LAYERS: dict[str, type[Layer]] = {
    "linear": Linear, "affine": Linear, "dense": Linear,
    "relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
    "dropout": Dropout, "flatten": Flatten,
    "conv2d": Conv2d, "conv": Conv2d,
    "maxpool2d": MaxPool2d, "maxpool": MaxPool2d, "avgpool2d": AvgPool2d, "avgpool": AvgPool2d,
    "batchnorm": BatchNorm, "class_means": ClassMeans,
}
# Models a config can name instead of listing layers: classifiers fitted in one pass, for n classes.
MODELS = {
    "average_image": lambda n: [("flatten", {}), ("class_means", {"units": n, "metric": "dot"})],
    "nearest_mean": lambda n: [("flatten", {}), ("class_means", {"units": n, "metric": "euclidean"})],
}
LOSSES: dict[str, type[Loss]] = {"mse": MSELoss, "bce": BCELoss, "cross_entropy": CrossEntropyLoss}
OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
                                          "adadelta": Adadelta}
SCHEDULES: dict[str, type[Schedule]] = {"constant": Schedule, "step": StepLR, "cosine": CosineLR,
                                         "one_cycle": OneCycleLR}


def layer_name(cls: type[Layer]) -> str:
    """A layer class's config name (the first listed: affine and dense are saved as linear)."""
    return next(name for name, c in LAYERS.items() if c is cls)


def default_init(layers: list[Layer], i: int) -> str:
    """The initialiser for layer i's weight when the config names none: the one the next layer that matters
    prefers (He before a ReLU), looking through batch norm and pooling; Xavier/Glorot otherwise."""
    after = next((layer for layer in layers[i + 1:] if not layer.transparent_to_init), None)
    return (after.preferred_init if after is not None else None) or "xavier"


def input_shape_for(classes: list[type[Layer]], image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A model whose first layer that cares about shape is a dense one (past dropout or activations on the
    pixels) sees flat images; any other sees (channels, rows, cols)."""
    first = next((cls for cls in classes if not cls.elementwise), None)
    return (math.prod(image_shape),) if first is Linear else tuple(image_shape)


def build_layers(layer_specs: list[tuple[str, dict]], image_shape: tuple[int, ...],
                 fuses: type[Layer] | None = None) -> tuple[list[Layer], tuple[int, ...], Layer | None]:
    """(layers, input shape, output activation) from (name, options) pairs, allocating nothing.

    A final activation of the type the loss fuses becomes the model's output_activation (cross-entropy on a
    model that ends in logits gets an implicit softmax there), so that `predict` always gives probabilities."""
    layers = [LAYERS[name](**opts) for name, opts in layer_specs]
    for i, layer in enumerate(layers):
        if getattr(layer, "init", "") is None:
            layer.init = default_init(layers, i)
    head = None
    if fuses is not None:
        head = layers.pop() if layers and isinstance(layers[-1], fuses) else fuses()
    in_shape = input_shape_for([LAYERS[name] for name, _ in layer_specs], image_shape)
    return layers, in_shape, head


def build_model(layer_specs: list[tuple[str, dict]], image_shape: tuple[int, ...],
                fuses: type[Layer] | None = None, dtype=np.float32) -> Sequential:
    """A Sequential from (name, options) pairs (see build_layers). Raises ShapeError naming the layer when
    shapes do not fit."""
    layers, in_shape, head = build_layers(layer_specs, image_shape, fuses)
    return Sequential(layers, in_shape, head, dtype)


def architecture(model: Sequential) -> list:
    """The model's layer list in config form, e.g. [{'linear': {'units': 100}}, 'relu', ...]."""
    layers = model.layers + ([model.output_activation] if model.output_activation else [])
    return [{layer_name(type(layer)): layer.spec()} if layer.spec() else layer_name(type(layer)) for layer in layers]
