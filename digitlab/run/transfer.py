"""`init_from: RUN` in a config: a run that starts from another run's trained weights (fine-tuning, or transfer from
3 vs 8 to ten digits), as Keras users load weights into a model whose head is new.

The two networks are compared layer by layer, position by position (the fused final activation aside). Every layer
up to the output layer (the last with parameters) must be of the same kind with parameters and buffers of the same
shapes: those are copied. The output layer is copied too when it matches; when only it differs (1 output for 3 vs 8,
10 for ten digits) it keeps the fresh weights the seed drew. Anything else is refused with one line: hidden layers
that differ, a source run that is not complete or is damaged (its model.npz missing), a model fitted in one pass
(class means) on either side. The weights are copied after the seed has drawn
every initial weight, so the run's Generator, and so its shuffles and dropout masks, are those of the same config
without `init_from`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digitlab.config import config_hash, read_run_config
from digitlab.data import open_source
from digitlab.errors import ConfigError, RunError
from digitlab.nn.registry import layer_name
from digitlab.run import layout
from digitlab.run.agreement import check_agreement
from digitlab.run.files import load_model
from digitlab.run.folder import RunFolder
from digitlab.run.setup import Setup

KEY = "init_from"
SOURCE = "config"  # the config file is named by the command that read it (cli.arguments.blaming)


@dataclass
class Transfer:
    line: str     # what the console says
    record: dict  # what run.json keeps: the source run, its config hash, the layers copied and left fresh


def _refuse(message: str):
    raise ConfigError(SOURCE, KEY, message)


def _shapes(layer) -> dict:
    return {**layer.param_shapes(), **{k: b.shape for k, b in layer.buffers().items()}}


def _describe(layer) -> str:
    shapes = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in _shapes(layer).items())
    return f"{layer_name(type(layer))}" + (f" ({shapes})" if shapes else "")


def init_weights(setup: Setup) -> Transfer:
    """Copy the weights of the run that setup.cfg's `init_from` names into setup.model (see the module's
    docstring); ConfigError (key init_from) naming the run and what differs when they cannot be."""
    path = Path(setup.cfg[KEY])
    if setup.model.closed_form:
        _refuse(f"this model is fitted in one pass (class means), it has no layers to start from {path}")
    try:
        source = RunFolder.open(path)
        info = source.info()
        status = source.status()
        if status != "complete":
            _refuse(f"{path}: is {status}; init_from needs a run that completed")
        if not (source / layout.MODEL).is_file():
            _refuse(f"{path}: its {layout.MODEL} is missing: the run is damaged")
        cfg = read_run_config(source / layout.CONFIG)
        check_agreement(source, cfg, info, source.read_metrics())
        image_shape = open_source(cfg["data"]).image_shape
        model, _ = load_model(source / layout.MODEL, cfg, image_shape)
    except ConfigError as exc:
        if exc.key == KEY:
            raise
        _refuse(f"{path}: {exc}")
    except RunError as exc:
        _refuse(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
    if model.closed_form:  # before any word on image shapes or layer kinds: there is nothing to compare
        _refuse(f"{path}: its model is fitted in one pass (class means), it has no layers to start from")
    if model.in_shape != setup.model.in_shape:
        _refuse(f"{path}: its network takes images of shape {model.in_shape}, this one {setup.model.in_shape}")
    theirs, ours = model.layers, setup.model.layers
    last = max((i for i, layer in enumerate(ours) if layer.param_shapes()), default=-1)
    head = max((i for i, layer in enumerate(theirs) if layer.param_shapes()), default=-1)
    for i in range(max(last, head)):  # the hidden layers: every one must match
        there = _describe(theirs[i]) if i < len(theirs) else "nothing"
        here = _describe(ours[i]) if i < len(ours) else "nothing"
        if i >= len(theirs) or i >= len(ours) or type(theirs[i]) is not type(ours[i]) or \
                _shapes(theirs[i]) != _shapes(ours[i]):
            _refuse(f"{path}: hidden layer model.{i} is {there} there and {here} here; only the output layer "
                    f"may differ")
    copied = list(range(last))
    output_matches = last == head and last >= 0 and type(theirs[last]) is type(ours[last]) and \
        _shapes(theirs[last]) == _shapes(ours[last])
    if output_matches:
        copied.append(last)
    state = model.state_dict()
    for i in copied:
        for name, param in setup.model.params.named.items():
            if name.split(".")[0] == str(i):
                param.data[...] = state[name]
        for name, buffer in ours[i].buffers().items():
            buffer[...] = state[f"{i}.{name}"]
    names = ", ".join(layer_name(type(ours[i])) for i in copied)
    span = f"model.0-model.{copied[-1]}" if len(copied) > 1 else f"model.{copied[0]}" if copied else "no layer"
    line = f"init_from {path}: copied {span} ({names})"
    fresh = [] if output_matches or last < 0 else [last]
    if fresh:
        line += f"; the output layer model.{last} starts fresh ({_describe(ours[last])} here, " \
                f"{_describe(theirs[head])} there)"
    record = {"run": str(path), "config_hash": config_hash(cfg), "copied": copied, "fresh": fresh}
    return Transfer(line, record)
