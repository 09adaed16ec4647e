"""Models fitted in one pass: the class means (average_image scores by dot product, nearest_mean by distance) by
hand, their gradients against central differences, and both on the 8x8 digits against the course notebook's
number."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import train

from digitlab.nn import ClassMeans, Sequential


def test_class_means_by_hand():
    """Two classes in two dimensions: means (2, 0) and (0, 1). The point (1, 1) has dot products 2 and 1 (class 0
    by the average-image rule) but squared distances 2 and 1 (class 1 for the nearest mean)."""
    x = np.array([[1, 0], [3, 0], [0, 1], [0, 1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    for metric, expected in (("dot", [2.0, 1.0]), ("euclidean", [2 * 2 - 4, 2 * 1 - 1])):
        layer = ClassMeans(2, metric)
        model = Sequential([layer], (2,))
        model.fit(x, y)
        np.testing.assert_array_equal(layer.weight.data.T, [[2, 0], [0, 1]])
        with model.evaluating():
            scores = model.forward(np.array([[1, 1]], dtype=np.float32))
        np.testing.assert_allclose(scores[0], expected)
    assert np.argmax([2.0, 1.0]) == 0 and np.argmax([0.0, 1.0]) == 1


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_class_means_gradients(metric, check_layer):
    check_layer(ClassMeans(3, metric), (5,), 4)


def test_average_image_and_nearest_mean_on_the_8x8_digits(average_image_run, tmp_path):
    accuracy = {}
    for model in ("average_image", "nearest_mean"):
        run = average_image_run if model == "average_image" else train(
            {"name": model, "data": {"dataset": "digits8x8", "test": 0.2}, "model": model}, tmp_path / "runs")[0]
        assert (run / "means.png").stat().st_size > 0 and (run / "confusion.csv").is_file()
        assert len((run / "metrics.csv").read_text().splitlines()) == 2  # one pass: one row
        accuracy[model] = json.loads((run / "summary.json").read_text())["test_accuracy"]
    assert accuracy["average_image"] > 0.853  # the notebook's number
    assert accuracy["nearest_mean"] > 0.853
