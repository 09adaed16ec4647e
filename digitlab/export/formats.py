"""The formats `digitlab export --to` knows, each a function `(items, out, say)` of its module, the packages it
needs (the `export` extra), whether it needs a run's trained model and what --out means for it; and `export`, which
checks the packages, reads the runs and hands those that can be exported to the format. Importing this module
loads nothing else (the command line reads FORMATS)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from dataclasses import dataclass

from digitlab.errors import StorageError, UserError

EXTRA = "pip install 'digitlab[export]'"
# A URI's scheme (sqlite:///x.db, http://host:5000, file:///x): where a URI, never a path, is meant
URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


@dataclass(frozen=True)
class Format:
    module: str
    function: str
    packages: tuple[str, ...]
    needs_model: bool
    out: str  # what --out is, for the command's help


MODEL_OUT = "a file for one run or a folder for many (default: inside each run folder)"
FORMATS = {
    "onnx": Format("digitlab.export.onnx_graph", "export", ("onnx",), True, MODEL_OUT),
    "safetensors": Format("digitlab.export.torch_names", "export", ("safetensors",), True, MODEL_OUT),
    "torch": Format("digitlab.export.torch_names", "export_torch", ("safetensors",), True, MODEL_OUT),
    "tensorboard": Format("digitlab.export.tensorboard_events", "export", ("tensorboardX",), False,
                          "the log folder (default: tensorboard)"),
    "mlflow": Format("digitlab.export.mlflow_runs", "export", ("mlflow", "sqlalchemy", "alembic"), False,
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
    write = getattr(importlib.import_module(fmt.module), fmt.function)
    try:
        write(items, out, say)
    except StorageError as exc:
        if out is None:
            raise
        raise exc.because("the path given as --out", exit_code=2) from None
    return len(items)
