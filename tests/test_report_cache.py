"""`digitlab report` draws a figure only when it must: one digitlab drew from the folder's files as they are now
(its stamp, .figures.json, says so, and the file holds the bytes drawn) is shown again as it is; a changed
source, a damaged or foreign figure, a damaged or foreign stamp or another digitlab draws again. Counted by
wrapping every figure's function."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

import digitlab
from digitlab.run import layout, outputs, stamp
from digitlab.run.folder import RunFolder
from digitlab.run.view import RunView

STAMP = layout.FIGURES_STAMP


class Drawn(list):
    """The names of the figures drawn, in order; `stub`: drawn as stand-ins, at no cost."""

    stub = False


@pytest.fixture
def drawn(monkeypatch, tiny_run) -> Drawn:
    """Every figure's function wrapped to count its calls: the real drawing, or with `drawn.stub = True` a
    stand-in of the right kind (tiny_run's bytes of another figure), so that a report costs no drawing."""
    calls = Drawn()
    stand_in = {".png": (tiny_run / "confusion.png").read_bytes(),
                ".gif": (tiny_run / "embedding_epochs.gif").read_bytes()}

    def wrap(o):
        def make(view):
            calls.append(o.name)
            return stand_in[Path(o.name).suffix] if calls.stub else o.make(view)
        return make

    for name, o in list(outputs.OUTPUTS.items()):
        if o.figure:
            monkeypatch.setitem(outputs.OUTPUTS, name, dataclasses.replace(o, make=wrap(o)))
    return calls


def report(run: Path, *args) -> str:
    """`digitlab report RUN`; the page, without the moment its log was read."""
    result = cli("report", run, *args)
    assert result.exit_code == 0, result.output
    return re.sub(r"as of [\d: -]+", "", (run / layout.REPORT).read_text(encoding="utf-8"))


def test_a_run_is_drawn_once_and_its_copy_and_second_report_draw_nothing(tiny_run, copy_run, drawn):
    run = copy_run(tiny_run)  # the end of the run drew its figures and stamped them; copytree keeps it all
    page = report(run)
    assert drawn == []
    figures = sorted(n for n, o in outputs.OUTPUTS.items() if o.figure and (tiny_run / n).exists())
    assert figures and all((run / n).read_bytes() == (tiny_run / n).read_bytes() for n in figures)
    assert report(run, "--redraw") == page  # every figure drawn again: the same bytes, the same page
    assert sorted(n for n in drawn if (run / n).exists()) == figures
    assert "augment.png" in drawn  # asked again, though it does not apply to the run
    drawn.clear()
    assert report(run) == page and drawn == []
    again = copy_run(run, "plain")  # copied without the modification times: the same bytes are the same figures
    shutil.rmtree(again)
    shutil.copytree(run, again, copy_function=shutil.copyfile)
    assert report(again) == page.replace(str(run), str(again)) and drawn == []
    os.utime(again / layout.METRICS)  # touched, not changed
    report(again)
    assert drawn == []


def model_from(other_run, run):
    shutil.copyfile(other_run / layout.MODEL, run / layout.MODEL)


def metrics_edited(other_run, run):
    path = run / layout.METRICS
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].rsplit(",", 1)[0] + ",9.5"  # the last epoch's seconds
    path.write_text("\n".join(lines) + "\n")


def health_from(other_run, run):
    shutil.copyfile(other_run / layout.LAYER_HEALTH, run / layout.LAYER_HEALTH)


def extended(other_run, run):
    path = run / layout.CONFIG
    path.write_text(path.read_text().replace("epochs: 2", "epochs: 3"))


def stamp_damaged(other_run, run):
    (run / STAMP).write_bytes((run / STAMP).read_bytes()[:40])


def stamp_garbled(other_run, run):
    (run / STAMP).write_text('{"figures": {"curves.png": "yes"}}')


def stamp_to_zero(other_run, run):
    """The stamp a link to an endless device: read no further than a stamp's size."""
    (run / STAMP).unlink()
    (run / STAMP).symlink_to("/dev/zero")


def stamp_oversized(other_run, run):
    """The stamp as written, padded past the size of any stamp: valid JSON, still not read."""
    path = run / STAMP
    path.write_bytes(path.read_bytes() + b" " * (stamp.MAX_STAMP_BYTES + 1))


def stamp_foreign(other_run, run):
    """The stamp with its figures copied into another run folder: they say nothing of its files."""
    for name in os.listdir(run):
        if name.endswith((".png", ".gif")) or name == STAMP:
            shutil.copy2(run / name, other_run / name)


def another_version(other_run, run, monkeypatch):
    monkeypatch.setattr(digitlab, "__version__", "99.0")
    monkeypatch.setattr(stamp, "_code", [])


@pytest.mark.parametrize("change", [model_from, metrics_edited, health_from, extended, stamp_damaged, stamp_garbled,
                                   stamp_to_zero, stamp_oversized, stamp_foreign, another_version])
def test_a_run_whose_files_changed_gets_every_figure_drawn_again(tiny_run, other_run, copy_run, drawn, change,
                                                                  monkeypatch):
    run, other = copy_run(tiny_run), copy_run(other_run, "other")
    drawn.stub = True
    change(other, run, *([monkeypatch] if change is another_version else []))
    run = other if change is stamp_foreign else run
    report(run)
    assert sorted(drawn) == sorted(n for n, o in outputs.OUTPUTS.items() if o.figure)
    assert json.loads((run / STAMP).read_text())["sources"][layout.MODEL][0] == (run / layout.MODEL).stat().st_size
    drawn.clear()
    report(run)
    assert drawn == []  # stamped again, from the files as they are


def test_a_damaged_foreign_or_missing_figure_alone_is_drawn_again(tiny_run, other_run, copy_run, drawn):
    run = copy_run(tiny_run)
    theirs = outputs.curves_png(RunView(RunFolder(other_run)))  # another run's curves, as digitlab draws them
    assert theirs.startswith(b"\x89PNG") and theirs != (run / "curves.png").read_bytes()
    mtime = (run / "curves.png").stat().st_mtime_ns
    (run / "curves.png").write_bytes(theirs)
    os.utime(run / "curves.png", ns=(mtime, mtime))  # even with the modification time it had
    (run / "saliency.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)  # a damaged figure
    (run / "mistakes.png").unlink()
    drawn.stub = True
    page = report(run)
    assert sorted(drawn) == ["curves.png", "mistakes.png", "saliency.png"]
    assert (run / "curves.png").read_bytes() != theirs
    assert base64.b64encode(theirs).decode()[:200] not in page
    drawn.clear()
    report(run)
    assert drawn == []


def test_a_report_that_draws_nothing_loads_no_matplotlib(tiny_run, copy_run):
    run = copy_run(tiny_run)
    code = ("import sys\nfrom digitlab.cli import main\n"
            "try:\n    main(['report', sys.argv[1]], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [str(run / layout.REPORT), "[]"], proc.stdout
