"""Optimizers, updating the model's flat parameter buffer in place.

State (momentum, Adam's moments, one scratch buffer) is allocated once in the constructor; `step()` runs a
fixed handful of in-place ufuncs over the whole buffer. Learning rates are Python floats so numpy keeps the
arithmetic in float32. `state_dict()` holds everything a resumed run needs.

Weight decay and Nesterov's look-ahead are added into the gradient buffer itself (no extra pass over a
temporary): after `step()`, `.grad` holds the gradient that was applied, not the raw one. The next backward
overwrites it.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.nn.model import Parameters


class Optimizer:
    def __init__(self, params: Parameters, lr: float):
        self.params, self.lr = params, float(lr)
        self.p, self.g = params.data, params.grad
        self.scratch = np.empty_like(self.p)
        self.steps = 0

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """For PyTorch habits: backward overwrites gradients, so this is never needed in digitlab's loop."""
        self.g[...] = 0

    def buffers(self) -> dict[str, np.ndarray]:
        return {}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"steps": np.array(self.steps), **{k: v.copy() for k, v in self.buffers().items()}}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.steps = int(state["steps"])
        for name, buf in self.buffers().items():
            buf[...] = state[name]


class SGD(Optimizer):
    """PyTorch's SGD: g += wd p; v = mu v + g; p -= lr (g + mu v if nesterov else v)."""

    def __init__(self, params: Parameters, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)
        self.velocity = np.zeros_like(self.p) if self.momentum else None

    def step(self):
        p, g, tmp = self.p, self.g, self.scratch
        if self.weight_decay:
            np.multiply(p, self.weight_decay, out=tmp)
            g += tmp
        update = g
        if self.velocity is not None:
            self.velocity *= self.momentum
            self.velocity += g
            if self.nesterov:
                np.multiply(self.velocity, self.momentum, out=tmp)
                g += tmp
            else:
                update = self.velocity
        np.multiply(update, self.lr, out=tmp)
        p -= tmp
        self.steps += 1

    def buffers(self):
        return {"velocity": self.velocity} if self.velocity is not None else {}


class Adam(Optimizer):
    """Adam (Kingma & Ba), as PyTorch computes it:
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""

    def __init__(self, params: Parameters, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps, self.weight_decay = float(eps), float(weight_decay)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)

    def step(self):
        p, g, m, v, tmp = self.p, self.g, self.m, self.v, self.scratch
        self.steps += 1
        if self.weight_decay:
            np.multiply(p, self.weight_decay, out=tmp)
            g += tmp
        m *= self.b1
        np.multiply(g, 1.0 - self.b1, out=tmp)
        m += tmp
        v *= self.b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.b2
        v += tmp
        step_size = self.lr / (1.0 - self.b1 ** self.steps)
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - self.b2 ** self.steps)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp

    def buffers(self):
        return {"m": self.m, "v": self.v}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
