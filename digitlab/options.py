"""Declared options: the typed, ranged settings that a config gives a layer, an optimizer, a schedule, a dataset
or the augmentation.

A class declares its options once, as a table of rules next to its constructor:

    class Linear(WeightLayer):
        options = {"units": Integer(1), **WeightLayer.options}
        def __init__(self, units: int, init=None, scale=None, bias=True): ...

The rule says what a value may be; the constructor's signature says the default (and a parameter without one
is required). The config validator derives everything else from these two: the keys it accepts, the
did-you-mean hints, the defaults it fills in and its error messages. Nothing here knows about configs or files:
a rule raises `Invalid` with the expectation, and the caller names the file and the key.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import inspect
import math
from typing import Any


class Invalid(ValueError):
    """A value a rule refuses. `key` is the part of the key path below the option itself (e.g. "1" for the
    second of two betas), empty when the option's own value is wrong."""

    def __init__(self, message: str, key: str = ""):
        self.message, self.key = message, key
        super().__init__(message)


def kind(value) -> str:
    """What a value is, in the words a config's author uses: text, a number, true or false, a list, a mapping."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return "a value"


def show(value) -> str:
    """A value as an error message shows it: what it is, in words, and a shortened rendering ("text 'ten'",
    "a list [0.9]", "true", "nothing"). Booleans show as YAML writes them."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return f"{kind(value)} {text[:60] + '...' if len(text) > 60 else text}"


def plural(count: int, word: str, many: str | None = None, grouped: bool = True) -> str:
    """'1 epoch', '3 epochs', '12,560 parameters'; `many` for a word whose plural is not word + 's' (batches);
    `grouped=False` leaves out the thousands separator (a count beside others written without it)."""
    return (f"{count:,}" if grouped else str(count)) + " " + (word if count == 1 else many or word + "s")


def size_text(size: float) -> str:
    """Bytes in the largest unit that keeps the number >= 1 (1024 of one unit make the next): '512 bytes',
    '6.1 KB', '4.6 MB', '22.5 GB'; one decimal below 100, none from there."""
    units = ["KB", "MB", "GB", "TB"]
    if size < 1024:
        return plural(int(size), "byte")
    for unit in units:
        size /= 1024
        if size < 1024 or unit == units[-1]:
            break
    return f"{size:.1f} {unit}" if size < 100 else f"{size:,.0f} {unit}"


def as_number(value) -> int | float | None:
    """The number a config value stands for, or None. Every numeric key reads numbers this way: PyYAML reads
    1e-3 and 1e2 (no dot) as strings, so a string that Python reads as a finite number counts as that number;
    booleans never do."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def did_you_mean(value, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _interval(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


class Rule:
    """What one option's value may be. `check(value)` returns the value as the config keeps it, or raises
    Invalid."""

    def check(self, value):
        raise NotImplementedError


class Number(Rule):
    """A real number, optionally bounded: Number(0, low_open=True) is > 0, Number(0, 1, high_open=True) is [0, 1)."""

    def __init__(self, low=None, high=None, low_open: bool = False, high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    @property
    def expected(self) -> str:
        return f"a number{_interval(self.low, self.high, self.low_open, self.high_open)}"

    def check(self, value) -> float:
        number = as_number(value)
        if number is None:
            raise Invalid(f"expected {self.expected}, got {show(value)}")
        if (self.low is not None and (number < self.low or (self.low_open and number == self.low))) or \
                (self.high is not None and (number > self.high or (self.high_open and number == self.high))):
            raise Invalid(f"expected {self.expected}, got {value}")
        return float(number)


class Integer(Rule):
    """A whole number, optionally bounded. A float or a string that is a whole number (100.0, '1e2') is one."""

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    @property
    def expected(self) -> str:
        return f"a whole number{_interval(self.low, self.high)}"

    def check(self, value) -> int:
        number = as_number(value)
        if number is None or not float(number).is_integer():
            raise Invalid(f"expected {self.expected}, got {show(value)}")
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise Invalid(f"expected {self.expected}, got {value}")
        return int(number)


class CountOrAll(Rule):
    """A whole number >= 1, or the word `all`; null leaves the choice to the default."""

    expected = "a whole number >= 1 or 'all'"

    def check(self, value):
        if value is None or value == "all":
            return value
        try:
            return Integer(1).check(value)
        except Invalid:
            raise Invalid(f"expected {self.expected}, got {show(value)}") from None


class Boolean(Rule):
    expected = "true or false"

    def check(self, value) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {show(value)}")
        return value


class Choice(Rule):
    """One of a fixed set of names (a registry's keys, say)."""

    def __init__(self, choices):
        self.choices = list(choices)

    @property
    def expected(self) -> str:
        return f"one of {', '.join(map(str, self.choices))}"

    def check(self, value) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise Invalid(f"expected {self.expected}, got {show(value)}{did_you_mean(value, self.choices)}")
        return value


class Text(Rule):
    expected = "text (not empty)"

    def check(self, value) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"expected {self.expected}, got {show(value)}")
        return value


class Numbers(Rule):
    """A list of `length` values, each checked by `item` (Adam's betas: two numbers in [0, 1))."""

    def __init__(self, item: Rule, length: int, example: str):
        self.item, self.length, self.example = item, length, example

    @property
    def expected(self) -> str:
        words = {2: "two", 3: "three"}.get(self.length, str(self.length))
        return f"{words} numbers{self.item.expected.removeprefix('a number')}, e.g. {self.example}"

    def check(self, value) -> list:
        if not isinstance(value, (list, tuple)) or len(value) != self.length:
            raise Invalid(f"expected {self.expected}, got {show(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item))
            except Invalid as exc:
                raise Invalid(exc.message, str(i)) from None
        return out


class Nested(Rule):
    """false (off), true (on with the defaults) or a mapping of another class's options: data.augment.elastic
    is `true` or `{alpha: 34, sigma: 4}`. Off (null or false) gives `off`; on gives the full options with the
    defaults filled in."""

    def __init__(self, cls, off=None):
        self.cls, self.off = cls, off

    @property
    def expected(self) -> str:
        return f"a mapping with keys {', '.join(self.cls.options)}, or true or false"

    def check(self, value):
        if value is None or value is False:
            return self.off
        if value is True:
            value = {}
        if not isinstance(value, dict):
            raise Invalid(f"expected {self.expected}, got {show(value)}")
        return resolve(self.cls, value, fill_defaults=True)


# -- a class's declared options --------------------------------------------------------------------------------
@functools.cache
def _parameters(cls):
    """The parameters of `cls`'s constructor, read once a class (inspect.signature is slow, and a config's
    validation asks for every option of every layer)."""
    return inspect.signature(cls).parameters


def defaults(cls) -> dict[str, Any]:
    """The defaults of `cls`'s declared options, from its constructor's signature (required ones are absent)."""
    params = _parameters(cls)
    return {name: params[name].default for name in cls.options
            if name in params and params[name].default is not inspect.Parameter.empty}


def required(cls) -> list[str]:
    """The declared options that `cls`'s constructor has no default for."""
    params = _parameters(cls)
    return [name for name in cls.options if name in params and params[name].default is inspect.Parameter.empty]


def yaml_text(value) -> str:
    """A default as a config would write it: null, true, 0.5, 1e-05, [0.9, 0.999], he."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return f"[{', '.join(yaml_text(v) for v in value)}]"
    return str(value)


def reference(cls) -> list[tuple[str, str, str]]:
    """Each declared option of `cls` as docs/configs.md tables it: (name, default as YAML or 'required', what it
    accepts). A test holds the docs to these rows."""
    found = defaults(cls)
    return [(name, yaml_text(found[name]) if name in found else "required", getattr(rule, "expected", ""))
            for name, rule in cls.options.items()]


def check_keys(given: dict, allowed, key: str = "") -> None:
    """Invalid for the first key of `given` that is not in `allowed` (with a did-you-mean or the list)."""
    allowed = list(allowed)
    for k in given:
        if k not in allowed:
            hint = did_you_mean(k, allowed) or (f"; expected one of: {', '.join(map(str, allowed))}" if allowed
                                                else "; no options are accepted here")
            raise Invalid(f"unknown key{hint}", f"{key}.{k}" if key else str(k))


def resolve(cls, given: dict, fill_defaults: bool = False) -> dict:
    """`given` checked against `cls.options`: unknown keys, missing required options and bad values raise
    Invalid (its key names the option). With `fill_defaults`, every option the constructor has a default for
    is filled in. An option whose default is None may be given as None (null): it means "not set"."""
    check_keys(given, cls.options)
    missing = [name for name in required(cls) if name not in given]
    if missing:
        raise Invalid(f"needs '{missing[0]}'")
    optional = {name for name, value in defaults(cls).items() if value is None}
    out = dict(defaults(cls)) if fill_defaults else {}
    out.update(given)
    for name, value in list(out.items()):
        if value is None and name in optional:
            continue
        try:
            out[name] = cls.options[name].check(value)
        except Invalid as exc:
            raise Invalid(exc.message, f"{name}.{exc.key}" if exc.key else name) from None
    return out
