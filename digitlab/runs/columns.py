"""The columns of a run's row: the config values (architecture, optimizer, dropout...), the final metrics, and
where the run comes from (sweep, point). `describe` fills each run's row; `differing` names the config columns
that tell runs apart, which is what a comparison shows and what a legend says.

Besides the named config columns, every other option of the config has a column of its own, named by its dotted
key (`optimizer.nesterov`, `loss.label_smoothing`, `data.dataset`, `train_eval`, `init_from`), a mapping that is
one setting (`early_stopping`, `data.augment`) in one column, and `layers` the layer list as far as `arch` and
`dropout` do not show it (kinds, initialisers, padding...): shown when they differ, so no difference in what
trained is hidden from a comparison."""

from __future__ import annotations

import json
import math

from digitlab.runs.collect import Run, is_sweep_folder

# Config columns, in order: shown only when they differ across the runs, unless all columns are asked for.
CONFIG_COLUMNS = ["digits", "arch", "params", "loss", "optimizer", "lr", "momentum", "weight_decay", "schedule",
                  "dropout", "batch_size", "epochs", "limit", "validation", "seed"]

# Metric columns, always shown: epochs done, final train and test accuracy, best validation accuracy, seconds.
METRIC_COLUMNS = ["epochs_done", "train_acc", "test_acc", "best_val", "seconds"]

ALIASES = {"train_accuracy": "train_acc", "test_accuracy": "test_acc", "best_val_accuracy": "best_val",
           "val_accuracy": "best_val", "architecture": "arch", "epochs done": "epochs_done", "time": "seconds"}

BEST_FIRST = {"train_acc", "test_acc", "best_val"}  # sorted descending; every other column ascending


def architecture(cfg: dict) -> tuple[str, int] | None:
    """(notation, parameters) of a resolved config. A dense network reads as its widths, '784-100-100-2-1'; a
    conv network starts from its image, '1x28x28-c32k3-mp2-c64k3-mp2-128-10' (c: filters and kernel, s: stride,
    mp/ap: max or average pooling). Batch norm, activations and dropout are left out."""
    from digitlab.config import layer_specs, loss_name
    from digitlab.data import open_source
    from digitlab.nn import LOSSES, AvgPool2d, Conv2d, Linear, MaxPool2d, build_layers
    from digitlab.nn.model import plan
    try:  # shapes only: nothing is allocated
        layers, in_shape, _ = build_layers(layer_specs(cfg), open_source(cfg["data"]).image_shape,
                                           LOSSES[loss_name(cfg)].fuses)
        _, params = plan(layers, in_shape)
    except Exception:  # a config whose dataset is gone, or from another digitlab version: leave the column empty
        return None
    parts = [str(math.prod(in_shape)) if len(in_shape) == 1 else "x".join(map(str, in_shape))]
    for layer in layers:
        if isinstance(layer, Linear):
            parts.append(str(layer.units))
        elif isinstance(layer, Conv2d):
            parts.append(f"c{layer.filters}k{layer.kernel}" + (f"s{layer.stride}" if layer.stride != 1 else ""))
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            kind = "mp" if isinstance(layer, MaxPool2d) else "ap"
            parts.append(f"{kind}{layer.size}" + (f"s{layer.step}" if layer.step != layer.size else ""))
    return "-".join(parts), sum(math.prod(s) for s in params.values())

def config_values(cfg: dict | None, summary: dict) -> dict:
    """A run's config columns, as what trained: a dropout given without a rate shows the rate it trained with
    (its default), and a model fitted in one pass (class means) shows no optimizer, learning rate, schedule or
    batch size, even where its config.yaml records an optimizer it never used."""
    from digitlab.nn import LAYERS, MODELS
    from digitlab.options import defaults

    def _layer_name(item) -> str | None:  # 'relu', {linear: 100} -> linear
        if isinstance(item, str):
            return item
        return next(iter(item)) if isinstance(item, dict) and len(item) == 1 else None

    if not cfg:
        return {c: None for c in CONFIG_COLUMNS}
    model = cfg.get("model")
    layers = model if isinstance(model, list) else []
    names = [_layer_name(item) for item in layers]
    one_pass = (isinstance(model, str) and model in MODELS) or any(LAYERS[n].closed_form for n in names if n in LAYERS)
    opt = {} if one_pass else cfg.get("optimizer") or {}
    schedule = opt.get("schedule")
    arch = architecture(cfg)
    rate = defaults(LAYERS["dropout"])["p"]
    dropouts = []
    for item, name in zip(layers, names):
        if name == "dropout":
            given = item.get("dropout") if isinstance(item, dict) else None
            given = given.get("p", rate) if isinstance(given, dict) else given
            dropouts.append(rate if given is None else given)
    data = cfg.get("data") or {}
    return {
        "digits": "".join(map(str, data.get("digits") or [])) if data.get("digits") else None,
        "arch": arch[0] if arch else None,
        "params": summary.get("params") or (arch[1] if arch else None),
        "loss": cfg["loss"] if isinstance(cfg.get("loss"), str) else (cfg.get("loss") or {}).get("name"),
        "optimizer": opt.get("name"),
        "lr": opt.get("lr"),
        "momentum": opt.get("momentum"),
        "weight_decay": opt.get("weight_decay"),
        "schedule": None if one_pass else (schedule.get("name") if isinstance(schedule, dict) else schedule) or "none",
        "dropout": "/".join(_number(d) for d in dropouts) if dropouts else "none",
        "batch_size": None if one_pass else cfg.get("batch_size"),
        "epochs": cfg.get("epochs"),
        "limit": data.get("limit"),
        "validation": data.get("validation"),
        "seed": cfg.get("seed"),
    }

# Dotted config keys the named columns show already; `model` is shown by arch, dropout and layers.
NAMED = {"data.digits", "data.limit", "data.validation", "loss", "loss.name", "optimizer", "optimizer.name",
         "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "optimizer.schedule",
         "optimizer.schedule.name", "batch_size", "epochs", "seed", "model"}
WHOLE = {"early_stopping", "data.augment"}  # a mapping that is one setting: one column
OPTION_COLUMNS = {"early_stopping", "train_eval", "test_every_epoch", "init_from", "outputs", "layers"}
OPTION_SECTIONS = ("data.", "loss.", "optimizer.")  # dotted option columns start with one of these
OF_NAMED = ("loss.", "optimizer.")  # options of what a named column names (loss, optimizer, schedule)
IN_ARCH = {"units", "filters", "kernel", "stride", "size", "p"}  # layer options arch and dropout show


def is_option_column(name: str) -> bool:
    """Whether `name` can be one of option_values' columns (what --where accepts besides the named ones)."""
    return name in OPTION_COLUMNS or (name.startswith(OPTION_SECTIONS) and name.split(".")[-1] != "")


def option_values(cfg: dict | None) -> dict:
    """The columns of every config option the named columns do not show (see the module's docstring): a top-level
    or data key added after digitlab 0.1 holds no value at its default (as config.identity leaves it out), and the
    loss's, optimizer's and schedule's options have their defaults filled in (so that a config written before an
    option existed reads as the default it trained with)."""
    from digitlab.config import identity, layer_specs
    from digitlab.nn import LOSSES, OPTIMIZERS, SCHEDULES
    from digitlab.options import defaults

    if not cfg:
        return {}
    out: dict = {}

    def walk(prefix: str, value) -> None:
        if prefix in WHOLE:
            out[prefix] = _compact(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif prefix not in NAMED:
            out[prefix] = value

    try:
        ident = identity(cfg)
        for key, registry in (("loss", LOSSES), ("optimizer", OPTIMIZERS)):  # every option, defaults filled in
            given = cfg.get(key)
            given = {"name": given} if isinstance(given, str) else given
            if isinstance(given, dict) and given.get("name") in registry:
                ident[key] = {**defaults(registry[given["name"]]), **given}
                schedule = given.get("schedule")
                if isinstance(schedule, dict) and schedule.get("name") in SCHEDULES:
                    ident[key]["schedule"] = {**defaults(SCHEDULES[schedule["name"]]), **schedule}
            else:  # fitted in one pass: no optimizer to tell apart
                ident.pop(key, None)
        walk("", {k: v for k, v in ident.items() if k != "model"})
        out["outputs"] = cfg.get("outputs", "full")
        out["layers"] = " ".join(_layer(name, opts) for name, opts in layer_specs(cfg))
    except Exception:  # noqa: BLE001 (a config from another digitlab version: the named columns still show it)
        return out
    return out


def _layer(name: str, opts: dict) -> str:
    """A layer in the `layers` column: its name and the options that arch and dropout do not show and that are
    not at their defaults (`{stride: 1}` written out reads as the default it is)."""
    from digitlab.nn import LAYERS
    from digitlab.options import defaults
    default = defaults(LAYERS[name]) if name in LAYERS else {}
    shown = [f"{k}={_compact(v)}" for k, v in opts.items() if k not in IN_ARCH and v is not None and
             v != default.get(k)]
    return f"{name}({', '.join(shown)})" if shown else name


def _compact(value) -> str:
    """A mapping as one cell: 'monitor=val_loss patience=3 ...'; 'none' for null."""
    if value is None:
        return "none"
    if isinstance(value, dict):
        return " ".join(f"{k}=({_compact(v)})" if isinstance(v, dict) else f"{k}={_compact(v)}"
                        for k, v in value.items()) or "none"
    return str(value).lower() if isinstance(value, bool) else _number(value)


def metric_values(run: Run) -> dict:
    """Final metrics from summary.json when the run finished, else from the last row of metrics.csv."""
    rows, summary = run.metrics, run.summary
    last = rows[-1] if rows else {}
    vals = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
    seconds = summary.get("seconds")
    if seconds is None and rows:
        seconds = round(sum(r.get("seconds") or 0.0 for r in rows), 3)
    return {
        "epochs_done": len(rows),
        "train_acc": summary.get("train_accuracy", last.get("train_accuracy")),
        "test_acc": summary.get("test_accuracy", last.get("test_accuracy")),
        "best_val": summary.get("best_val_accuracy", max(vals) if vals else None),
        "seconds": seconds,
    }

def origin(run: Run) -> dict:
    """The run's sweep and point as its run.json records them (both null for a lone run); for a folder written
    before run.json had them, guessed from where it is: in a sweep folder, named <values>-<point id>."""
    if "sweep" in run.info or "point" in run.info:
        return {"sweep": run.info.get("sweep"), "point": run.info.get("point")}
    if not is_sweep_folder(run.path.parent):
        return {"sweep": None, "point": None}
    tail = run.name.rsplit("-", 1)[-1]
    point = tail if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else None
    return {"sweep": run.path.parent.name, "point": point}

def describe(runs: list[Run]) -> None:
    """Fill each run's row (`values`): every column, and started, sweep, point and path. A run whose row is filled
    (from the catalog, or described before) keeps it."""
    for run in runs:
        if run.values:
            continue
        from digitlab.run import tags as run_tags  # a folder was read: its modules are loaded already
        run.values = {"name": run.name, "status": run.status, **config_values(run.cfg, run.summary),
                      "options": option_values(run.cfg), **metric_values(run), "started": run.info.get("started"),
                      **origin(run),
                      **run_tags.columns(run.tags), "path": str(run.path)}
        if run.damage:
            run.values["damage"] = run.damage

def differing(runs: list[Run]) -> list[str]:
    """The config columns whose values are not all the same across `runs`: the named ones, then the other
    options' (option_values), in config order."""
    return differing_rows([r.values for r in runs])


def differing_rows(rows: list[dict]) -> list[str]:
    """differing() of rows (each a run's `values`, or flat())."""
    named = [c for c in CONFIG_COLUMNS if _several([r.get(c) for r in rows])]
    options = [r.get("options") or {k: r[k] for k in r.get("option_keys", ())} for r in rows]
    keys = list(dict.fromkeys(k for o in options for k in o))

    def varies(key: str) -> bool:  # an option of a loss or optimizer the others lack: their name differs already
        return _several([o[key] for o in options if key in o] if key.startswith(OF_NAMED) else
                        [o.get(key) for o in options])
    return named + [k for k in keys if varies(k)]


def _several(values: list) -> bool:
    """Whether `values` are not all the same as JSON writes them (1, 1.0 and true differ; -0.0 and 0.0 too; NaN
    is NaN). Plain values are told apart by type, then by value, without writing each one; anything else by its
    JSON."""
    types = set(map(type, values))
    if not types <= _PLAIN:
        return len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1
    if len(types) > 1:  # two plain types never write the same JSON
        return True
    seen = set(values)
    if float not in types:
        return len(seen) > 1
    nans = sum(1 for v in seen if v != v)  # NaN objects are not equal to each other
    if len(seen) - nans + bool(nans) > 1:
        return True
    # one value left, where -0.0 and 0.0 are one (they compare equal): JSON writes them apart
    return len({math.copysign(1.0, v) for v in values if v == 0}) > 1


_PLAIN = {str, int, float, bool, type(None)}


def flat(values: dict, option_keys: bool = True) -> dict:
    """A run's row with its other options' columns beside the named ones (`option_keys` lists them, unless
    option_keys is False: the row as tables show it)."""
    row = values.copy()
    options = row.pop("options", None) or {}
    row.update(options)
    if option_keys:
        row["option_keys"] = list(options)
    return row


def legend_labels(runs: list[Run]) -> list[str]:
    """Each run's label: the config values that differ across the runs ('lr=0.001 dropout=0.1'), else its name."""
    keys = differing(runs) if len(runs) > 1 else []
    keys = [k for k in keys if k not in ("params", "outputs") or keys == [k]]  # outputs change no number
    rows = [flat(r.values) for r in runs]
    labels = [" ".join(f"{k}={format_value(k, row.get(k))}" for k in keys) or r.name for r, row in zip(runs, rows)]
    if len(set(labels)) < len(labels):  # same config twice (different folders): tell them apart by name
        labels = [f"{label} ({r.name})" if labels.count(label) > 1 else label for label, r in zip(labels, runs)]
    return labels

def format_value(column: str, value) -> str:
    if value is None:
        return "-"
    if column in ("train_acc", "test_acc", "best_val"):
        return f"{value:.4f}"
    if column == "seconds":
        return f"{value:.1f}"
    if isinstance(value, bool):  # as YAML writes it
        return str(value).lower()
    if column == "epochs_done" and isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, float):
        return _number(value)
    return str(value)

def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
