"""Run names: a name is taken as written (text in any script, never YAML), becomes a plain folder name, and can
never take the run folder out of the runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import tiny, train, write_yaml

from digitlab.config import safe_name


def quick(**changes) -> dict:
    """The tiny config for one epoch, without the validation split and the 2-unit layer, and with light outputs (no
    figures, no report.html): a name needs none of them (test_a_unicode_name_makes_its_folder draws them)."""
    return tiny({"data.validation": 0.0}, model=[{"linear": 8}, "relu", {"linear": 1}, "sigmoid"], epochs=1,
                **{"outputs": "light", **changes})


def nameless(**changes) -> dict:
    """quick() without a name: the config file's stem, or --name, names the run."""
    cfg = quick(**changes)
    del cfg["name"]
    return cfg


@pytest.mark.parametrize("name", ["yes", "null", "1e5", "true", "007", "~"])
def test_names_on_the_command_line_are_text_never_yaml(tmp_path, name):
    run, _ = train(nameless(), tmp_path / "runs", "--name", name, "--quiet")
    assert run.name.startswith(f"{name}-" if name != "~" else "run-")
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == (name if name != "~" else "run")


@pytest.mark.parametrize("written, expected", [("1e5", "1e5"), ("true", "true"), ("3.10", "3.10"), ("0x1F", "0x1F")])
def test_a_config_name_that_yaml_reads_as_a_number_or_bool_is_taken_as_written(tmp_path, written, expected):
    config = write_yaml(tmp_path / "tiny.yaml", yaml.safe_dump(nameless()) + f"name: {written}\n")
    run, _ = train(config, tmp_path / "runs", "--quiet")
    assert run.name.startswith(f"{expected}-")


@pytest.mark.parametrize("name, folder", [("Zahlenprüfung", "Zahlenprüfung"), ("数字", "数字"),
                                          ("résumé 3/8", "résumé-3-8"), ("../../etc", "etc"),
                                          ("a\x01b\nc", "a-b-c"), ("Ölgemälde_2", "Ölgemälde_2")])
def test_folder_names_keep_letters_of_any_script(name, folder):
    assert safe_name(name) == folder


def test_a_unicode_name_makes_its_folder(tmp_path):
    run, _ = train(quick(name="数字-Zahlenprüfung", outputs="full"), tmp_path / "runs", "--quiet")
    assert run.name.startswith("数字-Zahlenprüfung-")
    long = safe_name("数" * 200)
    assert len(long.encode()) <= 160


@pytest.mark.parametrize("name", ["../../etc", "/tmp/x", "..", "a/../../b", "~root", "name with spaces\n"])
def test_run_names_cannot_leave_the_runs_folder(tmp_path, write_config, name):
    config = write_config(quick(name=name))
    runs = tmp_path / "runs"
    run, _ = train(config, runs, "--quiet")
    assert run.resolve().parent == runs.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "runs"]
    assert Path(run).is_dir()
