"""Draw a digit on report.html: the page's JavaScript classifies every test image as the engine does (within 1e-4,
the same accuracy) for a dense 3-vs-8 net, a ten-digit MLP, configs/mnist10-cnn-small.yaml's network, an MLP on
the 8x8 digits and a class-means model, and random networks of every layer type; a stroke drawn with the mouse is
made into the image `digitlab predict` makes of the same drawing saved as a PNG; a vertical stroke reads as 1; the
page works from file://, inside an iframe served over http, and at a phone's width.

The ten-digit runs train on a real slice of MNIST (the first 3,000 training and 1,000 test images, written as an
IDX folder) so that the page classifies every test image in a second.
"""

from __future__ import annotations

import base64
import functools
import gzip
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import idx_bytes, train

from digitlab.data import open_source
from digitlab.data.mnist import MNIST
from digitlab.data.photo import read_grey, to_digit
from digitlab.figures import html
from digitlab.nn import build_model
from digitlab.nn.metrics import class_probabilities
from digitlab.run import draw
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView

ROOT = Path(__file__).resolve().parent.parent
LIGHT = {"outputs": "light", "seed": 0, "batch_size": 64}

# Every test image of the run through window.digitlab.classify, the images passed as their integer pixels.
CLASSIFY_ALL = """([b64, pixelMax, n]) => {
  const bin = atob(b64), px = bin.length / n, scale = Math.fround(1 / pixelMax), out = [], img = new Float32Array(px);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < px; i++) img[i] = Math.fround(bin.charCodeAt(k * px + i) * scale);
    out.push(...window.digitlab.classify(img));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def mnist_slice(tmp_path_factory) -> Path:
    """The first 3,000 training and 1,000 test images of the bundled MNIST as an IDX folder."""
    folder = tmp_path_factory.mktemp("mnist-slice")
    parts = MNIST().parts()
    for part, prefix, n in (("train", "train", 3000), ("test", "t10k", 1000)):
        images, labels = parts[part]
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:n]), mtime=0))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:n]), mtime=0))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_slice, tiny_run) -> dict[str, Path]:
    """The runs the page must agree with the engine on, each trained in a second or two (outputs: light)."""
    where = tmp_path_factory.mktemp("draw") / "runs"
    ten = {"path": str(mnist_slice), "validation": 0.1}
    cnn = yaml.safe_load((ROOT / "configs" / "mnist10-cnn-small.yaml").read_text())
    configs = {
        "mlp10": {"name": "mlp10", "data": ten, "model": [{"linear": 64}, "relu", {"linear": 10}],
                  "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.003}, "epochs": 2},
        "cnn": {**cnn, "name": "cnn", "data": {**ten, "limit": 300}, "epochs": 1},
        "mlp8x8": {"name": "mlp8x8", "data": {"dataset": "digits8x8", "test": 0.2},
                   "model": [{"linear": 32}, "batchnorm", {"leaky_relu": 0.1}, {"dropout": 0.2}, {"linear": 16},
                             "tanh", {"linear": 10}], "loss": "cross_entropy",
                   "optimizer": {"name": "adam", "lr": 0.01}, "epochs": 2},
        "means8x8": {"name": "means8x8", "data": {"dataset": "digits8x8", "test": 0.2}, "model": "nearest_mean"},
    }
    out = {"3v8": tiny_run}
    for key, cfg in configs.items():
        out[key], _ = train({**LIGHT, **cfg}, where, "--quiet")
    return out


def drawing_page(run: Path) -> Path:
    """The run's drawing section on a page of its own (report.html holds the same section; making the whole report
    of a light run would draw every figure first)."""
    path = run / "draw.html"
    path.write_text(html.page("draw", draw.section(RunView(RunFolder.open(run)))))
    return path


def classify_all(page, view: RunView) -> np.ndarray:
    x = view.data.test.x
    pixel_max = open_source(view.cfg["data"]).pixel_max
    pixels = np.round(x.reshape(len(x), -1) * pixel_max).astype(np.uint8)
    got = page.evaluate(CLASSIFY_ALL, [base64.b64encode(pixels.tobytes()).decode(), pixel_max, len(x)])
    return np.array(got).reshape(len(x), -1)


def agrees_with_engine(page, run: Path) -> None:
    """classify() on every test image: the engine's probabilities within 1e-4, and the run's test accuracy."""
    view = RunView(RunFolder.open(run))
    assert page.evaluate("() => window.digitlab.classes") == view.classes
    got = classify_all(page, view)
    expected = class_probabilities(view.test["probabilities"])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    accuracy = float(np.mean(got.argmax(axis=1) == view.data.test.y))
    assert accuracy == pytest.approx(RunFolder.open(run).read_json("summary.json")["test_accuracy"], abs=1e-12)


def stroke(page, points: list[tuple[float, float]]) -> None:
    """Draw one stroke through `points`, given as fractions of the canvas's width and height."""
    box = page.locator("canvas#draw").bounding_box()
    at = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for a, b in zip(at, at[1:]):
        for t in np.linspace(0, 1, 6)[1:]:
            page.mouse.move(a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
    page.mouse.up()


def clear(page) -> None:
    page.get_by_role("button", name="Clear").click()


def as_predict_sees_it(page, tmp_path: Path, image_shape) -> tuple[np.ndarray, np.ndarray]:
    """(what the page gives the network, what digitlab predict makes of the canvas saved as a PNG)."""
    url = page.evaluate("() => document.getElementById('draw').toDataURL('image/png')")
    png = tmp_path / "drawn.png"
    png.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    seen = np.array(page.evaluate("() => Array.from(window.digitlab.seen())"), dtype=np.float32)
    return seen.reshape(image_shape), to_digit(read_grey(png), image_shape)


def same_image(seen: np.ndarray, predicted: np.ndarray) -> None:
    """Within one grey level on 99% of the pixels, and some ink."""
    assert predicted.max() > 0.5 and seen.max() > 0.5
    close = np.abs(seen - predicted) <= 1 / 255 + 1e-6
    assert close.mean() >= 0.99, f"{(~close).sum()} pixels differ by more than one grey level"


def test_report_html_draws_from_file_and_agrees_with_the_engine_on_a_3v8_net(page, tiny_run, tmp_path):
    """The run's own report.html (file://): the 784-8-2-1 sigmoid net's two probabilities sum to 1 and match the
    engine on every test image; a stroke updates the bars and the point in the plane; at a phone's width the
    canvas fits and the buttons are touch-sized."""
    page.goto((tiny_run / "report.html").resolve().as_uri())
    page.wait_for_selector("#draw-app[data-ready]")
    agrees_with_engine(page, tiny_run)
    page.locator("canvas#draw").scroll_into_view_if_needed()
    assert page.evaluate("() => window.digitlab.drawing()") is None
    stroke(page, [(0.5, 0.15), (0.5, 0.85)])
    p = page.evaluate("() => window.digitlab.drawing()")
    assert len(p) == 2 and sum(p) == pytest.approx(1)
    assert page.locator(".draw-plane canvas").count() == 1
    assert page.locator(".draw-bar").count() == 2
    page.set_viewport_size({"width": 390, "height": 844})
    page.locator("canvas#draw").scroll_into_view_if_needed()
    box = page.locator("canvas#draw").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    for name in ("Undo", "Clear", "Show me a test digit", "Show me a mistake"):
        button = page.get_by_role("button", name=name).bounding_box()
        assert button["height"] >= 44 and button["x"] + button["width"] <= 390, name
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


@pytest.mark.parametrize("name", ["mlp10", "cnn", "mlp8x8", "means8x8"])
def test_the_page_classifies_every_test_image_as_the_engine_does(page, runs, name):
    page.goto(drawing_page(runs[name]).as_uri())
    page.wait_for_selector("#draw-app[data-ready]")
    agrees_with_engine(page, runs[name])
    page.get_by_role("button", name="Show me a test digit").click()
    assert page.locator(".draw-status").inner_text().startswith("test image")
    expected = class_probabilities(RunView(RunFolder.open(runs[name])).test["probabilities"])
    row = int(page.locator(".draw-status").inner_text().split()[2].rstrip(":"))
    np.testing.assert_allclose(page.evaluate("() => window.digitlab.drawing()"), expected[row], atol=1e-4)


def test_a_mouse_stroke_is_made_into_the_image_digitlab_predict_makes(page, runs, tmp_path):
    """The ten-digit MLP's page: strokes drawn with the mouse, saved as the canvas's PNG and read by digitlab predict's
    preprocessing, give the image the page gave the network; a vertical stroke reads as 1. The 8x8 page: the
    32x32 bitmap and its 4x4 blocks."""
    page.goto(drawing_page(runs["mlp10"]).as_uri())
    page.wait_for_selector("#draw-app[data-ready]")
    page.locator("canvas#draw").scroll_into_view_if_needed()
    stroke(page, [(0.5, 0.15), (0.52, 0.85)])
    p = page.evaluate("() => window.digitlab.drawing()")
    assert int(np.argmax(p)) == 1, p
    same_image(*as_predict_sees_it(page, tmp_path, (1, 28, 28)))
    clear(page)
    stroke(page, [(0.3, 0.3), (0.45, 0.2), (0.62, 0.25), (0.6, 0.45), (0.35, 0.75), (0.3, 0.8), (0.7, 0.78)])
    same_image(*as_predict_sees_it(page, tmp_path, (1, 28, 28)))
    clear(page)
    stroke(page, [(0.02, 0.02), (0.98, 0.03)])  # along the top edge: the border is uneven, predict evens it out
    stroke(page, [(0.5, 0.1), (0.5, 0.9)])
    same_image(*as_predict_sees_it(page, tmp_path, (1, 28, 28)))

    page.goto(drawing_page(runs["mlp8x8"]).as_uri())
    page.wait_for_selector("#draw-app[data-ready]")
    page.locator("canvas#draw").scroll_into_view_if_needed()
    stroke(page, [(0.35, 0.2), (0.65, 0.2), (0.45, 0.8)])
    same_image(*as_predict_sees_it(page, tmp_path, (1, 8, 8)))


def test_every_layer_type_runs_in_the_page_as_in_the_engine(page, tmp_path):
    """Random networks with every layer digitlab has (convolutions with stride and same padding, both poolings,
    batch norm on maps and units with random statistics, every activation, dropout, flatten, softmax as a layer,
    both class-means metrics, a sigmoid output) give the engine's outputs for random images."""
    rng = np.random.default_rng(0)
    models = {
        "cnn": [{"conv2d": {"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}}, "batchnorm",
                {"leaky_relu": 0.2}, {"avgpool2d": 2}, {"conv2d": {"filters": 5, "kernel": 2, "bias": False}},
                "tanh", {"maxpool2d": {"size": 2, "stride": 1}}, "flatten", {"dropout": 0.5}, {"linear": 6},
                "batchnorm", "sigmoid", {"linear": 3}, "softmax"],
        "one_unit": [{"dropout": 0.1}, {"linear": 5}, "relu", {"linear": 1}, "sigmoid"],
        "dot": [("flatten", {}), ("class_means", {"units": 4, "metric": "dot"})],
        "euclidean": [("flatten", {}), ("class_means", {"units": 4, "metric": "euclidean"})],
    }
    for name, layers in models.items():
        specs = [layer if isinstance(layer, tuple) else _pair(layer) for layer in layers]
        model = build_model(specs, (1, 16, 16))
        model.reset_parameters(rng)
        for p in model.parameters():
            p.data[...] = rng.normal(0, 0.5, p.shape)
        for key, buffer in model.buffers().items():
            variance = key.endswith("var")
            buffer[...] = rng.uniform(0.5, 1.5, buffer.shape) if variance else rng.normal(0, 0.3, buffer.shape)
        classes = list(range(max(model.out_shape[0], 2)))
        (tmp_path / f"{name}.html").write_text(html.page(name, draw.embedded(draw.network(model, classes, (1, 16, 16)))
                                                          + f"<script>{draw.script('draw.js')}</script>"))
        page.goto((tmp_path / f"{name}.html").as_uri())
        x = rng.uniform(0, 1, (8, 1, 16, 16)).astype(np.float32)
        got = page.evaluate("xs => xs.map(x => window.digitlab.classify(Float32Array.from(x)))",
                            x.reshape(8, -1).tolist())
        expected = class_probabilities(model.predict(x.reshape((8,) + model.in_shape)))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)


def _pair(layer) -> tuple[str, dict]:
    """A config's layer entry ('relu', {'linear': 6}, {'maxpool2d': {'size': 3}}) as (name, options)."""
    if isinstance(layer, str):
        return layer, {}
    (name, value), = layer.items()
    if isinstance(value, dict):
        return name, value
    first = {"linear": "units", "leaky_relu": "slope", "dropout": "p", "avgpool2d": "size", "maxpool2d": "size"}
    return name, {first[name]: value}


def test_the_drawing_works_in_an_iframe_served_over_http(page, runs):
    """The dashboard shows report.html in an iframe served over http: drawing in the frame classifies there."""
    folder = runs["mlp10"]
    drawing_page(folder)
    (folder / "frame.html").write_text('<!DOCTYPE html><link rel="icon" href="data:,">'
                                       '<iframe src="draw.html" width="1100" height="800"></iframe>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/frame.html")
        frame = page.frame_locator("iframe")
        frame.locator("#draw-app[data-ready]").wait_for()
        box = frame.locator("canvas#draw").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 0.15 * box["height"])
        page.mouse.down()
        for t in np.linspace(0.15, 0.85, 8):
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + t * box["height"])
        page.mouse.up()
        p = page.frames[1].evaluate("() => window.digitlab.drawing()")
        assert int(np.argmax(p)) == 1, p
    finally:
        server.shutdown()
        server.server_close()


def test_a_run_without_a_model_or_with_one_too_big_gets_a_note_instead(tiny_run, copy_run, monkeypatch):
    view = RunView(RunFolder.open(tiny_run))
    monkeypatch.setattr(draw, "MAX_WEIGHT_BYTES", 1000)
    text = draw.section(view)
    assert "too big to embed" in text and "draw-model" not in text
    monkeypatch.undo()
    run = copy_run(tiny_run)
    (run / "model.npz").unlink()
    text = draw.section(RunView(RunFolder.open(run)))
    assert "needs the trained network (model.npz)" in text and "draw-model" not in text
