"""The "Draw a digit" section of report.html: a canvas to draw on, the image as the network sees it (the
preprocessing of `digitlab predict`), a probability bar per class, every layer's activations and, for a network
with a 2-unit layer, the drawing's point in that plane, all computed by the page's own JavaScript (draw.js: the
engine's forward pass and digitlab.data.photo's preprocessing; draw_ui.js: what is shown) from the run's weights
embedded as base64 float32. The page stays one file that works from file://, with nothing fetched.

The model goes into the page as JSON: each layer's type, options and shapes, and where its tensors sit in one flat
float32 buffer; with it a few test images of each class, the test set's mistakes and, for a 2-unit network, the
test set's points in its plane.
"""

from __future__ import annotations

import base64
import json
from importlib import resources

import numpy as np

from digitlab.data import open_source, photo
from digitlab.errors import UserError
from digitlab.figures import html
from digitlab.inside.plane import embedding_layer, fixed_limits, project
from digitlab.nn import Conv2d, Sequential
from digitlab.nn.metrics import class_probabilities
from digitlab.nn.registry import layer_name
from digitlab.options import plural, size_text
from digitlab.run import layout
from digitlab.run.predict import knows_only
from digitlab.run.view import RunView

ANCHOR = "drawing"  # the canvas itself is id="draw"
MAX_WEIGHT_BYTES = 20 << 20  # above this (in base64) the page says the model is too big to embed
TEST_PER_CLASS = 5  # test images of each class behind "show me a test digit"
MISTAKES = 24  # the most confident mistakes behind "show me a mistake"
PLANE_POINTS = 1000  # test images drawn in the 2-unit plane
SCRIPTS = ("draw.js", "draw_ui.js")


def model_spec(model: Sequential) -> tuple[list[dict], np.ndarray]:
    """(layers, weights): each layer (the output activation last) as {type, options, in, out, tensors: {name:
    [offset, size]}} with its tensors (parameters, then batch norm's running statistics) in one float32 array."""
    layers = model.layers + ([model.output_activation] if model.output_activation is not None else [])
    shapes = [model.in_shape] + list(model.layer_shapes) + [model.out_shape] * (model.output_activation is not None)
    chunks, offset, out = [], 0, []
    for i, layer in enumerate(layers):
        entry = {"type": layer_name(type(layer)), **layer.settings(), "in": list(shapes[i]), "out": list(shapes[i + 1])}
        if isinstance(layer, Conv2d):
            entry["pad"] = list(layer.pad)
        tensors = {name: p.data for name, p in getattr(layer, "params", {}).items()}
        tensors.update(layer.buffers())
        entry["tensors"] = {}
        for name, array in tensors.items():
            flat = np.ascontiguousarray(array, dtype="<f4").ravel()
            entry["tensors"][name] = [offset, int(flat.size)]
            chunks.append(flat)
            offset += flat.size
        out.append(entry)
    weights = np.concatenate(chunks) if chunks else np.zeros(0, dtype="<f4")
    return out, weights


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _images(x: np.ndarray, rows: np.ndarray, pixel_max: int) -> str:
    """Test images as their integer pixel values (uint8), the way the dataset stores them."""
    return _b64(np.round(x[rows].reshape(len(rows), -1) * pixel_max).astype(np.uint8))


def network(model: Sequential, classes: list, image_shape) -> dict:
    """What draw.js needs to classify: the classes, the image shape, the layers and their weights, and the
    constants of digitlab predict's preprocessing."""
    layers, weights = model_spec(model)
    return {"classes": list(classes), "image_shape": list(image_shape), "layers": layers, "weights": _b64(weights),
            "preprocess": {"border_parts": photo.BORDER_PARTS, "uneven": photo.UNEVEN, "even_side": photo.EVEN_SIDE,
                           "opening": photo.OPENING, "min_contrast": photo.MIN_CONTRAST, "noise": photo.NOISE,
                           "mnist_box": photo.MNIST_BOX}}


def embedded(data: dict) -> str:
    """The JSON script element draw.js reads (`</` escaped, so nothing in it can close the element)."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="draw-model">{payload}</script>'


def spec(view: RunView) -> dict:
    """Everything draw.js and draw_ui.js need, as JSON-ready values: the network, test digits, mistakes, the
    plane."""
    model, test = view.model, view.data.test
    probabilities = class_probabilities(view.test["probabilities"])
    predicted = view.test["predictions"]
    classes = len(view.classes)
    examples = np.array([r for c in range(classes) for r in np.flatnonzero(test.y == c)[:TEST_PER_CLASS]], dtype=int)
    wrong = np.flatnonzero(predicted != test.y)
    wrong = wrong[np.argsort(probabilities[wrong, test.y[wrong]], kind="stable")][:MISTAKES]
    pixel_max = open_source(view.cfg["data"]).pixel_max
    out = {
        **network(model, view.classes, view.image_shape), "pixel_max": pixel_max,
        "examples": {"images": _images(test.x, examples, pixel_max), "labels": test.y[examples].tolist(),
                     "rows": examples.tolist()},
        "mistakes": {"images": _images(test.x, wrong, pixel_max), "labels": test.y[wrong].tolist(),
                     "rows": wrong.tolist(), "predicted": predicted[wrong].tolist()},
    }
    k = embedding_layer(model)
    if k is not None and len(test):
        points = project(model, view.inputs("test")[:PLANE_POINTS], k)
        low, high = fixed_limits(points[None])
        out["plane"] = {"layer": int(k), "points": np.round(points, 4).ravel().tolist(),
                        "labels": test.y[:PLANE_POINTS].tolist(), "low": low.tolist(), "high": high.tolist()}
    return out


def script(name: str) -> str:
    return resources.files("digitlab.run").joinpath(name).read_text(encoding="utf-8")


def section(view: RunView) -> str:
    """The section's HTML: the canvas and its panels, the model as JSON and the scripts inlined; a note instead
    when the run has no model or the model is too big to embed."""
    head = f'<h2 id="{ANCHOR}">Draw a digit</h2>'
    try:
        model = view.model
        bytes_ = 4 * model.num_parameters() * 4 // 3
        if bytes_ > MAX_WEIGHT_BYTES:
            return (f'{head}<p class="note">This network is too big to embed in the page: its '
                    f"{plural(model.num_parameters(), 'parameter')} take {size_text(bytes_)} in base64, over the "
                    f"{MAX_WEIGHT_BYTES / 2**20:g} MB this page embeds. Draw your digit, save it as a PNG and ask "
                    "<code>digitlab predict</code> instead.</p>")
        data = spec(view)
    except UserError as exc:
        text = "Drawing needs the trained network (model.npz), which this run does not have." \
            if not (view.run / layout.MODEL).exists() else f"Drawing is not available: {exc}"
        return f'{head}<p class="note">{html.esc(text)}</p>'
    only = knows_only(view.classes)
    knows = f" {only[0].upper()}{only[1:]}: whatever you draw, it answers one of those." if only else ""
    return "\n".join([
        head,
        f'<p class="note">Draw with the mouse, a pen or a finger. The network runs in this page (its weights are '
        f"embedded), on the image made from your drawing as <code>digitlab predict</code> makes one from a photo: "
        f"the ink's box scaled and centred as the dataset's digits are.{html.esc(knows)}</p>",
        '<div id="draw-app"></div>',
        embedded(data),
        *(f"<script>{script(name)}</script>" for name in SCRIPTS),
    ])
