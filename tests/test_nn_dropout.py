"""Dropout is inverted (PyTorch's p is the probability of dropping): identity in evaluation, and in training it
drops about p of the units and scales the survivors so that the expected output equals the input."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.nn import Dropout, build_model


def dropout(p, seed=0):
    layer = Dropout(p)
    layer.rng = np.random.default_rng(seed)
    return layer


def test_eval_mode_is_the_identity():
    layer = dropout(0.5)
    layer.training = False
    x = np.random.default_rng(1).normal(size=(4, 50)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x), x)
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g), g)


def test_p_zero_is_the_identity_in_training():
    layer = dropout(0.0)
    x = np.random.default_rng(1).normal(size=(4, 50)).astype(np.float32)
    np.testing.assert_array_equal(layer.forward(x), x)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8])
def test_train_mode_drops_about_p_and_keeps_the_expectation(p):
    layer = dropout(p)
    x = np.full((200, 1000), 2.0, dtype=np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32
    dropped = np.mean(y == 0)
    assert dropped == pytest.approx(p, abs=0.01)  # 200,000 units: the standard error is ~0.001
    assert y.mean() == pytest.approx(2.0, rel=0.02)
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 2.0 / (1 - p), rtol=1e-4)  # survivors scaled by 1 / (1 - p)
    # backward uses the same mask
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g == 0, y == 0)


def test_masks_change_from_batch_to_batch():
    layer = dropout(0.5)
    x = np.ones((10, 100), dtype=np.float32)
    assert np.any(layer.forward(x) != layer.forward(x))


def test_model_eval_turns_dropout_off_and_train_turns_it_on():
    model = build_model([("linear", {"units": 50}), ("dropout", {"p": 0.5}), ("linear", {"units": 3})], (1, 4, 4))
    model.reset_parameters(np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(size=(8, 16)).astype(np.float32)
    model.eval()
    np.testing.assert_array_equal(model.forward(x), model.forward(x))
    model.train()
    assert np.any(model.forward(x) != model.forward(x))
    # predict is in evaluation mode and leaves the model as it was
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    assert model.training and model.layers[1].training


@pytest.mark.parametrize("p", [0.99999, 0.999999, 1 - 1e-12])
def test_p_just_below_one_is_valid(p):
    """The config allows any p in [0, 1): even one that rounds to the last 16-bit threshold must build and run."""
    layer = dropout(p)
    y = layer.forward(np.ones((4, 1000), dtype=np.float32))
    assert np.all(np.isfinite(y)) and np.mean(y == 0) > 0.99
