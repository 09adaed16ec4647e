"""How `digitlab dashboard` holds up with many run folders: N copies of one real run folder (hard links of the files
of a run digitlab wrote), then

1. first rows, warm: the catalog already built (a first dashboard over the folder built it), the wall time from
   starting `digitlab dashboard` to the URL, to the first /api/runs answer with rows, and to the first row shown
   in Chromium (a page opened at once, as a user who clicks the printed URL would);
2. 20 open pages updating: 20 pollers asking /api/runs every second with the version they have (as each page
   does) while a run trains in the same folder; the answers' latency, and the delay from an epoch's line in
   metrics.csv to the pollers' first answer that shows it;
3. the same with 20 real pages open in Chromium: the delay from an epoch's line to each page's row showing it.

Not a test: it prints the figures, with the load average beside them.

    python benchmarks/dashboard.py --runs 10000
    python benchmarks/dashboard.py --runs 2000 --source runs/3v8-logreg-20261206-...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def start(runs: Path) -> tuple[subprocess.Popen, str, float]:
    began = time.perf_counter()
    errors = open(runs.parent / "dashboard-stderr.txt", "a")
    proc = subprocess.Popen([sys.executable, "-m", "digitlab", "dashboard", str(runs), "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    url = proc.stdout.readline().strip()
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+/", url):
        raise SystemExit(f"the dashboard printed {url!r}")
    return proc, url, began


def stop(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def first_rows(url: str, began: float, browser) -> dict:
    """Seconds from the command to the URL, to rows over HTTP, to rows in Chromium (opened as soon as the URL is)."""
    printed = time.perf_counter() - began
    page = browser.new_page() if browser is not None else None
    shown = None
    if page is not None:
        page.goto(url)
        page.wait_for_selector("#runs tbody tr[data-run]", timeout=120_000)
        shown = time.perf_counter() - began
        rows = page.locator("#runs tbody tr[data-run]").count()
        page.close()
    answer = get(url + "api/runs?limit=100")
    while answer.get("unchanged"):
        time.sleep(0.05)
        answer = get(url + "api/runs?limit=100")
    http = time.perf_counter() - began
    return {"url_s": round(printed, 3), "rows_http_s": round(http, 3),
            "rows_browser_s": None if shown is None else round(shown, 3), "total": answer["total"],
            "rows_in_page": rows if page is not None else None, "load": os.getloadavg()[0]}


def training(runs: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digitlab", "train", str(ROOT / "configs/3v8-logreg.yaml"),
                             "--runs-dir", str(runs), "--set", "epochs=2000", "--set", "outputs=light", "--quiet",
                             "--threads", "1", "--name", name], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def watch(runs: Path, name: str, written: dict, quit_: threading.Event) -> None:
    """When each epoch's line lands in the run's metrics.csv."""
    while not quit_.is_set():
        for metrics in runs.glob(f"{name}-*/metrics.csv"):
            lines = metrics.read_text().count("\n") - 1
            now = time.time()
            for epoch in range(1, lines + 1):
                written.setdefault(epoch, now)
        time.sleep(0.01)


RECORD = """() => {
  window.seen = {};
  const note = () => {
    const row = document.querySelector("#runs tbody tr[data-run^='shown-']");
    if (row && !(row.dataset.epochs in window.seen)) window.seen[row.dataset.epochs] = Date.now() / 1000;
  };
  new MutationObserver(note).observe(document.querySelector("#runs tbody"),
                                     {subtree: true, childList: true, attributes: true});
}"""


def pages(url: str, runs: Path, n: int, seconds: float, browser, server: int) -> dict:
    """n Chromium pages open on the runs table while a run trains: the delay from an epoch's line in metrics.csv
    to each page's row showing it (each page notes the moment its row changed), the pages' errors, and the
    server's CPU time."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tabs, errors = [], []
    for _ in range(n):
        tab = context.new_page()
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(url)
        tabs.append(tab)
    for tab in tabs:
        tab.wait_for_selector("#runs tbody tr[data-run]", timeout=120_000)
    written: dict[int, float] = {}
    quit_ = threading.Event()
    watcher = threading.Thread(target=watch, args=(runs, "shown", written, quit_))
    watcher.start()
    for tab in tabs:  # each page notes when its row first shows each epoch count
        tab.evaluate(RECORD)
    train = training(runs, "shown")
    cpu = cpu_seconds(server)
    time.sleep(seconds)
    seen = [{int(k): v for k, v in tab.evaluate("() => window.seen").items()} for tab in tabs]
    cpu = cpu_seconds(server) - cpu
    quit_.set()
    watcher.join()
    os.kill(train.pid, signal.SIGINT)
    train.wait(timeout=60)
    context.close()
    delays = [at - written[epoch] for first in seen for epoch, at in first.items() if epoch in written]
    return {"pages": n, "seconds": seconds, "epochs_written": len(written),
            "updates_seen_per_page": round(statistics.mean(len(f) for f in seen), 1),
            "epoch_to_page_median_s": round(statistics.median(delays), 3) if delays else None,
            "epoch_to_page_max_s": round(max(delays), 3) if delays else None, "page_errors": len(errors),
            "server_cpu_s_per_s": round(cpu / seconds, 3), "load": os.getloadavg()[0]}


def pollers(url: str, runs: Path, n: int, seconds: float, server: int) -> dict:
    """n pollers as n open pages, while a run trains in `runs`: latency of their answers, and the delay from each
    epoch's line in metrics.csv to the first answer that shows it."""
    train = training(runs, "live")
    written: dict[int, float] = {}
    seen: dict[int, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    quit_ = threading.Event()

    def poll():
        since = None
        while not quit_.is_set():
            asked = time.perf_counter()
            answer = get(url + "api/runs?limit=100&where=&sort=" + ("" if since is None else f"&since={since}"))
            took = time.perf_counter() - asked
            now = time.time()
            with lock:
                latencies.append(took)
                for row in answer.get("rows", []):
                    if row["name"].startswith("live-"):
                        seen.setdefault(row["epochs_done"], now)
            since = answer["version"]
            time.sleep(max(0.0, 1.0 - took))

    threads = [threading.Thread(target=watch, args=(runs, "live", written, quit_))]
    threads += [threading.Thread(target=poll) for _ in range(n)]
    cpu = cpu_seconds(server)
    for t in threads:
        t.start()
    time.sleep(seconds)
    quit_.set()
    cpu = cpu_seconds(server) - cpu
    for t in threads:
        t.join()
    if train.poll() is None:
        os.kill(train.pid, signal.SIGINT)
    train.wait(timeout=60)
    delays = []
    for epoch, at in seen.items():  # an answer shows the epochs done then; every epoch up to it was written before
        first = min((seen[e] for e in seen if e >= epoch), default=at)
        if epoch in written:
            delays.append(first - written[epoch])
    latencies.sort()
    return {"pollers": n, "seconds": seconds, "answers": len(latencies),
            "latency_median_s": round(statistics.median(latencies), 4),
            "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 4),
            "latency_max_s": round(latencies[-1], 4), "epochs_seen": len(seen), "epochs_written": len(written),
            "epoch_to_answer_median_s": round(statistics.median(delays), 3) if delays else None,
            "epoch_to_answer_max_s": round(max(delays), 3) if delays else None,
            "server_cpu_s_per_s": round(cpu / seconds, 3), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--source", type=Path, help="a run folder to copy (default: train one)")
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="digitlab-dashboard-"))
    try:
        source = args.source
        if source is None:
            proc = subprocess.run([sys.executable, "-m", "digitlab", "train", "configs/3v8-logreg.yaml", "--set",
                                   "epochs=1", "--runs-dir", str(work / "source"), "--quiet", "--threads", "1"],
                                  capture_output=True, text=True, cwd=ROOT, check=True)
            source = Path(proc.stdout.strip().splitlines()[-1])
        runs = work / "runs"
        began = time.perf_counter()
        for n in range(args.runs):
            shutil.copytree(source, runs / f"{source.name}-{n:05d}", copy_function=os.link)
        print(f"{args.runs} copies of {source.name} in {time.perf_counter() - began:.1f} s", flush=True)
        results = {"runs": args.runs, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}

        proc, url, began = start(runs)  # cold: builds the catalog
        results["cold"] = first_rows(url, began, None)
        stop(proc)
        print(f"cold (no catalog): {results['cold']}", flush=True)

        browser = None
        if CHROMIUM:
            from playwright.sync_api import sync_playwright
            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        warm = []
        for _ in range(args.repeat):
            proc, url, began = start(runs)
            warm.append(first_rows(url, began, browser))
            print(f"warm: {warm[-1]}", flush=True)
            if _ < args.repeat - 1:
                stop(proc)
        results["warm"] = warm
        results["polling"] = pollers(url, runs, args.pollers, args.seconds, proc.pid)
        print(f"{args.pollers} pollers: {results['polling']}", flush=True)
        if browser is not None:
            results["pages"] = pages(url, runs, args.pollers, args.seconds, browser, proc.pid)
            print(f"{args.pollers} pages in Chromium: {results['pages']}", flush=True)
        stop(proc)
        if browser is not None:
            browser.close()
            playwright.stop()
        said = (work / "dashboard-stderr.txt").read_text()
        if said:
            print(f"the dashboard said:\n{said}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
