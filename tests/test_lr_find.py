"""`digitlab lr-find`: the learning-rate range test from a config's initial weights, in its own folder."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml
from conftest import cli, tiny
from PIL import Image

from digitlab.config import validate
from digitlab.run.lr_find import search
from digitlab.run.setup import prepare

# The tiny config on 1500 images with a 784-32-1 network: a range test of 150 steps sees the loss explode.
TINY = tiny({"data.limit": 1500}, model=[{"linear": 32}, "relu", {"linear": 1}, "sigmoid"], epochs=3)


def test_lr_find_suggests_a_learning_rate_and_writes_only_its_own_folder(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    runs = tmp_path / "runs"
    (runs / "other-run").mkdir(parents=True)
    (runs / "other-run" / "run.json").write_text("{}")
    result = cli("lr-find", config, "--runs-dir", runs, "--steps", "150", "--end", "1000")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    suggested = float(lines[-1].removeprefix("suggested lr: "))
    assert lines[-1].startswith("suggested lr: ") and "the loss exploded at lr" in lines[0]
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == 2 and folders[0] == "other-run" and folders[1].startswith("tiny-lr-find-")
    assert [p.name for p in (runs / "other-run").iterdir()] == ["run.json"]
    folder = runs / folders[1]
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.json", "lr_find.png", "lr_find.yaml"]
    with open(folder / "lr_find.csv") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs == sorted(lrs) and lrs[0] == 1e-7 and len(rows) < 150  # stopped early: the loss exploded
    ratios = [b / a for a, b in zip(lrs, lrs[1:])]
    assert max(ratios) / min(ratios) < 1.0001  # exponential growth
    smoothed = [float(r["smoothed"]) for r in rows]
    lowest = min(range(len(rows)), key=smoothed.__getitem__)
    assert math.isclose(suggested, lrs[lowest] / 10, rel_tol=1e-2)
    assert 1e-3 < suggested < 1  # SGD with momentum on this network trains well at 0.1
    saved = json.loads((folder / "lr_find.json").read_text())
    assert saved["suggested_lr"] == lrs[lowest] / 10 or math.isclose(saved["suggested_lr"], lrs[lowest] / 10,
                                                                     rel_tol=1e-5)
    assert Image.open(folder / "lr_find.png").format == "PNG"
    assert f"plot: {folder / 'lr_find.png'}" in result.output
    compare = cli("compare", runs)
    assert "tiny-lr-find" not in compare.output  # not taken for a run


def test_the_search_starts_from_the_configs_initial_weights_and_stops_at_a_nan():
    cfg = validate({**TINY, "data": {**TINY["data"], "limit": 300}}, "tiny")
    initial = prepare(cfg).model.state_dict()
    setup = prepare(cfg)
    for name, value in setup.model.state_dict().items():
        assert (value == initial[name]).all()
    found = search(setup, 1e-3, 1e12, 400)
    assert "loss" in found.stopped and len(found.lrs) < 400
    assert all(math.isfinite(v) for v in found.losses)


def test_bad_ranges_and_configs_are_one_line(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = cli("lr-find", config, "--start", "1", "--end", "0.1")
    assert result.exit_code == 2 and "--end (0.1) must be larger than --start (1)" in result.output
    config.write_text("epochs: -1\n")
    result = cli("lr-find", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    Path(tmp_path / "file").write_text("")
    config.write_text(yaml.safe_dump(TINY))
    result = cli("lr-find", config, "--runs-dir", tmp_path / "file" / "runs")
    assert result.exit_code == 2 and "(--runs-dir)" in result.output and result.output.count("\n") == 1


def test_a_model_fitted_in_one_pass_has_no_learning_rate_to_find(tmp_path):
    config = Path(__file__).parent.parent / "configs" / "seeds" / "digits8x8-average.yaml"
    result = cli("lr-find", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "fitted in one pass (class means), without a learning rate" in result.output
    assert not (tmp_path / "runs").exists()
