"""The inside views: layer health (dead ReLUs, saturated units, the one console warning), the 2-D plane recorded
through training, saliency against finite differences, activation maps; the records change nothing about
training, and a run killed at any point and resumed ends with the same records as one that never stopped."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.inside.health import alarm, layer_health
from digitlab.inside.maps import conv_maps
from digitlab.inside.saliency import saliency
from digitlab.nn import BCELoss, CrossEntropyLoss, MSELoss, build_model
from digitlab.nn.metrics import class_probabilities
from digitlab.run.records import read_embedding, read_health, snapshot_epochs

PLANE = {"name": "plane", "seed": 1, "data": {"digits": [3, 8], "validation": 0.1, "limit": 600},
         "model": [{"linear": 16}, "relu", {"dropout": 0.2}, {"linear": 2}, {"linear": 1}, "sigmoid"], "loss": "bce",
         "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 4, "batch_size": 50}


def train(tmp_path: Path, cfg: dict, *args: str):
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(main, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code in (0, 1), result.output
    return Path(result.output.strip().splitlines()[-1]), result


def model(layers, shape=(1, 6, 6), loss=CrossEntropyLoss, seed=0):
    m = build_model(layers, shape, loss.fuses, dtype=np.float64)
    m.reset_parameters(np.random.default_rng(seed))
    return m


def test_a_relu_that_never_fires_is_dead_and_a_pinned_sigmoid_is_saturated():
    m = model([("flatten", {}), ("linear", {"units": 4}), ("relu", {}), ("linear", {"units": 3}), ("sigmoid", {}),
               ("linear", {"units": 2})])
    m.layers[1].bias.data[:2] = -1e3  # units 0 and 1 of the ReLU never fire: dead
    m.layers[3].weight.data[:] = 0
    m.layers[3].bias.data[:] = [50, -50, 0]  # sigmoid units pinned to 1 and to 0; the third sits at 0.5
    x = np.random.default_rng(1).random((32, 1, 6, 6))
    rows = {r["name"]: r for r in layer_health(m, CrossEntropyLoss(), x, np.arange(32) % 2)}
    assert rows["2 relu"]["dead"] == 0.5 and rows["2 relu"]["saturated"] is None
    assert rows["4 sigmoid"]["saturated"] == pytest.approx(2 / 3) and rows["4 sigmoid"]["dead"] is None
    assert rows["5 linear"]["dead"] is None and rows["5 linear"]["grad_std"] > 0
    assert rows["1 linear"]["grad_std"] == 0  # nothing flows back through the zeroed weights of layer 3
    assert "out softmax" in rows and rows["out softmax"]["grad_std"] is None  # the fused head: no gradient taken
    assert "layer 4 sigmoid: 67% of its units are saturated" in alarm(list(rows.values()))
    m.layers[3].bias.data[:] = [50, 0, 0]
    assert alarm(layer_health(m, CrossEntropyLoss(), x, np.arange(32) % 2)) is None  # one third: not most


def test_a_confident_classifier_is_not_saturated():
    """An output unit near 1 for its class and near 0 for the others is working, not pinned."""
    m = model([("flatten", {}), ("linear", {"units": 2}), ("sigmoid", {})], loss=MSELoss)
    x = np.random.default_rng(2).random((40, 1, 6, 6))
    y = np.arange(40) % 2
    m.layers[1].weight.data[:] = 0
    m.layers[1].bias.data[:] = 0
    x[:, 0, 0, 0] = np.where(y == 0, 1.0, -1.0)  # one pixel tells the class; the weights make it decisive
    m.layers[1].weight.data[0] = [60, -60]
    rows = layer_health(m, MSELoss(), x, y)
    assert rows[-1]["name"] == "2 sigmoid" and rows[-1]["saturated"] == 0


def test_probing_leaves_training_exactly_as_it_was():
    """Evaluation mode: no draw from the dropout Generator, batch norm's running statistics untouched."""
    m = model([("conv2d", {"filters": 2, "kernel": 3}), ("batchnorm", {}), ("relu", {}), ("flatten", {}),
               ("dropout", {"p": 0.5}), ("linear", {"units": 3})])
    rng = m.layers[4].rng
    before_rng, before = rng.bit_generator.state, {k: v.copy() for k, v in m.state_dict().items()}
    x = np.random.default_rng(3).random((8, 1, 6, 6))
    layer_health(m, CrossEntropyLoss(), x, np.arange(8) % 3)
    saliency(m, x)
    conv_maps(m, x[0])
    assert rng.bit_generator.state == before_rng and m.training
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("loss,outputs", [(CrossEntropyLoss, 3), (BCELoss, 1)])
def test_saliency_is_the_gradient_of_the_predicted_score(numgrad, loss, outputs):
    m = model([("flatten", {}), ("linear", {"units": 5}), ("tanh", {}), ("linear", {"units": outputs})], loss=loss)
    x = np.random.default_rng(4).random((3, 1, 6, 6))
    grads, predicted = saliency(m, x)
    for i in range(3):
        xi, said = x[i:i + 1].copy(), int(predicted[i])

        def score(xi=xi, said=said):
            with m.evaluating():
                out = m.forward(xi)
            return out[0, said] if outputs > 1 else (out[0, 0] if said == 0 else -out[0, 0])
        np.testing.assert_allclose(grads[i:i + 1], numgrad(score, xi), rtol=1e-5, atol=1e-8)


def test_activation_maps_are_each_conv_blocks_output():
    m = model([("conv2d", {"filters": 3, "kernel": 3, "padding": "same"}), ("batchnorm", {}), ("relu", {}),
               ("maxpool2d", {"size": 2}), ("conv2d", {"filters": 4, "kernel": 3}), ("flatten", {}),
               ("linear", {"units": 2})])
    maps = conv_maps(m, np.random.default_rng(5).random((1, 6, 6)))
    assert [(name, a.shape) for name, a in maps] == [("layer 0: conv2d + batchnorm + relu", (3, 6, 6)),
                                                     ("layer 4: conv2d", (4, 1, 1))]
    assert (maps[0][1] >= 0).all()  # after the ReLU
    assert conv_maps(model([("flatten", {}), ("linear", {"units": 2})]), np.zeros((1, 6, 6))) == []


def test_class_probabilities_of_one_output_and_of_unnormalised_outputs():
    np.testing.assert_allclose(class_probabilities(np.array([[0.9], [0.2]])), [[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(class_probabilities(np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.4]])),
                               [[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])


def test_snapshot_epochs_are_every_epoch_or_every_few():
    assert snapshot_epochs(4) == snapshot_epochs(4, 200) == {0, 1, 2, 3, 4}
    assert snapshot_epochs(16) == set(range(17))
    assert snapshot_epochs(30) == {0, 1, 2, 3, 4, 7, 10, 13, 16, 19, 22, 25, 28, 30}
    many = snapshot_epochs(301, 200)
    assert {0, 1, 2, 3, 4, 6, 300, 301} <= many and 5 not in many and len(many) <= 202


def test_the_plane_and_layer_health_are_recorded_every_epoch(tmp_path):
    run, _ = train(tmp_path, PLANE, "--quiet")
    record = read_embedding_of(run)
    assert record["epochs"].tolist() == [0, 1, 2, 3, 4] and record["points"].shape == (5, 1984, 2)
    assert not np.allclose(record["points"][0], record["points"][-1])  # it moved
    rows = read_health_of(run)
    assert sorted({r["epoch"] for r in rows}) == [0, 1, 2, 3, 4]
    assert [r["name"] for r in rows if r["epoch"] == 4] == ["0 linear", "1 relu", "3 linear", "4 linear",
                                                            "out sigmoid"]
    from digitlab.run.folder import RunFolder
    from digitlab.run.view import RunView
    view = RunView(RunFolder.open(run))  # the last snapshot is the saved model's plane
    from digitlab.inside.plane import project
    np.testing.assert_allclose(record["points"][-1], project(view.model, view.inputs("test")[:1984], 3), rtol=1e-5)


def read_embedding_of(run: Path):
    from digitlab.config import load_config
    from digitlab.run.folder import RunFolder
    return read_embedding(RunFolder.open(run), load_config(run / "config.yaml"))


def read_health_of(run: Path):
    from digitlab.config import load_config
    from digitlab.run.folder import RunFolder
    return read_health(RunFolder.open(run), load_config(run / "config.yaml"))


def test_recording_changes_nothing_about_training(tmp_path, monkeypatch):
    recorded, _ = train(tmp_path, PLANE, "--quiet")
    import digitlab.run.lifecycle as lifecycle
    monkeypatch.setattr(lifecycle, "recorders", lambda *args: [])
    plain, _ = train(tmp_path, {**PLANE, "name": "plain"}, "--quiet")
    assert not (plain / "layer_health.csv").exists()

    def rows(run):
        return [r.rsplit(",", 1)[0] for r in (run / "metrics.csv").read_text().splitlines()]
    assert rows(recorded) == rows(plain)
    with np.load(recorded / "model.npz") as a, np.load(plain / "model.npz") as b:
        for name in a.files:
            if name.endswith("weight") or name.endswith("bias"):
                np.testing.assert_array_equal(a[name], b[name])


SATURATING = {"name": "saturating", "seed": 0, "data": {"digits": list(range(10)), "validation": 0.1, "limit": 1000},
              "model": [{"linear": 300}, "sigmoid", {"linear": 10}, "sigmoid"], "loss": "mse",
              "optimizer": {"name": "sgd", "lr": 10}, "epochs": 2, "batch_size": 50}


def test_a_sigmoid_mse_net_at_too_high_a_learning_rate_warns_once(tmp_path):
    run, result = train(tmp_path, SATURATING)
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.output
    assert "layer 3 sigmoid" in warnings[0] and "saturated" in warnings[0] and "lower optimizer.lr" in warnings[0]
    assert warnings[0] in (run / "log.txt").read_text()
    healthy, result = train(tmp_path, {**SATURATING, "name": "healthy", "optimizer": {"name": "sgd", "lr": 1}})
    assert "warning:" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("where,epoch", [("before-checkpoint", 2), ("mid-epoch", 3), ("mid-epoch", 1)])
def test_a_killed_and_resumed_run_ends_with_the_same_records(tmp_path, kill_run, where, epoch):
    straight, _ = train(tmp_path, PLANE, "--quiet")
    config = tmp_path / "plane.yaml"
    run = tmp_path / "killed"
    child = kill_run(config, run, where, epoch, batch=3)
    assert child.returncode == -signal.SIGKILL, child.stderr
    recorded = {r["epoch"] for r in read_health_of(run)}
    assert max(recorded) == (epoch if where == "before-checkpoint" else epoch - 1)  # past the checkpoint, or not
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    with open(run / "layer_health.csv") as a, open(straight / "layer_health.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))
    ours, theirs = read_embedding_of(run), read_embedding_of(straight)
    assert ours["epochs"].tolist() == theirs["epochs"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(ours["points"], theirs["points"])


def test_a_damaged_record_is_refused_by_its_reader_and_recorded_again_on_resume(tmp_path):
    run, _ = train(tmp_path, {**PLANE, "epochs": 2}, "--quiet")
    from digitlab.errors import DamagedRun
    (run / "layer_health.csv").write_text("epoch,layer\n1,2,3\n")
    (run / "embedding_epochs.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DamagedRun, match="layer_health.csv: damaged"):
        read_health_of(run)
    with pytest.raises(DamagedRun, match="embedding_epochs.npz: damaged"):
        read_embedding_of(run)


def test_a_trace_keeps_each_layers_own_output_and_gradient():
    """ReLU overwrites a fresh input in place and the gradient it is handed: the trace still holds the linear
    layer's output before the ReLU (negatives included) and dL/d(ReLU output) unmasked."""
    from digitlab.inside.probe import trace

    net = model([("linear", {"units": 6}), ("relu", {}), ("linear", {"units": 3})], shape=(4,))
    assert net.layers[1].inplace  # the case in question: ReLU overwrites the linear layer's fresh output
    x = np.random.default_rng(1).standard_normal((8, 4))
    result = trace(net, x, CrossEntropyLoss(), np.arange(8) % 3)
    first = net.layers[0]
    np.testing.assert_allclose(result.outputs[0], x @ first.weight.data + first.bias.data)
    assert result.outputs[0].min() < 0
    np.testing.assert_array_equal(result.outputs[1], np.maximum(result.outputs[0], 0))
    np.testing.assert_allclose(result.grads[1], result.grads[2] @ net.layers[2].weight.data.T)
    np.testing.assert_array_equal(result.grads[0], np.where(result.outputs[0] > 0, result.grads[1], 0))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["delete", "garbage", "empty"])
def test_a_resume_whose_plane_record_is_lost_records_from_there_on(tmp_path, kill_run, damage):
    """The plane's epochs before the checkpoint cannot be measured again: a resumed run whose record is lost or
    damaged goes on (before, it failed for good on np.stack of nothing) and records the epochs still to come."""
    train(tmp_path, PLANE, "--quiet")
    run = tmp_path / "killed"
    child = kill_run(tmp_path / "plane.yaml", run, "after-epoch", 2)
    assert child.returncode == -signal.SIGKILL, child.stderr
    record = run / "embedding_epochs.npz"
    {"delete": record.unlink, "garbage": lambda: record.write_bytes(b"PK\x03\x04 not a zip"),
     "empty": lambda: record.write_bytes(b"")}[damage]()
    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_embedding_of(run)["epochs"].tolist() == [3, 4]
    report = CliRunner().invoke(main, ["report", str(run)])
    assert report.exit_code == 0 and (run / "embedding_epochs.png").is_file(), report.output
