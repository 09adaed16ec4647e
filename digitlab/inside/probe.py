"""One evaluation-mode pass through a model that keeps every layer's output and, when a loss is given, the
gradient of the loss with respect to every layer's output: what layer health, activation maps and the 2-D plane
look at.

Evaluation mode matters: dropout draws nothing from the run's Generator and batch norm uses (and never updates)
its running statistics, so probing a model between epochs leaves training exactly as it was. Parameter gradients
are overwritten on the way; the next training batch overwrites them again before any optimizer step reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitlab.nn import Loss, Sequential


@dataclass
class Trace:
    """outputs[i] is layer i's output (N, *layer_shapes[i]); grads[i] is dL/d outputs[i] (None without a loss);
    probabilities is the model's output after its output activation."""

    outputs: list[np.ndarray]
    grads: list[np.ndarray | None]
    probabilities: np.ndarray


def trace(model: Sequential, x: np.ndarray, loss_fn: Loss | None = None, y: np.ndarray | None = None,
          upto: int | None = None) -> Trace:
    """Run x (N, *model.in_shape) through the first `upto` layers (all by default) in evaluation mode. With
    `loss_fn` and class indices `y` (and all layers), backpropagate the mean loss too."""
    layers = model.layers if upto is None else model.layers[:upto]
    backward = loss_fn is not None and y is not None and upto is None
    outputs: list[np.ndarray] = []
    with model.evaluating():
        for layer in layers:
            layer.retain = backward
        try:
            out = x
            for layer in layers:
                out = layer.forward(out)
                outputs.append(out.copy())  # the next layer may overwrite its input (ReLU in place)
            probabilities = model.output_activation.forward(out) if model.output_activation is not None and \
                upto is None else out
            grads: list[np.ndarray | None] = [None] * len(layers)
            if backward:
                loss_fn.forward(out, loss_fn.targets(y, model.out_shape[0]))
                grad = loss_fn.backward()
                for i in range(len(layers) - 1, -1, -1):
                    grads[i] = grad.copy()  # backward may overwrite the gradient it is handed (ReLU does)
                    grad = layers[i].backward(grad)
                    if grad is None:
                        break
        finally:
            for layer in layers:
                layer.retain = False
    return Trace(outputs, grads, probabilities)
