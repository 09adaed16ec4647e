"""Layer health: per layer, the mean and spread of its outputs and of the loss's gradient with respect to them,
the share of dead ReLU units and of saturated sigmoid or tanh units, measured on a fixed probe batch.

These are the numbers that tell a network that learns from one that cannot: a ReLU unit that is zero for every
input never gets a gradient again (it is dead), and a sigmoid or tanh unit pinned to its bound for every input
passes almost no gradient (it is saturated; a 784-300-10 sigmoid network trained with MSE at too high a
learning rate shows it, its accuracy climbing in steps). `alarm` turns the rows of one epoch into the one
warning line a run prints.
"""

from __future__ import annotations

import numpy as np

from digitlab.inside.probe import trace
from digitlab.nn import Dropout, Flatten, Loss, ReLU, Sequential, Sigmoid, Tanh
from digitlab.nn.registry import layer_name

COLUMNS = ["epoch", "layer", "name", "act_mean", "act_std", "grad_mean", "grad_std", "dead", "saturated"]
SATURATION = 0.01  # a unit within this of its bound (0 or 1 for a sigmoid, -1 or 1 for tanh) for every input
MOST = 0.5  # more than this share of a layer dead or saturated earns the warning
PROBE = 256  # training images in the probe batch


def label(model: Sequential, index: int | str) -> str:
    """'3 relu', or 'out sigmoid' for the output activation a loss fuses."""
    layer = model.output_activation if index == "out" else model.layers[int(index)]
    return f"{index} {layer_name(type(layer))}"


def units(a: np.ndarray) -> np.ndarray:
    """Outputs as (samples, units): a dense layer's features, or a conv layer's channels over all positions."""
    if a.ndim == 2:
        return a
    return np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def dead_share(a: np.ndarray) -> float:
    """The share of units (features or channels) that are zero for every probe sample."""
    return float(np.mean(~np.any(units(a) > 0, axis=0)))


def saturated_share(a: np.ndarray, low: float) -> float:
    """The share of units pinned to a bound: within SATURATION of the same bound (low, or 1) for every probe
    sample. A confident classifier's output unit sits near 0 for some inputs and near 1 for others: not pinned."""
    u = units(a)
    return float(np.mean(np.all(u <= low + SATURATION, axis=0) | np.all(u >= 1 - SATURATION, axis=0)))


def layer_health(model: Sequential, loss_fn: Loss, x: np.ndarray, y: np.ndarray) -> list[dict]:
    """One row per layer that computes something (dropout and flatten are skipped: in evaluation they pass their
    input on), and one for an output activation the loss fuses: layer, name, act_mean, act_std, grad_mean,
    grad_std (None where no gradient is taken), dead (ReLU only), saturated (sigmoid and tanh only)."""
    result = trace(model, x, loss_fn, y)
    rows = []
    candidates = [(i, layer, result.outputs[i], result.grads[i]) for i, layer in enumerate(model.layers)]
    if model.output_activation is not None:
        candidates.append(("out", model.output_activation, result.probabilities, None))
    for index, layer, out, grad in candidates:
        if isinstance(layer, (Dropout, Flatten)):
            continue
        out = np.asarray(out, dtype=np.float64)
        row = {"layer": str(index), "name": label(model, index), "act_mean": float(out.mean()),
               "act_std": float(out.std()), "grad_mean": None, "grad_std": None, "dead": None, "saturated": None}
        if grad is not None:
            grad = np.asarray(grad, dtype=np.float64)
            row["grad_mean"], row["grad_std"] = float(grad.mean()), float(grad.std())
        if isinstance(layer, ReLU):
            row["dead"] = dead_share(out)
        elif isinstance(layer, Sigmoid):
            row["saturated"] = saturated_share(out, 0.0)
        elif isinstance(layer, Tanh):
            row["saturated"] = saturated_share(out, -1.0)
        rows.append(row)
    return rows


def alarm(rows: list[dict], fused_output: bool = True) -> str | None:
    """A warning for the first layer most of which is dead or saturated, or None. An output activation that the
    loss fuses (sigmoid with BCE, softmax with cross-entropy) is left out: its gradient does not pass through it,
    and a confident classifier's outputs sit near 0 and 1 by design."""
    for row in rows:
        if row["layer"] == "out" and fused_output:
            continue
        if row.get("dead") is not None and row["dead"] > MOST:
            return (f"layer {row['name']}: {row['dead']:.0%} of its units are dead (zero for every probe image); "
                    f"they get no gradient any more: try a lower optimizer.lr, or leaky_relu")
        if row.get("saturated") is not None and row["saturated"] > MOST:
            return (f"layer {row['name']}: {row['saturated']:.0%} of its units are saturated (within {SATURATION} "
                    f"of a bound for every probe image), where the gradient vanishes: try a lower optimizer.lr, "
                    f"or cross_entropy / bce instead of mse")
    return None
