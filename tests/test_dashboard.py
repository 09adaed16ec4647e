"""`digitlab dashboard` in a real browser: one server (a subprocess on a free port) over a runs folder with two tiny
runs, a copy named like an HTML tag and a sweep of two points, and one long training started while a page is open,
for the whole module. The table lists the runs (data-run, data-epochs), the training's row and its run page grow
without a reload, filter, sort and selection survive the updates, names are text, raw traversal paths are refused,
and the stop button stops the run only with the token."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, one_line_error, tiny, train, write_yaml

EVIL = "<img src=x onerror=alert(1)>"
WAIT = 20_000  # ms: a bound on each wait for what the page promises, on a busy machine


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dashboard") / "runs"


@pytest.fixture(scope="module")
def runs(folder, training) -> Path:
    """The runs folder: tiny (lr 0.1), tiny at lr 0.05, a copy of the first in a folder named like an img tag, a
    sweep of the tiny config over two seeds, and the long training (started first: it takes a while to start)."""
    first, _ = train(tiny(outputs="light"), folder, "--quiet")
    train(tiny({"optimizer.lr": 0.05}, outputs="light", name="slower"), folder, "--quiet")
    shutil.copytree(first, folder / EVIL)
    base = write_yaml(folder.parent / "base.yaml", tiny(outputs="light"))
    sweep = write_yaml(folder.parent / "pair.yaml", {"name": "pair", "base": str(base), "grid": {"seed": [0, 1]},
                                                     "select": "val_accuracy"})
    assert cli("sweep", sweep, "--runs-dir", folder).exit_code == 0
    return folder


@pytest.fixture(scope="module")
def server(runs):
    """`digitlab dashboard RUNS --port 0 --allow-stop`: (base URL, token); killed by its pid at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "dashboard", str(runs), "--port", "0", "--allow-stop"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(1), match.group(2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# A training that loads digitlab at once (seconds on a busy machine) and starts when told to, on a line of its stdin:
# its run folder appears while a page is open.
LIVE = r"""
import sys
from digitlab.config import load_config
from digitlab.run.lifecycle import start
cfg = load_config(sys.argv[1])
sys.stdin.readline()
start(cfg, runs_dir=sys.argv[2], quiet=True)
"""


@pytest.fixture(scope="module")
def training(folder):
    """A long training of the tiny config into the runs folder, ready to start (go(training)); killed at the end."""
    config = write_yaml(folder.parent / "live.yaml", tiny(name="live", epochs=5000, outputs="light"))
    proc = subprocess.Popen([sys.executable, "-c", LIVE, str(config), str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def go(training) -> None:
    if not training.stdin.closed:
        training.stdin.write("go\n")
        training.stdin.close()


def epochs(page, selector: str) -> int:
    return int(page.get_attribute(selector, "data-epochs"))


@pytest.mark.slow  # a server and a training in processes it kills
def test_the_table_lists_runs_grows_live_and_keeps_filter_sort_and_selection(page, server, runs, training):
    base, _ = server
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(base)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr[data-run]').length === 5", timeout=WAIT)
    names = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert EVIL in names and any(n.startswith("tiny-") for n in names) and any(n.startswith("slower-") for n in names)
    evil = page.locator(f"#runs tbody tr[data-run='{EVIL}']")
    assert evil.locator("td[data-column=name]").inner_text() == EVIL  # shown as text
    assert page.locator("#runs img").count() == 0 and not dialogs
    assert evil.get_attribute("data-epochs") == "2"

    # filter, sort, select; then the training starts and its row grows under them
    page.fill("#where", "lr>=0.1")
    page.press("#where", "Enter")
    page.wait_for_function("() => !document.querySelector('#runs tbody tr[data-run^=slower]')", timeout=WAIT)
    page.click("th[data-column=name]")
    page.wait_for_function("() => document.querySelector('th[data-column=name]').textContent.includes('▲')")
    page.check(f"#runs tbody tr[data-run='{EVIL}'] input[type=checkbox]")
    page.evaluate("window.notReloaded = true")
    go(training)
    live = "#runs tbody tr[data-run^='live-']"
    page.wait_for_selector(live, timeout=WAIT)
    page.wait_for_function(f"() => +document.querySelector(\"{live}\").dataset.epochs >= 1", timeout=WAIT)
    page.evaluate(f"document.querySelector(\"{live}\").marked = true")
    first = epochs(page, live)
    page.wait_for_function(f"() => +document.querySelector(\"{live}\").dataset.epochs > {first}", timeout=WAIT)
    assert page.evaluate(f"window.notReloaded && document.querySelector(\"{live}\").marked")  # updated in place
    assert page.input_value("#where") == "lr>=0.1"
    assert page.is_checked(f"#runs tbody tr[data-run='{EVIL}'] input[type=checkbox]")
    assert page.locator("#runs tbody tr[data-run^=slower]").count() == 0
    order = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert order == sorted(order)
    assert "sel=" in page.url and "sort=name" in page.url and "where=lr" in page.url
    assert training.poll() is None

    # a bad expression says so in one line and leaves the table as it was
    page.fill("#where", "lr>>1")
    page.press("#where", "Enter")
    page.wait_for_function("() => document.querySelector('#where-error').textContent.includes('--where')", timeout=WAIT)
    assert page.locator("#runs tbody tr").count() == len(order)


@pytest.mark.slow  # a server and a training in processes it kills
def test_the_run_page_grows_and_the_stop_button_needs_the_token(page, server, runs, training):
    base, token = server
    go(training)
    page.goto(base)
    live = "#runs tbody tr[data-run^='live-']"
    page.wait_for_selector(live, timeout=WAIT)
    page.click(f"{live} td[data-column=name] a")
    page.wait_for_function("() => +document.querySelector('#progress').dataset.epochs >= 1", timeout=WAIT)
    first = epochs(page, "#progress")
    page.wait_for_function(f"() => +document.querySelector('#progress').dataset.epochs > {first}", timeout=WAIT)
    assert page.locator("#accuracy canvas").count() == 1 and page.locator("#loss canvas").count() == 1
    assert re.search(r"epoch \d+ of 5000", page.inner_text("#progress"))

    # a zoom (drag across the chart) stays while the epochs come in
    box = page.locator("#accuracy .u-over").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 3, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    scale = "() => { const x = window.digitlab.charts[0].plot.scales.x; return [x.min, x.max]; }"
    zoomed = page.evaluate(scale)
    shown = epochs(page, "#progress")
    page.wait_for_function(f"() => +document.querySelector('#progress').dataset.epochs > {shown}", timeout=WAIT)
    assert zoomed[1] < shown and page.evaluate(scale) == zoomed

    # without the token: refused, and the run trains on
    page.click("#stop")
    page.wait_for_function("() => document.querySelector('#stop-said').textContent.startsWith('refused')", timeout=WAIT)
    refused = [e for e in page.errors if "403" in e]
    assert refused, page.errors
    for error in refused:  # the browser logs the refused request; it is the answer expected here
        page.errors.remove(error)
    assert "token" in page.inner_text("#stop-said") and training.poll() is None

    # with the token the URL gave: stopped, the run ends interrupted
    run_url = page.url
    page.goto(f"{base}?token={token}")
    page.wait_for_selector(live, timeout=WAIT)
    assert "token" not in page.url  # kept for the tab, out of the address bar
    page.goto(run_url)
    page.wait_for_selector("#stop:not([hidden])", timeout=WAIT)
    page.click("#stop")
    page.wait_for_function("() => document.querySelector('#status').textContent === 'interrupted'", timeout=WAIT)
    training.wait(timeout=30)
    info = json.loads(next(runs.glob("live-*/run.json")).read_text())
    assert info["status"] == "interrupted"


@pytest.mark.slow  # a server and a training in processes it kills
def test_the_compare_and_sweep_pages(page, server, runs):
    base, _ = server
    page.goto(base)
    page.click("#sweeps a")  # the sweep's link at the top of the runs page
    page.wait_for_function("() => document.querySelectorAll('#points tbody tr[data-state=complete]').length === 2",
                           timeout=WAIT)
    assert page.locator("svg.parallel path.point").count() == 2
    assert "2 of 2 points done" in page.inner_text("#progress")
    assert page.inner_text("#name") == "sweep pair"

    page.goto(base + "?where=sweep%3Dpair")
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr[data-run]').length === 2", timeout=WAIT)
    for box in page.locator("#runs tbody input[type=checkbox]").all():
        box.check()
    page.click("#compare")
    page.wait_for_selector("#chart canvas", timeout=WAIT)
    assert page.locator("#table tbody tr[data-run]").count() == 2
    assert [h.inner_text() for h in page.locator("#table th").all()][-1] == "seed"  # what differs
    page.check("#groups")
    page.wait_for_function("() => [...document.querySelectorAll('#chart .u-legend .u-series')]"
                           ".filter(e => e.style.display !== 'none').length === 2")  # epoch, and the group's mean
    assert "all runs (2 runs)" in page.inner_text("#chart .u-legend")
    page.fill("#smooth", "0.5")
    page.dispatch_event("#smooth", "input")
    assert "groups=1" in page.url and "smooth=0.5" in page.url and "runs=0%2Fpair%2F" in page.url
    page.reload()  # the address holds the comparison
    page.wait_for_selector("#chart canvas", timeout=WAIT)
    assert page.is_checked("#groups") and page.input_value("#smooth") == "0.5"


def raw(base: str, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes]:
    """A request with the path exactly as written (no client normalises it)."""
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    sent = {"Host": f"{host}:{port}", **({"Content-Length": "2"} if method == "POST" else {}), **(headers or {})}
    for key, value in sent.items():
        connection.putheader(key, value)
    connection.endheaders(b"{}" if method == "POST" else None)
    answer = connection.getresponse()
    return answer.status, answer.read()


@pytest.mark.slow  # a server and a training in processes it kills
def test_only_files_of_the_run_folders_are_served_and_stopping_needs_token_and_origin(server, runs):
    base, token = server
    name = next(p.name for p in runs.glob("tiny-*"))
    status, body = raw(base, f"/files/0/{name}/metrics.csv")
    assert status == 200 and body.startswith(b"epoch,")
    (runs.parent / "secret.txt").write_text("TOP SECRET CONTENT")
    os.symlink(runs.parent / "secret.txt", runs / name / "link.txt")
    for path in [f"/files/0/{name}/../../secret.txt", f"/files/0/{name}/%2e%2e/%2e%2e/secret.txt",
                 f"/files/0/{name}/%2E%2E%2F%2E%2E%2Fsecret.txt", f"/files/0%2f{name}%2fmetrics.csv",
                 f"/files/0/{name}/..%2f..%2fsecret.txt", f"/files/0/{name}/%2fetc%2fpasswd", "/files//etc/passwd",
                 f"/files/0/{name}/link.txt", f"/files/0/{name}/.lock", "/files/0/..", "/static/../server.py",
                 "/static/%2e%2e/server.py", "/../../etc/passwd", f"/files/0/{name}/%5c..%5c..%5csecret.txt"]:
        status, body = raw(base, path)
        assert status in (400, 403, 404) and b"TOP SECRET" not in body and b"root:" not in body, (path, status)
    assert raw(base, "/api/runs", headers={"Host": "attacker.example:80"})[0] == 403
    origin = {"Origin": base.rstrip("/"), "Content-Type": "application/json"}
    assert raw(base, "/api/stop", "POST", origin)[0] == 403  # no token
    assert raw(base, "/api/stop", "POST", {**origin, "X-Digitlab-Token": "wrong"})[0] == 403
    assert raw(base, "/api/stop", "POST", {"Origin": "http://evil.example", "X-Digitlab-Token": token})[0] == 403
    status, body = raw(base, "/api/stop", "POST", {**origin, "X-Digitlab-Token": token})
    assert status == 400  # token and origin accepted; the body names no run


def test_a_folder_that_is_not_there_or_an_empty_host_is_one_line(tmp_path):
    assert "nowhere: no such folder" in one_line_error(cli("dashboard", "nowhere"))
    assert "'--host': expected an address" in one_line_error(cli("dashboard", tmp_path, "--host", " "))


def test_the_filter_reads_option_columns_as_digitlab_runs_does():
    """A run's other options sit in its row under `options`; the table's filter reads them beside the named
    columns, as `digitlab runs --where` does."""
    from digitlab.dashboard.api import _matches
    from digitlab.runs.where import parse_all
    row = {"name": "a", "lr": 0.1, "options": {"data.dataset": "digits8x8", "optimizer.nesterov": True}}
    assert _matches(row, parse_all(["data.dataset=digits8x8", "lr>=0.1"]))
    assert not _matches(row, parse_all(["data.dataset=mnist"]))
    assert _matches(row, [])
