"""Convolution, max pooling and batch norm: backward against central differences in float64, forward against
plain loops, running statistics, saving buffers, shape errors as one-line config errors, and a tiny CNN trained
end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli

from digitlab.config import load_config
from digitlab.errors import ConfigError
from digitlab.nn import AvgPool2d, Conv2d, CrossEntropyLoss, MaxPool2d, Sequential, build_model
from digitlab.nn.normalization import BatchNorm
from digitlab.run.view import evaluate_run


def naive_conv(x, weight, bias, stride, pad):
    """Cross-correlation with a Python loop over output pixels (NCHW), the definition the layer must match."""
    top, bottom, left, right = pad
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    k = weight.shape[2]
    ho, wo = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    out = np.zeros((len(x), weight.shape[0], ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nckl,fckl->nf", window, weight) + bias
    return out


CONV_CASES = [  # (in_shape, options, out_shape)
    ((1, 6, 6), dict(filters=3, kernel=3), (3, 4, 4)),                           # one input channel
    ((2, 7, 6), dict(filters=4, kernel=3), (4, 5, 4)),
    ((2, 7, 6), dict(filters=3, kernel=3, stride=2), (3, 3, 2)),
    ((3, 5, 5), dict(filters=2, kernel=3, padding="same"), (2, 5, 5)),
    ((2, 7, 6), dict(filters=3, kernel=3, stride=2, padding="same"), (3, 4, 3)),
    ((2, 6, 7), dict(filters=2, kernel=4, padding="same"), (2, 6, 7)),           # odd padding: extra at bottom/right
    ((1, 8, 9), dict(filters=2, kernel=5, stride=3, padding="same"), (2, 3, 3)),
    ((2, 5, 5), dict(filters=2, kernel=2, bias=False), (2, 4, 4)),
]


@pytest.mark.parametrize("in_shape, opts, out_shape", CONV_CASES)
def test_conv2d_gradients(in_shape, opts, out_shape, check_layer):
    layer = check_layer(Conv2d(**opts), in_shape, 2)
    assert layer.build(in_shape) == out_shape


@pytest.mark.parametrize("in_shape, opts, out_shape", CONV_CASES)
def test_conv2d_forward_matches_loops(in_shape, opts, out_shape):
    rng = np.random.default_rng(1)
    layer = Conv2d(**opts)
    model = Sequential([layer], in_shape, dtype=np.float64)
    for p in model.parameters():
        p.data[...] = rng.normal(size=p.shape)
    x = rng.normal(size=(3,) + in_shape)
    bias = layer.bias.data if layer.bias is not None else 0.0
    expected = naive_conv(x, layer.weight.data, bias, layer.stride, layer.pad)
    assert expected.shape[1:] == out_shape
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)
    model.eval()  # evaluation convolves big batches a slice at a time: same numbers
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-12)


def test_evaluation_in_slices_equals_one_batch(monkeypatch):
    import digitlab.nn.model as model_module
    rng = np.random.default_rng(0)
    model = Sequential([Conv2d(4, 3, padding="same"), BatchNorm(), MaxPool2d(2)], (2, 6, 6))
    model.reset_parameters(rng)
    model.eval()
    x = rng.normal(size=(40, 2, 6, 6)).astype(np.float32)
    whole = model.forward(x)
    monkeypatch.setattr(model_module, "EVAL_ACTIVATION_BYTES", 1)  # slices of 16 images
    assert model.eval_chunk == 16
    np.testing.assert_allclose(model.forward(x), whole, rtol=1e-6)


@pytest.mark.parametrize("in_shape, size, stride", [((2, 6, 6), 2, None), ((3, 7, 5), 2, None),
                                                     ((2, 7, 7), 3, 2), ((1, 5, 6), 2, 1)])
def test_maxpool2d_gradients(in_shape, size, stride, check_layer):
    check_layer(MaxPool2d(size, stride), in_shape, 3)


@pytest.mark.parametrize("in_shape, size, stride", [((2, 6, 6), 2, None), ((3, 7, 5), 2, None),
                                                     ((2, 7, 7), 3, 2), ((1, 5, 6), 2, 1)])
def test_avgpool2d_gradients(in_shape, size, stride, check_layer):
    check_layer(AvgPool2d(size, stride), in_shape, 3)


def test_avgpool2d_forward_is_the_window_mean():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    layer = AvgPool2d(2)
    Sequential([layer], (1, 4, 4))
    np.testing.assert_allclose(layer.forward(x)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    overlapping = AvgPool2d(3, 1)
    Sequential([overlapping], (1, 4, 4))
    np.testing.assert_allclose(overlapping.forward(x)[0, 0], [[5, 6], [9, 10]])


def test_leaky_relu_and_avgpool2d_train_from_a_config(tmp_path, write_config):
    cfg = write_config({"name": "seams", "data": {"digits": [3, 8], "limit": 300, "validation": 0.1},
                        "model": [{"conv2d": {"filters": 4, "kernel": 3}}, "leaky_relu", {"avgpool2d": 2},
                                  "flatten", {"linear": 16}, {"leaky_relu": {"slope": 0.05}}, {"linear": 2}],
                        "optimizer": {"name": "adam", "lr": 0.01}, "epochs": 2, "batch_size": 50})
    result = cli("train", cfg, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    run = Path(result.output.strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8  # 300 images of 3 and 8, two epochs
    assert evaluate_run(run)["test_accuracy"] == summary["test_accuracy"]


def test_maxpool2d_forward_and_ties():
    x = np.array([[[[1, 2, 0, 0], [3, 4, 0, 0], [5, 5, 5, 5], [5, 5, 5, 5]]]], dtype=np.float32)
    layer = MaxPool2d(2)
    Sequential([layer], (1, 4, 4))
    np.testing.assert_array_equal(layer.forward(x), [[[[4, 0], [5, 5]]]])
    dx = layer.backward(np.ones((1, 1, 2, 2), np.float32))
    # a tie sends the gradient to the window's first maximum only, as PyTorch does
    np.testing.assert_array_equal(dx, [[[[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]]])


@pytest.mark.parametrize("hw", [8, 9])  # 9: a last row and column that no window reaches
def test_maxpool2d_in_threads_equals_one_thread(monkeypatch, hw):
    """A batch big enough to be split across threads gives the same output and gradient, bit for bit, as one
    thread; the output is the maximum of each 2x2 block, and each window's gradient lands once, on a maximum."""
    rng = np.random.default_rng(0)
    n, c = 160, 16  # 160 * 16 * 8 * 8 = 163,840 numbers: more than threads.MIN_CHUNK, so two slices
    x = rng.integers(0, 4, (n, c, hw, hw)).astype(np.float32)  # small integers: many ties
    g = rng.standard_normal((n, c, hw // 2, hw // 2)).astype(np.float32)
    results = []
    for count in ("1", "2"):
        monkeypatch.setenv("DIGITLAB_THREADS", count)
        layer = MaxPool2d(2)
        Sequential([layer], (c, hw, hw))
        results.append((layer.forward(x).copy(), layer.backward(g).copy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    m = hw // 2 * 2
    expected = x[:, :, :m, :m].reshape(n, c, m // 2, 2, m // 2, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(results[1][0], expected)
    dx = results[1][1]
    assert np.all(dx[:, :, m:] == 0) and np.all(dx[:, :, :, m:] == 0)
    # every window's gradient lands once, on a position holding the window's maximum
    windows = dx[:, :, :m, :m].reshape(n, c, m // 2, 2, m // 2, 2)
    np.testing.assert_allclose(windows.sum(axis=(3, 5)), g, rtol=0, atol=0)
    assert ((windows != 0).sum(axis=(3, 5)) <= 1).all()


@pytest.mark.parametrize("in_shape, n", [((5,), 6), ((3, 4, 5), 2), ((2, 3, 3), 1)])
def test_batchnorm_gradients_in_training(in_shape, n, check_layer):
    check_layer(BatchNorm(), in_shape, n)


def test_batchnorm_statistics_and_evaluation():
    rng = np.random.default_rng(0)
    layer = BatchNorm()
    model = Sequential([layer], (3, 4, 4), dtype=np.float64)
    model.reset_parameters(rng)
    layer.gamma.data[...] = [1.0, 2.0, 0.5]
    layer.beta.data[...] = [0.0, 1.0, -1.0]
    x = rng.normal(2.0, 3.0, size=(5, 3, 4, 4))
    y = model.forward(x)
    # training: each channel normalised over batch, rows and columns, then scaled and shifted
    z = (y - layer.beta.data[:, None, None]) / layer.gamma.data[:, None, None]
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(z.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    # running statistics move 0.1 of the way (PyTorch's momentum), with the unbiased variance
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mean)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var)
    # evaluation uses them, not the batch's statistics
    model.eval()
    x2 = rng.normal(size=(2, 3, 4, 4))
    expected = (x2 - layer.running_mean[:, None, None]) / np.sqrt(layer.running_var[:, None, None] + 1e-5)
    expected = expected * layer.gamma.data[:, None, None] + layer.beta.data[:, None, None]
    np.testing.assert_allclose(model.forward(x2), expected, rtol=1e-12)
    np.testing.assert_allclose(model.forward(x2[:1]), expected[:1], rtol=1e-12)  # independent of the batch


def test_batchnorm_dense_matches_per_feature_formula():
    rng = np.random.default_rng(2)
    layer = BatchNorm(momentum=0.5, eps=1e-3)
    Sequential([layer], (4,), dtype=np.float64).reset_parameters(rng)
    x = rng.normal(size=(8, 4))
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10)
    np.testing.assert_allclose(layer.running_mean, 0.5 * x.mean(0))


def conv_specs():
    return [("conv2d", {"filters": 4, "kernel": 3, "padding": "same"}), ("batchnorm", {}), ("relu", {}),
            ("maxpool2d", {"size": 2}), ("conv2d", {"filters": 6, "kernel": 3}), ("relu", {}),
            ("maxpool2d", {}), ("flatten", {}), ("linear", {"units": 5}), ("batchnorm", {}), ("relu", {}),
            ("linear", {"units": 3})]


def test_whole_cnn_gradients(numgrad):
    """A conv model through build_model in float64: every parameter's gradient against central differences."""
    rng = np.random.default_rng(0)
    loss_fn = CrossEntropyLoss()
    model = build_model(conv_specs(), (1, 12, 12), loss_fn.fuses, dtype=np.float64)
    model.reset_parameters(rng)
    assert model.in_shape == (1, 12, 12) and model.out_shape == (3,)
    x = rng.normal(size=(4, 1, 12, 12))
    y = np.array([0, 1, 2, 1])

    def loss():
        return float(loss_fn.forward(model.forward(x), y))

    loss()
    model.backward(loss_fn.backward())
    analytic = model.parameters().grad.copy()
    np.testing.assert_allclose(analytic, numgrad(loss, model.parameters().data), rtol=1e-5, atol=1e-8)


def test_default_init_is_he_through_batchnorm():
    model = build_model(conv_specs(), (1, 12, 12))
    assert model.layers[0].init == "he"   # conv -> batchnorm -> relu
    assert model.layers[4].init == "he"   # conv -> relu
    assert model.layers[8].init == "he"   # linear -> batchnorm -> relu
    assert model.layers[11].init == "xavier"
    first = model.layers[0]
    assert first.needs_input_grad is False
    model.forward(np.zeros((2, 1, 12, 12), dtype=np.float32))
    assert first.backward(np.ones((2,) + model.layer_shapes[0], dtype=np.float32)) is None  # no data gradient


def test_state_dict_keeps_running_statistics():
    rng = np.random.default_rng(0)
    model = build_model(conv_specs(), (1, 12, 12))
    model.reset_parameters(rng)
    model.forward(rng.random((4, 1, 12, 12), dtype=np.float32))
    state = model.state_dict()
    assert {"1.running_mean", "1.running_var", "9.running_mean", "9.running_var"} <= set(state)
    assert state["1.running_var"].dtype == np.float32
    other = build_model(conv_specs(), (1, 12, 12))
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.layers[1].running_mean, model.layers[1].running_mean)
    x = rng.random((3, 1, 12, 12), dtype=np.float32)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    del state["9.running_var"]
    with pytest.raises(ValueError, match="do not match"):
        other.load_state_dict(state)


def write(tmp_path: Path, model: list, **extra) -> Path:
    cfg = {"data": {"digits": [0, 1, 2], "limit": 60}, "model": model, "epochs": 1, **extra}
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("model, key, words", [
    ([{"conv2d": 4}, "relu", {"linear": 3}], "model.2", "linear expects flat inputs but receives shape (4, 26, 26); "
                                                         "add 'flatten' before it"),
    ([{"conv2d": {"filters": 4, "kernel": 3}}, {"maxpool2d": 2}, {"conv2d": {"filters": 4, "kernel": 15}}, "flatten",
      {"linear": 3}], "model.2", "kernel does not fit its 13x13 input"),
    (["flatten", {"conv2d": 4}, "flatten", {"linear": 3}], "model.1", "conv2d expects images"),
    ([{"linear": 10}, {"maxpool2d": 2}, {"linear": 3}], "model.1", "maxpool2d expects images"),
    ([{"conv2d": 4}, "flatten"], "model", "the last layer gives 2,704 outputs"),
    ([{"conv2d": {"filters": 4, "padding": "full"}}, "flatten", {"linear": 3}], "model.0.conv2d.padding",
     "expected one of valid, same"),
    ([{"conv2d": {"kernel": 3}}, "flatten", {"linear": 3}], "model.0.conv2d", "needs 'filters'"),
    ([{"conv2d": 0}, "flatten", {"linear": 3}], "model.0.conv2d", "expected a whole number >= 1"),
    ([{"conv2d": 2}, {"batchnorm": {"momentum": 2}}, "flatten", {"linear": 3}], "model.1.batchnorm.momentum",
     "in [0, 1]"),
])
def test_shape_and_option_mistakes_are_one_line_config_errors(tmp_path, model, key, words):
    path = write(tmp_path, model)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert info.value.key == key and words in message and "\n" not in message, message
    result = cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and key in result.output


def test_shorthands_and_overrides(tmp_path):
    path = write(tmp_path, [{"conv": 4}, {"maxpool": 2}, "batchnorm", "flatten", {"linear": 3}])
    cfg = load_config(path, ("model.0.conv.kernel=5", "model.1.maxpool.stride=1"))
    assert cfg["model"][:3] == [{"conv": {"filters": 4, "kernel": 5}}, {"maxpool": {"size": 2, "stride": 1}},
                                {"batchnorm": {"momentum": 0.1, "eps": 1e-5, "lr_scale": 1.0}}]


def test_tiny_cnn_trains_through_the_cli(tmp_path):
    """A conv model on 300 real MNIST images for one epoch: a complete run folder with filters.png, buffers in
    model.npz, and `digitlab evaluate` giving back the same test accuracy."""
    path = write(tmp_path, [{"conv2d": {"filters": 4, "kernel": 5}}, "batchnorm", "relu", {"maxpool2d": 2},
                            {"conv2d": {"filters": 8, "kernel": 3, "padding": "same"}}, "relu", {"maxpool2d": 2},
                            "flatten", {"linear": 3}],
                 optimizer={"name": "adam", "lr": 0.01}, batch_size=32)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"] = {"digits": [0, 1, 2], "limit": 300}
    path.write_text(yaml.safe_dump(cfg))
    result = cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, (result.output, result.exception)
    run = Path(result.stdout.splitlines()[-1])
    assert (run / "filters.png").stat().st_size > 0
    assert not (run / "augment.png").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.6  # three digits, 300 images, one epoch: far above chance
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        assert npz["0.weight"].shape == (4, 1, 5, 5) and "1.running_mean" in npz.files
        assert not np.allclose(npz["1.running_var"], 1)
    again = evaluate_run(run)
    assert again["test_accuracy"] == pytest.approx(summary["test_accuracy"])


@pytest.mark.slow
def test_killed_cnn_with_batchnorm_and_augmentation_resumes_exactly(tmp_path, kill_run, same_run):
    """Running statistics are in the checkpoint and augmentation draws from the checkpointed Generator, so a
    conv run SIGKILLed in the middle of epoch 2 and resumed ends exactly as one that never stopped."""
    import signal

    from digitlab.run.lifecycle import start as train

    cfg = {"name": "cnnresume", "seed": 1, "data": {"digits": [0, 1, 2], "limit": 240, "validation": 0.1,
                                                   "augment": {"shift": 2, "rotate": 10, "scale": 0.1}},
           "model": [{"conv2d": {"filters": 3, "kernel": 5}}, "batchnorm", "relu", {"maxpool2d": 2}, "flatten",
                     {"linear": 3}],
           "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine"},
           "epochs": 3, "batch_size": 20}
    path = tmp_path / "cnn.yaml"
    path.write_text(yaml.safe_dump(cfg))
    straight = train(load_config(path), run_dir=tmp_path / "straight", quiet=True).path
    run = tmp_path / "run"
    child = kill_run(path, run, "mid-epoch", 2)
    assert child.returncode == -signal.SIGKILL, child.stderr
    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "1.running_var" in same_run(run, straight)


def test_backward_after_an_evaluation_forward_is_an_error_not_stale_statistics():
    rng = np.random.default_rng(0)
    model = build_model(conv_specs(), (1, 12, 12))
    model.reset_parameters(rng)
    x = rng.random((4, 1, 12, 12), dtype=np.float32)
    with model.evaluating():
        out = model.forward(x)
    assert model.training  # the mode it had is back
    with pytest.raises(RuntimeError, match="training-mode forward"):
        model.backward(np.ones_like(out))
    model.forward(x)
    model.backward(np.ones_like(model.forward(x)))  # a training forward makes backward possible again
    with pytest.raises(RuntimeError):
        model.backward(np.ones_like(out))  # ...once


def test_input_gradient_in_evaluation_mode_matches_central_differences(numgrad):
    """Saliency's gradient: dL/dx through conv, batch norm (running statistics), ReLU, max pooling, dropout (off)
    and linear layers in evaluation mode, against central differences of the evaluation-mode output."""
    rng = np.random.default_rng(1)
    specs = conv_specs() + [("dropout", {"p": 0.5}), ("linear", {"units": 3})]
    model = build_model(specs, (1, 12, 12), dtype=np.float64)
    model.reset_parameters(rng)
    model.forward(rng.random((8, 1, 12, 12)))  # one training batch: running statistics move off 0 and 1
    x = rng.random((2, 1, 12, 12))
    g = rng.normal(size=(2, 3))
    grad = model.input_gradient(x, lambda out: g)
    assert grad.shape == x.shape and model.training and model.layers[0].needs_input_grad is False

    def loss():
        with model.evaluating():
            return float(np.sum(g * model.forward(x)))

    np.testing.assert_allclose(grad, numgrad(loss, x), rtol=1e-5, atol=1e-8)
