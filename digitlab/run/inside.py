"""The run outputs that show the network's inside: the mistakes with their probabilities, first-layer weights,
the 2-D plane through training, saliency, conv activation maps and layer health. Each is a function of a
RunView, like every output in digitlab.run.outputs (which registers these), so old run folders get them too;
the plane through training and layer health read what digitlab.run.records wrote while the run trained.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from digitlab.figures import inside as figures
from digitlab.inside.maps import conv_maps
from digitlab.inside.saliency import saliency
from digitlab.nn import Linear
from digitlab.nn.metrics import class_probabilities
from digitlab.run.records import read_embedding, read_health
from digitlab.run.view import RunView

INSIDE: dict[str, Callable[[RunView], bytes | None]] = {}
WEIGHT_UNITS = 100  # first-layer units drawn at most
SALIENCY_DIGITS = 10


def inside_output(name: str):
    def register(fn):
        INSIDE[name] = fn
        return fn
    return register


@inside_output("mistakes.png")
def mistakes_png(view: RunView) -> bytes:
    probabilities = class_probabilities(view.test["probabilities"])
    return figures.png(figures.mistakes(view.data.test.x, view.data.test.y, probabilities, view.classes))


@inside_output("weights.png")
def weights_png(view: RunView) -> bytes | None:
    """For a model whose first layer is dense: each hidden unit's weights as an image of the dataset's shape."""
    first = view.model.layers[0] if view.model.layers else None
    if not isinstance(first, Linear):
        return None
    c, h, w = view.image_shape
    units = first.weight.data.T[:WEIGHT_UNITS].reshape(-1, c, h, w).mean(axis=1)
    return figures.png(figures.weights(units, first.units))


def _plane(view: RunView) -> dict | None:
    record = read_embedding(view.run, view.cfg)
    return record if record is not None and len(record["epochs"]) else None


@inside_output("embedding_epochs.png")
def embedding_epochs_png(view: RunView) -> bytes | None:
    record = _plane(view)
    return figures.png(figures.embedding_strip(record, view.classes)) if record is not None else None


@inside_output("embedding_epochs.gif")
def embedding_epochs_gif(view: RunView) -> bytes | None:
    record = _plane(view)
    return figures.embedding_gif(record, view.classes) if record is not None else None


def saliency_digits(y: np.ndarray, classes: int, count: int = SALIENCY_DIGITS) -> np.ndarray:
    """Test rows to explain: the first of each class in turn (3, 8, 3, 8... for two classes), `count` in all."""
    per_class = [np.flatnonzero(y == c) for c in range(classes)]
    picked = [rows[i] for i in range(count) for rows in per_class if i < len(rows)]
    return np.array(picked[:count], dtype=np.int64)


@inside_output("saliency.png")
def saliency_png(view: RunView) -> bytes | None:
    rows = saliency_digits(view.data.test.y, len(view.classes))
    if not len(rows):
        return None
    gradients, predicted = saliency(view.model, view.inputs("test")[rows])
    return figures.png(figures.saliency(view.data.test.x[rows], gradients.reshape(view.data.test.x[rows].shape),
                                      view.data.test.y[rows], predicted, view.classes))


@inside_output("activations.png")
def activations_png(view: RunView) -> bytes | None:
    """Conv models: each conv layer's channels for the first test digit."""
    if not len(view.data.test):
        return None
    maps = conv_maps(view.model, view.inputs("test")[0])
    if not maps:
        return None
    y, said = view.data.test.y[0], view.test["predictions"][0]
    label = f"true {view.classes[y]}, predicted {view.classes[said]}"
    return figures.png(figures.activation_maps(view.data.test.x[0], maps, label))


@inside_output("layer_health.png")
def layer_health_png(view: RunView) -> bytes | None:
    rows = read_health(view.run, view.cfg)
    return figures.png(figures.layer_health(rows)) if rows else None
