"""What the course notebooks did, now in digitlab: the 8x8 digits (against the facts of their README), a test split
for a dataset without one, the average-image and nearest-mean classifiers, Adadelta and RMSprop, a learning rate
per layer, early stopping, and a look at the data."""

from __future__ import annotations

import gzip
import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.config import load_config, validate
from digitlab.data import digits8x8 as d8
from digitlab.data import load_data
from digitlab.errors import ConfigError, DataError
from digitlab.nn import SGD, Adadelta, ClassMeans, Parameters, RMSprop, Sequential
from digitlab.run.setup import prepare

COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
IMAGE0 = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
          [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
          [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- the 8x8 digits --------------------------------------------------------------------------------------------------
def test_the_8x8_digits_against_their_readme():
    images, labels = d8.read_digits_csv()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == COUNTS
    assert labels[:10].tolist() == list(range(10)) and labels[-5:].tolist() == [9, 0, 8, 9, 8]
    assert images[0].tolist() == IMAGE0
    assert images.min() == 0 and images.max() == 16


@pytest.mark.parametrize("damage", ["truncate", "one byte"])
def test_a_damaged_8x8_file_is_refused_with_one_line(tmp_path, damage):
    raw = gzip.decompress(d8.FILE.read_bytes())
    path = tmp_path / "digits.csv.gz"
    if damage == "truncate":
        path.write_bytes(d8.FILE.read_bytes()[:5000])
    else:
        path.write_bytes(gzip.compress(raw.replace(b"0,0,5,13", b"0,0,5,14", 1)))
    with pytest.raises(DataError) as error:
        d8.read_digits_csv(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert ("truncated" if damage == "truncate" else "md5") in str(error.value)


def test_the_test_split_is_stratified_the_same_for_every_seed_and_recorded(tmp_path):
    a = load_data({"dataset": "digits8x8", "digits": list(range(10)), "test": 0.2, "validation": 0.1},
                  np.random.default_rng(0))
    b = load_data({"dataset": "digits8x8", "digits": list(range(10)), "test": 0.2, "validation": 0.1},
                  np.random.default_rng(1))
    assert np.bincount(a.test.y).tolist() == [round(0.2 * c) for c in COUNTS]
    np.testing.assert_array_equal(a.indices["test"], b.indices["test"])  # every run tests on the same images
    assert not np.array_equal(a.indices["val"], b.indices["val"])  # the validation split follows the seed
    assert not set(a.indices["test"]) & (set(a.indices["train"]) | set(a.indices["val"]))
    assert a.image_shape == (1, 8, 8) and a.test.x.shape[1:] == (1, 8, 8) and a.train.x.max() == 1.0
    cfg = tmp_path / "avg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "avg", "data": {"dataset": "digits8x8", "test": 0.2},
                                   "model": "average_image"}))
    result = cli("train", cfg, "--runs-dir", tmp_path / "runs", "--quiet")
    run = Path(result.output.strip())
    with np.load(run / "splits.npz") as npz:
        np.testing.assert_array_equal(npz["test"], a.indices["test"])
    summary = json.loads((run / "summary.json").read_text())
    assert cli("evaluate", run).output.startswith(f"test_accuracy {summary['test_accuracy']:.6f}")


def test_data_test_is_for_datasets_without_a_test_split(write_config):
    with pytest.raises(ConfigError, match="data.test: expected a number in \\(0, 1\\), got 1.5"):
        validate({"data": {"dataset": "digits8x8", "test": 1.5}, "model": "average_image"}, "x.yaml")
    with pytest.raises(ConfigError, match="mnist has an official test split"):
        validate({"data": {"test": 0.2}, "model": "average_image"}, "x.yaml")
    assert validate({"data": {"dataset": "digits8x8"}, "model": "average_image"}, "x.yaml")["data"]["test"] == 0.2


@pytest.mark.parametrize("raw, key, words", [
    ({"data": {"dataset": "digit8x8"}}, "data.dataset", "did you mean 'digits8x8'?"),
    ({"data": {"dataset": "digits8x8", "digits": [3, 12]}}, "data.digits.1", "in [0, 9], got 12"),
    ({"data": {"dataset": "digits8x8"}, "model": [{"linear": {"units": 10, "lr_scale": 0}}]},
     "model.0.linear.lr_scale", "expected a number > 0, got 0"),
    ({"data": {"dataset": "digits8x8"}, "early_stopping": True}, "early_stopping.monitor", "needs a validation split"),
    ({"data": {"dataset": "digits8x8"}, "model": [{"conv2d": {"filters": 4, "kernel": 9}}, "flatten",
                                                  {"linear": 10}]}, "model.0", "does not fit its 8x8 input"),
    ({"data": {"dataset": "digits8x8"}, "model": "average_image", "epochs": 5}, "epochs", "epochs must be 1"),
])
def test_bad_input_for_the_new_options_is_one_line(raw, key, words):
    raw = {"model": [{"linear": 10}], **raw}
    with pytest.raises(ConfigError) as error:
        validate(raw, "x.yaml")
    assert error.value.key == key and words in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_a_model_of_the_8x8_digits_is_refused_for_mnist(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump({"name": "small", "data": {"dataset": "digits8x8"}, "model": [{"linear": 10}],
                                   "epochs": 1}))
    run = Path(cli("train", cfg, "--runs-dir", tmp_path / "runs", "--quiet").output.strip())
    edited = yaml.safe_load((run / "config.yaml").read_text())
    edited["data"].update(dataset="mnist", test=None)
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    result = cli("evaluate", run)
    assert result.exit_code == 2 and "model.npz: damaged (belongs to another run" in result.output


# -- models fitted in one pass ---------------------------------------------------------------------------------------
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


def test_average_image_and_nearest_mean_on_the_8x8_digits(tmp_path):
    accuracy = {}
    for model in ("average_image", "nearest_mean"):
        cfg = tmp_path / f"{model}.yaml"
        cfg.write_text(yaml.safe_dump({"name": model, "data": {"dataset": "digits8x8", "test": 0.2}, "model": model}))
        result = cli("train", cfg, "--runs-dir", tmp_path / "runs")
        assert result.exit_code == 0, result.output
        run = Path(result.output.strip().splitlines()[-1])
        assert (run / "means.png").stat().st_size > 0 and (run / "confusion.csv").is_file()
        assert len((run / "metrics.csv").read_text().splitlines()) == 2  # one pass: one row
        accuracy[model] = json.loads((run / "summary.json").read_text())["test_accuracy"]
    assert accuracy["average_image"] > 0.853  # the notebook's number
    assert accuracy["nearest_mean"] > 0.853


# -- optimizers and learning rates -----------------------------------------------------------------------------------
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


# -- early stopping ----------------------------------------------------------------------------------------------------
STOPPING = {"name": "stop", "seed": 0, "data": {"digits": [3, 8], "limit": 600, "validation": 0.2},
            "model": [{"linear": 32}, "relu", {"linear": 1}, "sigmoid"], "loss": "bce",
            "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9}, "epochs": 40, "batch_size": 50,
            "early_stopping": {"monitor": "val_loss", "patience": 3}}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stopping")
    cfg = folder / "stop.yaml"
    cfg.write_text(yaml.safe_dump(STOPPING))
    result = cli("train", cfg, "--runs-dir", folder / "runs")
    assert result.exit_code == 0, result.output
    return cfg, Path(result.output.strip().splitlines()[-1]), result.output


def metrics(run):
    import csv
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_early_stopping_stops_and_restores_the_best_weights(stopped):
    _, run, output = stopped
    rows = metrics(run)
    losses = [float(r["val_loss"]) for r in rows]
    best = int(np.argmin(losses)) + 1
    assert len(rows) == best + 3 < 40  # three epochs without improvement, then stop
    assert f"early stop after epoch {len(rows)}" in output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weights_epoch"] == best and summary["epochs"] == len(rows)
    # model.npz holds the best epoch's weights: its test score is the one recorded at that epoch
    assert summary["test_accuracy"] == pytest.approx(float(rows[best - 1]["test_accuracy"]), abs=1e-6)
    assert summary["val_loss"] == pytest.approx(losses[best - 1], abs=1e-6)


def test_early_stopping_survives_a_kill_and_resume(stopped, tmp_path, kill_run):
    cfg, straight, _ = stopped
    kill_at = len(metrics(straight)) - 2  # after the best epoch, while it is counting the epochs that do not improve
    run = tmp_path / "run"
    child = kill_run(cfg, run, "after-epoch", kill_at)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert cli("train", "--resume", run, "--quiet").exit_code == 0
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(metrics(run)) == strip(metrics(straight))
    with np.load(run / "model.npz") as a, np.load(straight / "model.npz") as b:
        for key in a.files:
            if key != "__architecture__":
                np.testing.assert_array_equal(a[key], b[key])


# -- a look at the data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--dataset", "digits8x8"], ["digit", "train", "test", "1,438", "359"]),
    (["--dataset", "mnist", "--digits", "3,8", "--validation", "0.1"], ["10,784", "1,198", "1,984"]),
])
def test_digitlab_data_prints_the_splits_and_writes_its_figures(tmp_path, args, expected):
    result = cli("data", *args, "--out", tmp_path / "look")
    assert result.exit_code == 0, result.output
    for words in expected:
        assert words in result.output
    for name in ("samples.png", "counts.png", "means.png", "pixels.png"):
        assert (tmp_path / "look" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digitlab_data_from_a_config_and_its_mistakes(tmp_path):
    result = cli("data", "configs/3v8.yaml", "--out", tmp_path / "look")
    assert result.exit_code == 0 and "5,518" in result.output  # threes in the training split
    bad = cli("data", "--dataset", "digits9x9", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "did you mean 'digits8x8'" in bad.output


def test_shipped_notebook_configs_name_the_notebook_number():
    folder = Path(__file__).resolve().parents[1] / "configs" / "seeds"
    configs = sorted(folder.glob("*.yaml"))
    assert {p.stem for p in configs} >= {"kudzu-3v8-mse", "kudzu-3v8-logreg", "scratch-mlp", "keras-logreg",
                                         "keras-mlp", "keras-cnn", "digits8x8-average", "digits8x8-mlp"}
    for path in configs:
        assert "notebook" in path.read_text().splitlines()[0].lower(), path
        load_config(path)
