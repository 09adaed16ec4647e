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


class OneCycleLR(Schedule):
    """Leslie Smith's one-cycle policy, as PyTorch's OneCycleLR anneals it: the lr rises from lr / div_factor to
    lr over the first `pct_start` of training, then falls along a cosine to lr / (div_factor * final_div_factor)
    at the end. Large steps in the middle, small ones at both ends: fast training that still settles."""

    options = {"pct_start": Number(0, 1, low_open=True, high_open=True), "div_factor": Number(1),
               "final_div_factor": Number(1)}

    def __init__(self, lr, epochs, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4):
        super().__init__(lr, epochs)
        self.pct_start, self.div_factor, self.final_div_factor = float(pct_start), float(div_factor), \
            float(final_div_factor)

    def decayed(self, t):
        start, end = self.base / self.div_factor, self.base / (self.div_factor * self.final_div_factor)
        peak = self.pct_start * self.epochs
        if t < peak:
            return start + (self.base - start) * 0.5 * (1 - math.cos(math.pi * t / peak))
        progress = min((t - peak) / max(self.epochs - peak, 1e-9), 1.0)
        return end + (self.base - end) * 0.5 * (1 + math.cos(math.pi * progress))
