"""Data augmentation: exact shifts and rotations, identity at zero, determinism per seed, shapes and dtype,
config validation, training batches only, and augment.png in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli

from digitlab.config import load_config
from digitlab.data import DataLoader, Sampler
from digitlab.data.augment import Augment, from_config, warp
from digitlab.errors import ConfigError


def images(n=6, seed=0):
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("dy, dx", [(2, 3), (-1, 0), (0, -4), (5, 5)])
def test_whole_pixel_shift_moves_pixels(dy, dx):
    x = images()
    out = warp(x, np.zeros(len(x)), np.ones(len(x)), np.tile([dy, dx], (len(x), 1)).astype(float))
    moved = np.roll(x, (dy, dx), axis=(2, 3))
    rows = slice(max(dy, 0), 28 + min(dy, 0))
    cols = slice(max(dx, 0), 28 + min(dx, 0))
    np.testing.assert_allclose(out[:, :, rows, cols], moved[:, :, rows, cols], atol=1e-5)
    uncovered = np.ones((28, 28), bool)
    uncovered[rows, cols] = False
    assert np.all(out[:, :, uncovered] == 0)  # what came from outside the image is background


def test_quarter_turn_and_unit_scale_are_exact():
    x = images()
    out = warp(x, np.full(len(x), np.pi / 2), np.ones(len(x)), np.zeros((len(x), 2)))
    assert min(np.abs(out - np.rot90(x, k, axes=(2, 3))).max() for k in (1, 3)) < 1e-5
    np.testing.assert_array_equal(warp(x, np.zeros(len(x)), np.ones(len(x)), np.zeros((len(x), 2))), x)


def test_zero_augmentation_is_identity():
    x = images().reshape(6, 784)
    augment = Augment(np.random.default_rng(0))
    assert augment.identity and augment(x) is x
    assert from_config({"data": {"augment": {"shift": 0, "rotate": 0, "scale": 0, "elastic": False}}},
                       np.random.default_rng(0)) is None
    assert from_config({"data": {"augment": None}}, np.random.default_rng(0)) is None


@pytest.mark.parametrize("shape", [(7, 784), (7, 1, 28, 28)])
@pytest.mark.parametrize("elastic", [False, {"alpha": 8, "sigma": 3}])
def test_deterministic_per_seed_shape_and_dtype_kept(shape, elastic):
    x = images(7).reshape(shape)
    opts = dict(shift=2, rotate=15, scale=0.1, elastic=elastic)
    a = Augment(np.random.default_rng(5), **opts)(x)
    b = Augment(np.random.default_rng(5), **opts)(x)
    c = Augment(np.random.default_rng(6), **opts)(x)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, x)
    assert a.min() >= 0 and a.max() <= 1 + 1e-6  # bilinear mixing keeps pixels in [0, 1]


def test_each_image_gets_its_own_transform():
    x = np.repeat(images(1), 8, axis=0)
    out = Augment(np.random.default_rng(0), shift=2, rotate=10)(x)
    assert len({out[i].tobytes() for i in range(8)}) == 8


def test_loader_applies_transform_to_inputs_only():
    x = images(10).reshape(10, 784)
    y = np.arange(10)
    seen = []

    def transform(batch):
        seen.append(len(batch))
        return batch + 1

    loader = DataLoader((x, y), Sampler(10, 4, shuffle=False), transform)
    batches = list(loader)
    assert seen == [4, 4, 2]
    np.testing.assert_array_equal(batches[0][0], x[:4] + 1)
    np.testing.assert_array_equal(batches[0][1], y[:4])


def write(tmp_path: Path, augment, **extra) -> Path:
    cfg = {"data": {"digits": [0, 1], "limit": 100, "augment": augment}, "model": [{"linear": 2}], "epochs": 1,
           **extra}
    path = tmp_path / "aug.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_config_resolves_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"shift": 2}))
    assert cfg["data"]["augment"] == {"shift": 2.0, "rotate": 0.0, "scale": 0.0, "elastic": False}
    cfg = load_config(write(tmp_path, {"rotate": 10, "elastic": {"sigma": 3}}))
    assert cfg["data"]["augment"]["elastic"] == {"alpha": 34.0, "sigma": 3.0}
    assert load_config(write(tmp_path, None))["data"]["augment"] is None
    assert load_config(write(tmp_path, False))["data"]["augment"] is None


@pytest.mark.parametrize("augment, key, words", [
    ({"shift": -1}, "data.augment.shift", "expected a number >= 0"),
    ({"rotate": 400}, "data.augment.rotate", "in [0, 180]"),
    ({"scale": 1}, "data.augment.scale", "in [0, 1)"),
    ({"shfit": 2}, "data.augment.shfit", "did you mean 'shift'"),
    ({"elastic": {"alpha": 0}}, "data.augment.elastic.alpha", "expected a number > 0"),
    ({"elastic": {"sgima": 3}}, "data.augment.elastic.sgima", "did you mean 'sigma'"),
    ({"elastic": "yes"}, "data.augment.elastic", "true or false"),
    ([2, 10], "data.augment", "expected a mapping"),
])
def test_config_mistakes_are_one_line_errors(tmp_path, augment, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, augment))
    assert info.value.key == key and words in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_run_with_augmentation_writes_augment_png_and_evaluates_clean_images(tmp_path, monkeypatch):
    """Training batches are augmented, evaluation sees the images as they are: the train accuracy that
    ScoreSplits records is on unaugmented images, so it equals a fresh evaluation of the saved model."""
    import digitlab.data.augment as augment_module
    calls = []
    original = augment_module.Augment.__call__

    def spy(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(augment_module.Augment, "__call__", spy)
    path = write(tmp_path, {"shift": 2, "rotate": 10, "scale": 0.1}, batch_size=25)
    result = cli("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, (result.output, result.exception)
    run = Path(result.stdout.splitlines()[-1])
    assert (run / "augment.png").stat().st_size > 0
    assert calls == [32] + [25] * 4  # the figure's batch, then the training batches only: no evaluation batch
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset_sizes"]["train"] == 100
