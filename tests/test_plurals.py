"""Counts read as English wherever digitlab prints them: no "1 epochs", "1 points", "1 BLAS threads" or "epoch(s)"
(every f-string of the package is walked: a number followed by a plural noun goes through options.plural), and sizes
in the largest unit that keeps the number readable (options.size_text). Then real messages with a count of one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import digitlab
from digitlab.options import plural, size_text

PACKAGE = Path(digitlab.__file__).parent
NOUNS = ("epoch", "point", "run", "image", "thread", "batch", "layer", "file", "row", "job", "worker", "byte",
         "parameter", "cell", "class", "digit", "line", "folder", "step", "sample", "unit", "value", "output", "key",
         "rung", "time", "seed", "character", "entr", "member", "label", "pixel", "filter", "weight", "array",
         "decision", "column", "tag", "second", "minute", "hour", "config")
# Up to two words (an adjective: "test images", "completed points") between the number and the plural noun.
PLURAL_AFTER = re.compile(r"^\s?(?:[A-Za-z-]+ ){0,2}(?:" + "|".join(NOUNS) + r")(?:s|es|ies)(?=\W|$)")
MAYBE = re.compile(r"\w\((?:s|es)\)")  # "epoch(s)": say it in words instead
# Values before a plural noun that are not counts: a name ("{split} images", "{layer} expects images", "{name} over
# digits", "{schedule} schedule runs"), and an image's dimensions ("{h}x{w} pixels").
NOT_COUNTS = {"split", "layer", "name", "schedule"}


def count_before_plural(node: ast.JoinedStr) -> list[str]:
    found = []
    for before, value, after in zip([None] + node.values, node.values, node.values[1:]):
        if not isinstance(value, ast.FormattedValue) or not isinstance(after, ast.Constant):
            continue
        text = ast.unparse(value.value)
        spec = ast.unparse(value.format_spec) if value.format_spec else ""
        is_call = isinstance(value.value, ast.Call)
        called = ast.unparse(value.value.func) if is_call else ""
        quoted = value.conversion == ord("r")  # {name!r}: a name in quotes, never a count
        if text in NOT_COUNTS or quoted or "%" in spec or called in ("plural", "size_text") or called.endswith(".join"):
            continue
        if isinstance(before, ast.Constant) and str(before.value).endswith("x"):  # '{h}x{w} pixels'
            continue
        if PLURAL_AFTER.match(str(after.value)):
            found.append(f"{{{text}}}{str(after.value)[:30]}")
    return found


def test_no_f_string_puts_a_bare_count_before_a_plural_noun():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {x}" for x in count_before_plural(node)]
                offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno}: {c.value[:40]!r}" for c in node.values
                              if isinstance(c, ast.Constant) and MAYBE.search(str(c.value))]
    assert not offenders, "counts not passed through options.plural:\n" + "\n".join(offenders)


def test_the_scan_finds_what_it_is_for():
    def scan(source: str) -> list[str]:
        return count_before_plural(ast.parse(source).body[0].value)
    assert scan('f"{n} epochs left"') and scan('f"{len(x)} test images"') and scan('f"of {k} completed points"')
    assert not scan('f"{plural(n, \'epoch\')} left"') and not scan('f"{split} images"')
    assert not scan('f"{h}x{w} pixels"') and not scan('f"{share:.0%} of its units"')


@pytest.mark.parametrize("count,word,many,said", [(1, "epoch", None, "1 epoch"), (0, "epoch", None, "0 epochs"),
                                                  (2, "batch", "batches", "2 batches"),
                                                  (12560, "parameter", None, "12,560 parameters")])
def test_plural(count, word, many, said):
    assert plural(count, word, many) == said


def test_sizes_are_in_a_readable_unit():
    assert [size_text(n) for n in (1, 512, 1024, 4_799_488, 4_799_488 * 1024, 64 << 20)] == \
        ["1 byte", "512 bytes", "1.0 KB", "4.6 MB", "4.6 GB", "64.0 MB"]
    assert size_text(4_687 * 1024) == "4.6 MB"  # never "4,687.0 KB"


def test_messages_with_a_count_of_one(tmp_path):
    from digitlab.options import plural as said
    from digitlab.run.reproduce import Reproduction, metrics_differences
    assert Reproduction(tmp_path, tmp_path, 1).lines() == ["metrics match (1 epoch, seconds aside)"]
    one = tmp_path / "one.csv"
    two = tmp_path / "two.csv"
    one.write_text("epoch,train_loss,seconds\n1,0.5,1\n")
    two.write_text("epoch,train_loss,seconds\n1,0.5,1\n2,0.4,1\n")
    assert metrics_differences(two, one)[0] == "1 epoch here, 2 in the original"
    assert said(1, "completed point") == "1 completed point"
