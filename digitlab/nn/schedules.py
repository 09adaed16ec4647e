"""Learning-rate schedules: the lr as a function of training progress t, measured in epochs (fractional,
updated every batch), so that a resumed run computes the same lr without stored state.

`warmup` epochs ramp the lr linearly from ~0 to its base value first; then `step` multiplies it by `gamma`
every `step_size` epochs, and `cosine` anneals it to 0 at the last epoch (SGDR without restarts).
"""

from __future__ import annotations

import math

from digitlab.options import Integer, Number


class Schedule:
    """The constant schedule, and the base of the others: `options` are what a config may set."""

    options = {"warmup": Number(0)}

    def __init__(self, lr: float, epochs: int, warmup: float = 0.0):
        self.base, self.epochs, self.warmup = float(lr), int(epochs), float(warmup)

    def __call__(self, t: float) -> float:
        if self.warmup and t < self.warmup:
            return self.base * (t + 1e-3) / self.warmup
        return self.decayed(t)

    def decayed(self, t: float) -> float:
        return self.base


class StepLR(Schedule):
    options = {"step_size": Integer(1), "gamma": Number(0, 1, low_open=True), "warmup": Number(0)}

    def __init__(self, lr, epochs, step_size: int = 10, gamma: float = 0.1, warmup: float = 0.0):
        super().__init__(lr, epochs, warmup)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def decayed(self, t):
        return self.base * self.gamma ** int(t // self.step_size)


class CosineLR(Schedule):
    def decayed(self, t):
        span = max(self.epochs - self.warmup, 1e-9)
        progress = min(max((t - self.warmup) / span, 0.0), 1.0)
        return self.base * 0.5 * (1.0 + math.cos(math.pi * progress))
