"""Losses, each fused with the output activation it pairs with, so that the gradient is simple and stable.

`forward(outputs, targets)` returns the mean loss as a float; `backward()` returns dL/doutputs. A loss that
fuses an activation (`fuses`) receives the pre-activation outputs (logits): the model stops before it.
`targets(y, n_outputs)` turns class indices into what the loss compares against.

What a loss expects of the model's last layer is declared here and checked by the config (config.schema):
`takes_logits` refuses a model whose outputs come from an activation that bounds them (a softmax before
cross-entropy is a softmax of a softmax; a ReLU before BCE's sigmoid leaves it >= 0.5); `needs_fused` asks for
the fused activation to be written as the last layer (bce ends in sigmoid).
"""

from __future__ import annotations

import numpy as np

from digitlab.nn import functional as F
from digitlab.nn.activations import Sigmoid, Softmax
from digitlab.nn.base import Layer
from digitlab.options import Number


def binary_or_onehot(y: np.ndarray, n_outputs: int) -> np.ndarray:
    """One output: 1.0 for class 0 (the first digit listed), 0.0 for class 1, as the course did (3 -> 1, 8 -> 0).
    Several outputs: one-hot rows."""
    if n_outputs == 1:
        return (y == 0).astype(np.float32)[:, None]
    onehot = np.zeros((len(y), n_outputs), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1
    return onehot


def predict_classes(probabilities: np.ndarray) -> np.ndarray:
    """Class indices from outputs: argmax for several outputs; for one, class 0 when it is >= 0.5."""
    if probabilities.shape[1] == 1:
        return (probabilities[:, 0] < 0.5).astype(np.int64)
    return probabilities.argmax(axis=1)


class Loss:
    fuses: type[Layer] | None = None
    options: dict = {}  # what a config may set: loss: {name: cross_entropy, label_smoothing: 0.1}
    takes_logits = False  # True: it receives logits, any real number, and applies its activation itself
    needs_fused = False  # the model must end with the activation it fuses (else it would be added silently)

    def targets(self, y: np.ndarray, n_outputs: int) -> np.ndarray:
        return binary_or_onehot(y, n_outputs)

    def __call__(self, outputs, targets):
        return self.forward(outputs, targets)


class MSELoss(Loss):
    """mean((y - t)^2) over all elements; dL/dy = 2 (y - t) / y.size."""

    def forward(self, outputs, targets):
        self.diff = outputs - targets
        return float(np.mean(self.diff * self.diff))

    def backward(self):
        return self.diff * np.float32(2 / self.diff.size)


class BCELoss(Loss):
    """Binary cross-entropy on logits z, fused with the sigmoid (PyTorch's BCEWithLogitsLoss):
    mean(softplus(z) - z t), stable for any z; dL/dz = (sigmoid(z) - t) / z.size."""

    fuses = Sigmoid
    takes_logits = needs_fused = True

    def forward(self, logits, targets):
        self.logits, self.t = logits, targets
        return float(np.mean(F.softplus(logits) - logits * targets))

    def backward(self):
        grad = F.sigmoid(self.logits)
        grad -= self.t
        grad *= np.float32(1 / grad.size)
        return grad


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits with integer class targets, as in PyTorch:
    mean(logsumexp(z) - z[target]); dL/dz = (softmax(z) - onehot) / N.

    With `label_smoothing` e (PyTorch's), the target is (1 - e) onehot + e / K over the K classes:
    L = mean(logsumexp(z) - (1 - e) z[target] - e mean_k z_k); dL/dz = (softmax(z) - (1 - e) onehot - e / K) / N.
    The network is not pushed to ever larger logits for examples it already gets right."""

    fuses = Softmax
    takes_logits = True
    options = {"label_smoothing": Number(0, 1, high_open=True)}

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = float(label_smoothing)

    def targets(self, y, n_outputs):
        return y.astype(np.int64)

    def forward(self, logits, targets):
        self.logits, self.t = logits, targets
        rows = np.arange(len(targets))
        e = self.label_smoothing
        picked = logits[rows, targets] if not e else (1 - e) * logits[rows, targets] + e * logits.mean(axis=1)
        return float(np.mean(F.logsumexp(logits)[:, 0] - picked))

    def backward(self):
        grad = F.softmax(self.logits)
        e = self.label_smoothing
        if e:
            grad -= np.float32(e / grad.shape[1])
        grad[np.arange(len(self.t)), self.t] -= np.float32(1 - e)
        grad *= np.float32(1 / len(self.t))
        return grad
