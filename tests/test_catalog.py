"""The run catalog (runs/catalog.py): a cache that always agrees with reading every folder, after edits, damage,
additions and removals; that survives a garbage or foreign file, a killed writer and writers at once; and that
never stops a listing (a folder it cannot write lists all the same)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.cli import main
from digitlab.config import validate
from digitlab.run import layout
from digitlab.run.lifecycle import start
from digitlab.runs import catalog
from digitlab.runs.collect import collect
from digitlab.runs.columns import describe

TINY = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 200},
        "model": [{"linear": 8}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": 2, "batch_size": 50}
HOUR_AGO = time.time() - 3600


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return start(validate(TINY), runs_dir=tmp_path_factory.mktemp("trained"), quiet=True, progress=False).path


def copy_run(source: Path, target: Path) -> Path:
    """A copy whose files look an hour old, as a folder catalogued long ago would."""
    shutil.copytree(source, target)
    for path in [target, *target.iterdir()]:
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return target


def truth(root: Path) -> dict[str, dict]:
    runs, _ = collect([root])
    describe(runs)
    return {run.name: run.values for run in runs}


def cached(root: Path) -> dict[str, dict]:
    runs, _ = catalog.collect([root])
    return {run.name: run.values for run in runs}


def damage(folder: Path, name: str, how: str) -> None:
    path = folder / name
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])
    elif how == "garbage":  # the same size, other bytes
        path.write_bytes(b"\x00" * path.stat().st_size)
    elif how == "remove":
        path.unlink()
    elif how == "edit" and name == layout.CONFIG:
        path.write_text(path.read_text().replace("lr: 0.1", "lr: 0.2"))
    elif how == "edit" and name == layout.METRICS:
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:-1]) + "\n")
    else:  # a touch: new mtime, same bytes
        os.utime(path)


OPERATIONS = st.lists(st.tuples(
    st.sampled_from(["add", "remove", "damage", "restore", "tag"]),
    st.integers(0, 5),
    st.sampled_from([layout.RUN_JSON, layout.CONFIG, layout.METRICS, layout.SUMMARY, layout.MODEL, layout.CHECKPOINT]),
    st.sampled_from(["truncate", "garbage", "remove", "edit", "touch"]),
), min_size=1, max_size=6)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_the_catalog_agrees_with_reading_every_folder_after_any_changes(trained, tmp_path_factory, operations):
    root = tmp_path_factory.mktemp("runs")
    for n in range(3):
        copy_run(trained, root / f"run{n}")
    assert cached(root) == truth(root)  # cold
    for op, n, name, how in operations:
        folder = root / f"run{n}"
        if op == "add" and not folder.exists():
            copy_run(trained, folder)
        elif op == "remove" and folder.exists():
            shutil.rmtree(folder)
        elif op == "damage" and (folder / name).exists():
            damage(folder, name, how)
        elif op == "restore" and folder.exists():
            shutil.rmtree(folder)
            copy_run(trained, folder)
        elif op == "tag" and folder.exists():
            CliRunner().invoke(main, ["tag", str(folder), f"n={n}"])
        assert cached(root) == truth(root), (op, n, name, how)
    assert cached(root) == truth(root)  # warm, nothing changed


def test_a_warm_listing_reads_no_folder(trained, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for n in range(4):
        copy_run(trained, root / f"run{n}")
    time.sleep(1.1)  # older than a clock tick's doubt (the racy rule)
    first = cached(root)
    monkeypatch.setattr(catalog, "read_run", lambda path: pytest.fail(f"read {path} again"))
    assert cached(root) == first
    assert (root / layout.CATALOG).is_file()


def test_a_file_rewritten_in_place_with_its_mtime_set_back_is_read_again(trained, tmp_path):
    root = tmp_path / "runs"
    copy_run(trained, root / "run0")
    time.sleep(1.1)  # past the racy rule's doubt: the row's stamp is trusted
    cached(root)
    summary = root / "run0" / layout.SUMMARY
    stat = summary.stat()
    data = json.loads(summary.read_text())
    data["test_accuracy"] = 0.5
    text = json.dumps(data, indent=2) + "\n"
    summary.write_text(text[: stat.st_size].ljust(stat.st_size))  # same size, same inode
    os.utime(summary, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the ctime tells
    assert cached(root) == truth(root)
    assert cached(root)["run0"]["test_acc"] == 0.5


@pytest.mark.parametrize("content", [b"garbage, not SQLite", b"SQLite format 3\x00" + b"\x01" * 200, "foreign"])
def test_a_damaged_or_foreign_catalog_is_rebuilt_with_one_warning(trained, tmp_path, content):
    root = tmp_path / "runs"
    copy_run(trained, root / "run0")
    path = root / layout.CATALOG
    if content == "foreign":
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE notes (text TEXT)")
        other.close()
    else:
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["runs", str(root), "--format", "json"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "not a digitlab catalog" in line]
    assert len(warnings) == 1 and str(path) in warnings[0] and "Traceback" not in result.output
    assert [row["name"] for row in json.loads(result.stdout)] == ["run0"]
    again = CliRunner().invoke(main, ["runs", str(root)])
    assert "catalog" not in again.stderr


def test_a_writer_killed_mid_transaction_loses_nothing(trained, tmp_path):
    root = tmp_path / "runs"
    for n in range(3):
        copy_run(trained, root / f"run{n}")
    cached(root)
    code = ("import os, signal, sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "db.execute(\"UPDATE runs SET record = 'not json'\")\n"
            "db.execute(\"DELETE FROM runs WHERE path = 'run1'\")\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(root / layout.CATALOG)])
    assert proc.returncode == -signal.SIGKILL
    assert cached(root) == truth(root)


@pytest.mark.slow  # two sweeps and listings in processes at once
def test_listings_and_sweeps_at_once_never_corrupt_it(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    for name, lrs in (("a", [0.1, 0.05]), ("b", [0.2, 0.02])):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, "base": "base.yaml",
                                                                "grid": {"optimizer.lr": lrs}}))
    runs = tmp_path / "runs"
    runs.mkdir()
    sweeps = [subprocess.Popen([sys.executable, "-m", "digitlab", "sweep", str(tmp_path / f"{name}.yaml"),
                                "--runs-dir", str(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for name in ("a", "b")]
    listings = 0
    while any(p.poll() is None for p in sweeps):
        result = subprocess.run([sys.executable, "-m", "digitlab", "runs", str(runs), "--format", "json"],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        listings += 1
    assert [p.returncode for p in sweeps] == [0, 0], [p.stderr.read() for p in sweeps]
    assert listings >= 1
    final = cached(runs)
    assert final == truth(runs) and len(final) == 4
    with sqlite3.connect(runs / layout.CATALOG) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_folder_that_cannot_be_written_lists_from_the_users_cache(trained, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    copy_run(trained, root / "run0")
    real_access = os.access
    monkeypatch.setattr(catalog.os, "access", lambda path, mode: False if Path(path) == root else
                        real_access(path, mode))
    assert cached(root) == truth(root)
    assert not (root / layout.CATALOG).exists()
    assert list((Path(os.environ["DIGITLAB_CACHE"]) / "catalogs").glob("*.sqlite"))
    monkeypatch.setattr(catalog.os, "access", lambda path, mode: False)  # nowhere to write: read every folder
    assert cached(root) == truth(root)


def test_the_trash_and_the_catalog_are_not_runs(trained, tmp_path):
    root = tmp_path / "runs"
    for n in range(2):
        copy_run(trained, root / f"run{n}")
    cached(root)
    assert CliRunner().invoke(main, ["rm", str(root / "run1")]).exit_code == 0
    assert list(cached(root)) == ["run0"]


def test_a_sweeps_points_are_catalogued_beside_the_sweep_not_inside_it(trained, tmp_path):
    root = tmp_path / "runs"
    sweep = root / "s"
    copy_run(trained, sweep / "point-a")
    (sweep / layout.SWEEP_FILE).write_text("name: s\n")
    assert list(cached(sweep)) == ["point-a"]
    assert not list(sweep.glob(".digitlab-catalog*")) and (root / layout.CATALOG).is_file()
    assert list(cached(root)) == ["point-a"]
    shutil.rmtree(sweep / "point-a")
    assert cached(sweep) == {} and cached(root) == {}


def test_checkpoint_npz_is_looked_at_only_where_there_is_no_model_npz(trained, tmp_path, monkeypatch):
    """read_run reads checkpoint.npz only where model.npz is not a file, so only there is it stamped: beside a
    model.npz its change reads nothing again; without one, its damage is seen at once."""
    monkeypatch.setattr(catalog, "RACY_NS", -2**62)  # every stamp trusted at once, as a second later
    root = tmp_path / "runs"
    folder = copy_run(trained, root / "run0")
    assert (folder / layout.MODEL).is_file() and (folder / layout.CHECKPOINT).is_file()
    cached(root)
    damage(folder, layout.CHECKPOINT, "garbage")
    os.utime(folder / layout.CHECKPOINT, (HOUR_AGO, HOUR_AGO))
    with monkeypatch.context() as patch:
        patch.setattr(catalog, "read_run", lambda path: pytest.fail(f"read {path} again"))
        assert cached(root)["run0"]["status"] == "complete"
    assert cached(root) == truth(root)
    (folder / layout.MODEL).unlink()
    assert cached(root) == truth(root) and cached(root)["run0"]["status"] == "damaged"
    shutil.copy(trained / layout.CHECKPOINT, folder / layout.CHECKPOINT)
    assert cached(root) == truth(root) and cached(root)["run0"]["status"] != "damaged"


def test_the_newest_runs_decode_only_their_rows_and_see_every_change(trained, tmp_path, monkeypatch):
    """collect(newest=N): the N runs `digitlab runs` lists first, in its order; a folder changed or added since
    is read (its run.json's started may put it first), and only the N rows kept are decoded."""
    from digitlab.runs.listing import list_runs
    monkeypatch.setattr(catalog, "RACY_NS", -2**62)  # every stamp trusted at once, as a second later
    root = tmp_path / "runs"
    for n in range(5):
        folder = copy_run(trained, root / f"run{n}")
        info = json.loads((folder / layout.RUN_JSON).read_text())
        info["started"] = f"2026-01-0{n + 1}T00:00:00Z"
        (folder / layout.RUN_JSON).write_text(json.dumps(info))
        os.utime(folder / layout.RUN_JSON, (HOUR_AGO, HOUR_AGO))
    cached(root)
    info = json.loads((root / "run0" / layout.RUN_JSON).read_text())
    (root / "run0" / layout.RUN_JSON).write_text(json.dumps({**info, "started": "2026-02-01T00:00:00Z"}))
    shutil.rmtree(root / "run4")
    made = []
    monkeypatch.setattr(catalog, "CataloguedRun", lambda *args: made.append(args) or catalog_run(*args))
    runs, _ = catalog.collect([root], newest=2)
    assert len(made) == 1  # run3's row; run0 was read again
    assert [run.name for run in runs] == ["run0", "run3"] == [row["name"] for row in list_runs([root])[1][:2]]
    assert runs[1].values == truth(root)["run3"] and runs[0].values == truth(root)["run0"]
    assert [run.name for run in catalog.collect([root], newest=10)[0]] == ["run0", "run3", "run2", "run1"]


catalog_run = catalog.CataloguedRun


def test_a_warm_listing_loads_neither_numpy_nor_yaml(trained, tmp_path, monkeypatch):
    """What a catalogued listing needs is the catalog: the modules that read a folder stay unloaded."""
    monkeypatch.setattr(catalog, "RACY_NS", -2**62)  # every stamp trusted at once, as a second later
    root = tmp_path / "runs"
    copy_run(trained, root / "run0")
    cached(root)
    code = ("import sys\nfrom digitlab.cli import main\n"
            "try:\n    main(['runs', sys.argv[1], '--where', 'test_acc>0.5'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'yaml', 'matplotlib'}))")
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True)
    assert proc.returncode == 0 and "run0" in proc.stdout, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_a_row_that_is_no_json_object_is_read_again_from_its_folder(trained, tmp_path, monkeypatch):
    """Rows are decoded all at once; one that a damaged file garbled (not JSON, or JSON but no object) makes its
    folder be read again and its row rewritten, and the other rows stand."""
    import gc
    monkeypatch.setattr(catalog, "RACY_NS", -2**62)  # every stamp trusted at once, as a second later
    root = tmp_path / "runs"
    for n in range(3):
        copy_run(trained, root / f"run{n}")
    cached(root)
    with sqlite3.connect(root / layout.CATALOG) as db:
        db.execute("UPDATE runs SET row = 'not json' WHERE path = 'run0'")
        db.execute("UPDATE runs SET row = '[1, 2]' WHERE path = 'run2'")
    db.close()
    threshold = gc.get_threshold()
    assert cached(root) == truth(root) and gc.get_threshold() == threshold
    with sqlite3.connect(root / layout.CATALOG) as db:
        rows = dict(db.execute("SELECT path, row FROM runs"))
    db.close()
    assert sorted(rows) == ["run0", "run1", "run2"] and all(json.loads(row)["name"] for row in rows.values())
    with sqlite3.connect(root / layout.CATALOG) as db:  # the live view's first picture skips a garbled row
        db.execute("UPDATE runs SET row = 'not json' WHERE path = 'run1'")
    db.close()
    assert sorted(path.name for path, _ in catalog.cached_rows(root)) == ["run0", "run2"]
