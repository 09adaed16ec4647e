"""Class means: the average-image classifier of the course notebook (an image's class is the one whose mean image
has the largest dot product with it) and the nearest-mean classifier (the class whose mean is nearest in
Euclidean distance), as a layer whose weights are fitted in one pass instead of by gradient steps."""

from __future__ import annotations

import numpy as np

from digitlab.nn.base import WeightLayer
from digitlab.options import Choice, Integer


class ClassMeans(WeightLayer):
    """Scores, one per class, of flat inputs against the class means stored as the columns of `weight`
    (in, classes): `dot` gives x . m_c, `euclidean` gives 2 x . m_c - |m_c|^2, which is -|x - m_c|^2 up to a
    term that is the same for every class, so the largest score is the nearest mean. `fit(x, y)` sets each
    column to the mean of its class's inputs."""

    options = {"units": Integer(1), "metric": Choice(["dot", "euclidean"])}
    closed_form = True

    def __init__(self, units: int, metric: str = "dot"):
        super().__init__(units, init="zeros", bias=False)
        self.units, self.metric = int(units), metric

    def build(self, in_shape):
        if len(in_shape) != 1:
            raise ValueError(f"class_means expects flat inputs but receives shape {in_shape}; add 'flatten' before it")
        self.in_shape = in_shape
        return (self.units,)

    def weight_shape(self):
        return (self.in_shape[0], self.units)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        """Each class's mean input (zeros for a class with no example), in one pass over the data."""
        counts = np.bincount(y, minlength=self.units).astype(np.float64)
        sums = np.zeros((self.units, x.shape[1]), dtype=np.float64)
        np.add.at(sums, y, x)
        self.weight.data[...] = (sums / np.maximum(counts, 1)[:, None]).T

    def forward(self, x):
        self.x = x
        w = self.weight.data
        scores = x @ w
        if self.metric == "euclidean":
            scores *= 2
            scores -= np.einsum("ij,ij->j", w, w)
        return scores

    def backward(self, grad):
        """s = x W (dot): dL/dW = x^T g, dL/dx = g W^T. s = 2 x W - colsum(W * W) (euclidean):
        dL/dW = 2 x^T g - 2 W * (column sums of g), dL/dx = 2 g W^T. No optimizer uses dL/dW; saliency uses
        dL/dx."""
        w = self.weight.data
        if self.metric == "dot":
            np.matmul(self.x.T, grad, out=self.weight.grad)
            return grad @ w.T if self.needs_input_grad else None
        np.matmul(self.x.T, grad, out=self.weight.grad)
        self.weight.grad *= 2
        self.weight.grad -= 2 * w * grad.sum(axis=0)
        return 2 * (grad @ w.T) if self.needs_input_grad else None

    def option_value(self, name):
        return getattr(self, name)
