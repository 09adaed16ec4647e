"""Pruning a sweep: stop the points that will not end best early, so that the epochs go to the promising ones.
Two rules, each a pure function of the points' metric per epoch (what their metrics.csv holds), in the sweep's
order, so that they can be checked by hand and give the same decisions however the points were run:

- `asha`, successive halving in its asynchronous form (Li et al. 2018): rungs at min_epochs x
  reduction_factor^k epochs; a point that reaches a rung goes on to the next when it is in the top
  1/reduction_factor of the points that reach that rung, and stops there (status `pruned`) otherwise.
- `median`, the median stopping rule (Golovin et al. 2017): a point stops after an epoch at which its best
  metric so far is worse than the median of the completed points' running averages at that epoch.

Why the decisions are the same sequentially, with --workers and on Dask. ASHA promotes a point when it is in the
top 1/eta of the points that have reached its rung *so far*, so what it decides depends on the order the results
come in, that is on timing. Here the quota of a rung is counted on every point that will reach it (all the points
for the first rung, then 1/eta of the rung below: known in advance), and a point is promoted or stopped only when
no result still missing can change that: promoted when the points ahead of it plus the results still to come are
fewer than the quota, stopped when the points ahead of it already fill it. Otherwise it waits at its rung
(`pruned` on disk, resumed from its checkpoint when promoted). So every decision is the one successive halving
takes with all of the rung's results in, whatever their order; asynchrony remains where the results allow it (a
clear winner goes on before its rung is complete). Ties go to the point earlier in the sweep.
The median rule compares a point with the points before it in the sweep that completed: a point starts once the
points before it are decided (or when fewer than min_points of them could complete, in which case the rule
cannot apply to it), so its thresholds are fixed before it trains and the run checks them after each epoch.
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field

from digitlab.options import Choice, Integer, plural

METRICS = {"val_accuracy": True, "val_loss": False, "train_accuracy": True, "train_loss": False,
           "test_accuracy": True, "test_loss": False}  # metrics.csv's columns; True: higher is better

RUN, WAIT = "run", "wait"  # a decision's state; the others are the point's final ones:
COMPLETE, PRUNED, ENDED = "complete", "pruned", "ended"  # ended: failed, diverged or damaged on its own


@dataclass
class Track:
    """What a rule knows of one point: its metric after each epoch recorded so far, its config's epochs, whether
    it ended on its own (failed, diverged, damaged: it then counts as the worst at every rung it did not reach),
    and whether its run says it is complete (early stopping may complete it before its last epoch: its last
    value then stands for the epochs it did not train)."""

    values: list
    epochs: int
    ended: bool = False
    finished: bool = False

    @property
    def complete(self) -> bool:
        return not self.ended and (self.finished or len(self.values) >= self.epochs)


@dataclass
class Decision:
    """What becomes of a point now: `run` (train it until epoch `until`, with `rule` as its stop rule when the
    rule decides during training), `wait` (its next decision needs results that are not on disk yet), or its
    final state: complete, pruned or ended. `why` says why, in words."""

    state: str
    why: str = ""
    until: int | None = None
    rule: object | None = None

    @property
    def done(self) -> bool:
        return self.state in (COMPLETE, PRUNED, ENDED)


class ASHA:
    """Successive halving with rungs at min_epochs x reduction_factor^k epochs (those below a point's epochs)."""

    options = {"metric": Choice(METRICS), "min_epochs": Integer(1, 100_000), "reduction_factor": Integer(2, 100)}

    def __init__(self, metric: str = "val_accuracy", min_epochs: int = 1, reduction_factor: int = 3):
        self.metric, self.min_epochs, self.eta = metric, int(min_epochs), int(reduction_factor)
        self.maximize = METRICS[metric]

    def rungs(self, epochs: int) -> list[int]:
        """The rungs' epochs below `epochs`: 1, 3, 9 for min_epochs 1, reduction_factor 3 and 27 epochs."""
        out, epoch = [], self.min_epochs
        while epoch < epochs:
            out.append(epoch)
            epoch *= self.eta
        return out

    def plan(self, tracks: list[Track]) -> list[Decision]:
        decisions: list[Decision | None] = [None] * len(tracks)
        members, size = list(range(len(tracks))), len(tracks)  # who reaches this rung (as far as known), how many
        for k, epoch in enumerate(self.rungs(max((t.epochs for t in tracks), default=0))):
            quota = max(1, size // self.eta)
            keys = {i: _key(_at(tracks[i], epoch), self.maximize, i) for i in members}
            keys = {i: key for i, key in keys.items() if key is not None}
            # the keys are unique (the index breaks ties): a point's rank is the number of points ahead of it
            ranks = {i: r for r, i in enumerate(sorted(keys, key=keys.__getitem__))}
            missing, promoted = size - len(keys), []
            for i in members:
                at = min(epoch, tracks[i].epochs)
                if i not in keys:
                    decisions[i] = Decision(RUN, f"to rung {k + 1} (epoch {at})", until=at)
                    continue
                ahead = ranks[i]
                if ahead + missing < quota:
                    promoted.append(i)
                elif ahead >= quota:  # with results still to come, its rank can only fall: say among whom
                    among = f"{size}" if not missing else f"the {len(keys)} in, {missing} to come"
                    decisions[i] = _final(tracks[i], f"rung {k + 1} (epoch {at}): {self.metric} "
                                                     f"{_show(_at(tracks[i], epoch))} ranked {ahead + 1} of {among}, "
                                                     f"the top {quota} {'goes' if quota == 1 else 'go'} on")
                else:
                    decisions[i] = _final(tracks[i], f"waits at rung {k + 1} (epoch {at}): ranked {ahead + 1} of "
                                                     f"the {len(keys)} in, {missing} to come", waiting=True)
            members, size = promoted, quota
        for i in members:  # promoted from the last rung: trained to the end
            decisions[i] = _final(tracks[i], "") if tracks[i].ended or tracks[i].complete else \
                Decision(RUN, f"to the end (epoch {tracks[i].epochs})", until=tracks[i].epochs)
        return decisions


class MedianRule:
    """The median stopping rule, from min_epochs on, once min_points points before a point have completed."""

    options = {"metric": Choice(METRICS), "min_epochs": Integer(1, 100_000), "min_points": Integer(1, 10_000)}

    def __init__(self, metric: str = "val_accuracy", min_epochs: int = 1, min_points: int = 3):
        self.metric, self.min_epochs, self.min_points = metric, int(min_epochs), int(min_points)
        self.maximize = METRICS[metric]
        self._last: tuple[list, list[Decision]] = ([], [])  # the last plan's tracks (as _seen) and decisions
        self._averages = _Averages(self.maximize)

    def plan(self, tracks: list[Track]) -> list[Decision]:
        """A point's decision depends only on the points up to it, so the decisions of the longest run of tracks
        unchanged since the last plan are kept, and the rest decided again: a sweep looks after every job, and a
        job changes one point."""
        try:
            return self._plan(tracks)
        except BaseException:  # what was kept may be half updated: the next plan starts afresh
            self._last, self._averages = ([], []), _Averages(self.maximize)
            raise

    def _plan(self, tracks: list[Track]) -> list[Decision]:
        seen = [_seen(t) for t in tracks]
        last_seen, last_decisions = self._last
        same, most = 0, min(len(seen), len(last_seen))
        while same < most and seen[same] == last_seen[same]:
            same += 1
        decisions = last_decisions[:same]
        averages = self._averages
        averages.keep(same)
        complete = sum(1 for d in decisions if d.state == COMPLETE)
        undecided = sum(1 for d in decisions if not d.done)
        for i in range(same, len(tracks)):
            track = tracks[i]
            if track.ended:
                decision = _final(track, "")
            elif complete + undecided < self.min_points:
                decision = _final(track, "") if track.complete else Decision(
                    RUN, f"to the end (epoch {track.epochs}): fewer than "
                         f"{plural(self.min_points, 'completed point')} before it", until=track.epochs)
            elif undecided:
                decision = Decision(WAIT, f"waits for the {plural(undecided, 'undecided point')} before it")
            else:
                decision = self._decide(track, averages.thresholds(self.min_epochs, track.epochs, self.min_points),
                                        complete)
            decisions.append(decision)
            if decision.state == COMPLETE:
                complete += 1
                if not undecided:  # the thresholds are asked for only while every point before is decided
                    averages.add(i, track)
            undecided += not decision.done
        self._last = (seen, decisions)
        return list(decisions)

    def thresholds(self, track: Track, complete: list[Track]) -> dict[int, float]:
        """The median of the completed points' running averages at each epoch this point may stop after (from
        min_epochs, before its last), where at least min_points of them reached that epoch."""
        averages = _Averages(self.maximize)
        for i, t in enumerate(complete):
            averages.add(i, t)
        return averages.thresholds(self.min_epochs, track.epochs, self.min_points)

    def _decide(self, track: Track, thresholds: dict[int, float], points: int) -> Decision:
        stop = MedianStop(self.metric, self.maximize, thresholds, points)
        for epoch in range(1, len(track.values) + 1):
            why = stop.check([{self.metric: v} for v in track.values[:epoch]]) if epoch in thresholds else None
            if why and epoch < track.epochs:
                return _final(track, why) if epoch < len(track.values) else Decision(PRUNED, why)
        if track.complete:
            return Decision(COMPLETE, f"trained all {plural(track.epochs, 'epoch')}")
        return Decision(RUN, f"to the end (epoch {track.epochs}) unless below the median", until=track.epochs,
                        rule=stop)


class _Averages:
    """The running averages (the mean of the metric up to each epoch) of completed points, kept sorted per epoch
    so that their median at an epoch is read off, not sorted again. Points are added in the sweep's order and
    taken back from the end (`keep`), so that a plan reuses what the last plan built of the points unchanged."""

    def __init__(self, maximize: bool):
        self.maximize = maximize
        self.sorted: dict[int, list[float]] = {}  # epoch -> the averages at that epoch of the points that got there
        self.added: list[tuple[int, list[float]]] = []  # (index in the sweep, its averages), in the sweep's order

    def add(self, index: int, track: Track) -> None:
        values = _numbers(track.values, self.maximize)
        averages = [statistics.fmean(values[:epoch]) for epoch in range(1, len(values) + 1)]
        for epoch, average in enumerate(averages, start=1):
            bisect.insort(self.sorted.setdefault(epoch, []), average)
        self.added.append((index, averages))

    def keep(self, before: int) -> None:
        """Take back the points at index `before` and after."""
        while self.added and self.added[-1][0] >= before:
            _, averages = self.added.pop()
            for epoch, average in enumerate(averages, start=1):
                column = self.sorted[epoch]
                del column[bisect.bisect_left(column, average)]

    def thresholds(self, min_epochs: int, epochs: int, min_points: int) -> dict[int, float]:
        """The median at each epoch from min_epochs to epochs - 1 that at least min_points points reached (as
        statistics.median gives it from the same numbers)."""
        out = {}
        for epoch in range(min_epochs, epochs):
            column = self.sorted.get(epoch, ())
            n = len(column)
            if n >= min_points and n:
                out[epoch] = column[n // 2] if n % 2 else (column[n // 2 - 1] + column[n // 2]) / 2
        return out


@dataclass
class MedianStop:
    """The median rule as a run's stop rule (digitlab.run.lifecycle): after epoch e, stop when the best metric
    so far is worse than thresholds[e]. Picklable, so that a worker process or a Dask worker applies it."""

    metric: str
    maximize: bool
    thresholds: dict = field(default_factory=dict)
    points: int = 0

    def check(self, rows: list[dict]) -> str | None:
        epoch = len(rows)
        if epoch not in self.thresholds:
            return None
        values = _numbers([r.get(self.metric) for r in rows], self.maximize)
        best = max(values) if self.maximize else min(values)
        median = self.thresholds[epoch]
        if (best < median) if self.maximize else (best > median):
            word = "below" if self.maximize else "above"
            digits = 4 if _show(best) != _show(median) else 6
            return (f"epoch {epoch}: best {self.metric} {_show(best, digits)} {word} the median "
                    f"{_show(median, digits)} of {plural(self.points, 'completed point')}' running averages")
        return None


METHODS = {"asha": ASHA, "median": MedianRule}


def _at(track: Track, epoch: int):
    """The point's result at a rung: its metric after min(epoch, its epochs), the worst when it ended before,
    None when it has not got there yet."""
    at = min(epoch, track.epochs)
    if len(track.values) >= at or (track.complete and track.values):
        value = track.values[min(at, len(track.values)) - 1]
        return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf
    return -math.inf if track.ended else None


def _key(value, maximize: bool, index: int):
    """Sorts best first; the worst (-inf: ended, or no number) last; ties by the sweep's order."""
    if value is None:
        return None
    if value == -math.inf:
        return (1, 0.0, index)
    return (0, -value if maximize else value, index)


def _final(track: Track, why: str, waiting: bool = False) -> Decision:
    """A point that stops at a rung: pruned (or waiting there), unless it ended on its own or is complete."""
    if track.ended:
        return Decision(ENDED, why)
    if track.complete:
        return Decision(COMPLETE, f"trained all {plural(track.epochs, 'epoch')}")
    return Decision(WAIT if waiting else PRUNED, why)


def _seen(track: Track) -> tuple:
    """All that a rule reads of a track, as a value: a copy, so that a track changed in place is seen as changed.
    A zero keeps its sign: -0.0 equals 0.0 but is shown as -0.0000."""
    values = tuple(track.values)
    if 0 in values:
        values = tuple((v, math.copysign(1, v)) if isinstance(v, float) and v == 0 else v for v in values)
    return values, track.epochs, track.ended, track.finished


def _numbers(values, maximize: bool) -> list[float]:
    worst = -math.inf if maximize else math.inf
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else worst for v in values]


def _show(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "none"
