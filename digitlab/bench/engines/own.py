"""digitlab's engine, timed on the path `digitlab train` takes: Sampler + DataLoader -> Learner."""

from __future__ import annotations

import time


def run_digitlab(task, setup, spec: dict) -> dict:
    from digitlab.data import DataLoader, Sampler
    from digitlab.learner import Learner
    from digitlab.nn.metrics import score

    loader = DataLoader((setup.train_x, setup.train_t),
                        Sampler(len(setup.train_x), setup.cfg["batch_size"], shuffle=True, rng=setup.rng))
    learner = Learner(setup.model, setup.loss_fn, setup.optimizer, loader)
    history = learner.fit(spec["epochs"])
    started = time.perf_counter()
    result = score(setup.model, setup.loss_fn, setup.test_x, setup.test_y)
    return {"epoch_seconds": [h["train_seconds"] for h in history], "accuracy": result["accuracy"],
            "eval_seconds": time.perf_counter() - started}
