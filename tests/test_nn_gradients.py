"""Every layer's and loss's backward against central differences in float64, and a whole model through build_model.

A layer is checked through the scalar L = sum(G * layer(x)) for a random G, so dL/dy = G: its backward(G) must
equal the numerical dL/dx, and the gradients it writes must equal the numerical dL/dW and dL/db.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.nn import (
    BCELoss,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    build_model,
)
from digitlab.nn.base import Layer

RTOL, ATOL = 1e-5, 1e-7


SHAPES = [(1, 1, 1), (4, 3, 2), (7, 5, 6)]  # (batch, in, out)


@pytest.mark.parametrize("n, d_in, d_out", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(n, d_in, d_out, bias, check_layer):
    layer = check_layer(Linear(d_out, bias=bias), (d_in,), n)
    assert set(layer.params) == ({"weight", "bias"} if bias else {"weight"})
    assert layer.params["weight"].shape == (d_in, d_out)


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh, Softmax])
@pytest.mark.parametrize("n, width", [(1, 1), (3, 4), (6, 9)])
def test_activation(cls, n, width, check_layer):
    check_layer(cls(), (width,), n, seed=width)


@pytest.mark.parametrize("slope", [0.01, 0.2])
@pytest.mark.parametrize("n, width", [(1, 1), (3, 4), (6, 9)])
def test_leaky_relu(slope, n, width, check_layer):
    layer = check_layer(LeakyReLU(slope), (width,), n, seed=width)
    x = np.array([[-2.0, -0.5, 0.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(layer.forward(x), [[-2 * slope, -0.5 * slope, 0.0, 3.0]], rtol=1e-6)
    assert layer.forward(x).dtype == np.float32


def test_leaky_relu_in_a_config_trains_and_gets_he_init():
    from digitlab.config import validate
    from digitlab.run.setup import prepare
    cfg = validate({"data": {"digits": [3, 8], "limit": 200}, "model": [{"linear": 8}, {"leaky_relu": 0.1},
                    {"linear": 2}], "epochs": 1}, "leaky.yaml")
    assert cfg["model"][1] == {"leaky_relu": 0.1}
    setup = prepare(cfg)
    assert setup.model.layers[0].init == "he" and setup.model.layers[1].slope == 0.1


@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("n, width", [(4, 6), (10, 3)])
def test_dropout_train_mode_with_a_fixed_mask(p, n, width, check_layer):
    layer = Dropout(p)

    def same_mask():  # the same random bits at every forward: a fixed mask
        layer.rng = np.random.default_rng(11)

    check_layer(layer, (width,), n, before_forward=same_mask)
    assert layer.training
    assert (layer.mask == 0).any() and (layer.mask != 0).any(), "the check must see dropped and kept units"


@pytest.mark.parametrize("in_shape", [(3,), (2, 3, 4), (1, 5, 5)])
def test_flatten(in_shape, check_layer):
    check_layer(Flatten(), in_shape, 3)


def test_the_checker_catches_a_wrong_backward(check_layer):
    """A ReLU whose backward forgets the mask must fail the check: the check can fail."""
    class LeakyBackward(ReLU):
        def backward(self, grad):
            return grad

    with pytest.raises(AssertionError):
        check_layer(LeakyBackward(), (5,), 4)


# -- losses -----------------------------------------------------------------------------------------------------
def check_loss(loss, outputs, targets, numgrad):
    value = loss.forward(outputs, targets)
    assert isinstance(value, float) and np.isfinite(value)
    grad = loss.backward().copy()
    assert grad.shape == outputs.shape
    numerical = numgrad(lambda: loss.forward(outputs, targets), outputs)
    np.testing.assert_allclose(grad, numerical, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("n, k", [(1, 1), (5, 1), (4, 3), (8, 10)])
def test_mse(n, k, numgrad):
    rng = np.random.default_rng(k)
    check_loss(MSELoss(), rng.normal(size=(n, k)), rng.normal(size=(n, k)), numgrad)


@pytest.mark.parametrize("n, k", [(1, 1), (6, 1), (4, 3), (8, 10)])
@pytest.mark.parametrize("soft", [False, True])
def test_bce_on_logits(n, k, soft, numgrad):
    rng = np.random.default_rng(n + k)
    targets = rng.uniform(size=(n, k)) if soft else rng.integers(0, 2, size=(n, k)).astype(np.float64)
    check_loss(BCELoss(), 3 * rng.normal(size=(n, k)), targets, numgrad)


@pytest.mark.parametrize("n, k", [(3, 1), (1, 2), (6, 2), (5, 4), (9, 10)])
def test_cross_entropy_on_logits(n, k, numgrad):
    rng = np.random.default_rng(n * k)
    check_loss(CrossEntropyLoss(), 3 * rng.normal(size=(n, k)), rng.integers(0, k, size=n), numgrad)


# -- whole models -------------------------------------------------------------------------------------------------
MODELS = {
    "cross_entropy": [("flatten", {}), ("linear", {"units": 6}), ("relu", {}), ("dropout", {"p": 0.3}),
                      ("linear", {"units": 5}), ("tanh", {}), ("linear", {"units": 3})],
    "bce": [("linear", {"units": 5}), ("sigmoid", {}), ("linear", {"units": 2}),
            ("linear", {"units": 1, "bias": False}), ("sigmoid", {})],
    "mse": [("flatten", {}), ("affine", {"units": 4}), ("tanh", {}), ("dense", {"units": 3}), ("softmax", {})],
}
LOSS_CLASSES = {"cross_entropy": CrossEntropyLoss, "bce": BCELoss, "mse": MSELoss}


@pytest.mark.parametrize("loss_name", list(MODELS))
def test_whole_model_through_build_model(loss_name, numgrad):
    rng = np.random.default_rng(3)
    loss_fn = LOSS_CLASSES[loss_name]()
    model = build_model(MODELS[loss_name], (1, 4, 4), loss_fn.fuses, dtype=np.float64)
    model.reset_parameters(rng)
    model.parameters().data[...] = rng.normal(scale=0.7, size=model.num_parameters())
    assert model.parameters().data.dtype == np.float64
    if loss_fn.fuses is not None:  # the final activation is the loss's, not a layer the backward runs through
        assert isinstance(model.output_activation, loss_fn.fuses)
        assert not isinstance(model.layers[-1], loss_fn.fuses)
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]

    def fix_masks():
        for layer in dropouts:
            layer.rng = np.random.default_rng(5)

    n = 6
    x = rng.uniform(size=(n,) + model.in_shape)
    targets = loss_fn.targets(rng.integers(0, 3 if loss_name != "bce" else 2, size=n), model.out_shape[0])

    def loss():
        fix_masks()
        return loss_fn.forward(model.forward(x), targets)

    loss()
    model.backward(loss_fn.backward())
    analytic = model.parameters().grad.copy()
    assert np.any(analytic != 0)
    np.testing.assert_allclose(analytic, numgrad(loss, model.parameters().data), rtol=RTOL, atol=ATOL)
    # Backward overwrites the gradients: a second pass gives the same, not twice as much.
    loss()
    model.backward(loss_fn.backward())
    np.testing.assert_allclose(model.parameters().grad, analytic, rtol=1e-12, atol=0)


def test_named_parameters_are_views_of_the_flat_buffers():
    model = build_model(MODELS["cross_entropy"], (1, 4, 4), CrossEntropyLoss.fuses)
    params = model.parameters()
    assert params.data.dtype == np.float32 and params.grad.dtype == np.float32
    expected = 16 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3
    assert sum(p.data.size for p in params) == len(params) == model.num_parameters() == expected
    for p in params:
        assert np.shares_memory(p.data, params.data) and np.shares_memory(p.grad, params.grad)


def test_float32_forward_and_backward_stay_float32():
    rng = np.random.default_rng(0)
    for loss_name, specs in MODELS.items():
        loss_fn = LOSS_CLASSES[loss_name]()
        model = build_model(specs, (1, 4, 4), loss_fn.fuses)
        model.reset_parameters(rng)
        x = rng.uniform(size=(5,) + model.in_shape).astype(np.float32)
        out = model.forward(x)
        assert out.dtype == np.float32, loss_name
        loss_fn.forward(out, loss_fn.targets(np.arange(5) % 2, out.shape[1]))
        grad = loss_fn.backward()
        assert grad.dtype == np.float32, loss_name
        for layer in reversed(model.layers):
            grad = layer.backward(grad)
            if grad is not None:
                assert grad.dtype == np.float32, (loss_name, layer)
        assert model.predict(x).dtype == np.float32


def test_layer_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        Layer().forward(np.zeros((1, 1)))


def test_dropout_on_the_pixels_before_a_dense_layer_sees_flat_images():
    model = build_model([("dropout", {"p": 0.2}), ("linear", {"units": 3})], (1, 8, 8))
    assert model.in_shape == (64,)
    conv = build_model([("dropout", {"p": 0.2}), ("conv2d", {"filters": 2})], (1, 8, 8))
    assert conv.in_shape == (1, 8, 8)


def test_an_activation_before_max_pooling_runs_after_it_with_the_same_numbers(numgrad):
    """max(f(x)) = f(max(x)) for a non-decreasing f: the model runs the pooling first, and its outputs and its
    gradient with respect to the input are those of the layers in the order listed."""
    from digitlab.nn import MaxPool2d
    from digitlab.nn.model import execution_order
    rng = np.random.default_rng(3)
    layers = [ReLU(), MaxPool2d(2), Sigmoid(), MaxPool2d(2), Flatten()]
    assert execution_order(layers) == [1, 0, 3, 2, 4]
    model = Sequential(layers, (2, 8, 8), dtype=np.float64)
    x = rng.normal(size=(3, 2, 8, 8))
    plain = x
    for layer in (ReLU(), MaxPool2d(2), Sigmoid(), MaxPool2d(2), Flatten()):  # in the order listed, one by one
        Sequential([layer], plain.shape[1:], dtype=np.float64)
        plain = layer.forward(plain)
    np.testing.assert_array_equal(model.forward(x), plain)
    g = rng.normal(size=plain.shape)

    def loss():
        with model.evaluating():
            return float(np.sum(g * model.forward(x)))

    np.testing.assert_allclose(model.input_gradient(x, lambda out: g), numgrad(loss, x), rtol=1e-6, atol=1e-8)
