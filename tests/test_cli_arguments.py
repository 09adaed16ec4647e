"""Command-line arguments: a mistake in one (an unknown command or option, a value out of range, an empty path, a
missing argument) is one line naming it, with the command to ask for help, and exit code 2, before anything is read
or written."""

from __future__ import annotations

import pytest
from conftest import cli


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
