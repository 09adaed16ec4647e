"""Saliency: the gradient of the predicted class's score with respect to the pixels (Simonyan et al., 2013). Red
where more ink would raise the score, blue where it would lower it: what the network looks at."""

from __future__ import annotations

import numpy as np

from digitlab.nn import Sequential, predict_classes


def saliency(model: Sequential, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gradients shaped like x, predicted classes). The score is the predicted class's output before the
    output activation (its logit); with a single output (class 0 when it is high), class 1's score is its
    negative."""
    predicted = predict_classes(model.predict(x))

    def score_gradient(out: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(out)
        if out.shape[1] == 1:
            grad[:, 0] = np.where(predicted == 0, 1.0, -1.0)
        else:
            grad[np.arange(len(out)), predicted] = 1.0
        return grad

    return model.input_gradient(x, score_gradient).reshape(x.shape), predicted
