"""digitlab export: the networks of a dense net, a CNN with batch norm and pooling and the 8x8 MLP give, in
onnxruntime and in PyTorch (from the safetensors), the run's own test accuracy and probabilities; TensorBoard reads
back every metrics.csv column; MLflow holds each run once after two exports; a missing extra and a damaged run
are one line each."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import yaml
from conftest import cli, one_line_error, tiny, train

from digitlab.nn.metrics import class_probabilities
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView

CNN = tiny({"data.digits": list(range(10)), "data.limit": 400}, name="cnn", model=[
    {"conv2d": {"filters": 4, "kernel": 3, "stride": 2, "padding": "same"}}, "batchnorm", "relu", "maxpool2d",
    {"conv2d": {"filters": 6, "kernel": 3}}, "batchnorm", "leaky_relu", {"avgpool2d": {"size": 2, "stride": 1}},
    "flatten", {"dropout": 0.2}, {"linear": 16}, "batchnorm", "tanh", {"linear": 10}],
    loss="cross_entropy", optimizer={"name": "adam", "lr": 0.01}, epochs=1)
MLP8 = tiny(name="mlp8", data={"dataset": "digits8x8", "test": 0.2, "validation": 0.1},
            model=[{"linear": 16}, "relu", {"linear": 10}], loss="cross_entropy",
            optimizer={"name": "adam", "lr": 0.01})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A dense 784-8-2-1 sigmoid net (two classes), the CNN and the 8x8 MLP, trained with outputs: light, with the
    engine's test probabilities (as digitlab predict gives them) and accuracy."""
    folder = tmp_path_factory.mktemp("export") / "runs"
    out = {}
    for cfg in (tiny(outputs="light"), {**CNN, "outputs": "light"}, {**MLP8, "outputs": "light"}):
        run, _ = train(cfg, folder, "--quiet")
        view = RunView(RunFolder.open(run))
        out[cfg["name"]] = {"run": run, "x": view.data.test.x[:, 0], "y": view.data.test.y,
                            "probabilities": class_probabilities(view.test["probabilities"]),
                            "accuracy": json.loads((run / "summary.json").read_text())["test_accuracy"]}
    return out


def same_as_engine(expected: dict, probabilities: np.ndarray) -> None:
    assert probabilities.shape == expected["probabilities"].shape
    assert np.abs(probabilities - expected["probabilities"]).max() < 1e-5
    assert np.mean(probabilities.argmax(axis=1) == expected["y"]) == expected["accuracy"]


def test_onnx_runtime_gives_the_runs_own_probabilities_and_accuracy(runs, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    result = cli("export", *(r["run"] for r in runs.values()), "--to", "onnx", "--out", tmp_path / "onnx")
    assert result.exit_code == 0, result.output
    for name, expected in runs.items():
        path = tmp_path / "onnx" / f"{expected['run'].name}.onnx"
        assert str(path) in result.stdout
        model = onnx.load(path)
        assert model.opset_import[0].version >= 17
        meta = {p.key: p.value for p in model.metadata_props}
        assert json.loads(meta["classes"]) == ([3, 8] if name == "tiny" else list(range(10)))
        assert meta["digitlab_run"] == expected["run"].name and f"name: {name}" in meta["config"]
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["image"]
        assert session.get_inputs()[0].shape[1:] == list(expected["x"].shape[1:])
        same_as_engine(expected, session.run(["probabilities"], {"image": expected["x"]})[0])


def test_a_missing_extra_is_one_line_naming_it(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    line = one_line_error(cli("export", runs["tiny"]["run"], "--to", "onnx"))
    assert "onnx" in line and "pip install 'digitlab[export]'" in line


def test_damaged_and_unfinished_runs_are_one_line_each_and_the_rest_exported(runs, copy_run, tmp_path):
    damaged = copy_run(runs["tiny"]["run"], "damaged")
    (damaged / "model.npz").write_bytes(b"not a zip")
    line = one_line_error(cli("export", damaged, "--to", "onnx", "--out", tmp_path / "one.onnx"))
    assert str(damaged / "model.npz") in line and "damaged" in line
    unfinished = copy_run(runs["mlp8"]["run"], "unfinished")
    info = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    result = cli("export", damaged, unfinished, runs["mlp8"]["run"], "--to", "onnx", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2 and "damaged" in warnings[0] and "unfinished (interrupted)" in warnings[1]
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{runs['mlp8']['run'].name}.onnx"]


def test_safetensors_carry_torchs_names_and_the_torch_file_gives_the_runs_probabilities(runs, tmp_path):
    from safetensors.numpy import load_file
    cnn = runs["cnn"]["run"]
    result = cli("export", cnn, "--to", "safetensors", "--out", tmp_path / "cnn.safetensors")
    assert result.exit_code == 0 and result.stdout.split() == [str(tmp_path / "cnn.safetensors")], result.output
    weights = load_file(tmp_path / "cnn.safetensors")
    assert {"0.weight", "0.bias", "1.running_mean", "1.running_var", "10.weight", "11.running_var"} <= set(weights)
    assert weights["10.weight"].shape == (16, 96)  # torch's Linear keeps (out, in)
    torch = pytest.importorskip("torch")
    result = cli("export", *(r["run"] for r in runs.values()), "--to", "torch", "--out", tmp_path / "torch")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("same probabilities as digitlab") == 3, result.output
    for expected in runs.values():
        code = tmp_path / "torch" / f"{expected['run'].name}.py"
        namespace: dict = {"__file__": str(code)}
        exec(compile(code.read_text(), str(code), "exec"), namespace)
        model = namespace["load"]()
        assert isinstance(model, torch.nn.Sequential)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in
                               load_file(code.with_suffix(".safetensors")).items()}, strict=True)
        same_as_engine(expected, namespace["probabilities"](model, expected["x"]).numpy())


def test_tensorboard_reads_back_every_metrics_column_the_config_and_the_figures(runs, tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from digitlab.export.tensorboard_events import place
    run = runs["tiny"]["run"]
    # exporting again replaces the run's events instead of adding a second copy; the folder may follow the runs
    for where in (["--out", tmp_path / "tb"], [tmp_path / "tb"]):
        result = cli("export", run, "--to", "tensorboard", *where)
        assert result.exit_code == 0 and result.stderr == "", result.output
    folder = tmp_path / "tb" / run.name
    assert sorted(p.parent.name for p in folder.rglob("events.out.tfevents.*")) == \
        sorted([run.name, "train", "validation", "test"])
    rows = RunFolder(run).read_metrics()
    readers = {}
    for column in rows[0]:
        if column == "epoch":
            continue
        sub, tag = place(column)
        if sub not in readers:
            readers[sub] = accumulator.EventAccumulator(str(folder / sub), size_guidance={"images": 0}).Reload()
        events = readers[sub].Scalars(tag)
        assert [e.step for e in events] == [r["epoch"] for r in rows], column
        assert [e.value for e in events] == [float(np.float32(r[column])) for r in rows], column
    session = readers[""]
    assert {"figures/confusion", "figures/curves"} <= set(session.Tags()["images"])
    assert session.Scalars("final/test_accuracy")[-1].value == np.float32(runs["tiny"]["accuracy"])
    start = HParamsPluginData.FromString(session.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["optimizer.lr"].number_value == 0.1 and values["data.digits"].string_value == "[3,8]"
    assert values["status"].string_value == "complete"


def test_a_mistyped_run_last_is_refused_as_missing_not_written_into(runs, tmp_path, monkeypatch):
    """--to tensorboard RUNS... DIR takes the last argument as the log folder only when it cannot be a run: a new
    name beside runs (a typo) stays a run, reported missing, and nothing is written there."""
    pytest.importorskip("tensorboardX")
    monkeypatch.chdir(tmp_path)
    run = runs["tiny"]["run"]
    typo = run.parent / "tiny-typo"
    result = cli("export", run, typo, "--to", "tensorboard")
    assert result.exit_code == 0 and f"{typo}: no such folder; skipped" in result.stderr, result.output
    assert not typo.exists() and (tmp_path / "tensorboard" / run.name).is_dir()
    result = cli("export", run, tmp_path / "logs", "--to", "tensorboard")  # a new folder where no run is
    assert result.exit_code == 0 and (tmp_path / "logs" / run.name).is_dir(), result.output


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # mlflow's store on SQLAlchemy 2.1
def test_mlflow_holds_each_run_once_after_two_exports_with_its_metrics_per_epoch(runs, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exported = [runs["tiny"]["run"], runs["mlp8"]["run"]]
    for where in (["--out", uri], [uri]):  # the URI as --out, or after the runs as `--to mlflow URI` reads
        result = cli("export", *exported, "--to", "mlflow", *where)
        assert result.exit_code == 0 and result.stderr == "", result.output
    assert result.stdout.count("(updated)") == 2
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("digitlab").experiment_id])
    assert sorted(r.data.tags["digitlab.folder"] for r in found) == sorted(str(p.resolve()) for p in exported)
    for run in found:
        folder = next(p for p in exported if str(p.resolve()) == run.data.tags["digitlab.folder"])
        rows = RunFolder(folder).read_metrics()
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r["val_accuracy"]) for r in rows]
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert run.data.params["optimizer.lr"] == str(config["optimizer"]["lr"])
        assert run.data.params["data.digits"] == json.dumps(config["data"]["digits"], separators=(",", ":"))
        assert run.info.status == "FINISHED" and run.data.tags["digitlab.status"] == "complete"
        assert {"model.npz", "config.yaml", "metrics.csv"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    line = one_line_error(cli("export", exported[0], "--to", "mlflow", "--out", "nosuchscheme://x"))
    assert line.startswith("error: nosuchscheme://x: MLflow cannot store the runs there")


@pytest.mark.parametrize("layers, loss", [
    ("nearest_mean", "cross_entropy"),                                   # class means: a Gemm, scores normalised
    ([{"conv2d": {"filters": 3, "kernel": 3, "stride": 2, "padding": "same", "bias": False}}, "sigmoid",
      {"maxpool2d": {"size": 2, "stride": 1}}, "flatten", {"linear": 10}, "sigmoid"], "mse"),  # sigmoids, normalised
], ids=["nearest_mean", "mse_on_sigmoids"])
def test_class_means_and_mse_heads_give_what_digitlab_predict_gives(layers, loss):
    """Heads the trained runs above do not cover, with initial weights (class means fitted) on real 8x8 digits: the
    ONNX graph against the engine's class_probabilities."""
    ort = pytest.importorskip("onnxruntime")
    from digitlab.config import validate
    from digitlab.data import open_source
    from digitlab.export.network import describe
    from digitlab.export.onnx_graph import build
    from digitlab.run.setup import make_model
    source = open_source({"dataset": "digits8x8"})
    images, labels = source.parts()["all"]
    x = (images[:300] / np.float32(source.pixel_max)).astype(np.float32)
    cfg = validate({"data": {"dataset": "digits8x8", "test": 0.2}, "model": layers, "loss": loss}, "test")
    model, _ = make_model(cfg, source.image_shape)
    model.reset_parameters(np.random.default_rng(0))
    inputs = x.reshape((len(x),) + model.in_shape)
    if model.closed_form:
        model.fit(inputs, labels[:300])
    expected = class_probabilities(model.predict(inputs))
    graph = build(describe(model, source.image_shape), {"classes": json.dumps(cfg["data"]["digits"])})
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(["probabilities"], {"image": x})[0] - expected).max() < 1e-5


HOSTILE = 'q"""\nprint("PWNED")\n"""'


def test_a_run_folder_named_like_code_is_only_data_in_the_torch_file(runs, copy_run, tmp_path):
    """A folder name that would end the docstring and call print is a string constant in the written file."""
    import ast
    hostile = copy_run(runs["mlp8"]["run"], HOSTILE)
    result = cli("export", hostile, "--to", "torch", "--out", tmp_path / "torch")
    assert result.exit_code == 0, result.output
    assert "PWNED" not in result.stdout.splitlines()  # the check, where torch is installed, ran nothing injected
    code = tmp_path / "torch" / f"{HOSTILE}.py"
    tree = ast.parse(code.read_text())
    compile(tree, str(code), "exec")
    prints = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
    assert [ast.unparse(n) for n in prints] == ["print(load())"]  # the file's own __main__, nothing else
    runs_constant = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "RUN"]
    assert [c.value for c in runs_constant] == [HOSTILE]
    docstring = ast.get_docstring(tree)
    assert "run q____print__PWNED______ (RUN)" in docstring and '"' not in docstring


def test_two_runs_of_one_folder_name_are_refused_for_tensorboard_before_anything_is_written(runs, copy_run, tmp_path):
    pytest.importorskip("tensorboardX")
    first, second = copy_run(runs["tiny"]["run"], "a/r"), copy_run(runs["tiny"]["run"], "b/r")
    line = one_line_error(cli("export", first, second, "--to", "tensorboard", "--out", tmp_path / "tb"))
    assert line == f"error: {tmp_path / 'tb' / 'r'}: two runs would be exported to this folder; export them to " \
                   f"separate --out folders"
    assert not (tmp_path / "tb").exists()


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # mlflow's store on SQLAlchemy 2.1
def test_an_mlflow_destination_it_cannot_store_into_is_one_line(runs, tmp_path):
    """Refused before MLflow touches it: a plain path or file: URI, a SQLite file under a file, a file that is no
    database; a server that cannot be reached fails in seconds with its reason; a failure part-way (mlartifacts a
    file) leaves the MLflow run FAILED, not RUNNING."""
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient
    run = runs["tiny"]["run"]
    (tmp_path / "afile").write_text("")
    (tmp_path / "notes.db").write_text("not a database\n")
    expected = {
        "./mlruns": "./mlruns: expected a tracking URI such as sqlite:///mlflow.db or http://host:5000",
        f"file://{tmp_path}/mlruns": "expected a tracking URI such as sqlite:///mlflow.db or http://host:5000",
        f"sqlite:///{tmp_path}/afile/ml.db": f"{tmp_path / 'afile'} is a file, not a folder",
        f"sqlite:///{tmp_path}/notes.db": f"{tmp_path / 'notes.db'} is not an SQLite database",
        "http://127.0.0.1:9/": "MLflow cannot store the runs there (cannot reach the server: Connection refused)"}
    for uri, message in expected.items():
        line = one_line_error(cli("export", run, "--to", "mlflow", "--out", uri))
        assert line.startswith(f"error: {uri}: ") and line.endswith(message), line
    assert (tmp_path / "notes.db").read_text() == "not a database\n"
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "mlartifacts").write_text("")
    uri = f"sqlite:///{tmp_path / 'part' / 'ml.db'}"
    line = one_line_error(cli("export", run, "--to", "mlflow", "--out", uri))
    assert f"(Not a directory: {tmp_path / 'part' / 'mlartifacts'}/" in line
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name("digitlab").experiment_id])
    assert [r.info.status for r in found] == ["FAILED"]
    from mlflow.exceptions import MlflowException

    from digitlab.export.mlflow_runs import reason
    assert reason(MlflowException("The store is old. Migrate it: see https://x.")) == "The store is old."
    assert reason(MlflowException("word " * 100)) == ("word " * 60).strip() + "..."


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes in a read-only folder")
def test_an_mlflow_database_in_a_read_only_folder_is_one_line(runs, tmp_path):
    pytest.importorskip("mlflow")
    (tmp_path / "ro").mkdir(mode=0o555)
    line = one_line_error(cli("export", runs["tiny"]["run"], "--to", "mlflow", "--out", f"sqlite:///{tmp_path}/ro/a.db"))
    assert line.endswith(f"cannot write in the folder {tmp_path / 'ro'}")
