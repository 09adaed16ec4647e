"""`--where`: conditions on the columns of `digitlab compare`, so that `compare` and `runs` find runs by their
values: `test_acc>0.99`, `lr<=0.01`, `digits=[3,8]`, `status!=complete`, `optimizer=adam`. Several conditions
are ANDed. A condition is parsed once, before any run is read, so that a typo costs one line and not a wait.

Numeric columns compare as numbers (1e-3 = 0.001), the others as text (so `started>2026-11-21` works on its
timestamps); `digits=[3,8]` and `digits=38` both mean the digits 3 and 8; `dropout`, one value per layer
(0.25/0.5), matches when every layer's does. Any other config option is a column by its key, as compare shows it
(`optimizer.nesterov=true`, `train_eval<1000`, `loss.label_smoothing>0`). A run without the column (a crashed
run's test_acc) matches only `!=`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from digitlab.errors import UserError
from digitlab.options import as_number, did_you_mean
from digitlab.runs.columns import ALIASES, CONFIG_COLUMNS, METRIC_COLUMNS, is_option_column

COLUMNS = ["name", "status"] + CONFIG_COLUMNS + METRIC_COLUMNS + ["started", "sweep", "point", "tags", "note", "path"]
TAG = "tag."  # tag.KEY: the value of the run's tag KEY (text)
NUMERIC = {"params", "lr", "momentum", "weight_decay", "batch_size", "epochs", "limit", "validation", "seed",
           *METRIC_COLUMNS}
OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">")
EXPRESSION = re.compile(r"^\s*([A-Za-z_][\w. ]*?)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    """`column op value`, e.g. Condition('test_acc', '>', 0.99, 'test_acc>0.99')."""

    column: str
    op: str
    value: object
    text: str

    def matches(self, row: dict) -> bool:
        actual = row.get(self.column)
        if actual is None:
            return self.op == "!="
        if self.column in NUMERIC:
            return self._compare(as_number(actual), as_number(self.value))
        if isinstance(actual, bool):  # an option's true or false, as YAML writes it
            return self._compare(str(actual).lower(), str(self.value).lower())
        if isinstance(actual, (int, float)) and as_number(self.value) is not None:  # an option's number
            return self._compare(actual, as_number(self.value))
        if self.column == "dropout" and actual != "none" and as_number(self.value) is not None:
            return all(self._compare(as_number(p), as_number(self.value)) for p in str(actual).split("/"))
        return self._compare(str(actual), str(self.value))

    def _compare(self, a, b) -> bool:
        if a is None or b is None:
            return self.op == "!="
        if self.op in ("=", "==", "!="):
            equal = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if isinstance(a, float | int) else a == b
            return equal if self.op != "!=" else not equal
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]


def parse(text: str) -> Condition:
    """One condition; a UserError naming it (and the columns there are) when it is not one."""
    def fail(message: str):
        raise UserError(f"--where {text!r}: {message} (the columns are: {', '.join(COLUMNS)})")

    match = EXPRESSION.match(text)
    if not match:
        fail(f"expected COLUMN OP VALUE with OP one of {' '.join(OPERATORS)}, e.g. test_acc>0.99")
    column, op, raw = match.groups()
    column = ALIASES.get(column.strip(), column.strip())
    if column not in COLUMNS and not (column.startswith(TAG) and len(column) > len(TAG)) and \
            not is_option_column(column):
        fail(f"unknown column {column!r}{did_you_mean(column, COLUMNS)} (a tag is tag.KEY; another config option "
             f"its key, as compare shows it: optimizer.nesterov, train_eval...)")
    if raw == "":
        fail(f"no value after {op}")
    value = _value(raw.strip("'\""))
    if column == "digits":
        digits = [int(d) if isinstance(d, float) and d.is_integer() else d for d in value] \
            if isinstance(value, list) else list(raw.strip("'\""))
        if not all(str(d).isdigit() and len(str(d)) == 1 for d in digits):
            fail("expected digits such as [3,8] or 38")
        value = "".join(str(d) for d in digits)
    elif (column in NUMERIC or column == "dropout" and value != "none") and as_number(value) is None:
        fail(f"{column} is a number; expected a number after {op}")
    elif column not in NUMERIC and column != "dropout":
        value = raw.strip("'\"")  # text as written: started>2026 compares with "2026", not "2026.0"
    return Condition(column, op, value, text)


def parse_all(texts) -> list[Condition]:
    return [parse(text) for text in texts]


def _value(text: str):
    """A number, a list [a, b] of numbers or words, or the text itself (dates and names stay text)."""
    if text.startswith("[") and text.endswith("]"):
        return [_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    number = as_number(text)
    return number if number is not None else text


def select(rows: list[dict], conditions: list[Condition]) -> list[dict]:
    """The rows that meet every condition."""
    return [row for row in rows if all(c.matches(row) for c in conditions)]
