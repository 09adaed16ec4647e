"""A sweep's look at its points reads again only the folders that changed (digitlab.sweep.state.PointReader), and
the median rule keeps the decisions of the points unchanged since its last plan: neither may change a state, a
decision or a message. After random changes to the point folders (written, appended to, rewritten, damaged, files
removed, folders removed or renamed, locks taken and given back, time let pass so that stats are trusted), the
Schedule that has looked all along says exactly what a new one says. Files are changed as writers change them:
metrics.csv appended to or rewritten, run.json rewritten or replaced, every other file replaced whole. The rules'
plans are checked against the rules written the plain way (every point against every other). No timings here:
benchmarks/sweep_bookkeeping.py measures.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digitlab.config import dump
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.folder import METRICS_COLUMNS
from digitlab.sweep import load_sweep
from digitlab.sweep.prune import (
    ASHA,
    COMPLETE,
    RUN,
    WAIT,
    Decision,
    MedianRule,
    MedianStop,
    Track,
    _at,
    _final,
    _key,
    _numbers,
    _show,
)
from digitlab.sweep.schedule import Schedule
from digitlab.sweep.state import PointReader, lock_path
from digitlab.system.locks import FileLock

EPOCHS = 4
BASE = {"name": "tiny", "seed": 0, "data": {"digits": [3, 8], "validation": 0.1, "limit": 300},
        "model": [{"linear": 4}, "relu", {"linear": 2}], "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1}, "epochs": EPOCHS, "batch_size": 50}
RULES = {"plain": None,
         "asha": {"method": "asha", "metric": "val_accuracy", "min_epochs": 1, "reduction_factor": 2},
         "median": {"method": "median", "metric": "val_accuracy", "min_epochs": 1, "min_points": 2}}
POINTS = 6
FILES = [layout.RUN_JSON, layout.METRICS, layout.SUMMARY, layout.CONFIG, layout.CHECKPOINT, layout.MODEL]
VALUES = st.sampled_from([0.1, 0.5, 0.5, 0.9, 0.0, -0.0, math.nan, None, 1.0])
STATUSES = st.sampled_from(["complete", "complete", "pruned", "pruned", "running", "failed", "interrupted",
                            "diverged"])


def make_sweep(folder: Path, rule: str):
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE, sort_keys=False))
    spec = {"name": "s", "base": "base.yaml", "random": {"n": POINTS, "seed": 0, "params": {
        "optimizer.lr": {"loguniform": [0.001, 0.5]}}}}
    if RULES[rule] is not None:
        spec["prune"] = RULES[rule]
    (folder / "s.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_sweep(folder / "s.yaml")


def metrics_text(values) -> str:
    rows = [",".join(METRICS_COLUMNS)]
    for epoch, value in enumerate(values, start=1):
        cell = "" if value is None else "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.6f}"
        rows.append(",".join(str(epoch) if c == "epoch" else cell if c == "val_accuracy" else "" for c in
                             METRICS_COLUMNS))
    return "\n".join(rows) + "\n"


def write(path: Path, data: str | bytes, atomic: bool = True) -> None:
    """Replace the file whole (a rename, as digitlab writes every file but metrics.csv), or rewrite it in place."""
    data = data.encode() if isinstance(data, str) else data
    if atomic:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    else:
        path.write_bytes(data)


def write_json(path: Path, data: dict, atomic: bool) -> None:
    write(path, json.dumps(data, indent=2) + "\n", atomic)


def write_point(folder: Path, point, status: str, values: list, off: int, atomic: bool) -> None:
    """A point folder as a run leaves it (no .npz files: the agreement check then reads the epochs alone)."""
    folder.mkdir(exist_ok=True)
    write(folder / layout.CONFIG, dump(point.cfg))
    write(folder / layout.METRICS, metrics_text(values), atomic)
    for name in (layout.SUMMARY, layout.CHECKPOINT, layout.MODEL):
        (folder / name).unlink(missing_ok=True)
    if status == "complete":
        last = next((v for v in reversed(values) if isinstance(v, float) and math.isfinite(v)), None)
        write(folder / layout.SUMMARY, json.dumps({"name": point.cfg["name"], "val_accuracy": last}))
    write_json(folder / layout.RUN_JSON, {"status": status, "epoch": len(values) + off, "point": point.id,
                                          "sweep": "s", "heartbeat": time.time(), "pruned": "a reason"}, atomic)


# One change to the sweep folder: what it does, to which point, and its details.
CHANGE = st.one_of(
    st.tuples(st.just("write"), st.integers(0, POINTS - 1), STATUSES, st.lists(VALUES, max_size=EPOCHS),
              st.sampled_from([0, 0, 0, 1]), st.booleans()),
    st.tuples(st.just("append"), st.integers(0, POINTS - 1), VALUES),
    st.tuples(st.just("status"), st.integers(0, POINTS - 1), STATUSES, st.booleans()),
    st.tuples(st.just("damage"), st.integers(0, POINTS - 1), st.sampled_from(FILES)),
    st.tuples(st.just("remove"), st.integers(0, POINTS - 1), st.sampled_from(FILES)),
    st.tuples(st.just("rmdir"), st.integers(0, POINTS - 1)),
    st.tuples(st.just("rename"), st.integers(0, POINTS - 1), st.sampled_from(["{id}", "old-{id}", "zz-{id}"])),
    st.tuples(st.just("extra"), st.integers(0, POINTS - 1), st.sampled_from(["aa-{id}", "{id}", "zz-{id}"])),
    st.tuples(st.just("lock"), st.integers(0, POINTS - 1)),
)


def apply(change: tuple, sweep, sweep_dir: Path, locks: dict) -> None:
    kind, *args = change
    point = sweep.points[args[0]]
    own = sweep_dir / point.folder
    found = own if own.is_dir() else next((p for p in sorted(sweep_dir.iterdir()) if p.is_dir() and (
        p.name == point.id or p.name.endswith("-" + point.id))), None)
    if kind == "write":
        write_point(found or own, point, *args[1:])
    elif kind == "lock":  # taken here, it is held elsewhere for the sweep (another open file); taken again: given back
        if point.id in locks:
            locks.pop(point.id).release()
        else:
            locks[point.id] = FileLock(lock_path(sweep_dir, point.id))
            assert locks[point.id].acquire()
    elif kind == "extra":
        (sweep_dir / args[1].format(id=point.id)).mkdir(exist_ok=True)
    elif found is None:
        return
    elif kind == "append":  # the next epoch's row, in place, as a run appends it
        row = metrics_text([None] * _rows(found) + [args[1]]).splitlines()[-1]
        with open(found / layout.METRICS, "a") as f:
            f.write(row + "\n")
    elif kind == "status":
        try:
            info = json.loads((found / layout.RUN_JSON).read_text())
        except (OSError, ValueError):
            info = {}
        write_json(found / layout.RUN_JSON, {**info, "status": args[1]}, args[2])
    elif kind == "damage":  # in place only where the reader looks at the file's own stat
        write(found / args[1], b"\x00not what digitlab writes", args[1] not in (layout.RUN_JSON, layout.METRICS))
    elif kind == "remove":
        (found / args[1]).unlink(missing_ok=True)
    elif kind == "rmdir":
        shutil.rmtree(found)
    elif kind == "rename" and not (sweep_dir / args[1].format(id=point.id)).exists():
        os.rename(found, sweep_dir / args[1].format(id=point.id))


def _rows(folder: Path) -> int:
    try:
        return max(0, len((folder / layout.METRICS).read_text().splitlines()) - 1)
    except (OSError, UnicodeDecodeError):
        return 0


def seen(schedule: Schedule) -> tuple:
    """Everything a sweep takes from a look."""
    points = schedule.sweep.points
    return (schedule.states, schedule.decisions, schedule.done_epochs, schedule.final(), schedule.settled(),
            [schedule.why(p) for p in points])


@pytest.mark.slow  # a property test over many sweeps of folders
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule=st.sampled_from(list(RULES)), retry_failed=st.booleans(),
       start=st.lists(st.one_of(st.none(), st.tuples(STATUSES, st.lists(VALUES, max_size=EPOCHS))), min_size=POINTS,
                      max_size=POINTS),
       steps=st.lists(st.tuples(st.lists(CHANGE, max_size=5), st.booleans(), st.booleans()), min_size=1, max_size=6))
def test_a_look_that_reads_again_only_what_changed_says_what_a_new_look_says(rule, retry_failed, start, steps):
    """The points start as `start` says (None: never run), old enough for their stats to be trusted; then each
    step: changes, maybe time for their stats to be trusted too (PointReader.FINE), a look by the Schedule that has
    looked all along (told or not which points changed) and by a new one."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep = make_sweep(Path(tmp), rule)
        pristine = copy.deepcopy(sweep)
        sweep_dir = sweep.folder(Path(tmp) / "runs")
        sweep_dir.mkdir(parents=True)
        for point, first in zip(sweep.points, start):
            if first is not None:
                write_point(sweep_dir / point.folder, point, *first, 0, True)
        time.sleep(PointReader.FINE + 0.01)
        looking = Schedule(sweep, sweep_dir, retry_failed).look(settle=False)
        locks: dict = {}
        try:
            for changes, wait, reread in steps:
                for change in changes:
                    apply(change, sweep, sweep_dir, locks)
                if wait:
                    time.sleep(PointReader.FINE + 0.01)
                touched = {sweep.points[c[1]].id for c in changes} if reread else ()
                looking.look(settle=False, reread=touched)
                fresh = Schedule(copy.deepcopy(pristine), sweep_dir, retry_failed).look(settle=False)
                assert seen(looking) == seen(fresh)
        finally:
            for lock in locks.values():
                lock.release()


def test_an_unchanged_folder_is_not_read_again_and_a_changed_one_is(tmp_path):
    sweep = make_sweep(tmp_path, "asha")
    sweep_dir = sweep.folder(tmp_path / "runs")
    sweep_dir.mkdir(parents=True)
    for point in sweep.points:
        write_point(sweep_dir / point.folder, point, "pruned", [0.5], 0, True)
    time.sleep(PointReader.FINE + 0.01)
    reader = PointReader(sweep_dir)
    first = reader.read(sweep.points)
    assert {r.state for r in first.values()} == {"pruned"}
    again = reader.read(sweep.points)
    assert all(again[p.id].version == first[p.id].version for p in sweep.points)
    one, other = sweep.points[0], sweep.points[1]
    with open(sweep_dir / one.folder / layout.METRICS, "a") as f:  # in place: the folder's own stat stays
        f.write(metrics_text([0.5, 0.7]).splitlines()[-1] + "\n")
    lock = FileLock(lock_path(sweep_dir, other.id))
    assert lock.acquire()
    try:
        after = reader.read(sweep.points)
    finally:
        lock.release()
    assert after[one.id].version != first[one.id].version and after[one.id].state == "damaged"  # 2 rows, epoch 1
    assert (after[other.id].state, after[other.id].version) == ("running", first[other.id].version)
    assert all(after[p.id].version == first[p.id].version for p in sweep.points[2:])
    assert reader.read(sweep.points, reread={other.id})[other.id].version != first[other.id].version


# -- the rules, written the plain way ---------------------------------------------------------------------------------

def plain_asha(rule: ASHA, tracks: list[Track]) -> list[Decision]:
    """ASHA as its definition reads: a point's rank at a rung counts the points ahead of it, one by one."""
    decisions: list = [None] * len(tracks)
    members, size = list(range(len(tracks))), len(tracks)
    for k, epoch in enumerate(rule.rungs(max((t.epochs for t in tracks), default=0))):
        quota = max(1, size // rule.eta)
        keys = {i: _key(_at(tracks[i], epoch), rule.maximize, i) for i in members}
        keys = {i: key for i, key in keys.items() if key is not None}
        missing, promoted = size - len(keys), []
        for i in members:
            at = min(epoch, tracks[i].epochs)
            if i not in keys:
                decisions[i] = Decision(RUN, f"to rung {k + 1} (epoch {at})", until=at)
                continue
            ahead = sum(1 for key in keys.values() if key < keys[i])
            if ahead + missing < quota:
                promoted.append(i)
            elif ahead >= quota:
                among = f"{size}" if not missing else f"the {len(keys)} in, {missing} to come"
                decisions[i] = _final(tracks[i], f"rung {k + 1} (epoch {at}): {rule.metric} "
                                                 f"{_show(_at(tracks[i], epoch))} ranked {ahead + 1} of {among}, "
                                                 f"the top {quota} {'goes' if quota == 1 else 'go'} on")
            else:
                decisions[i] = _final(tracks[i], f"waits at rung {k + 1} (epoch {at}): ranked {ahead + 1} of "
                                                 f"the {len(keys)} in, {missing} to come", waiting=True)
        members, size = promoted, quota
    for i in members:
        decisions[i] = _final(tracks[i], "") if tracks[i].ended or tracks[i].complete else \
            Decision(RUN, f"to the end (epoch {tracks[i].epochs})", until=tracks[i].epochs)
    return decisions


def plain_median(rule: MedianRule, tracks: list[Track]) -> list[Decision]:
    """The median rule as its definition reads: every point against the list of the completed points before it."""
    decisions: list[Decision] = []
    for i, track in enumerate(tracks):
        complete = [tracks[j] for j in range(i) if decisions[j].state == COMPLETE]
        undecided = sum(1 for d in decisions if not d.done)
        if track.ended:
            decisions.append(_final(track, ""))
        elif len(complete) + undecided < rule.min_points:
            decisions.append(_final(track, "") if track.complete else Decision(
                RUN, f"to the end (epoch {track.epochs}): fewer than {plural(rule.min_points, 'completed point')} "
                     f"before it", until=track.epochs))
        elif undecided:
            decisions.append(Decision(WAIT, f"waits for the {plural(undecided, 'undecided point')} before it"))
        else:
            thresholds = {}
            for epoch in range(rule.min_epochs, track.epochs):
                averages = [statistics.fmean(_numbers(t.values[:epoch], rule.maximize)) for t in complete
                            if len(t.values) >= epoch]
                if len(averages) >= rule.min_points:
                    thresholds[epoch] = statistics.median(averages)
            stop = MedianStop(rule.metric, rule.maximize, thresholds, len(complete))
            decision = None
            for epoch in range(1, len(track.values) + 1):
                why = stop.check([{rule.metric: v} for v in track.values[:epoch]])
                if why and epoch < track.epochs:
                    decision = _final(track, why) if epoch < len(track.values) else Decision("pruned", why)
                    break
            if decision is None:
                decision = Decision(COMPLETE, f"trained all {plural(track.epochs, 'epoch')}") if track.complete else \
                    Decision(RUN, f"to the end (epoch {track.epochs}) unless below the median", until=track.epochs,
                             rule=stop)
            decisions.append(decision)
    return decisions


TRACK = st.builds(lambda values, epochs, ended, finished: Track(values, max(epochs, 1), ended, finished),
                  st.lists(st.one_of(st.sampled_from([0.1, 0.2, 0.5, 0.5, 0.9, 0.0, -0.0, math.nan, math.inf, None]),
                                     st.floats(0, 1)), max_size=9),
                  st.integers(1, 9), st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(eta=st.integers(2, 4), min_epochs=st.integers(1, 3), metric=st.sampled_from(["val_accuracy", "val_loss"]),
       plans=st.lists(st.lists(TRACK, max_size=12), min_size=1, max_size=5))
def test_asha_decides_as_its_definition_reads(eta, min_epochs, metric, plans):
    rule = ASHA(metric, min_epochs, eta)
    for tracks in plans:
        assert rule.plan(tracks) == plain_asha(rule, tracks)


@settings(max_examples=150, deadline=None)
@given(min_epochs=st.integers(1, 3), min_points=st.integers(1, 4), metric=st.sampled_from(["val_accuracy", "val_loss"]),
       first=st.lists(TRACK, max_size=12),
       edits=st.lists(st.tuples(st.integers(0, 11), st.one_of(st.none(), TRACK)), min_size=1, max_size=8))
def test_the_median_rule_kept_between_plans_decides_as_its_definition_reads(min_epochs, min_points, metric, first,
                                                                            edits):
    """One rule plans again and again, as a sweep's looks do, while points change, come and go, or change in place."""
    rule = MedianRule(metric, min_epochs, min_points)
    tracks = list(first)
    assert rule.plan(tracks) == plain_median(rule, tracks)
    for where, track in edits:
        if track is None and tracks:
            tracks.pop(where % len(tracks))
        elif track is not None and where < len(tracks) and where % 2:
            tracks[where].values.append(track.values[0] if track.values else 0.5)  # the same Track, changed
        elif track is not None:
            tracks.insert(min(where, len(tracks)), track)
        assert rule.plan(tracks) == plain_median(rule, tracks)
