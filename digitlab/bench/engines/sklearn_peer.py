"""scikit-learn's MLPClassifier as a peer, for the tasks that map onto it: one `partial_fit` pass per epoch,
float32, the same batch size. Imported only inside a worker process."""

from __future__ import annotations

import time


def run_sklearn(task, setup, spec: dict) -> dict:
    """scikit-learn's MLPClassifier, one `partial_fit` pass per epoch, float32, same batch size."""
    if task.sklearn is None:
        return {"skipped": f"does not fit MLPClassifier: {task.sklearn_note}"}
    import numpy as np
    import sklearn
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(batch_size=setup.cfg["batch_size"], random_state=spec["seed"], shuffle=True, **task.sklearn)
    x = np.ascontiguousarray(setup.train_x.reshape(len(setup.train_x), -1))
    y = setup.data.train.y
    classes = np.arange(len(setup.cfg["data"]["digits"]))
    seconds = []
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        clf.partial_fit(x, y, classes=classes)
        seconds.append(time.perf_counter() - started)
    started = time.perf_counter()
    pred = clf.predict(setup.test_x.reshape(len(setup.test_x), -1))
    return {"epoch_seconds": seconds, "accuracy": float(np.mean(pred == setup.test_y)) if len(pred) else None,
            "eval_seconds": time.perf_counter() - started, "note": task.sklearn_note,
            "versions": {"scikit-learn": sklearn.__version__}}
