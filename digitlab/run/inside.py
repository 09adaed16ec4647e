"""The run outputs that show the network's inside: the mistakes with their probabilities, first-layer weights,
the class means, the first convolution's kernels, the 2-unit layer's plane (at the end and through training),
saliency, conv activation maps and layer health. Each is a function of a RunView, like every output in
digitlab.run.outputs (which registers these), so old run folders get them too; the plane through training and
layer health read what digitlab.run.records wrote while the run trained.

`@inside_output(name, section=..., caption=..., narrow=...)` declares one with what report.html shows of it (the
facts digitlab.run.outputs.output takes), in the order the page shows them. Each imports its figure module (and
so matplotlib) when it draws: a report whose figures are all drawn already loads none.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from digitlab.figures.canvas import png
from digitlab.inside.maps import conv_maps
from digitlab.inside.saliency import saliency
from digitlab.nn import ClassMeans, Conv2d, Linear
from digitlab.nn.metrics import class_probabilities
from digitlab.run.records import read_embedding, read_health
from digitlab.run.view import RunView

INSIDE: dict[str, tuple[Callable[[RunView], bytes | None], dict]] = {}  # name -> (function, facts)
WEIGHT_UNITS = 100  # first-layer units drawn at most
SALIENCY_DIGITS = 10


def inside_output(name: str, **facts):
    def register(fn):
        INSIDE[name] = (fn, facts)
        return fn
    return register


@inside_output("mistakes.png", section="mistakes", caption="Every misclassified test image, the most confident "
               "mistakes first (lowest probability for the true class), with the model's probabilities.")
def mistakes_png(view: RunView) -> bytes:
    from digitlab.figures import inside as figures
    probabilities = class_probabilities(view.test["probabilities"])
    return png(figures.mistakes(view.data.test.x, view.data.test.y, probabilities, view.classes), tight=False)


@inside_output("weights.png", section="inside", narrow=True,
               caption="First layer's weights: what each hidden unit looks for in the image.")
def weights_png(view: RunView) -> bytes | None:
    """For a model whose first layer is dense: each hidden unit's weights as an image of the dataset's shape."""
    from digitlab.figures import inside as figures
    first = view.model.layers[0] if view.model.layers else None
    if not isinstance(first, Linear):
        return None
    c, h, w = view.image_shape
    units = first.weight.data.T[:WEIGHT_UNITS].reshape(-1, c, h, w).mean(axis=1)
    return png(figures.weights(units, first.units), tight=False)


@inside_output("means.png", section="inside",
               caption="The class means (the average digits) the model compares each image with.")
def means_png(view: RunView) -> bytes | None:
    """The class means a model fitted in one pass holds (average_image, nearest_mean): its weights as images."""
    from digitlab.figures.data import image_grid
    means = next((layer for layer in view.model.layers if isinstance(layer, ClassMeans)), None)
    if means is None:
        return None
    images = means.weight.data.T.reshape((len(view.classes),) + tuple(view.image_shape))
    return png(image_grid(images, [str(c) for c in view.classes], title="the class means: the model's weights, one "
                          "image per digit"))


@inside_output("filters.png", section="inside", narrow=True, caption="First convolution's kernels.")
def filters_png(view: RunView) -> bytes | None:
    from digitlab.figures import run as plots
    conv = next((layer for layer in view.model.layers if isinstance(layer, Conv2d)), None)
    return png(plots.filters(conv.weight.data)) if conv is not None else None


@inside_output("embedding.png", section="inside", narrow=True, caption="The test set in the 2-unit layer's "
               "plane, over what the rest of the network makes of each point of it.")
def embedding_png(view: RunView) -> bytes | None:
    from digitlab.figures import run as plots
    figure = plots.embedding(view.model, view.inputs("test"), view.data.test.y, view.classes)
    return png(figure) if figure is not None else None


def _plane(view: RunView) -> dict | None:
    record = read_embedding(view.run, view.cfg)
    return record if record is not None and len(record["epochs"]) else None


@inside_output("embedding_epochs.gif", section="inside", narrow=True, caption="The plane through training, animated.")
def embedding_epochs_gif(view: RunView) -> bytes | None:
    from digitlab.figures import inside as figures
    record = _plane(view)
    return figures.embedding_gif(record, view.classes) if record is not None else None


@inside_output("embedding_epochs.png", section="inside",
               caption="The same plane through training, on fixed axes.")
def embedding_epochs_png(view: RunView) -> bytes | None:
    from digitlab.figures import inside as figures
    record = _plane(view)
    return png(figures.embedding_strip(record, view.classes), tight=False) if record is not None else None


def saliency_digits(y: np.ndarray, classes: int, count: int = SALIENCY_DIGITS) -> np.ndarray:
    """Test rows to explain: the first of each class in turn (3, 8, 3, 8... for two classes), `count` in all."""
    per_class = [np.flatnonzero(y == c) for c in range(classes)]
    picked = [rows[i] for i in range(count) for rows in per_class if i < len(rows)]
    return np.array(picked[:count], dtype=np.int64)


@inside_output("saliency.png", section="inside", caption="Saliency: where more ink would raise (red) or lower "
               "(blue) the predicted class's score.")
def saliency_png(view: RunView) -> bytes | None:
    from digitlab.figures import inside as figures
    rows = saliency_digits(view.data.test.y, len(view.classes))
    if not len(rows):
        return None
    gradients, predicted = saliency(view.model, view.inputs("test")[rows])
    return png(figures.saliency(view.data.test.x[rows], gradients.reshape(view.data.test.x[rows].shape),
                                view.data.test.y[rows], predicted, view.classes), tight=False)


@inside_output("activations.png", section="inside",
               caption="Activation maps: each convolution's channels for one test digit.")
def activations_png(view: RunView) -> bytes | None:
    """Conv models: each conv layer's channels for the first test digit."""
    from digitlab.figures import inside as figures
    if not len(view.data.test):
        return None
    maps = conv_maps(view.model, view.inputs("test")[0])
    if not maps:
        return None
    y, said = view.data.test.y[0], view.test["predictions"][0]
    label = f"true {view.classes[y]}, predicted {view.classes[said]}"
    return png(figures.activation_maps(view.data.test.x[0], maps, label), tight=False)


@inside_output("layer_health.png", section="inside", caption="Layer health per epoch on a fixed probe batch: "
               "output mean and spread, gradient spread, dead ReLU and saturated units.")
def layer_health_png(view: RunView) -> bytes | None:
    from digitlab.figures import inside as figures
    rows = read_health(view.run, view.cfg)
    return png(figures.layer_health(rows), tight=False) if rows else None
