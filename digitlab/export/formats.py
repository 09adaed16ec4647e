"""The formats `digitlab export --to` knows, each a module with `export(items, out, say)`, the packages it needs
(the `export` extra) and whether it needs a run's trained model; and `export`, which checks the packages, reads
the runs and hands those that can be exported to the format."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from digitlab.errors import StorageError, UserError

EXTRA = "pip install 'digitlab[export]'"


@dataclass(frozen=True)
class Format:
    module: str
    packages: tuple[str, ...]
    needs_model: bool
    out_help: str


FORMATS = {
    "onnx": Format("digitlab.export.onnx_graph", ("onnx",), True,
                   "model.onnx in each run folder; or a .onnx file for one run, or a folder for many"),
    "safetensors": Format("digitlab.export.torch_names", ("safetensors",), True,
                          "model.safetensors in each run folder; or a .safetensors file, or a folder"),
    "torch": Format("digitlab.export.torch_names", ("safetensors",), True,
                    "model.safetensors and model_torch.py in each run folder; or a .safetensors file, or a folder"),
    "tensorboard": Format("digitlab.export.tensorboard_events", ("tensorboardX",), False,
                          "the log folder TensorBoard reads (default: tensorboard)"),
    "mlflow": Format("digitlab.export.mlflow_runs", ("mlflow", "sqlalchemy", "alembic"), False,
                     "the tracking URI (default: sqlite:///mlflow.db)"),
}


def require(name: str) -> None:
    """UserError naming the extra when a package the format needs is not installed (found, not imported: some
    import for seconds)."""
    for package in FORMATS[name].packages:
        if importlib.util.find_spec(package) is None:
            raise UserError(f"--to {name} needs the package {package}, which is not installed: {EXTRA}")


def export(paths, name: str, out: str | None, say, warn) -> int:
    """Export the runs of `paths` to the format `name`; `say` gets a line per file or run written, `warn` one per
    run left out. Returns how many runs were exported; a UserError when none could be."""
    from digitlab.export.reading import gather
    require(name)
    fmt = FORMATS[name]
    items, problems = gather(paths, fmt.needs_model)
    if not items:
        if len(problems) == 1:
            raise UserError(problems[0].removesuffix("; skipped"))
        for line in problems:
            warn(line)
        raise UserError("nothing to export: none of the folders given holds a run that can be exported")
    for line in problems:
        warn(line)
    module = importlib.import_module(fmt.module)
    try:
        if name == "torch":
            module.export(items, out, say, with_code=True)
        else:
            module.export(items, out, say)
    except StorageError as exc:
        if out is None:
            raise
        raise exc.because("the path given as --out", exit_code=2) from None
    return len(items)
