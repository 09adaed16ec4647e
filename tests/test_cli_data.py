"""`digitlab data`: a look at a dataset before training on it; the sizes of its splits per digit and four figures
(samples, counts, means, pixel values), from options or from a config, and one line for a mistake."""

from __future__ import annotations

import pytest
from conftest import cli


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "digits8x8"], ["digit", "train", "test", "1,438", "359"]),
    (["--dataset", "mnist", "--digits", "3,8", "--validation", "0.1"], ["10,784", "1,198", "1,984"]),
])
def test_digitlab_data_prints_the_splits_and_writes_its_figures(tmp_path, args, expected):
    result = cli("data", *args, "--out", tmp_path / "look")
    assert result.exit_code == 0, result.output
    for words in expected:
        assert words in result.output
    for name in ("samples.png", "counts.png", "means.png", "pixels.png"):
        assert (tmp_path / "look" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digitlab_data_from_a_config_and_its_mistakes(tmp_path):
    result = cli("data", "configs/3v8.yaml", "--out", tmp_path / "look")
    assert result.exit_code == 0 and "5,518" in result.output  # threes in the training split
    bad = cli("data", "--dataset", "digits9x9", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "did you mean 'digits8x8'" in bad.output
