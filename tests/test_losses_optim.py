"""Losses against values worked by hand, their stability at extreme logits, and optimizer steps by hand (SGD, Adam,
RMSprop, Adadelta, AdamW), per-layer learning rates (lr_scale) and schedules.

Hand values use ln 2, ln 3 and ln 4 so that every probability is a simple fraction:
sigmoid(ln 3) = 3/4, softmax([0, ln 3]) = [1/4, 3/4].
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from digitlab.config import validate
from digitlab.errors import ConfigError
from digitlab.nn import SGD, Adadelta, Adam, BCELoss, CrossEntropyLoss, MSELoss, Parameters, RMSprop, predict_classes
from digitlab.nn import functional as F
from digitlab.nn.schedules import CosineLR, Schedule, StepLR

LN2, LN3 = math.log(2), math.log(3)


def f32(rows):
    return np.array(rows, dtype=np.float32)


# -- losses by hand -------------------------------------------------------------------------------------------------
def test_mse_by_hand():
    loss = MSELoss()
    # differences 1, 0, 2, 3 -> squares 1, 0, 4, 9 -> mean 14 / 4
    assert loss.forward(f32([[1, 2], [3, 4]]), f32([[0, 2], [1, 1]])) == pytest.approx(3.5)
    grad = loss.backward()  # 2 * diff / 4
    np.testing.assert_allclose(grad, [[0.5, 0.0], [1.0, 1.5]], rtol=1e-6)
    assert grad.dtype == np.float32


def test_bce_on_logits_by_hand():
    loss = BCELoss()
    # row 1: z = 0, t = 1 -> -ln(1/2) = ln 2;  row 2: z = ln 3 (p = 3/4), t = 0 -> -ln(1/4) = 2 ln 2
    value = loss.forward(f32([[0.0], [LN3]]), f32([[1], [0]]))
    assert value == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-6)
    grad = loss.backward()  # (p - t) / 2 = [(1/2 - 1) / 2, (3/4 - 0) / 2]
    np.testing.assert_allclose(grad, [[-0.25], [0.375]], rtol=1e-6)
    assert grad.dtype == np.float32


def test_bce_equals_the_textbook_formula_on_sigmoid_outputs():
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(7, 3)), rng.integers(0, 2, size=(7, 3)).astype(float)
    p = 1 / (1 + np.exp(-z))
    textbook = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert BCELoss().forward(z, t) == pytest.approx(textbook, rel=1e-12)


def test_cross_entropy_on_logits_by_hand():
    loss = CrossEntropyLoss()
    # row 1: softmax([0, ln 3]) = [1/4, 3/4], target 0 -> ln 4;  row 2: [1/2, 1/2], target 1 -> ln 2
    value = loss.forward(f32([[0.0, LN3], [0.0, 0.0]]), np.array([0, 1]))
    assert value == pytest.approx((2 * LN2 + LN2) / 2, rel=1e-6)
    grad = loss.backward()  # (softmax - onehot) / 2
    np.testing.assert_allclose(grad, [[-0.375, 0.375], [0.25, -0.25]], rtol=1e-6)
    assert grad.dtype == np.float32


def test_cross_entropy_three_classes_by_hand():
    # logits [1, 2, 3], target 2: ln(e + e^2 + e^3) - 3 = ln(1 + e^-1 + e^-2) = ln(1.503214724) = 0.4076060
    assert CrossEntropyLoss().forward(f32([[1, 2, 3]]), np.array([2])) == pytest.approx(0.4076060, rel=1e-6)


def test_targets_follow_the_course_labels():
    y = np.array([0, 1, 1, 0])  # class 0 is the first digit listed (3 in 3-vs-8)
    np.testing.assert_array_equal(BCELoss().targets(y, 1), [[1], [0], [0], [1]])
    np.testing.assert_array_equal(MSELoss().targets(y, 2), [[1, 0], [0, 1], [0, 1], [1, 0]])
    assert BCELoss().targets(y, 1).dtype == np.float32
    ce = CrossEntropyLoss().targets(y, 2)
    assert ce.dtype == np.int64 and list(ce) == [0, 1, 1, 0]
    # predictions: one output >= 0.5 is class 0; several outputs: the argmax
    np.testing.assert_array_equal(predict_classes(f32([[0.9], [0.5], [0.49]])), [0, 0, 1])
    np.testing.assert_array_equal(predict_classes(f32([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])), [1, 0])


# -- stability ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def strict():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yield


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_at_huge_logits(dtype, strict):
    out = F.sigmoid(np.array([-1000, -50, 0, 50, 1000], dtype=dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1], atol=1e-15)
    assert out[0] == 0 and out[-1] == 1


def test_bce_at_logits_plus_minus_1000(strict):
    loss = BCELoss()
    z = f32([[1000], [-1000], [1000], [-1000]])
    # right and confident: 0; wrong and confident: 1000 each -> mean 500
    assert loss.forward(z, f32([[1], [0], [0], [1]])) == pytest.approx(500.0)
    grad = loss.backward()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0], [0], [0.25], [-0.25]], atol=1e-7)
    assert loss.forward(z[:2], f32([[1], [0]])) == 0.0


def test_softmax_and_cross_entropy_at_huge_logits(strict):
    p = F.softmax(f32([[1000, 0, -1000], [1e30, 1e30, 0]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(F.log_softmax(f32([[1000, 0]])), [[0, -1000]], atol=1e-4)
    loss = CrossEntropyLoss()
    assert loss.forward(f32([[1000, -1000], [1000, -1000]]), np.array([0, 1])) == pytest.approx(1000.0)
    grad = loss.backward()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0], [0.5, -0.5]], atol=1e-7)


def test_softplus_and_logsumexp_are_finite(strict):
    np.testing.assert_allclose(F.softplus(np.array([-1000.0, 0.0, 1000.0])), [0, LN2, 1000])
    np.testing.assert_allclose(F.logsumexp(np.array([[1000.0, 1000.0]])), [[1000 + LN2]])


# -- optimizers -------------------------------------------------------------------------------------------------------
def make_params(values, grads, dtype=np.float32):
    params = Parameters({"0.weight": (len(values) - 1,), "0.bias": (1,)}, dtype)
    params.data[...] = values
    params.grad[...] = grads
    return params


P0, G0 = [1.0, 2.0, 3.0], [0.5, -1.0, 2.0]


def steps(optimizer, params, n, grad=G0):
    """n optimizer steps, each after a 'backward' that writes `grad` (the loop's backward overwrites grads)."""
    data_before, grad_before = params.data, params.grad
    for _ in range(n):
        params.grad[...] = grad
        optimizer.step()
    assert params.data is data_before and params.grad is grad_before, "buffers must be updated in place"
    assert optimizer.p is params.data
    for p in params:
        assert np.shares_memory(p.data, params.data)
    assert params.data.dtype == np.float32
    return params.data


def test_sgd_plain_step():
    params = make_params(P0, G0)
    view = params.named["0.weight"].data
    steps(SGD(params, lr=0.1), params, 1)
    np.testing.assert_allclose(params.data, [0.95, 2.1, 2.8], rtol=1e-6)  # p - 0.1 g
    np.testing.assert_allclose(view, [0.95, 2.1], rtol=1e-6)  # the layer's view sees the update


def test_sgd_momentum_two_steps():
    params = make_params(P0, G0)
    # step 1: v = g -> p - 0.1 g = [0.95, 2.1, 2.8];  step 2: v = 0.9 g + g = 1.9 g -> p - 0.19 g
    np.testing.assert_allclose(steps(SGD(params, lr=0.1, momentum=0.9), params, 2), [0.855, 2.29, 2.42], rtol=1e-6)


def test_sgd_nesterov():
    params = make_params(P0, G0)
    # step 1: v = g, update g + 0.9 v = 1.9 g -> p - 0.19 g = [0.905, 2.19, 2.62]
    np.testing.assert_allclose(steps(SGD(params, lr=0.1, momentum=0.9, nesterov=True), params, 1),
                               [0.905, 2.19, 2.62], rtol=1e-6)
    params = make_params(P0, G0)
    # step 2: v = 0.9 g + g = 1.9 g, update g + 0.9 * 1.9 g = 2.71 g -> [0.905 - 0.1355, 2.19 + 0.271, 2.62 - 0.542]
    np.testing.assert_allclose(steps(SGD(params, lr=0.1, momentum=0.9, nesterov=True), params, 2),
                               [0.7695, 2.461, 2.078], rtol=1e-6)


def test_sgd_weight_decay():
    params = make_params(P0, G0)
    # g + 0.1 p = [0.6, -0.8, 2.3] -> p - 0.1 (g + 0.1 p) = [0.94, 2.08, 2.77]
    np.testing.assert_allclose(steps(SGD(params, lr=0.1, weight_decay=0.1), params, 1), [0.94, 2.08, 2.77], rtol=1e-6)


def test_adam_one_and_two_steps():
    # Step 1 (t = 1): m = 0.1 g, v = 0.001 g^2, so m / (1 - 0.9) = g and v / (1 - 0.999) = g^2: each element moves
    # by lr * sign(g) (a zero gradient does not move). p = [1, -2, 0.5], g = [0.5, -3, 0] -> [0.9, -1.9, 0.5].
    params = make_params([1.0, -2.0, 0.5], [0.5, -3.0, 0.0])
    adam = Adam(params, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    np.testing.assert_allclose(steps(adam, params, 1, grad=[0.5, -3.0, 0.0]), [0.9, -1.9, 0.5], rtol=1e-6)
    assert adam.steps == 1
    # Step 2 (t = 2), g = [-1, -3, 0]:
    #   element 0: m = 0.9 * 0.05 - 0.1 = -0.055, v = 0.999 * 0.00025 + 0.001 = 0.00124975;
    #     m / (1 - 0.81) = -0.289474, v / (1 - 0.998001) = 0.625188, sqrt 0.790688 -> p = 0.9 + 0.1 * 0.366104
    #   element 1: the same gradient twice: m-hat = -3, v-hat = 9 -> moves by lr again, -1.9 + 0.1
    np.testing.assert_allclose(steps(adam, params, 1, grad=[-1.0, -3.0, 0.0]), [0.9366104, -1.8, 0.5], rtol=1e-6)
    assert adam.steps == 2


def test_adam_weight_decay_is_added_to_the_gradient():
    params = make_params([2.0, -2.0, 0.0], [0.0, 0.0, 0.0])
    # g = 0 + 0.1 p: the first step moves each non-zero parameter by lr towards 0
    np.testing.assert_allclose(steps(Adam(params, lr=0.1, weight_decay=0.1), params, 1, grad=[0.0, 0.0, 0.0]),
                               [1.9, -1.9, 0.0], rtol=1e-6)


def test_optimizer_state_dict_round_trip():
    params = make_params(P0, G0)
    adam = Adam(params, lr=0.1)
    steps(adam, params, 2)
    state = adam.state_dict()
    assert int(state["steps"]) == 2 and set(state) == {"steps", "m", "v"}
    other = Adam(make_params(P0, G0), lr=0.1)
    other.load_state_dict(state)
    assert other.steps == 2
    np.testing.assert_array_equal(other.m, adam.m)
    state["m"][...] = 0  # a copy, not the live buffer
    assert np.any(adam.m != 0)


# -- schedules ---------------------------------------------------------------------------------------------------------
def test_schedules():
    assert Schedule(0.1, 10)(7.5) == 0.1
    cosine = CosineLR(0.1, 10)
    assert cosine(0) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.05) and cosine(10) == pytest.approx(0)
    step = StepLR(0.1, 30, step_size=10, gamma=0.1)
    assert step(9.9) == pytest.approx(0.1) and step(10) == pytest.approx(0.01) and step(25) == pytest.approx(0.001)
    warm = CosineLR(0.1, 10, warmup=2)
    assert warm(0) < 0.001 and warm(1) == pytest.approx(0.05, rel=1e-2) and warm(2) == pytest.approx(0.1)


# -- label smoothing, one cycle, AdamW, weight decay that skips biases -------------------------------------------
def test_cross_entropy_with_label_smoothing_by_hand_and_by_central_differences(numgrad):
    from digitlab.nn import CrossEntropyLoss
    loss = CrossEntropyLoss(label_smoothing=0.1)
    # z = [2, 0], target 0: logsumexp = log(e^2 + 1); the target is 0.95 / 0.05: picked = 0.9 * 2 + 0.1 * 1
    value = loss.forward(np.array([[2.0, 0.0]]), np.array([0]))
    assert value == pytest.approx(np.log(np.e ** 2 + 1) - 1.9)
    grad = loss.backward()
    p = np.exp(2) / (np.exp(2) + 1)
    np.testing.assert_allclose(grad, [[p - 0.95, (1 - p) - 0.05]], rtol=1e-6)
    rng = np.random.default_rng(0)
    z, t = 3 * rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    loss.forward(z, t)
    np.testing.assert_allclose(loss.backward(), numgrad(lambda: loss.forward(z, t), z), rtol=1e-5, atol=1e-7)
    assert CrossEntropyLoss().forward(np.array([[2.0, 0.0]]), np.array([0])) == pytest.approx(np.log(np.e ** 2 + 1) - 2)


def test_label_smoothing_in_a_config():
    from digitlab.config import validate
    from digitlab.run.setup import prepare
    cfg = validate({"data": {"digits": [3, 8], "limit": 100}, "model": [{"linear": 2}],
                    "loss": {"name": "cross_entropy", "label_smoothing": 0.1}}, "x.yaml")
    assert cfg["loss"] == {"name": "cross_entropy", "label_smoothing": 0.1}
    assert prepare(cfg).loss_fn.label_smoothing == 0.1
    with pytest.raises(ConfigError, match="loss.label_smoothing: expected a number in \\[0, 1\\)"):
        validate({"model": [{"linear": 10}], "loss": {"name": "cross_entropy", "label_smoothing": 1}}, "x.yaml")


def test_one_cycle_rises_to_the_peak_then_anneals():
    from digitlab.nn.schedules import OneCycleLR
    s = OneCycleLR(0.1, 10, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    assert s(0) == pytest.approx(0.1 / 25)
    assert s(1.5) == pytest.approx(0.1 / 25 + (0.1 - 0.1 / 25) * 0.5)  # halfway up: cosine at its middle
    assert s(3) == pytest.approx(0.1)
    assert s(10) == pytest.approx(0.1 / 25e4)
    values = [s(t / 10) for t in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1:peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1:]))


def test_adamw_decays_the_weights_apart_from_the_gradient():
    from digitlab.nn import AdamW
    params = Parameters({"w": (3,)})
    params.data[...] = [1.0, -2.0, 4.0]
    opt = AdamW(params, lr=0.1, weight_decay=0.5)
    params.grad[...] = 0.0  # Adam's own step is 0 / (0 + eps) = 0: only the decay moves the weights
    opt.step()
    np.testing.assert_allclose(params.data, np.array([1.0, -2.0, 4.0]) * (1 - 0.1 * 0.5), rtol=1e-6)


def test_decay_all_false_leaves_biases_and_batch_norm_alone():
    from digitlab.config import validate
    from digitlab.run.setup import prepare
    cfg = validate({"data": {"digits": [3, 8], "limit": 100}, "loss": "cross_entropy",
                    "model": [{"linear": 4}, "batchnorm", "relu", {"linear": 2}],
                    "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.5, "decay_all": False}}, "x.yaml")
    setup = prepare(cfg)
    for p in setup.model.parameters():
        p.data[...] = 1.0
    setup.model.parameters().grad[...] = 0.0
    setup.optimizer.step()
    state = setup.model.state_dict()
    np.testing.assert_allclose(state["0.weight"], 1 - 0.1 * 0.5)
    np.testing.assert_allclose(state["3.weight"], 1 - 0.1 * 0.5)
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):
        np.testing.assert_array_equal(state[name], 1.0)


# -- RMSprop, Adadelta and a learning rate per layer -----------------------------------------------------------------
def params(values):
    p = Parameters({"w": (len(values),)})
    p.data[...] = values
    return p


def test_rmsprop_first_steps_by_hand():
    """RMSprop's first step moves each weight by lr / sqrt(1 - alpha) against the sign of its gradient."""
    p = params([1.0, -2.0])
    opt = RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)
    p.grad[...] = [0.5, -1.0]
    opt.step()
    np.testing.assert_allclose(p.data, [0.9, -1.9], rtol=1e-6)
    p.grad[...] = [0.5, -1.0]  # v = 0.99 * 0.01 g^2 + 0.01 g^2 = 0.0199 g^2
    opt.step()
    np.testing.assert_allclose(p.data, [0.9 - 0.01 / math.sqrt(0.0199), -1.9 + 0.01 / math.sqrt(0.0199)], rtol=1e-6)
    with_momentum = params([1.0])
    opt = RMSprop(with_momentum, lr=0.01, alpha=0.99, momentum=0.5)
    for _ in range(2):
        with_momentum.grad[...] = [2.0]
        opt.step()
    # b1 = 10 (g / sqrt(0.01 g^2)); b2 = 0.5 * 10 + 2 / sqrt(0.0199 * 4)
    np.testing.assert_allclose(with_momentum.data, [1 - 0.01 * 10 - 0.01 * (5 + 1 / math.sqrt(0.0199))], rtol=1e-6)


def test_adadelta_first_steps_by_hand():
    p = params([1.0, -2.0])
    opt = Adadelta(p, lr=1.0, rho=0.95, eps=1e-7)
    g = np.array([0.5, -1.0])
    p.grad[...] = g
    opt.step()
    v = 0.05 * g * g
    d = np.sqrt(0 + 1e-7) / np.sqrt(v + 1e-7) * g
    np.testing.assert_allclose(p.data, [1.0, -2.0] - d, rtol=1e-6)
    u = 0.05 * d * d
    p.grad[...] = g
    opt.step()
    v = 0.95 * v + 0.05 * g * g
    d2 = np.sqrt(u + 1e-7) / np.sqrt(v + 1e-7) * g
    np.testing.assert_allclose(p.data, [1.0, -2.0] - d - d2, rtol=1e-6)


def test_lr_scale_changes_only_its_layers_update():
    from digitlab.run.setup import prepare

    def one_step(scale):
        cfg = validate({"data": {"digits": [3, 8], "limit": 100}, "loss": "cross_entropy",
                        "model": [{"linear": {"units": 5, "lr_scale": scale}}, "relu", {"linear": 2}],
                        "optimizer": {"name": "sgd", "lr": 0.1}}, "x.yaml")
        setup = prepare(cfg)
        before = setup.model.state_dict()
        x, y = setup.inputs(setup.data.train)[:20], setup.data.train.y[:20]
        setup.loss_fn.forward(setup.model.forward(x), y)
        setup.model.backward(setup.loss_fn.backward())
        setup.optimizer.step()
        return {k: v - before[k] for k, v in setup.model.state_dict().items()}

    plain, doubled = one_step(1.0), one_step(2.0)
    # p - 2s against 2 (p - s) - p in float32: equal up to the rounding of p
    np.testing.assert_allclose(doubled["0.weight"], 2 * plain["0.weight"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(doubled["0.bias"], 2 * plain["0.bias"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(doubled["2.weight"], plain["2.weight"])
    assert np.abs(plain["0.weight"]).max() > 0


def test_sgd_without_lr_scale_has_no_scale_array():
    assert SGD(params([1.0]), lr=0.1).lr_scale is None
