"""What the user typed is what they get: names as written (any script, never YAML), numbers read the same way for
every key, a limit that keeps a quick run quick, splits that leave every class something to learn from, clear
warnings, aligned compare tables, and the teacher's option to score the test set only once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.config import load_config, safe_name
from digitlab.errors import ConfigError

TINY = {"seed": 0, "data": {"digits": [3, 8], "limit": 200},
        "model": [{"linear": 8}, "relu", {"linear": 1}, "sigmoid"], "loss": "bce",
        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 50}


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def train(tmp_path, cfg, *args, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, allow_unicode=True))
    result = cli("train", path, "--runs-dir", tmp_path / "runs", *args)
    return result, (Path(result.stdout.strip().splitlines()[-1]) if result.exit_code == 0 else None)


# -- names ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["yes", "null", "1e5", "true", "007", "~"])
def test_names_on_the_command_line_are_text_never_yaml(tmp_path, name):
    result, run = train(tmp_path, TINY, "--name", name, "--quiet")
    assert result.exit_code == 0, result.output
    assert run.name.startswith(f"{name}-" if name != "~" else "run-")
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == (name if name != "~" else "run")


@pytest.mark.parametrize("written, expected", [("1e5", "1e5"), ("true", "true"), ("3.10", "3.10"), ("0x1F", "0x1F")])
def test_a_config_name_that_yaml_reads_as_a_number_or_bool_is_taken_as_written(tmp_path, written, expected):
    text = yaml.safe_dump(TINY) + f"name: {written}\n"
    result, run = train(tmp_path, text, "--quiet")
    assert result.exit_code == 0, result.output
    assert run.name.startswith(f"{expected}-")


@pytest.mark.parametrize("name, folder", [("Zahlenprüfung", "Zahlenprüfung"), ("数字", "数字"),
                                          ("résumé 3/8", "résumé-3-8"), ("../../etc", "etc"),
                                          ("a\x01b\nc", "a-b-c"), ("Ölgemälde_2", "Ölgemälde_2")])
def test_folder_names_keep_letters_of_any_script(name, folder):
    assert safe_name(name) == folder


def test_a_unicode_name_makes_its_folder(tmp_path):
    result, run = train(tmp_path, {**TINY, "name": "数字-Zahlenprüfung"}, "--quiet")
    assert result.exit_code == 0 and run.name.startswith("数字-Zahlenprüfung-")
    long = safe_name("数" * 200)
    assert len(long.encode()) <= 160


# -- numbers -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, text, value", [("epochs", "1e2", 100), ("epochs", "100.0", 100),
                                              ("batch_size", "6.4e1", 64), ("optimizer.lr", "1e-3", 0.001),
                                              ("data.limit", "2e3", 2000), ("seed", "1E1", 10)])
def test_numbers_read_the_same_way_for_every_key(tmp_path, key, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    cfg = load_config(path, (f"{key}={text}",))
    node = cfg
    for part in key.split("."):
        node = node[part]
    assert node == value and type(node) is type(value)


@pytest.mark.parametrize("key, text, words", [("epochs", "2.5", "whole number"), ("epochs", "1e-1", "whole number"),
                                              ("batch_size", "true", "got bool"), ("optimizer.lr", "nan", "number")])
def test_what_is_not_a_number_of_the_right_kind_is_refused(tmp_path, key, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(TINY))
    with pytest.raises(ConfigError, match=words):
        load_config(path, (f"{key}={text}",))


# -- splits, limits, warnings --------------------------------------------------------------------------------------
def test_a_limit_caps_the_pool_before_the_validation_split_and_the_sizes_are_printed(tmp_path):
    cfg = {**TINY, "name": "quick", "data": {"digits": [3, 8], "limit": 200, "validation": 0.1}}
    result, run = train(tmp_path, cfg)
    assert result.exit_code == 0
    assert "180 train / 20 val / 1984 test images" in result.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset_sizes"] == {"train": 180, "val": 20, "test": 1984}


def test_a_split_that_leaves_a_class_without_training_examples_is_an_error(tmp_path):
    cfg = {**TINY, "name": "empty", "data": {"digits": [3, 8, 1], "limit": 2}, "loss": "cross_entropy",
           "model": [{"linear": 3}]}
    result, _ = train(tmp_path, cfg)
    assert result.exit_code == 2
    assert "has no training example left" in result.output and "digit " in result.output
    assert not (tmp_path / "runs").exists()


def test_a_batch_larger_than_the_training_set_is_a_warning(tmp_path):
    result, run = train(tmp_path, {**TINY, "name": "big", "batch_size": 5000})
    assert result.exit_code == 0
    assert "warning: batch_size 5000 is larger than the 200 training images" in result.stderr
    assert "warning: batch_size 5000" in (run / "log.txt").read_text()


# -- compare -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Two configs x two seeds, and a CNN, in one runs folder."""
    root = tmp_path_factory.mktemp("seeds")
    for lr in (0.1, 0.05):
        for seed in (0, 1):
            cfg = {**TINY, "name": f"lr{lr}", "optimizer": {"name": "sgd", "lr": lr}, "seed": seed}
            path = root / "c.yaml"
            path.write_text(yaml.safe_dump(cfg))
            assert cli("train", path, "--runs-dir", root / "runs", "--quiet").exit_code == 0
    cnn = {**TINY, "name": "cnn", "loss": "cross_entropy",
           "model": [{"conv2d": {"filters": 4, "kernel": 3}}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 2}]}
    (root / "cnn.yaml").write_text(yaml.safe_dump(cnn))
    assert cli("train", root / "cnn.yaml", "--runs-dir", root / "runs", "--quiet").exit_code == 0
    return root / "runs"


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_group_seeds_tables_are_aligned(seeds, fmt):
    result = cli("compare", *sorted(seeds.glob("lr*")), "--group-seeds", "--format", fmt)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    if fmt == "markdown":
        widths = {line.count(" | ") for line in lines}
        assert len(widths) == 1, lines
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        row = [c.strip() for c in lines[2].strip("|").split("|")]
    else:
        header, row = lines[0].split(), lines[1].split()
    assert "test_acc" in header and "±" in " ".join(row)
    cell = dict(zip(header, row)) if fmt == "markdown" else None
    if cell is not None:
        assert "±" in cell["test_acc"] and cell["runs"] == "2"


def test_compare_takes_a_folder_of_runs(seeds):
    result = cli("compare", seeds, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.output.splitlines()))
    assert len(rows) == 5 and {r["status"] for r in rows} == {"complete"}


def test_a_cnns_arch_column_reads_as_a_cnn(seeds):
    result = cli("compare", seeds, "--format", "json")
    arch = {r["name"].split("-")[0]: r["arch"] for r in json.loads(result.stdout)}
    assert arch["cnn"] == "1x28x28-c4k3-mp2-2" and arch["lr0.1"] == "784-8-1"


# -- the teacher's option ------------------------------------------------------------------------------------------
def test_test_every_epoch_false_scores_the_test_set_once(tmp_path):
    result, run = train(tmp_path, {**TINY, "name": "teach", "epochs": 2, "test_every_epoch": False,
                                   "data": {"digits": [3, 8], "limit": 200, "validation": 0.1}})
    assert result.exit_code == 0
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["test_accuracy"] for r in rows] == ["", ""] and all(r["val_accuracy"] for r in rows)
    assert "test loss" not in result.output.split("test accuracy")[0]  # no test score before the end
    summary = json.loads((run / "summary.json").read_text())
    assert 0.5 < summary["test_accuracy"] <= 1
    table = cli("compare", run, "--format", "json")
    assert json.loads(table.stdout)[0]["test_acc"] == summary["test_accuracy"]


# -- arguments -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (["train", "x.yaml", "--threads", "0"], "Invalid value for '--threads': 0 is not in the range x>=1."),
    (["train", "--seed", "4294967296"], "'--seed': 4294967296 is not in the range"),
    (["trian"], "No such command 'trian'. Did you mean 'train'?"),
    (["--bogus"], "No such option '--bogus'"),
    (["compare"], "Missing argument 'FOLDERS...'"),
    (["train"], "give a CONFIG file, or --resume RUN_DIR"),
    (["compare", "runs", "--plot", ""], "'--plot': expected a path, got an empty string"),
    (["report", "runs", "--out", " "], "'--out': expected a path, got an empty string"),
    (["predict", "runs", "x.png", "--explain", ""], "'--explain': expected a path, got an empty string"),
    (["bench", "--json", ""], "'--json': expected a path, got an empty string"),
    (["train", ""], "'[CONFIG]': expected a path, got an empty string"),
    (["lr-find", "x.yaml", "--start", "nan"], "'--start': expected a finite number above 0, got 'nan'"),
    (["lr-find", "x.yaml", "--end", "1e400"], "'--end': expected a finite number above 0, got '1e400'"),
    (["lr-find", "x.yaml", "--end", "-1"], "'--end': -1.0 is not in the range x>0"),
])
def test_an_argument_error_is_one_line_with_the_command_to_ask_for_help(tmp_path, monkeypatch, args, words):
    """click would print four lines (usage, a hint, a blank line, the error); digitlab prints one, exit code 2,
    before anything is read or written."""
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], result.output
    assert "--help)" in lines[0] and list(tmp_path.iterdir()) == []


EIGHTS = {**TINY, "data": {"dataset": "digits8x8", "digits": [3, 8]}}


@pytest.mark.parametrize("data,words", [
    ({"test": 0.0001}, "data.test: 0.0001 of the 357 images of digits [3, 8] holds out no test image; raise "
                       "data.test"),
    ({"test": 0.999}, "data: digit 3 has no image in digits8x8's training pool once data.test 0.999 is held out; "
                      "lower data.test"),
    ({"validation": 0.0001}, "data.validation: 0.0001 of a training pool of 285 images holds out no validation "
                             "image"),
])
def test_fractions_that_leave_a_split_empty_are_refused_naming_the_config(tmp_path, data, words):
    """Before, an empty test or validation split trained, scored nan and exited 0 as `complete`."""
    cfg = {**EIGHTS, "name": "empty", "data": {**EIGHTS["data"], **data}}
    for args in ((), ("--dry-run",)):
        result, _ = train(tmp_path, cfg, *args)
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1
        assert result.output.startswith(f"error: {tmp_path / 'tiny.yaml'}: {words}"), result.output
    assert not (tmp_path / "runs").exists()
    look = cli("data", "--dataset", "digits8x8", "--digits", "3,8", *[f"--{k}={v}" for k, v in data.items()])
    assert look.exit_code == 2 and words in look.output and len(look.output.splitlines()) == 1


def test_a_data_path_without_an_image_of_a_digit_says_which_part(tmp_path, fake_idx_folder):
    folder = fake_idx_folder(n_train=40, n_test=3)  # test labels 0, 1, 2
    result, _ = train(tmp_path, {**TINY, "data": {"digits": [3, 8], "path": str(folder)}})
    assert result.exit_code == 2 and "test part has no image of digits [3, 8]" in result.output, result.output


def test_a_command_line_with_bytes_that_are_not_utf8_is_recorded_as_bash_would_take_it_back(monkeypatch):
    """Python keeps such bytes as surrogates, which no UTF-8 file can hold: report.html was not written."""
    import subprocess

    from digitlab.system.environment import command_line
    monkeypatch.setattr("sys.argv", ["/usr/bin/digitlab", "train", "x.yaml", "--name", "ab\udcffc d'é"])
    line = command_line()
    assert line == "digitlab train x.yaml --name $'ab\\xffc d\\x27\\xc3\\xa9'"
    line.encode("utf-8")
    echoed = subprocess.run(["bash", "-c", f"printf %s {line.split(' ', 4)[4]}"], capture_output=True).stdout
    assert echoed == b"ab\xffc d'\xc3\xa9"
