"""Optimizers, updating the model's flat parameter buffer in place.

State (momentum, Adam's moments, one scratch buffer) is allocated once in the constructor; `step()` runs a
fixed handful of in-place ufuncs over the whole buffer. Learning rates are Python floats so numpy keeps the
arithmetic in float32. `state_dict()` holds everything a resumed run needs.

Weight decay and Nesterov's look-ahead are added into the gradient buffer itself (no extra pass over a
temporary): after `step()`, `.grad` holds the gradient that was applied, not the raw one. The next backward
overwrites it.

The update is elementwise, so it is split into contiguous ranges that threads update at once (numpy releases
the GIL inside ufuncs; see `digitlab.system.threads`): the same arithmetic on every element, whatever the threads.
"""

from __future__ import annotations

import math

import numpy as np

from digitlab.nn.model import Parameters
from digitlab.options import Boolean, Number, Numbers
from digitlab.system import threads


class Optimizer:
    """Base class: `options` declares what a config may set (defaults are the constructor's)."""

    options = {"lr": Number(0, low_open=True)}
    # weight decay, and whether it also applies to biases and batch norm's parameters (PyTorch users exclude them
    # with parameter groups); each optimizer that decays lists these among its options
    decay_options = {"weight_decay": Number(0), "decay_all": Boolean()}

    STATE_PROBE = 4096  # parameters of the small model that state_bytes builds an optimizer for

    @classmethod
    def state_bytes(cls, options: dict, dtype=np.float32) -> float:
        """Bytes of state per parameter that an optimizer with these options allocates (momentum, moments,
        accumulators, scratch): measured on one built for a small buffer, so the memory check counts exactly what
        the constructor allocates."""
        probe = Parameters({"probe": (cls.STATE_PROBE,)}, dtype)
        optimizer = cls(probe, **options)
        own = [a for a in vars(optimizer).values() if isinstance(a, np.ndarray)
               and not np.shares_memory(a, probe.data) and not np.shares_memory(a, probe.grad)]
        return sum(a.nbytes for a in own) / cls.STATE_PROBE

    def __init__(self, params: Parameters, lr: float, weight_decay: float = 0.0, decay_all: bool = True):
        self.params, self.lr = params, float(lr)
        self.weight_decay, self.decay_all = float(weight_decay), bool(decay_all)
        self.p, self.g = params.data, params.grad
        self.scratch = np.empty_like(self.p)
        self.steps = 0
        self.ranges = threads.spans(self.p.size)
        self.lr_scale: np.ndarray | None = None  # per element, when some layers learn faster or slower
        self.decay_mask: np.ndarray | None = None  # per element, 0 where weight decay does not apply (see decay_all)

    def mask_decay(self, mask: np.ndarray | None) -> None:
        """1 for the parameters weight decay applies to, 0 for the others (biases and batch norm's parameters,
        with `decay_all: false`), or None for every parameter."""
        self.decay_mask = None if mask is None else np.asarray(mask, dtype=self.p.dtype)

    def add_decay(self, p: np.ndarray, g: np.ndarray, tmp: np.ndarray, lo: int, hi: int) -> None:
        """L2 weight decay folded into the gradient: g += wd p, where the decay applies."""
        if self.weight_decay:
            np.multiply(p, self.weight_decay, out=tmp)
            if self.decay_mask is not None:
                tmp *= self.decay_mask[lo:hi]
            g += tmp

    def scale_lr(self, scale: np.ndarray | None) -> None:
        """A learning-rate multiplier per parameter element (a layer's `lr_scale`), or None for 1 everywhere."""
        self.lr_scale = None if scale is None else np.asarray(scale, dtype=self.p.dtype)

    def apply(self, p: np.ndarray, step: np.ndarray, lo: int, hi: int) -> None:
        """p -= step, each element's step first multiplied by its layer's lr_scale."""
        if self.lr_scale is not None:
            step *= self.lr_scale[lo:hi]
        p -= step

    def step(self) -> None:
        """One update of every parameter: `update` over each range of the flat buffer, in parallel."""
        self.steps += 1
        threads.run(self.update, self.ranges)

    def update(self, lo: int, hi: int) -> None:
        """The update of elements lo..hi of the flat buffers (self.steps already counts this step)."""
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

    options = {"lr": Number(0, low_open=True), "momentum": Number(0, 1, high_open=True), "nesterov": Boolean(),
               **Optimizer.decay_options}

    def __init__(self, params: Parameters, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, decay_all: bool = True):
        super().__init__(params, lr, weight_decay, decay_all)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.velocity = np.zeros_like(self.p) if self.momentum else None

    def update(self, lo, hi):
        p, g, tmp = self.p[lo:hi], self.g[lo:hi], self.scratch[lo:hi]
        self.add_decay(p, g, tmp, lo, hi)
        update = g
        if self.velocity is not None:
            velocity = self.velocity[lo:hi]
            velocity *= self.momentum
            velocity += g
            if self.nesterov:
                np.multiply(velocity, self.momentum, out=tmp)
                g += tmp
            else:
                update = velocity
        np.multiply(update, float(self.lr), out=tmp)
        self.apply(p, tmp, lo, hi)

    def buffers(self):
        return {"velocity": self.velocity} if self.velocity is not None else {}


class Adam(Optimizer):
    """Adam (Kingma & Ba), as PyTorch computes it:
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).

    Moments of parameters whose gradient has become zero (pixels that are almost always blank) decay
    geometrically into float32's subnormal range: 5% of m after 10 epochs of configs/mnist10-mlp.yaml. Many
    CPUs compute many times slower on subnormals, so every FLUSH_EVERY steps moments below TINY are set to zero.
    That changes no update: m < 1e-30 moves a weight by < 1e-25, and sqrt(v) < 1e-15 vanishes next to eps."""

    options = {"lr": Number(0, low_open=True), "betas": Numbers(Number(0, 1, high_open=True), 2, "[0.9, 0.999]"),
               "eps": Number(0, low_open=True), **Optimizer.decay_options}
    FLUSH_EVERY = 50
    TINY = 1e-30

    def __init__(self, params: Parameters, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decay_all: bool = True):
        super().__init__(params, lr, weight_decay, decay_all)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.small = np.empty(self.p.shape, dtype=bool)  # scratch for the flush

    def update(self, lo, hi):
        p, g, m, v, tmp = (a[lo:hi] for a in (self.p, self.g, self.m, self.v, self.scratch))
        self.add_decay(p, g, tmp, lo, hi)
        m *= self.b1
        np.multiply(g, 1.0 - self.b1, out=tmp)
        m += tmp
        v *= self.b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.b2
        v += tmp
        step_size = float(self.lr) / (1.0 - self.b1 ** self.steps)
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(1.0 - self.b2 ** self.steps)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        self.apply(p, tmp, lo, hi)
        if self.steps % self.FLUSH_EVERY == 0:
            small = self.small[lo:hi]
            np.less(np.abs(m, out=tmp), self.TINY, out=small)
            np.copyto(m, 0, where=small)
            np.less(v, self.TINY, out=small)
            np.copyto(v, 0, where=small)

    def buffers(self):
        return {"m": self.m, "v": self.v}


class RMSprop(Optimizer):
    """RMSprop (Hinton), as PyTorch computes it: g += wd p; v = alpha v + (1-alpha) g^2; with `centered`,
    a = alpha a + (1-alpha) g and the denominator is sqrt(v - a^2) + eps, else sqrt(v) + eps; with momentum,
    b = mu b + g / denominator and p -= lr b, else p -= lr g / denominator."""

    options = {"lr": Number(0, low_open=True), "alpha": Number(0, 1, high_open=True), "eps": Number(0, low_open=True),
               "momentum": Number(0, 1, high_open=True), "centered": Boolean(), **Optimizer.decay_options}

    def __init__(self, params: Parameters, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, centered: bool = False, weight_decay: float = 0.0, decay_all: bool = True):
        super().__init__(params, lr, weight_decay, decay_all)
        self.alpha, self.eps, self.momentum, self.centered = float(alpha), float(eps), float(momentum), bool(centered)
        self.v = np.zeros_like(self.p)
        self.a = np.zeros_like(self.p) if self.centered else None
        self.b = np.zeros_like(self.p) if self.momentum else None

    def update(self, lo, hi):
        p, g, v, tmp = (x[lo:hi] for x in (self.p, self.g, self.v, self.scratch))
        self.add_decay(p, g, tmp, lo, hi)
        v *= self.alpha
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.alpha
        v += tmp
        if self.a is not None:
            a = self.a[lo:hi]
            a *= self.alpha
            np.multiply(g, 1.0 - self.alpha, out=tmp)
            a += tmp
            np.multiply(a, a, out=tmp)
            np.subtract(v, tmp, out=tmp)
            np.sqrt(tmp, out=tmp)
        else:
            np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        if self.b is not None:
            b = self.b[lo:hi]
            b *= self.momentum
            b += tmp
            np.multiply(b, float(self.lr), out=tmp)
        else:
            tmp *= float(self.lr)
        self.apply(p, tmp, lo, hi)

    def buffers(self):
        return {name: buf for name, buf in (("v", self.v), ("a", self.a), ("b", self.b)) if buf is not None}


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012), as PyTorch and Keras compute it: g += wd p; v = rho v + (1-rho) g^2;
    d = sqrt(u + eps) / sqrt(v + eps) g; u = rho u + (1-rho) d^2; p -= lr d. The defaults are PyTorch's
    (lr 1.0, rho 0.9, eps 1e-6); the Keras notebook's CNN used rho 0.95 and eps 1e-7 (configs/seeds/keras-cnn.yaml
    sets them)."""

    options = {"lr": Number(0, low_open=True), "rho": Number(0, 1, high_open=True), "eps": Number(0, low_open=True),
               **Optimizer.decay_options}

    def __init__(self, params: Parameters, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0, decay_all: bool = True):
        super().__init__(params, lr, weight_decay, decay_all)
        self.rho, self.eps = float(rho), float(eps)
        self.v = np.zeros_like(self.p)
        self.u = np.zeros_like(self.p)
        self.scratch2 = np.empty_like(self.p)

    def update(self, lo, hi):
        p, g, v, u, tmp, d = (x[lo:hi] for x in (self.p, self.g, self.v, self.u, self.scratch, self.scratch2))
        self.add_decay(p, g, tmp, lo, hi)
        v *= self.rho
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rho
        v += tmp
        np.add(u, self.eps, out=d)
        np.sqrt(d, out=d)
        np.add(v, self.eps, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(d, tmp, out=d)
        d *= g
        u *= self.rho
        np.multiply(d, d, out=tmp)
        tmp *= 1.0 - self.rho
        u += tmp
        d *= float(self.lr)
        self.apply(p, d, lo, hi)

    def buffers(self):
        return {"v": self.v, "u": self.u}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's AdamW: p -= lr wd p, then Adam's
    step on the gradient alone. Default weight_decay 0.01, as PyTorch."""

    def __init__(self, params: Parameters, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, decay_all: bool = True):
        super().__init__(params, lr, betas, eps, weight_decay, decay_all)

    def add_decay(self, p, g, tmp, lo, hi):
        """Decoupled: the weights shrink by lr wd (times their layer's lr_scale), the gradient is left alone."""
        if self.weight_decay:
            np.multiply(p, float(self.lr) * self.weight_decay, out=tmp)
            if self.decay_mask is not None:
                tmp *= self.decay_mask[lo:hi]
            self.apply(p, tmp, lo, hi)


class NoOptimizer:
    """What a model fitted in one pass (class means) has instead of an optimizer: nothing to step, no state to
    save or restore (optimizer entries in a checkpoint are ignored)."""

    lr = None

    @classmethod
    def state_bytes(cls, options: dict, dtype=np.float32) -> float:
        return 0.0

    def step(self) -> None:
        pass

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass
