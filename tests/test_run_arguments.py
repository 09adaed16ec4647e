"""Commands that take run folders, as a shell hands them over: a glob such as runs/tour-* that matches more than
one run (the README's tour run twice) is scored run by run by evaluate, and predict and reproduce take the
newest with a note instead of failing on an unexpected extra argument."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from digitlab.config import validate
from digitlab.run.lifecycle import start

TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 200},
        "model": [{"linear": 8}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 50}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two copies of one trained run, the second started a day later (run.json's `started`)."""
    root = tmp_path_factory.mktemp("two")
    first = start(validate(TINY), runs_dir=root / "trained", quiet=True, progress=False).path
    older, newer = root / "runs" / "tour-a", root / "runs" / "tour-b"
    shutil.copytree(first, older)
    shutil.copytree(first, newer)
    info = json.loads((newer / "run.json").read_text())
    info["started"] = "2999-01-01T00:00:00Z"
    (newer / "run.json").write_text(json.dumps(info))
    return older, newer


def test_evaluate_scores_every_run_given(two_runs):
    older, newer = two_runs
    result = cli("evaluate", older, newer)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(older), str(newer)]
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]  # copies of one run score the same
    alone = cli("evaluate", older)
    assert alone.stdout.strip() == lines[0].split(": ", 1)[1]


def test_predict_takes_the_newest_of_several_runs_with_a_note(two_runs):
    older, newer = two_runs
    image = REPO / "examples" / "three.jpg"
    result = cli("predict", older, newer, image, "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[0] == f"note: 2 run folders given; using the newest, {newer}"
    again = cli("predict", newer, image, "--format", "json")
    assert json.loads(result.stdout) == json.loads(again.stdout) and not again.stderr.strip()
    nothing = cli("predict", older, newer)
    assert nothing.exit_code == 2 and "give an IMAGE" in nothing.stderr


def test_reproduce_takes_the_newest_of_several_runs(two_runs, tmp_path):
    older, newer = two_runs
    result = cli("reproduce", older, newer, "--runs-dir", tmp_path)
    assert f"using the newest, {newer}" in result.stderr
    assert result.exit_code == 0 and result.stdout.splitlines()[-1].startswith("metrics match"), result.output
    copy = Path(result.stdout.splitlines()[0].split(": ")[-1])
    assert json.loads((copy / "run.json").read_text())["reproduces"] == str(newer)
    np.testing.assert_array_equal(np.load(copy / "model.npz")["0.weight"], np.load(newer / "model.npz")["0.weight"])
