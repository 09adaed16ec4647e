"""The datasets a config can name, and the `data` section of a config: which dataset, which digits, and how it
is split. `load_data` turns a resolved data section into the splits of one run.
"""

from __future__ import annotations

import numpy as np

from digitlab.data.augment import Augment
from digitlab.data.digits8x8 import Digits8x8
from digitlab.data.mnist import MNIST, IdxFolder
from digitlab.data.source import Source
from digitlab.data.splits import DigitData, draw_splits
from digitlab.options import Choice, Integer, Invalid, Nested, Number, Rule, Text, show

DATASETS: dict[str, type[Source]] = {"mnist": MNIST, "digits8x8": Digits8x8}


class Digits(Rule):
    """A list of distinct whole numbers; which digits a dataset has is checked against it (check_data)."""

    expected = "a list of at least two distinct digits"

    def check(self, value):
        if not isinstance(value, list):
            raise Invalid(f"expected {self.expected}, e.g. [3, 8], got {show(value)}")
        return [_digit(v, i) for i, v in enumerate(value)]


def _digit(value, i: int) -> int:
    try:
        return Integer().check(value)
    except Invalid as exc:
        raise Invalid(exc.message, str(i)) from None


class DataOptions:
    """The `data` section of a config. `dataset` names a registered dataset (`path` instead: a folder of IDX
    files with MNIST's names); `digits` the classes, in order (default: all the dataset has); `validation` the
    fraction of the training pool held out, stratified; `test` the fraction held out for testing, for a
    dataset without an official test split; `limit` caps the training pool (before the validation split);
    `augment` moves training images at random (see data.augment)."""

    options = {"dataset": Choice(DATASETS), "digits": Digits(), "validation": Number(0, 1, high_open=True),
               "limit": Integer(1), "path": Text(), "augment": Nested(Augment),
               "test": Number(0, 1, low_open=True, high_open=True)}

    def __init__(self, dataset: str = "mnist", digits: list | None = None, validation: float = 0.0,
                 limit: int | None = None, path: str | None = None, augment: dict | None = None,
                 test: float | None = None):
        pass  # the options are the point: see check_data and load_data


def open_source(data: dict) -> Source:
    """The Source a resolved data section reads."""
    if data.get("path"):
        return IdxFolder(data["path"])
    return DATASETS[data.get("dataset") or "mnist"]()


def check_data(data: dict) -> dict:
    """What only the dataset can tell about a resolved data section: the digits it has, whether it needs a test
    fraction. Fills in the default digits (all of them). Raises Invalid naming the key."""
    if data.get("path") and data.get("dataset", "mnist") != "mnist":
        raise Invalid(f"data.path reads a folder of IDX files in MNIST's layout; it cannot go with dataset "
                      f"{data['dataset']!r}", "path")
    source = open_source(data)
    classes = source.classes
    if data.get("digits") is None:
        data["digits"] = list(classes)
    digits = data["digits"]
    for i, d in enumerate(digits):
        if d not in classes:
            raise Invalid(f"expected a whole number in [{min(classes)}, {max(classes)}], got {d}", f"digits.{i}")
    if len(set(digits)) != len(digits) or len(digits) < 2:
        raise Invalid(f"expected at least two distinct digits {min(classes)}-{max(classes)}, got {digits}", "digits")
    if source.has_test and data.get("test") is not None:
        raise Invalid(f"{source.name} has an official test split; data.test is only for datasets without one",
                      "test")
    if not source.has_test and data.get("test") is None:
        data["test"] = source.default_test
    if not source.has_test and data["test"] is None:
        raise Invalid(f"{source.name} has no official test split: say which fraction to hold out for testing, "
                      f"e.g. data.test: 0.2", "test")
    return data


def load_data(data: dict, rng: np.random.Generator | None = None) -> DigitData:
    """The splits of a resolved data section, drawn with `rng` (the run's Generator)."""
    return draw_splits(open_source(data), data["digits"], data.get("validation") or 0.0, data.get("test"),
                       data.get("limit"), rng)
