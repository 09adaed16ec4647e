"""The Learner on a toy problem: it learns, every callback sees every hook in order, the running loss is the
sample-weighted mean over the epoch (last partial batch included), and a schedule sets the lr before each batch.
Early stopping on a slice of MNIST: it stops, keeps the best epoch's weights, and survives a kill and resume."""

from __future__ import annotations

import csv
import json
import signal

import numpy as np
import pytest
from conftest import cli, train

from digitlab.data import DataLoader, Sampler
from digitlab.learner import Callback, Learner, LRScheduler, ProgressBar, ScoreSplits
from digitlab.nn import SGD, BCELoss, build_model
from digitlab.nn.schedules import StepLR


def toy(n=103, batch_size=10, seed=0):
    """Two blobs in 4-D, one sigmoid unit: linearly separable."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.int64)
    x = (rng.normal(size=(n, 4)) + np.where(y[:, None] == 0, 1.5, -1.5)).astype(np.float32)
    model = build_model([("linear", {"units": 1}), ("sigmoid", {})], (4,), BCELoss.fuses)
    model.reset_parameters(rng)
    loss_fn = BCELoss()
    loader = DataLoader((x, loss_fn.targets(y, 1)), Sampler(n, batch_size, shuffle=True, rng=rng))
    return model, loss_fn, SGD(model.parameters(), lr=0.5), loader, x, y


class Recorder(Callback):
    def __init__(self, events, name, returns=None):
        self.events, self.name, self.returns = events, name, returns

    def _record(self, hook, *args):
        self.events.append((self.name, hook) + args)
        return self.returns  # a callback returning None/False must not turn hooks off for the next

    def on_train_begin(self, logs): return self._record("train_begin")
    def on_epoch_begin(self, epoch, logs): return self._record("epoch_begin", epoch)
    def on_batch_begin(self, batch, logs): return self._record("batch_begin", batch)
    def on_batch_end(self, batch, logs): return self._record("batch_end", batch, logs["loss"], logs["size"])
    def on_epoch_end(self, epoch, logs): return self._record("epoch_end", epoch)
    def on_train_end(self, logs): return self._record("train_end")


def test_every_callback_sees_every_hook_in_order():
    model, loss_fn, opt, loader, _, _ = toy()
    events = []
    Learner(model, loss_fn, opt, loader, [Recorder(events, "a", returns=False), Recorder(events, "b")]).fit(2)
    batches = [(hook, i) for i in range(11) for hook in ("batch_begin", "batch_end")]
    expected = [("train_begin",)]
    for epoch in (1, 2):
        expected += [("epoch_begin", epoch)] + batches + [("epoch_end", epoch)]
    expected += [("train_end",)]
    for name in "ab":
        assert [e[1:3] for e in events if e[0] == name] == expected, name
    sizes = [e[4] for e in events if e[0] == "a" and e[1] == "batch_end"]
    assert sizes[:11] == [10] * 10 + [3]  # the last partial batch is trained on


def test_running_loss_is_the_sample_weighted_epoch_mean():
    model, loss_fn, opt, loader, _, _ = toy()
    events, bar = [], ProgressBar(1, enabled=False)
    history = Learner(model, loss_fn, opt, loader, [Recorder(events, "r"), bar]).fit(1)
    batches = [(e[3], e[4]) for e in events if e[1] == "batch_end"]
    expected = sum(loss * size for loss, size in batches) / sum(size for _, size in batches)
    assert history[0]["running_loss"] == pytest.approx(expected, rel=1e-9)
    assert sum(size for _, size in batches) == 103


def test_the_learner_learns_and_reports_eval_metrics():
    model, loss_fn, opt, loader, x, y = toy()
    history = Learner(model, loss_fn, opt, loader, [ScoreSplits({"train": (x, y)})]).fit(5)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 0.95
    assert model.training  # evaluation switches to eval mode and back


def test_lr_schedule_is_set_before_every_batch():
    model, loss_fn, opt, loader, _, _ = toy(n=40, batch_size=10)
    seen = []

    class LRSpy(Callback):
        def on_batch_begin(self, batch, logs):
            seen.append(self.learner.optimizer.lr)

    # the scheduler runs first: each batch sees lr(epoch - 1 + batch / 4)
    Learner(model, loss_fn, opt, loader, [LRScheduler(StepLR(1.0, 3, step_size=1, gamma=0.5)), LRSpy()]).fit(3)
    assert seen == [1.0] * 4 + [0.5] * 4 + [0.25] * 4


def test_a_callback_can_stop_training():
    model, loss_fn, opt, loader, _, _ = toy()

    class StopAfterTwoEpochs(Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                self.learner.stop_training = True

    assert len(Learner(model, loss_fn, opt, loader, [StopAfterTwoEpochs()]).fit(10)) == 2


# -- early stopping --------------------------------------------------------------------------------------------------
STOPPING = {"name": "stop", "seed": 0, "data": {"digits": [3, 8], "limit": 600, "validation": 0.2},
            "model": [{"linear": 32}, "relu", {"linear": 1}, "sigmoid"], "loss": "bce",
            "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9}, "epochs": 40, "batch_size": 50,
            "early_stopping": {"monitor": "val_loss", "patience": 3}}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    runs = tmp_path_factory.mktemp("stopping") / "runs"
    run, result = train(STOPPING, runs)
    return runs.parent / "stop.yaml", run, result.output


def metrics(run):
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


@pytest.mark.slow
def test_early_stopping_survives_a_kill_and_resume(stopped, tmp_path, kill_run, same_run):
    cfg, straight, _ = stopped
    kill_at = len(metrics(straight)) - 2  # after the best epoch, while it is counting the epochs that do not improve
    run = tmp_path / "run"
    child = kill_run(cfg, run, "after-epoch", kill_at)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert cli("train", "--resume", run, "--quiet").exit_code == 0
    same_run(run, straight)
