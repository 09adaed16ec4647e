"""A Keras-style model summary: each layer with the options it runs with (defaults included), its output shape
and parameter count, and the totals."""

from __future__ import annotations

import math

from digitlab.nn.model import Sequential
from digitlab.nn.registry import layer_name
from digitlab.options import size_text


def summary_rows(model: Sequential) -> list[dict]:
    """One row per layer (and the output activation a loss fuses): index, config name, type (the class with every
    option it runs with, defaults included: 'Dropout(p=0.5)'), output shape (None for the batch), parameters, and
    the saved buffers that are not trained (batch norm's statistics)."""
    rows = []
    for i, (layer, shape) in enumerate(zip(model.layers, model.layer_shapes)):
        params = sum(math.prod(s) for s in layer.param_shapes().values())
        buffers = sum(b.size for b in layer.buffers().values())
        rows.append({"index": str(i), "name": layer_name(type(layer)), "type": repr(layer),
                     "shape": (None, *shape), "params": params, "buffers": buffers})
    if model.output_activation is not None:
        head = model.output_activation
        rows.append({"index": "out", "name": layer_name(type(head)), "type": repr(head),
                     "shape": (None, *model.out_shape), "params": 0, "buffers": 0})
    return rows


def format_summary(model: Sequential, title: str = "") -> str:
    """The summary as text, as Keras prints it: layer (type), output shape, parameters, then the totals."""
    rows = summary_rows(model)
    cells = [(f"{r['index']} {r['name']} ({r['type']})", str(r["shape"]).replace(",)", ")"), f"{r['params']:,}")
             for r in rows]
    head = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(3)]

    def line(c):
        return f"{c[0]:<{widths[0]}}   {c[1]:<{widths[1]}}   {c[2]:>{widths[2]}}"

    rule = "=" * len(line(head))
    total = sum(r["params"] for r in rows)
    frozen = sum(r["buffers"] for r in rows)
    lines = ([f'Model: "{title}"'] if title else []) + [line(head), rule] + [line(c) for c in cells] + [rule]
    lines.append(f"Total params: {total:,} ({size_text(total * 4)} as float32)")
    if frozen:
        lines.append(f"Saved buffers, not trained: {frozen:,} (batch norm's running statistics)")
    lines.append(f"Input: (None, {', '.join(map(str, model.in_shape))})")
    return "\n".join(lines)
