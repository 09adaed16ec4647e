"""The pruning rules against hand-worked examples (which points stop at which rung, or after which epoch), and the
property that makes them safe to run in parallel: whatever order the results come in, the decisions are the same.
Pure functions of metric tables: no training here."""

from __future__ import annotations

import random

import pytest

from digitlab.run.callbacks import StopAfter
from digitlab.sweep.prune import ASHA, COMPLETE, ENDED, PRUNED, RUN, WAIT, MedianRule, MedianStop, Track

# Nine points, 9 epochs, rungs at epochs 1 and 3 (min_epochs 1, reduction_factor 3). Validation accuracy after
# epoch 1 and after epoch 3 (only the points that get there are looked at).
AT_1 = [0.50, 0.80, 0.70, 0.90, 0.60, 0.85, 0.40, 0.75, 0.65]
AT_3 = {1: 0.88, 3: 0.86, 5: 0.93}


def curve(i: int, epochs: int) -> list[float]:
    """Point i's metric for its first `epochs` epochs: AT_1 at epoch 1, AT_3 at 2 and 3, then rising slowly."""
    values = [AT_1[i], AT_3.get(i, AT_1[i]), AT_3.get(i, AT_1[i])]
    return (values + [values[-1] + 0.001 * k for k in range(1, 10)])[:epochs]


def states(decisions) -> list[str]:
    return [d.state for d in decisions]


def test_asha_rungs():
    assert ASHA(min_epochs=1, reduction_factor=3).rungs(9) == [1, 3]
    assert ASHA(min_epochs=1, reduction_factor=3).rungs(27) == [1, 3, 9]
    assert ASHA(min_epochs=2, reduction_factor=2).rungs(16) == [2, 4, 8]
    assert ASHA(min_epochs=5).rungs(5) == []  # no rung below the last epoch: nothing to prune


def test_asha_hand_worked_every_result_in():
    """Rung 1 keeps the top 3 of 9 (points 3, 5, 1); rung 2 keeps the top 1 of those 3 (point 5)."""
    rule = ASHA(min_epochs=1, reduction_factor=3)
    tracks = [Track(curve(i, 3 if i in AT_3 else 1), 9) for i in range(9)]
    decisions = rule.plan(tracks)
    assert states(decisions) == [PRUNED, PRUNED, PRUNED, PRUNED, PRUNED, RUN, PRUNED, PRUNED, PRUNED]
    assert decisions[5].until == 9
    assert decisions[0].why == "rung 1 (epoch 1): val_accuracy 0.5000 ranked 8 of 9, the top 3 go on"
    assert decisions[7].why == "rung 1 (epoch 1): val_accuracy 0.7500 ranked 4 of 9, the top 3 go on"
    assert decisions[1].why == "rung 2 (epoch 3): val_accuracy 0.8800 ranked 2 of 3, the top 1 goes on"
    assert decisions[3].why.startswith("rung 2 (epoch 3): val_accuracy 0.8600 ranked 3 of 3")
    tracks[5] = Track(curve(5, 9), 9)
    assert rule.plan(tracks)[5].state == COMPLETE


def test_asha_decides_early_only_what_no_missing_result_can_change():
    """Six of nine in after epoch 1: the three that six points already beat are out (pruned for good), the others
    wait. Two more in: points 3 and 5 cannot leave the top 3 whatever the last point scores, so they go on at
    once; point 1 still waits for it."""
    rule = ASHA(min_epochs=1, reduction_factor=3)
    tracks = [Track(curve(i, 1) if i < 6 else [], 9) for i in range(9)]
    decisions = rule.plan(tracks)
    assert states(decisions) == [PRUNED, WAIT, PRUNED, WAIT, PRUNED, WAIT, RUN, RUN, RUN]
    assert [d.until for d in decisions[6:]] == [1, 1, 1]
    assert decisions[1].why == "waits at rung 1 (epoch 1): ranked 3 of the 6 in, 3 to come"
    assert decisions[0].why.endswith("ranked 6 of the 6 in, 3 to come, the top 3 go on")  # its rank can only fall
    tracks[6], tracks[7] = Track(curve(6, 1), 9), Track(curve(7, 1), 9)
    decisions = rule.plan(tracks)
    assert states(decisions) == [PRUNED, WAIT, PRUNED, RUN, PRUNED, RUN, PRUNED, PRUNED, RUN]
    assert decisions[3].until == decisions[5].until == 3 and decisions[8].until == 1


def test_asha_ties_go_to_the_earlier_point_and_failures_rank_last():
    rule = ASHA(min_epochs=1, reduction_factor=3)
    tracks = [Track([0.5], 9), Track([0.9], 9, ended=True), Track([], 9, ended=True), Track([0.5], 9)]
    decisions = rule.plan(tracks)  # 4 points, one goes on: point 1 had 0.9 at epoch 1, then failed
    assert states(decisions) == [PRUNED, ENDED, ENDED, PRUNED]
    assert "ranked 2 of 4" in decisions[0].why and "ranked 3 of 4" in decisions[3].why
    tracks[1] = Track([0.3], 9, ended=True)  # now the tie: point 0 goes on, point 3 (later) does not
    assert states(rule.plan(tracks)) == [RUN, ENDED, ENDED, PRUNED]


def test_a_point_complete_before_its_last_epoch_keeps_its_last_value():
    """Early stopping (a config's own) may complete a point after 2 of its 9 epochs: it is complete, and its last
    value is its result at every rung it did not train to."""
    rule = ASHA(min_epochs=1, reduction_factor=3)
    tracks = [Track([0.7, 0.95], 9, finished=True), Track([0.6], 9), Track([0.4], 9)]
    decisions = rule.plan(tracks)  # point 0 wins rung 1 and is in at rung 2 (epoch 3) with 0.95: nothing to run
    assert states(decisions) == [COMPLETE, PRUNED, PRUNED]
    assert decisions[1].why == "rung 1 (epoch 1): val_accuracy 0.6000 ranked 2 of 3, the top 1 goes on"


def test_asha_minimises_losses():
    rule = ASHA(metric="val_loss", min_epochs=1, reduction_factor=2)
    decisions = rule.plan([Track([0.3], 4), Track([0.1], 4), Track([0.2], 4), Track([0.9], 4)])
    assert states(decisions) == [PRUNED, RUN, RUN, PRUNED] and decisions[1].until == 2


def simulate(rule, full: dict[int, list[float]], epochs: int, seed: int) -> list[tuple[str, int]]:
    """Train points in a random order, one rung job at a time (as workers finishing in any order would): the
    final state and last epoch of every point."""
    rng = random.Random(seed)
    tracks = [Track([], epochs) for _ in full]
    while True:
        runnable = [(i, d) for i, d in enumerate(rule.plan(tracks)) if d.state == RUN]
        if not runnable:
            return [(d.state, len(t.values)) for d, t in zip(rule.plan(tracks), tracks)]
        i, decision = rng.choice(runnable)
        tracks[i] = Track(full[i][:decision.until], epochs)


@pytest.mark.parametrize("eta, min_epochs, epochs", [(3, 1, 9), (3, 1, 27), (2, 1, 8), (4, 2, 32)])
def test_asha_decisions_do_not_depend_on_the_order_results_come_in(eta, min_epochs, epochs):
    data = random.Random(eta * 100 + epochs)
    full = {i: [round(data.random(), 3) for _ in range(epochs)] for i in range(27)}
    rule = ASHA(min_epochs=min_epochs, reduction_factor=eta)
    outcomes = {tuple(simulate(rule, full, epochs, seed)) for seed in range(6)}
    assert len(outcomes) == 1
    final = outcomes.pop()
    survivors = 27
    for _ in rule.rungs(epochs):  # every rung keeps 1/eta of the one below
        survivors = max(1, survivors // eta)
    assert [s for s, _ in final].count(COMPLETE) == survivors
    assert sum(n for _, n in final) <= 0.4 * 27 * epochs


# The median rule: two completed points, then the rule applies (min_points 2, from epoch 1).
P0 = [0.5, 0.6, 0.7, 0.8]
P1 = [0.7, 0.8, 0.9, 0.9]  # running averages at epochs 1-3: P0 0.5 0.55 0.6, P1 0.7 0.75 0.8; medians 0.6 0.65 0.7


def test_median_rule_hand_worked():
    rule = MedianRule(min_epochs=1, min_points=2)
    tracks = [Track(P0, 4), Track(P1, 4), Track([0.4], 4), Track([0.65, 0.66, 0.68], 4), Track([0.9, 0.9], 4)]
    decisions = rule.plan(tracks)
    assert states(decisions) == [COMPLETE, COMPLETE, PRUNED, PRUNED, RUN]
    assert decisions[2].why == ("epoch 1: best val_accuracy 0.4000 below the median 0.6000 of 2 completed points' "
                                "running averages")
    assert decisions[3].why.startswith("epoch 3: best val_accuracy 0.6800 below the median 0.7000")
    stop = decisions[4].rule
    assert isinstance(stop, MedianStop) and decisions[4].until == 4
    assert stop.thresholds == pytest.approx({1: 0.6, 2: 0.65, 3: 0.7})
    assert stop.check([{"val_accuracy": 0.9}, {"val_accuracy": 0.9}, {"val_accuracy": 0.6}]) is None  # best 0.9
    assert stop.check([{"val_accuracy": 0.5}]).startswith("epoch 1: best val_accuracy 0.5000 below")


def test_median_rule_waits_for_the_points_before_and_needs_min_points():
    rule = MedianRule(min_epochs=1, min_points=2)
    tracks = [Track(P0[:2], 4), Track([], 4), Track([], 4)]
    decisions = rule.plan(tracks)
    # points 0 and 1 cannot have two completed points before them: they train to the end, rule or not
    assert states(decisions) == [RUN, RUN, WAIT] and decisions[0].rule is None and decisions[1].rule is None
    assert decisions[2].why == "waits for the 2 undecided points before it"
    tracks[0], tracks[1] = Track(P0, 4), Track([0.1, 0.1], 4, ended=True)  # one completed, one failed
    decisions = rule.plan(tracks)
    assert states(decisions) == [COMPLETE, ENDED, RUN] and decisions[2].rule is None


def test_stop_after_stops_at_its_epoch():
    stop = StopAfter(3, "rung 2")
    assert stop.check([{}] * 2) is None and stop.check([{}] * 3) == "rung 2"
