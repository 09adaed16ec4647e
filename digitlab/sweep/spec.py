"""Sweep files: a base config and what varies (a grid, random draws, seeds), resolved into points. A point is
identified by a hash of its resolved config (digitlab.config.config_hash), so the same experiment reached another
way is the same point, and a folder named by an older sweep file is still found."""

from __future__ import annotations

import copy
import itertools
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from digitlab.config import check_kind, config_hash, load_config, read_yaml, safe_name, set_key, validate
from digitlab.errors import ConfigError
from digitlab.options import Choice, Invalid, as_number, plural, resolve
from digitlab.sweep.prune import METHODS

SWEEP_KEYS = ["name", "base", "set", "grid", "random", "seeds", "select", "prune"]
SELECT = {"val_accuracy": True, "best_val_accuracy": True, "test_accuracy": True, "train_accuracy": True,
          "val_loss": False, "test_loss": False, "train_loss": False}
DISTRIBUTIONS = {"uniform": "[low, high]", "loguniform": "[low, high]", "randint": "[low, high]",
                 "choice": "[a, b, ...]"}
MAX_POINTS = 10_000


@dataclass
class Point:
    """One config of the sweep. `values` are the keys the sweep varies (grid, random, seed) and their values."""

    id: str
    values: dict
    cfg: dict
    folder: str

    @property
    def label(self) -> str:
        return " ".join(f"{_short(k, self.values)}={_text(v)}" for k, v in self.values.items()) or self.id


@dataclass
class Sweep:
    name: str
    source: Path
    base: Path
    select: str
    spec: dict
    points: list[Point]
    duplicates: int = 0
    prune: object | None = None  # a rule of digitlab.sweep.prune (ASHA, MedianRule), None: train every point fully

    @property
    def maximize(self) -> bool:
        return SELECT[self.select]

    def folder(self, runs_dir: str | os.PathLike) -> Path:
        return Path(runs_dir) / self.name


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file and resolve every point's config, so that a mistake in any point is one
    line before anything trains."""
    path = Path(path)
    spec = read_yaml(path)
    source = str(path)

    def fail(key, message):
        raise ConfigError(source, key, message)

    if not isinstance(spec, dict):
        fail("", "expected a mapping with keys base, grid, random, seeds, select")
    check_kind(spec, source, "sweep")
    for key in spec:
        if key not in SWEEP_KEYS:
            fail(str(key), f"unknown key; expected one of: {', '.join(SWEEP_KEYS)}")
    if not spec.get("base") or not isinstance(spec["base"], str):
        fail("base", "expected the path of the base config, relative to the sweep file")
    base = (path.parent / spec["base"]) if not Path(spec["base"]).is_absolute() else Path(spec["base"])
    load_config(base)  # the base alone must be valid: its errors name the base file
    name = spec.get("name", path.stem)
    if not isinstance(name, (str, int)) or not str(name).strip():
        fail("name", f"expected a non-empty string, got {name!r}")
    fixed = _mapping(spec.get("set"), "set", fail)
    grid = _mapping(spec.get("grid"), "grid", fail)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail(f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
        if key == "name":  # a point's name is made from its values: it would not tell the points apart
            fail("grid.name", "the sweep names each point after its values; vary something else")
    samples = _random_samples(spec.get("random"), fail)
    seeds = spec.get("seeds")
    if seeds is not None and "seed" in grid:
        fail("grid.seed", "seeds are given twice: in grid.seed and in seeds; keep one")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                               and 0 <= s < 2**32 for s in seeds):
            fail("seeds", f"expected a list of whole numbers >= 0, e.g. [0, 1, 2], got {seeds!r}")
    select = spec.get("select", "val_accuracy")
    if select not in SELECT:
        fail("select", f"expected one of {', '.join(SELECT)}, got {select!r}")
    prune = _prune(spec.get("prune"), fail)

    size = math.prod(len(v) for v in grid.values()) * max(1, len(samples)) * len(seeds or [0])
    if size > MAX_POINTS:
        fail("grid", f"{plural(size, 'point')}; a sweep has at most {MAX_POINTS:,}")
    base_raw = read_yaml(base)
    points, seen, duplicates = [], set(), 0
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    for g, r, s in itertools.product(combos or [{}], samples or [{}], [{"seed": x} for x in seeds or []] or [{}]):
        values = {**g, **r, **s}
        cfg = _resolve(base_raw, base, fixed, values, source)
        point_id = config_hash(cfg)
        if point_id in seen:
            duplicates += 1
            continue
        seen.add(point_id)
        folder = point_folder(values, point_id)
        cfg["name"] = folder
        points.append(Point(point_id, values, cfg, folder))
    if select.startswith(("val_", "best_val")) and not points[0].cfg["data"]["validation"]:
        fail("select", f"{select} needs a validation split: set data.validation in the base config or in `set`")
    for point in points if prune is not None else []:
        if prune.metric.startswith("val_") and not point.cfg["data"]["validation"]:
            fail("prune.metric", f"{prune.metric} needs a validation split: set data.validation in the base config "
                                 f"or in `set`")
        if prune.metric.startswith("test_") and not point.cfg["test_every_epoch"]:
            fail("prune.metric", f"{prune.metric} needs test_every_epoch: true")
    return Sweep(safe_name(str(name)), path, base, select, spec, points, duplicates, prune)


def _prune(spec, fail):
    """`prune: {method: asha, metric: val_accuracy, min_epochs: 1, reduction_factor: 3}` (or method: median,
    with min_points): the rule's options are declared on its class (digitlab.sweep.prune)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        fail("prune", f"expected a mapping such as {{method: asha, metric: val_accuracy, min_epochs: 1, "
                      f"reduction_factor: 3}}, got {spec!r}")
    try:
        method = Choice(METHODS).check(spec.get("method"))
        cls = METHODS[method]
        return cls(**resolve(cls, {k: v for k, v in spec.items() if k != "method"}, fill_defaults=True))
    except Invalid as exc:
        fail(f"prune.{exc.key}" if exc.key else "prune.method", exc.message)


def _mapping(value, key, fail) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(key, f"expected a mapping of config keys to values, e.g. {{optimizer.lr: 0.01}}, got {value!r}")
    return value


def _random_samples(spec, fail) -> list[dict]:
    """`random: {n: 8, seed: 0, params: {optimizer.lr: {loguniform: [1e-4, 1e-2]}}}`: n draws, the same on
    every invocation (they come from `seed`), rounded to 4 significant digits so that they read well."""
    if spec is None:
        return []
    if not isinstance(spec, dict) or set(spec) - {"n", "seed", "params"}:
        fail("random", "expected a mapping with n, params and optionally seed")
    n, seed, params = spec.get("n"), spec.get("seed", 0), spec.get("params")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_POINTS:
        fail("random.n", f"expected a whole number from 1 to {MAX_POINTS}, got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        fail("random.seed", f"expected a whole number >= 0, got {seed!r}")
    if not isinstance(params, dict) or not params:
        fail("random.params", "expected a mapping of config keys to distributions, e.g. "
                              "{optimizer.lr: {loguniform: [1e-4, 1e-2]}}")
    draws = {}
    for key, dist in params.items():
        where = f"random.params.{key}"
        kind, arg = next(iter(dist.items())) if isinstance(dist, dict) and len(dist) == 1 else (None, None)
        if kind not in DISTRIBUTIONS:
            fail(where, f"expected one of {', '.join(f'{{{k}: {v}}}' for k, v in DISTRIBUTIONS.items())}")
        if not isinstance(arg, list) or not arg:
            fail(f"{where}.{kind}", f"expected {DISTRIBUTIONS[kind]}, got {arg!r}")
        if kind != "choice":
            arg = [as_number(a) for a in arg]
            if len(arg) != 2 or None in arg or arg[0] > arg[1] or (kind == "loguniform" and arg[0] <= 0) or \
                    (kind == "randint" and not all(float(a).is_integer() for a in arg)):
                fail(f"{where}.{kind}", f"expected {DISTRIBUTIONS[kind]} with low <= high"
                                        f"{' > 0' if kind == 'loguniform' else ''}, got {dist[kind]!r}")
        draws[key] = (kind, arg)
    rng = random.Random(seed)
    samples = []
    for _ in range(n):
        sample = {}
        for key, (kind, arg) in draws.items():
            if kind == "uniform":
                value = _round(rng.uniform(arg[0], arg[1]))
            elif kind == "loguniform":
                value = _round(math.exp(rng.uniform(math.log(arg[0]), math.log(arg[1]))))
            elif kind == "randint":
                value = rng.randint(int(arg[0]), int(arg[1]))
            else:
                value = rng.choice(arg)
            sample[key] = value
        samples.append(sample)
    return samples


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _resolve(base_raw: dict, base: Path, fixed: dict, values: dict, source: str) -> dict:
    """The validated config of one point: the base, then `set`, then the point's values, as --set overrides. A
    point draws no figures when it ends (`outputs: light`) unless the base or the sweep says so: a sweep is decided
    by numbers, and `digitlab report` draws a point's figures when someone looks."""
    raw = copy.deepcopy(base_raw)
    raw.setdefault("outputs", "light")
    where = " ".join(f"{k}={_text(v)}" for k, v in values.items())
    for section, assignments in (("set", fixed), ("point", values)):
        for keys, value in assignments.items():
            for key in str(keys).split(","):  # "model.2.dropout,model.5.dropout": one value for both
                try:
                    set_key(raw, key.strip(), copy.deepcopy(value))
                except ConfigError as exc:
                    raise ConfigError(source, f"{section}.{exc.key or key}", exc.message) from None
    try:
        return validate(raw, str(base))
    except ConfigError as exc:
        raise ConfigError(source, exc.key, f"{exc.message} (in the point {where or 'base + set'})") from None


def point_folder(values: dict, point_id: str) -> str:
    """A readable folder name ending in the point's id: 'dropout=0.1-lr=0.001-seed=0-1a2b3c4d'."""
    prefix = "-".join(f"{_short(k, values)}={_text(v)}" for k, v in values.items())
    prefix = safe_name(prefix)[:60].strip(".-") if prefix else ""
    return f"{prefix}-{point_id}" if prefix and prefix != "run" else point_id


def _short(key: str, values: dict) -> str:
    """The last word of a dotted key (model.2.dropout -> dropout) unless another varied key ends the same."""
    def word(k):
        return [p for p in str(k).split(",")[0].split(".") if not p.isdigit()][-1]

    clash = [k for k in values if k != key and word(k) == word(key)]
    return str(key) if clash else word(key)


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (list, dict)) \
        else str(value)
