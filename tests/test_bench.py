"""digitlab bench: the command runs end to end on a tiny slice without the optional peers, and its table and
JSON have the documented shape. No timing is asserted: that is what the command is for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli

from digitlab import bench
from digitlab.bench import suite
from digitlab.bench.engines.matmul import gemm_shapes
from digitlab.bench.engines.numpy_loop import NumpyLoop, dense_plan
from digitlab.bench.tasks import TASKS, configs_dir
from digitlab.bench.worker import setup_task


@pytest.mark.slow  # times three engines on the 3-vs-8 task and a warm MNIST load
def test_bench_3v8_without_peers(tmp_path):
    out = tmp_path / "bench.json"
    result = cli("bench", "--task", "3v8", "--epochs", "2", "--limit", "200", "--no-peers", "--threads", "1",
                 "--json", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| task | engine |"))
    end = lines.index("", header)
    rows = [line.split(" | ") for line in lines[header + 2:end]]
    assert [r[1] for r in rows] == ["digitlab", "numpy", "matmul", "torch", "torch-loader", "torch-best", "sklearn"]
    assert all("peers disabled" in r[-1] for r in rows if r[1] in ("torch", "torch-loader", "torch-best", "sklearn"))
    assert "Warm MNIST load" in result.output
    assert "| 3v8 | <= 0.4 x PyTorch (a lean loop indexing tensors) | - | - |" in result.output  # no peer, no verdict

    figures = json.loads(out.read_text())
    assert figures["epochs"] == 2 and figures["threads"] == 1 and figures["limit"] == 200
    assert {"nproc", "cpu", "numpy", "blas"} <= set(figures["machine"])
    assert figures["data"]["load_seconds"] > 0
    engines = figures["tasks"]["3v8"]["engines"]
    for name in ("digitlab", "numpy"):
        row = engines[name]
        assert len(row["epoch_seconds"]) == 2 and row["seconds_per_epoch"] == row["epoch_seconds"][1]
        assert row["samples_per_second"] == pytest.approx(200 / row["seconds_per_epoch"])
        assert row["n_train"] == 200 and row["n_test"] == 200
        assert 0 <= row["accuracy"] <= 1 and row["peak_mb"] > 10
    assert engines["digitlab"]["ratio"] == 1
    assert engines["numpy"]["ratio"] > 0 and engines["matmul"]["gflops"] > 0
    assert engines["torch"] == {"skipped": "peers disabled (--no-peers)"}
    targets = figures["tasks"]["3v8"]["targets"]
    assert [t["engine"] for t in targets] == ["torch", "torch-loader", "numpy"]
    assert targets[0]["met"] is None and targets[1]["met"] is None and targets[2]["met"] in (True, False)


def test_missing_peer_is_a_note_not_an_error(monkeypatch):
    monkeypatch.setattr(suite.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(suite, "_run_worker", lambda spec, threads: {"load_seconds": 0.1} if spec["engine"] == "load"
                        else {"epoch_seconds": [1.0], "seconds_per_epoch": 1.0, "accuracy": 0.9})
    results = bench.run(["mnist10-mlp"], ["torch", "sklearn"], epochs=1)
    rows = results["tasks"]["mnist10-mlp"]["engines"]
    assert list(rows) == ["digitlab", "torch", "sklearn"]
    assert "torch is not installed" in rows["torch"]["skipped"]
    assert "sklearn is not installed" in rows["sklearn"]["skipped"]
    assert "not installed" in bench.results_table(results)


def test_tasks_are_shipped_configs_without_validation_schedule_or_augmentation():
    for task in TASKS.values():
        assert (configs_dir() / task.config).is_file()
        cfg = task.resolved(seed=3, limit=100)
        assert cfg["data"]["validation"] == 0 and cfg["data"]["augment"] is None
        assert "schedule" not in cfg["optimizer"] and cfg["seed"] == 3 and cfg["data"]["limit"] == 100
        assert task.description.startswith(f"configs/{task.config}: ")
    assert TASKS["3v8"].description.startswith("configs/3v8.yaml: 784-100-100-2-1, bce, sgd lr 0.1, batch 50")


def test_unknown_task_is_a_user_error():
    result = cli("bench", "--task", "nope", "--no-peers")
    assert result.exit_code == 2
    assert "unknown bench task 'nope'" in result.output


def test_gemm_shapes_of_a_dense_network():
    setup = setup_task(TASKS["3v8"], seed=0, limit=100)
    # forward, weight gradient, and (after the first layer) input gradient of each of the four linear layers
    assert gemm_shapes(setup.model, 50) == [(50, 784, 100), (784, 50, 100),
                                            (50, 100, 100), (100, 50, 100), (50, 100, 100),
                                            (50, 100, 2), (100, 50, 2), (50, 2, 100),
                                            (50, 2, 1), (2, 50, 1), (50, 1, 2)]


@pytest.mark.parametrize("task", ["3v8", "mnist10-mlp"])
def test_the_numpy_loop_takes_the_engines_steps(task):
    """The hand-written loop is a peer only while it computes what the engine computes: from the same weights,
    on the same batches (dropout off), five steps of SGD with momentum and weight decay, or of Adam, must give
    the engine's weights."""
    setup = setup_task(TASKS[task], seed=0, limit=1000)
    for layer in setup.model.layers:
        if hasattr(layer, "threshold"):
            layer.threshold = 0  # dropout off in both
    plan = [step if step[0] != "dropout" else ("dropout", 0.0) for step in dense_plan(setup.model)]
    loop = NumpyLoop(plan, setup.cfg["loss"], setup.cfg["optimizer"], np.random.default_rng(0))
    bs = setup.cfg["batch_size"]
    for start in range(0, 5 * bs, bs):
        x, t = setup.train_x[start:start + bs], setup.train_t[start:start + bs]
        setup.model.train()
        out = setup.model.forward(x)
        setup.loss_fn.forward(out, t)
        setup.model.backward(setup.loss_fn.backward())
        setup.optimizer.step()
        loop.step(x, t)
    ours = [layer for layer in setup.model.layers if hasattr(layer, "units")]
    theirs = [step for step in plan if step[0] == "linear"]
    for layer, step in zip(ours, theirs):
        np.testing.assert_allclose(layer.weight.data, step[1], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.bias.data, step[2], rtol=1e-4, atol=1e-6)
