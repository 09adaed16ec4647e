"""A run's weights under PyTorch's names, as safetensors, and the Python file that builds the equivalent
torch.nn.Sequential and loads them.

Module i of that Sequential is digitlab's layer i, so the names are the engine's own ("0.weight", "0.bias",
"1.running_mean", ...): a Linear's weight transposed to (out, in), a conv weight as it is, batch norm's weight,
bias and running statistics (torch fills in num_batches_tracked itself), the output activation last, without
parameters. A "same" padding that torch's Conv2d cannot express (with a stride) is a Conv2d subclass that pads first,
with the same parameter names. Where torch is installed, the written file is loaded and run on test images and
its probabilities compared with the engine's.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from digitlab.export.network import Network, Step, describe
from digitlab.export.reading import Exportable, destination, unique_destinations
from digitlab.options import plural
from digitlab.run import layout
from digitlab.system.storage import atomic_write, make_folder

SUFFIX = ".safetensors"
CHECK_IMAGES = 500  # test images the written file is checked on
TOLERANCE = 1e-4


def state_dict(net: Network) -> dict[str, np.ndarray]:
    """{"<index>.<name>": float32 array} in PyTorch's layouts."""
    return {f"{step.index}.{name}": np.ascontiguousarray(array, dtype=np.float32)
            for step in net.steps if step.index is not None for name, array in step.arrays.items()}


def _module(step: Step) -> str:
    o, a = step.options, step.arrays
    if step.kind == "linear":
        return f"nn.Linear({o['in']}, {o['out']}, bias={'bias' in a})"
    if step.kind == "conv2d":
        top, bottom, left, right = o["pads"]
        args = f"{o['in']}, {o['out']}, {o['kernel']}, stride={o['stride']}, bias={'bias' in a}"
        if (top, left) == (bottom, right):
            return f"nn.Conv2d({args}, padding={(top, left)})"
        return f"PaddedConv2d({args}, pads={(left, right, top, bottom)})"
    if step.kind == "batchnorm":
        kind = "BatchNorm2d" if o["image"] else "BatchNorm1d"
        return f"nn.{kind}({o['channels']}, eps={o['eps']!r}, momentum={o['momentum']!r})"
    if step.kind in ("maxpool2d", "avgpool2d"):
        kind = "MaxPool2d" if step.kind == "maxpool2d" else "AvgPool2d"
        return f"nn.{kind}({o['size']}, stride={o['stride']})"
    simple = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "softmax": "nn.Softmax(dim=1)",
              "flatten": "nn.Flatten()"}
    if step.kind in simple:
        return simple[step.kind]
    if step.kind == "leaky_relu":
        return f"nn.LeakyReLU({o['slope']!r})"
    return f"nn.Dropout({o['p']!r})"


PADDED = '''

class PaddedConv2d(nn.Conv2d):
    """A Conv2d whose zero border is (left, right, top, bottom), the odd pixel at the bottom/right, as digitlab's
    (and TensorFlow's) padding "same" puts it; torch's own padding="same" refuses a stride."""

    def __init__(self, *args, pads, **kwargs):
        super().__init__(*args, **kwargs)
        self.pads = pads

    def forward(self, x):
        return super().forward(nn.functional.pad(x, self.pads))
'''

HEADS = {"softmax": "    return outputs",
         "binary": "    return torch.cat([outputs, 1 - outputs], dim=1)  # class 0 (the first digit) when p is high",
         "normalise": "    outputs = outputs.clamp(min=0)\n"
                      "    return outputs / outputs.sum(dim=1, keepdim=True).clamp(min=1e-12)"}


def plain(text: str) -> str:
    """`text` as the docstring may show it: letters, digits and ._-/ kept, anything else (a quote, a backslash, a
    newline that would end the docstring and start code) as _. The exact value goes into the code through repr."""
    return "".join(c if c.isalnum() or c in "._-/" else "_" for c in text)


def source(net: Network, item: Exportable, weights_name: str, module_name: str) -> str:
    """The Python file (module_name.py): build(), load(), probabilities(model, images). What comes from the run
    folder (its name, the weights file's name) is in the code only as repr() string constants (RUN, WEIGHTS) and in
    the docstring only in plain()'s form, so no folder name can end a string and write code."""
    modules = [f"        {_module(step)},  # {step.index if step.index is not None else 'output'}"
               for step in net.steps]
    padded = PADDED if any(m.lstrip().startswith("PaddedConv2d") for m in modules) else ""
    h, w = net.image_hw
    return f'''"""The network of the digitlab run {plain(item.label)} (RUN) as a torch.nn.Sequential, with its weights
from {plain(weights_name)} beside this file (written by `digitlab export --to torch`).

    from {module_name if module_name.isidentifier() else "<this file>"} import load, probabilities
    model = load()
    p = probabilities(model, images)  # images: float32 (N, {h}, {w}), pixels scaled to [0, 1] as digitlab stores them

p is (N, {len(item.view.classes)}), one column per digit of CLASSES, in that order.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

RUN = {item.label!r}
WEIGHTS = Path(__file__).with_name({weights_name!r})
CLASSES = {[int(c) for c in item.view.classes]!r}
IN_SHAPE = {tuple(net.in_shape)!r}  # what the first layer takes per image
{padded}

def build() -> nn.Sequential:
    return nn.Sequential(
{chr(10).join(modules)}
    )


def load(path=WEIGHTS) -> nn.Sequential:
    model = build()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@torch.no_grad()
def probabilities(model: nn.Sequential, images) -> torch.Tensor:
    """Class probabilities, as digitlab predict gives them, for images (N, {h}, {w})."""
    x = torch.as_tensor(images, dtype=torch.float32).reshape((-1,) + IN_SHAPE)
    outputs = model(x)
{HEADS[net.head]}


if __name__ == "__main__":
    print(load())
'''


def check(code_path: Path, item: Exportable) -> str:
    """Load the written file with torch and compare its probabilities on test images with the engine's."""
    from digitlab.nn.metrics import class_probabilities
    spec = importlib.util.spec_from_file_location(f"digitlab_export_{abs(hash(str(code_path)))}", code_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = item.view.data.test.x[:CHECK_IMAGES]
    theirs = module.probabilities(module.load(), x[:, 0]).numpy()
    ours = class_probabilities(item.view.model.predict(item.view.inputs("test")[:CHECK_IMAGES]))
    difference = float(np.abs(theirs - ours).max())
    verdict = "same probabilities as digitlab" if difference < TOLERANCE else "DIFFERENT probabilities from digitlab"
    return (f"{code_path}: checked with torch on {plural(len(x), 'test image')}: {verdict} "
            f"(largest difference {difference:.1e})")


def export(items: list[Exportable], out: str | None, say, with_code: bool = False) -> None:
    """model.safetensors (and with_code model_torch.py) in each run folder, or --out (a file for one run, else a
    folder of <run label>.safetensors and .py)."""
    from safetensors.numpy import save
    targets = [destination(out, item, SUFFIX, layout.TORCH_WEIGHTS, len(items)) for item in items]
    unique_destinations(targets)
    torch_here = with_code and importlib.util.find_spec("torch") is not None
    for item, target in zip(items, targets):
        net = describe(item.view.model, item.view.image_shape)
        meta = {"format": "pt", "classes": json.dumps(item.view.classes), "digitlab_run": item.label}
        make_folder(target.parent)
        say(str(atomic_write(target, save(state_dict(net), metadata=meta))))
        if not with_code:
            continue
        code = target.with_name(layout.TORCH_MODEL) if out is None else target.with_suffix(".py")
        say(str(atomic_write(code, source(net, item, target.name, code.stem))))
        if torch_here:
            say(check(code, item))


def export_torch(items: list[Exportable], out: str | None, say) -> None:
    """The weights and the Python file that loads them (see export)."""
    export(items, out, say, with_code=True)
