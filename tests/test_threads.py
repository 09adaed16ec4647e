"""Elementwise work split across threads gives byte-identical results, whatever the number of threads: the
optimizers' updates, the pixel conversion, ReLU and 2x2 max pooling (tests/test_conv.py). And Adam's flush of
subnormal moments."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.data.splits import to_dataset
from digitlab.nn import SGD, Adam, Parameters, ReLU
from digitlab.system import threads


def test_spans_cover_the_buffer_on_aligned_boundaries():
    for n, parts in [(10, 3), (1000, 3), (1_333_770, 2), (5, 8)]:
        ranges = threads.spans(n, parts, min_chunk=1)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(hi == lo2 for (_, hi), (lo2, _) in zip(ranges, ranges[1:]))
        assert all(lo % threads.ALIGN == 0 for lo, _ in ranges)
    assert threads.spans(1000, 4) == [(0, 1000)]  # small buffers stay in one thread


def test_count_honours_the_environment(monkeypatch):
    monkeypatch.setenv("DIGITLAB_THREADS", "3")
    assert threads.count() == 3
    monkeypatch.setenv("DIGITLAB_THREADS", "")
    assert 1 <= threads.count() <= threads.MAX_THREADS


def test_run_waits_for_every_range_and_raises_their_errors():
    seen = []
    threads.run(lambda lo, hi: seen.append((lo, hi)), [(0, 5), (5, 9), (9, 12)])
    assert sorted(seen) == [(0, 5), (5, 9), (9, 12)]

    def fail(lo, hi):
        if lo:
            raise ValueError("boom")
    with pytest.raises(ValueError, match="boom"):
        threads.run(fail, [(0, 5), (5, 9)])


@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.01, weight_decay=0.01),
                                  lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.001)])
def test_optimizer_threads_do_not_change_the_arithmetic(make):
    rng = np.random.default_rng(0)
    start = rng.standard_normal(5003).astype(np.float32)
    grads = rng.standard_normal((120, 5003)).astype(np.float32)
    grads[:, :700] *= 1e-20  # some moments decay into the range the flush handles
    results = []
    for parts in (1, 2, 3):
        params = Parameters({"w": (5003,)})
        params.data[...] = start
        opt = make(params)
        opt.ranges = threads.spans(5003, parts, min_chunk=1)
        assert len(opt.ranges) == parts
        for g in grads:
            params.grad[...] = g
            opt.step()
        results.append((params.data.copy(), *[b.copy() for b in opt.buffers().values()]))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a.tobytes() == b.tobytes()


def test_adam_flushes_tiny_moments_without_changing_the_update():
    params = Parameters({"w": (4,)})
    params.data[...] = [1.0, -1.0, 0.5, 2.0]
    adam = Adam(params, lr=0.001)
    adam.m[...] = [1e-35, -1e-33, 0.1, 0.0]
    adam.v[...] = [1e-36, 1e-31, 0.01, 0.0]
    adam.steps = Adam.FLUSH_EVERY - 1
    params.grad[...] = 0
    before = params.data.copy()
    adam.step()  # the 50th step: updates, then flushes
    assert adam.m[0] == 0 and adam.m[1] == 0 and adam.v[0] == 0 and adam.v[1] == 0
    assert adam.m[2] == np.float32(0.1) * np.float32(0.9) and adam.v[2] > 0
    assert params.data[0] == before[0] and params.data[1] == before[1]  # tiny moments moved nothing anyway


def test_to_dataset_in_threads_equals_the_plain_conversion(monkeypatch):
    monkeypatch.setenv("DIGITLAB_THREADS", "3")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30_000, 28, 28), dtype=np.uint8)
    classes = rng.integers(0, 10, 30_000)
    rows = np.sort(rng.choice(30_000, 25_001, replace=False))
    data = to_dataset(images, classes, rows)
    expected = np.multiply(images[rows], np.float32(1 / 255), dtype=np.float32)
    assert data.x.dtype == np.float32 and data.x.shape == (25_001, 1, 28, 28)
    assert data.x[:, 0].tobytes() == expected.tobytes()
    np.testing.assert_array_equal(data.y, classes[rows])
    assert to_dataset(images, classes, rows[:0]).x.shape == (0, 1, 28, 28)


def test_train_threads_option_reaches_blas_and_run_json(tmp_path):
    """--threads must be set before numpy loads, so the CLI module must not import numpy itself."""
    import json
    import subprocess
    import sys

    probe = subprocess.run([sys.executable, "-c", "import sys, digitlab.cli; print('numpy' in sys.modules)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {digits: [3, 8], limit: 200}\nmodel: [{linear: 4}, {linear: 2}]\nepochs: 1\n")
    done = subprocess.run([sys.executable, "-m", "digitlab", "train", str(config), "--threads", "1", "--quiet",
                           "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = done.stdout.strip().splitlines()[-1]
    assert json.loads(open(f"{run}/run.json").read())["blas_threads"] == "1"


def test_relu_backward_in_threads_is_the_masked_gradient(monkeypatch):
    """A batch big enough to split (2 x 65,536 numbers per half) gives dL/dy where y > 0 and 0 elsewhere, the same
    with one thread or two, for a channel-first view of channel-last memory as the conv layers hand it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 16, 64)).astype(np.float32).transpose(0, 3, 1, 2)  # (N, C, H, W) view
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for count in ("1", "2"):
        monkeypatch.setenv("DIGITLAB_THREADS", count)
        layer = ReLU()
        layer.forward(x.copy())
        results.append(layer.backward(g.copy()))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[1], np.where(x > 0, g, 0))
