"""report.html and a comparison page in a real browser: headless Chromium (Debian's `chromium`) opens them from
file://, logs no console message, the DOM holds the sections and embedded images, the sort script sorts, and a
screenshot at a laptop's and a phone's width is not blank. Skipped, with the reason, where Chromium is not
installed (.ci/run installs it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import CHROMIUM, CHROMIUM_FLAGS

from digitlab.cli import main

pytestmark = [pytest.mark.slow,  # a headless Chromium per test
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                          "chromium; .ci/run installs it)")]
FLAGS = ["--headless", *CHROMIUM_FLAGS, "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
PLANE = {"name": "plane", "seed": 1, "data": {"digits": [3, 8], "validation": 0.1, "limit": 600},
         "model": [{"linear": 16}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"], "loss": "bce",
         "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 3, "batch_size": 50}


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180)


def console(result: subprocess.CompletedProcess) -> list[str]:
    """What the page logged to the browser's console (errors included), from Chromium's log on stderr."""
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    runs = []
    for cfg in (PLANE, {**PLANE, "name": "plane-lr", "optimizer": {"name": "sgd", "lr": 0.02, "momentum": 0.9}}):
        path = root / f"{cfg['name']}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        result = CliRunner().invoke(main, ["train", str(path), "--runs-dir", str(root / "runs"), "--quiet"])
        assert result.exit_code == 0, result.output
        runs.append(Path(result.output.strip().splitlines()[-1]))
    compared = root / "compare.html"
    result = CliRunner().invoke(main, ["report", *map(str, runs), "--out", str(compared)])
    assert result.exit_code == 0, result.output
    return {"run": runs[0] / "report.html", "compare": compared}


def test_a_console_error_would_be_seen(tmp_path):
    """The check below can fail: a page with a script error logs it."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>missingFunction();</script></body></html>")
    result = chromium(tmp_path, broken, "--dump-dom")
    assert any("missingFunction is not defined" in line for line in console(result)), result.stderr[-2000:]


@pytest.mark.parametrize("which", ["run", "compare"])
def test_a_page_loads_without_console_messages_and_holds_its_sections(pages, tmp_path, which):
    result = chromium(tmp_path, pages[which], "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console(result) == []
    dom = result.stdout
    images = re.findall(r'<img src="([^"]{0,40})', dom)
    if which == "run":
        for section in ("what-ran", "result", "curves", "mistakes", "inside", "augmentation", "log"):
            assert f'id="{section}"' in dom
        assert len(images) >= 8
    else:
        assert "2 runs compared" in dom and 'class="sortable"' in dom
        assert len(images) >= 1
    assert all(src.startswith("data:image/") for src in images)


def column_values(html: str, column: int) -> list[float]:
    """A numeric column of the first table's body (the name cell is a link: one <td> fewer to count)."""
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [float(re.findall(r"<td[^>]*>([^<]*)</td>", row)[column - 1]) for row in re.findall(r"<tr>(.*?)</tr>",
                                                                                              body, re.S)]


def test_the_sort_script_sorts_in_the_browser(pages, tmp_path):
    text = pages["compare"].read_text()
    column = re.findall(r"<th>([^<]*)</th>", text.split("<tbody>")[0]).index("lr")
    assert column_values(text, column) == [0.1, 0.02]  # as written
    clicking = tmp_path / "click.html"  # the page, with a click on the lr header once it has loaded
    clicking.write_text(text.replace("</body>", '<script>document.querySelectorAll("table.sortable th")'
                                                f"[{column}].click();</script></body>"))
    result = chromium(tmp_path, clicking, "--dump-dom")
    assert console(result) == []
    assert column_values(result.stdout, column) == [0.02, 0.1]


@pytest.mark.parametrize("width", [1280, 390])
def test_a_screenshot_at_a_laptops_and_a_phones_width_is_not_blank(pages, tmp_path, width):
    from PIL import Image
    shot = tmp_path / f"shot-{width}.png"
    result = chromium(tmp_path, pages["run"], f"--screenshot={shot}", f"--window-size={width},2400")
    assert shot.is_file(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2400, width)
    ink = (pixels < 200).any(axis=2)
    assert ink.mean() > 0.02  # text, tables and figures, not a white page
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 100  # figures in colour, not only text
    assert ink[:, width // 2:].mean() > 0.005  # the page fills its width
