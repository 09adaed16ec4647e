"""Metrics: evaluation of a model over a whole split, accuracy, confusion, precision/recall."""

from __future__ import annotations

import numpy as np

from digitlab.nn import Loss, Sequential, predict_classes


def score(model: Sequential, loss_fn: Loss, x: np.ndarray, y: np.ndarray) -> dict:
    """Mean loss, accuracy, output probabilities and predicted classes of `model` (in evaluation mode) on
    inputs x, classes y. One forward pass: in evaluation mode the model slices large inputs itself."""
    with model.evaluating():
        out = model.forward(x)
    loss = loss_fn.forward(out, loss_fn.targets(y, model.out_shape[0])) if len(y) else float("nan")
    probs = model.output_activation.forward(out) if model.output_activation is not None else out
    predictions = predict_classes(probs)
    return {"loss": loss, "accuracy": float(np.mean(predictions == y)) if len(y) else float("nan"),
            "predictions": predictions, "probabilities": probs}


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j]: how many samples of class i were predicted as class j."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def precision_recall(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: precision = right / predicted as it, recall = right / truly it (0 where undefined)."""
    right = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(right, predicted, out=np.zeros_like(right), where=predicted > 0)
    recall = np.divide(right, actual, out=np.zeros_like(right), where=actual > 0)
    return precision, recall


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """(N, K) probabilities per class from a model's outputs (after its output activation): a single output p
    is [p, 1 - p] (class 0 when it is high, as predict_classes reads it); several outputs that are not a
    distribution already (MSE on sigmoids) are scaled to sum to 1."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.shape[1] == 1:
        return np.concatenate([outputs, 1 - outputs], axis=1)
    outputs = np.clip(outputs, 0, None)
    return outputs / np.maximum(outputs.sum(axis=1, keepdims=True), 1e-12)
