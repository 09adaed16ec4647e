"""Runs people manage: tags and a note on a run (`digitlab tag`, `digitlab note`), shown and filtered in `runs`
and `compare`; `digitlab rm` moving runs to the trash beside them and `--restore` bringing them back whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

from digitlab.config import validate
from digitlab.run.folder import RunFolder
from digitlab.run.lifecycle import start

TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 200},
        "model": [{"linear": 8}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 1, "batch_size": 50}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return start(validate(TINY), runs_dir=tmp_path_factory.mktemp("trained"), quiet=True, progress=False).path


@pytest.fixture
def runs(trained, tmp_path):
    """Two copies of a trained run in a runs folder of their own."""
    folder = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(trained, folder / f"{name}-{trained.name}")
    return folder


def folders(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if not p.name.startswith("."))


def test_tags_show_in_runs_and_compare_and_filter_with_where(runs):
    a, b = folders(runs)
    result = cli("tag", a, "owner=ana", "idea=lower lr")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{a}: idea=lower lr owner=ana"
    listed = json.loads(cli("runs", runs, "--format", "json").stdout)
    assert {row["name"]: row.get("tags") for row in listed} == {a.name: "idea=lower lr owner=ana", b.name: None}
    header = cli("runs", runs).stdout.splitlines()[0].split()
    assert "tags" in header
    only = json.loads(cli("runs", runs, "--where", "tag.owner=ana", "--format", "json").stdout)
    assert [row["name"] for row in only] == [a.name]
    none = cli("runs", runs, "--where", "tag.owner=bob")
    assert none.exit_code == 0 and "no runs meet the conditions" in none.stderr
    rows = json.loads(cli("compare", a, b, "--format", "json").stdout)
    assert [row.get("tag.idea") for row in rows] == ["lower lr", None]
    assert cli("tag", a, "--remove", "idea").stdout.strip() == f"{a}: owner=ana"
    assert json.loads((a / "tags.json").read_text())["tags"] == {"owner": "ana"}


def test_a_note_is_saved_printed_and_cleared(runs):
    a, _ = folders(runs)
    assert cli("note", a).stdout.strip() == f"{a}: no note"
    assert cli("note", a, "the lr was too high, é").exit_code == 0
    assert cli("note", a).stdout.strip() == "the lr was too high, é"
    rows = json.loads(cli("runs", runs, "--where", "note=the lr was too high, é", "--format", "json").stdout)
    assert [row["name"] for row in rows] == [a.name]
    assert cli("note", a, "").stdout.strip() == f"{a}: note cleared"
    assert cli("note", a).stdout.strip() == f"{a}: no note"


@pytest.mark.parametrize("args, message", [
    (["bad key=1"], "expected KEY=VALUE"),
    (["=x"], "expected KEY=VALUE"),
    (["--remove", "absent"], "has no tag absent"),
    ([], "give KEY=VALUE tags"),
])
def test_bad_tags_are_one_line_and_write_nothing(runs, args, message):
    a, _ = folders(runs)
    result = cli("tag", a, *args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (a / "tags.json").exists()


def test_tagging_a_folder_that_is_not_a_run_tags_none_of_the_others(runs, tmp_path):
    a, _ = folders(runs)
    result = cli("tag", a, tmp_path, "owner=ana")
    assert result.exit_code == 2 and "not a run folder" in result.stderr
    assert not (a / "tags.json").exists()


def test_a_damaged_tags_file_makes_the_run_damaged_not_a_traceback(runs):
    a, b = folders(runs)
    (a / "tags.json").write_text('{"tags": {"owner": 3}}')
    result = cli("runs", runs, "--format", "json")
    assert result.exit_code == 0 and "tags.json" in result.stderr and "Traceback" not in result.output
    assert {row["name"]: row["status"] for row in json.loads(result.stdout)} == {a.name: "damaged",
                                                                                  b.name: "complete"}
    assert cli("tag", a, "x=1").exit_code == 2


def test_taggers_at_once_all_land(runs):
    a, _ = folders(runs)
    code = "import sys\nfrom digitlab.cli import main\nmain(['tag', sys.argv[1], f'k{sys.argv[2]}=v'])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(a), str(n)]) for n in range(6)]
    assert [p.wait() for p in procs] == [0] * 6
    assert json.loads((a / "tags.json").read_text())["tags"] == {f"k{n}": "v" for n in range(6)}


def test_rm_moves_a_run_to_the_trash_and_restore_brings_it_back_whole(runs):
    a, b = folders(runs)
    before = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    result = cli("rm", a)
    assert result.exit_code == 0 and not a.exists() and (runs / ".trash" / a.name).is_dir()
    assert [row["name"] for row in json.loads(cli("runs", runs, "--format", "json").stdout)] == [b.name]
    assert cli("rm", "--list", runs).stdout.strip() == str(runs / ".trash" / a.name)
    assert cli("rm", "--restore", a).exit_code == 0
    assert {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()} == before
    assert not any((runs / ".trash").iterdir())


def test_rm_refuses_a_run_being_trained_and_a_restore_over_a_folder(runs):
    a, b = folders(runs)
    with RunFolder(a).lock():
        result = cli("rm", a)
    assert result.exit_code == 2 and "being trained" in result.stderr and a.is_dir()
    assert cli("rm", b).exit_code == 0
    b.mkdir()
    result = cli("rm", "--restore", b)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (runs / ".trash" / b.name / "run.json").is_file()
    missing = cli("rm", "--restore", runs / "nothing-here")
    assert missing.exit_code == 2 and "not in the trash" in missing.stderr


def test_only_empty_deletes(runs):
    a, b = folders(runs)
    cli("rm", a, b)
    result = cli("rm", "--empty", runs)
    assert result.exit_code == 0 and "2 run folders deleted" in result.stderr
    assert not any((runs / ".trash").iterdir()) and not folders(runs)
