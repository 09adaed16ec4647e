"""A minimal numpy training loop, written by hand for dense networks: one array per weight, in-place optimizer
updates, dropout masks from random bytes. What digitlab's abstractions (layers, flat buffers, callbacks) cost is
its time against this one. A test checks that its steps give the engine's weights, so it cannot drift."""

from __future__ import annotations

import math
import time

import numpy as np

EVAL_BATCH = 2000


def dense_plan(model) -> list | None:
    """The model as [(kind, arrays...)] for the hand-written loop (copies of its weights), or None when it has
    layers other than linear, dropout and elementwise activations."""
    from digitlab.nn import Dropout, Linear, ReLU, Sigmoid, Tanh
    plan = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            plan.append(("linear", layer.weight.data.copy(), None if layer.bias is None else layer.bias.data.copy()))
        elif isinstance(layer, Dropout):
            plan.append(("dropout", layer.p))
        elif isinstance(layer, (ReLU, Sigmoid, Tanh)):
            plan.append((type(layer).__name__.lower(),))
        else:
            return None
    return plan


class NumpyLoop:
    """Forward, backward and one optimizer step of a dense plan, for the loss and optimizer of a config."""

    def __init__(self, plan: list, loss: str, optimizer: dict, rng: np.random.Generator):
        self.plan, self.loss, self.rng = plan, loss, rng
        self.params = [a for step in plan if step[0] == "linear" for a in step[1:] if a is not None]
        self.grads = [np.empty_like(p) for p in self.params]
        self.tmp = [np.empty_like(p) for p in self.params]
        self.opt = dict(optimizer)
        self.lr, self.wd = float(optimizer["lr"]), float(optimizer.get("weight_decay", 0.0))
        self.mu = float(optimizer.get("momentum", 0.0))
        self.b1, self.b2 = (float(b) for b in optimizer.get("betas", (0.9, 0.999)))
        self.eps = float(optimizer.get("eps", 1e-8))
        self.vel = [np.zeros_like(p) for p in self.params]
        self.ms = [np.zeros_like(p) for p in self.params]
        self.vs = [np.zeros_like(p) for p in self.params]
        self.first_linear = next(i for i, s in enumerate(plan) if s[0] == "linear")
        self.k = 0

    def forward(self, x, train: bool):
        cache = []
        for step in self.plan:
            kind = step[0]
            if kind == "linear":
                cache.append(x)
                x = x @ step[1]
                if step[2] is not None:
                    x += step[2]
            elif kind == "relu":
                np.maximum(x, 0, out=x)
                cache.append(x)
            elif kind == "sigmoid":
                x = 0.5 * (1 + np.tanh(0.5 * x))
                cache.append(x)
            elif kind == "tanh":
                x = np.tanh(x)
                cache.append(x)
            elif kind == "dropout":
                if train and step[1] > 0:
                    thr = int(round(step[1] * 256))
                    keep = np.frombuffer(self.rng.bytes(x.size), np.uint8).reshape(x.shape) >= thr
                    mask = keep * np.float32(256 / (256 - thr))
                    x *= mask
                    cache.append(mask)
                else:
                    cache.append(None)
        return x, cache

    def backward(self, z, cache, t) -> None:
        if self.loss == "cross_entropy":
            d = np.exp(z - z.max(axis=1, keepdims=True))
            d /= d.sum(axis=1, keepdims=True)
            d[np.arange(len(t)), t] -= 1
            d *= np.float32(1 / len(t))
        elif self.loss == "bce":
            d = 0.5 * (1 + np.tanh(0.5 * z)) - t
            d *= np.float32(1 / d.size)
        else:
            d = (z - t) * np.float32(2 / z.size)
        gi = len(self.grads)
        for i in range(len(self.plan) - 1, -1, -1):
            step, c = self.plan[i], cache[i]
            kind = step[0]
            if kind == "linear":
                if step[2] is not None:
                    gi -= 1
                    np.sum(d, axis=0, out=self.grads[gi])
                gi -= 1
                np.matmul(c.T, d, out=self.grads[gi])
                if i > self.first_linear:
                    d = d @ step[1].T
            elif kind == "relu":
                d *= c > 0
            elif kind == "sigmoid":
                d *= c * (1 - c)
            elif kind == "tanh":
                d *= 1 - c * c
            elif kind == "dropout" and c is not None:
                d *= c

    def update(self) -> None:
        self.k += 1
        k = self.k
        for i, (p, g) in enumerate(zip(self.params, self.grads)):
            if self.wd:
                np.multiply(p, self.wd, out=self.tmp[i])
                g += self.tmp[i]
            if self.opt["name"] == "sgd":
                if self.mu:
                    self.vel[i] *= self.mu
                    self.vel[i] += g
                    g = self.vel[i]
                np.multiply(g, self.lr, out=self.tmp[i])  # not g *= lr: g may be the velocity
                p -= self.tmp[i]
            else:
                m, v, s = self.ms[i], self.vs[i], self.tmp[i]
                m *= self.b1
                np.multiply(g, 1 - self.b1, out=s)
                m += s
                v *= self.b2
                np.multiply(g, g, out=s)
                s *= 1 - self.b2
                v += s
                np.sqrt(v, out=s)
                s *= 1 / math.sqrt(1 - self.b2 ** k)
                s += self.eps
                np.divide(m, s, out=s)
                s *= self.lr / (1 - self.b1 ** k)
                p -= s

    def step(self, x, t) -> None:
        z, cache = self.forward(x, True)
        self.backward(z, cache, t)
        self.update()

    def predict_classes(self, x) -> np.ndarray:
        z, _ = self.forward(x, False)
        return (z[:, 0] < 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)


def run_numpy(task, setup, spec: dict) -> dict:
    plan = dense_plan(setup.model)
    if plan is None:
        return {"skipped": "the minimal numpy loop covers dense networks only"}
    rng = np.random.default_rng(spec["seed"])
    loop = NumpyLoop(plan, setup.cfg["loss"], setup.cfg["optimizer"], rng)
    x_all, t_all = setup.train_x, setup.train_t
    n, bs = len(x_all), setup.cfg["batch_size"]
    seconds = []
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        order = rng.permutation(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loop.step(x_all[idx], t_all[idx])
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    right = sum(int(np.sum(loop.predict_classes(setup.test_x[i:i + EVAL_BATCH]) == setup.test_y[i:i + EVAL_BATCH]))
                for i in range(0, len(setup.test_y), EVAL_BATCH))
    return {"epoch_seconds": seconds, "accuracy": right / max(len(setup.test_y), 1),
            "eval_seconds": time.perf_counter() - started}
