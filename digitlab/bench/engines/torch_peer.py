"""PyTorch CPU as a peer: the same layers, initial weights, optimizer, batch size and threads as digitlab's
engine, timed as a lean loop that indexes tensors, through torch.utils.data.DataLoader, or with the fused
optimizer and denormals flushed (PyTorch's fastest CPU settings). Imported only inside a worker process."""

from __future__ import annotations

import time

EVAL_BATCH = 2000


def torch_model(setup):
    """The digitlab model's layers as torch modules, with its initial weights copied over."""
    import torch

    from digitlab.nn import BatchNorm, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Tanh
    modules = []
    with torch.no_grad():
        for layer in setup.model.layers:
            kind = type(layer).__name__
            if isinstance(layer, Linear):
                m = torch.nn.Linear(layer.in_shape[0], layer.units, bias=layer.bias is not None)
                m.weight.copy_(torch.from_numpy(layer.weight.data.T.copy()))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(layer.bias.data))
            elif isinstance(layer, Conv2d):
                if layer.padding == "same" and layer.stride != 1:
                    raise ValueError("torch has padding='same' for stride 1 only")
                m = torch.nn.Conv2d(layer.in_shape[0], layer.filters, layer.kernel, layer.stride,
                                    padding=layer.padding, bias=layer.bias is not None)
                m.weight.copy_(torch.from_numpy(layer.weight.data))
                if layer.bias is not None:
                    m.bias.copy_(torch.from_numpy(layer.bias.data))
            elif isinstance(layer, MaxPool2d):
                m = torch.nn.MaxPool2d(layer.size, layer.step)
            elif isinstance(layer, BatchNorm):
                cls = torch.nn.BatchNorm1d if len(layer.in_shape) == 1 else torch.nn.BatchNorm2d
                m = cls(layer.channels, eps=layer.eps, momentum=layer.momentum)
            elif isinstance(layer, Dropout):
                m = torch.nn.Dropout(layer.p)
            elif isinstance(layer, Flatten):
                m = torch.nn.Flatten()
            elif isinstance(layer, (ReLU, Sigmoid, Tanh)):
                m = {ReLU: torch.nn.ReLU, Sigmoid: torch.nn.Sigmoid, Tanh: torch.nn.Tanh}[type(layer)]()
            else:
                raise ValueError(f"no torch equivalent for {kind}")
            modules.append(m)
    return torch.nn.Sequential(*modules)


def run_torch(task, setup, spec: dict, best: bool = False, loader: bool = False) -> dict:
    """PyTorch CPU, same layers, initial weights, optimizer, batch size and threads. Batches are gathered by
    indexing the tensors with a permutation (what digitlab does), or with `loader`, by PyTorch's own
    DataLoader over a TensorDataset, the loop most PyTorch code is written as. `best`: the fused optimizer and
    denormals flushed to zero, PyTorch's fastest CPU settings for this loop."""
    import numpy as np
    import torch

    from digitlab.config import loss_name

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    if best:
        torch.set_flush_denormal(True)
    model = torch_model(setup)
    opt = {k: v for k, v in setup.cfg["optimizer"].items() if k not in ("schedule", "decay_all")}
    name = opt.pop("name")
    if "betas" in opt:
        opt["betas"] = tuple(opt["betas"])
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "rmsprop": torch.optim.RMSprop, "adadelta": torch.optim.Adadelta}[name]
    kwargs = {"fused": True} if best and name in ("sgd", "adam", "adamw") else {}
    optimizer = cls(model.parameters(), **opt, **kwargs)
    loss_fn = {"bce": torch.nn.BCEWithLogitsLoss, "cross_entropy": torch.nn.CrossEntropyLoss,
               "mse": torch.nn.MSELoss}[loss_name(setup.cfg)]()
    x = torch.from_numpy(np.ascontiguousarray(setup.train_x))
    t = torch.from_numpy(setup.train_t)
    n, bs = len(x), setup.cfg["batch_size"]
    generator = torch.Generator().manual_seed(spec["seed"])

    def batches():
        if loader:
            yield from torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, t), batch_size=bs,
                                                   shuffle=True, generator=generator)
            return
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            yield x[idx], t[idx]

    seconds = []
    model.train()
    for _ in range(spec["epochs"]):
        started = time.perf_counter()
        for xb, tb in batches():
            loss = loss_fn(model(xb), tb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    model.eval()
    started = time.perf_counter()
    right = 0
    with torch.no_grad():
        for start in range(0, len(setup.test_y), EVAL_BATCH):
            z = model(torch.from_numpy(np.ascontiguousarray(setup.test_x[start:start + EVAL_BATCH]))).numpy()
            pred = (z[:, 0] < 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
            right += int(np.sum(pred == setup.test_y[start:start + EVAL_BATCH]))
    config = torch.__config__.show()
    backend = ", ".join(b for b in ("MKL", "oneDNN", "OpenBLAS") if b.lower() in config.lower() or
                        (b == "oneDNN" and "mkldnn" in config.lower()))
    note = "fused optimizer, denormals flushed" if best else "default optimizer"
    if loader:
        note += ", torch.utils.data.DataLoader"
    return {"epoch_seconds": seconds, "accuracy": right / max(len(setup.test_y), 1),
            "eval_seconds": time.perf_counter() - started, "note": note,
            "versions": {"torch": torch.__version__, "torch_backends": backend,
                         "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}}
