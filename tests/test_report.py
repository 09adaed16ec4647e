"""report.html: every run ends with one, however it ends; `digitlab report` makes it again for any run folder
(old ones get the new figures, damaged files become notes, a damaged config is refused with one line), and
compares runs or a sweep on one page. Pages are self-contained: every image a data URI, nothing fetched."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from digitlab.cli import main
from digitlab.config import load_config
from digitlab.learner import Callback
from digitlab.run.folder import RunFolder
from digitlab.run.lifecycle import start

PLANE = {"name": "plane", "seed": 1, "data": {"digits": [3, 8], "validation": 0.1, "limit": 600},
         "model": [{"linear": 16}, "relu", {"linear": 2}, {"linear": 1}, "sigmoid"], "loss": "bce",
         "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "epochs": 3, "batch_size": 50}
CONV = {"name": "conv", "seed": 0, "data": {"digits": [0, 1, 2], "validation": 0.1, "limit": 300,
                                             "augment": {"shift": 2}},
        "model": [{"conv2d": {"filters": 4, "kernel": 3}}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 3}],
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01}, "epochs": 1, "batch_size": 50}
SECTIONS = ["what-ran", "result", "drawing", "curves", "mistakes", "inside", "augmentation", "log"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def train(root: Path, cfg: dict, *args) -> Path:
    path = root / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = cli("train", path, "--runs-dir", root / "runs", "--quiet", *args)
    assert result.exit_code in (0, 1), result.output
    return Path(result.output.strip().splitlines()[-1])


class Page(HTMLParser):
    """What a page holds: element ids, images (src, alt), links, scripts, and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.images, self.links, self.scripts, self.words = [], [], [], 0, []
        self.feed(text)
        self.text = " ".join("".join(self.words).split())

    BLOCKS = {"td", "th", "tr", "p", "li", "div", "h1", "h2", "h3", "br", "pre", "figcaption", "nav", "style", "script"}

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.words.append(" ")

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.words.append(" ")
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append((attrs.get("src", ""), attrs.get("alt", "")))
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.words.append(data)


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def assert_self_contained(text: str):
    """Nothing a browser would fetch: images are data URIs; no external script, stylesheet or font."""
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "@import" not in text and "url(" not in text
    assert all(src.startswith("data:image/") for src, _ in Page(text).images)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return {"plane": train(root, PLANE), "conv": train(root, CONV), "root": root}


def test_a_run_ends_with_its_report(runs):
    path = runs["plane"] / "report.html"
    text = path.read_text()
    assert_self_contained(text)
    p = page(path)
    assert [i for i in p.ids if not i.startswith("draw-")][:len(SECTIONS)] == SECTIONS  # draw-*: the drawing's parts
    shown = {alt for _, alt in p.images}
    assert {"curves.png", "mistakes.png", "weights.png", "embedding.png", "embedding_epochs.png",
            "embedding_epochs.gif", "saliency.png", "layer_health.png"} <= shown
    assert "filters.png" not in shown and "activations.png" not in shown  # a dense network
    summary = json.loads((runs["plane"] / "summary.json").read_text())
    assert f"test accuracy {summary['test_accuracy']:.2%}" in p.text
    assert f"chance: {summary['chance']['majority']:.2%} by always answering the commonest digit" in p.text
    info = json.loads((runs["plane"] / "run.json").read_text())
    for fact in (f"command {info['command']}", f"started {info['started']}", "seed 1", "digits 3 8",
                 "540 train / 60 validation / 1984 test images", "versions digitlab", "complete: test accuracy",
                 "0 linear Linear(units=16, init=he, bias=True, lr_scale=1) (None, 16) 12,560",
                 "out sigmoid Sigmoid() (None, 1) 0", "optimizer:", "epoch 3/3"):
        assert fact in p.text, fact
    assert "precision" in p.text and "recall" in p.text and "true \\ predicted" in p.text
    assert p.scripts == 4 and "sortable" in text  # the sort, and the drawing's model (JSON) and its two scripts
    assert "No augmentation" in p.text


def test_a_conv_run_shows_its_filters_activation_maps_and_augmentation(runs):
    p = page(runs["conv"] / "report.html")
    shown = {alt for _, alt in p.images}
    assert {"filters.png", "activations.png", "augment.png", "layer_health.png"} <= shown
    assert "weights.png" not in shown and "embedding_epochs.png" not in shown  # no dense first layer, no plane


def test_each_figure_declares_its_section_and_caption_on_its_output():
    from digitlab.run.outputs import OUTPUTS, captioned, output
    from digitlab.run.page import SECTIONS as PAGE_SECTIONS
    sections = {o.name: o.section for o in captioned()}
    assert sections["curves.png"] == "curves" and sections["mistakes.png"] == "mistakes"
    assert sections["weights.png"] == sections["layer_health.png"] == "inside"
    assert sections["augment.png"] == "augmentation"
    assert set(sections.values()) <= {anchor for anchor, _, _ in PAGE_SECTIONS}
    assert not {"confusion.csv", "confusion.png", "summary.json"} & set(sections)  # not shown as figures
    assert "failures.png" not in OUTPUTS  # mistakes.png is the one figure of the mistakes
    with pytest.raises(ValueError, match="only a figure"):
        output("table.csv", caption="a table")
    with pytest.raises(ValueError, match="needs a caption"):
        output("quiet.png", section="inside")


def test_a_figure_of_no_section_the_page_knows_is_shown_under_more_figures(runs, tmp_path, monkeypatch):
    from digitlab.run import outputs
    from digitlab.run.page import write_report
    drawn = (runs["plane"] / "curves.png").read_bytes()
    monkeypatch.setitem(outputs.OUTPUTS, "extra.png", outputs.Output("extra.png", lambda view: drawn,
                                                                     section="elsewhere", caption="An extra figure."))
    monkeypatch.setitem(outputs.OUTPUTS, "plain.png", outputs.Output("plain.png", lambda view: drawn))
    run = tmp_path / "run"
    shutil.copytree(runs["plane"], run)
    write_report(RunFolder.open(run))
    p = page(run / "report.html")
    shown = {alt for _, alt in p.images}
    assert "extra.png" in shown and "plain.png" not in shown
    assert p.ids[-2:] == ["more", "log"] and "More figures" in p.text and "An extra figure." in p.text


def old_copy(run: Path, tmp_path: Path) -> Path:
    """The run as a folder written before this issue: no report, no new figures, no records."""
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for name in ("report.html", "mistakes.png", "weights.png", "embedding_epochs.png", "embedding_epochs.gif",
                 "saliency.png", "layer_health.png", "layer_health.csv", "embedding_epochs.npz"):
        (old / name).unlink(missing_ok=True)
    return old


def test_digitlab_report_gives_an_old_run_folder_its_page_and_new_figures(runs, tmp_path):
    old = old_copy(runs["plane"], tmp_path)
    result = cli("report", old)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(old / "report.html")
    for name in ("mistakes.png", "weights.png", "saliency.png"):
        assert (old / name).read_bytes().startswith(b"\x89PNG")
    assert not (old / "embedding_epochs.png").exists()  # needs what only training could record
    p = page(old / "report.html")
    assert "has no record of them (it is older than they are)" in p.text
    assert "notes" not in p.text  # nothing is damaged


def test_a_damaged_or_foreign_figure_is_made_again(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["plane"], run)
    shutil.copyfile(runs["conv"] / "curves.png", run / "curves.png")
    (run / "mistakes.png").write_bytes(b"garbage")
    assert cli("report", run).exit_code == 0
    assert (run / "curves.png").read_bytes() == (runs["plane"] / "curves.png").read_bytes()
    assert (run / "mistakes.png").read_bytes() == (runs["plane"] / "mistakes.png").read_bytes()


def test_a_foreign_model_is_a_note_and_the_rest_is_shown(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["plane"], run)
    shutil.copyfile(runs["conv"] / "model.npz", run / "model.npz")
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    p = page(run / "report.html")
    assert f"{run / 'model.npz'}: damaged (belongs to another run" in p.text
    shown = {alt for _, alt in p.images}
    assert {"curves.png", "layer_health.png", "embedding_epochs.png"} <= shown and "mistakes.png" not in shown
    assert "No final test score" in p.text


def test_a_damaged_config_is_refused_with_one_line(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["plane"], run)
    (run / "config.yaml").write_text("model: [{linear: -3}]\n")
    result = cli("report", run)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("error: ") and "config.yaml" in result.output
    assert "Traceback" not in result.output


def test_a_folder_that_is_not_a_run_is_refused_with_one_line(tmp_path):
    result = cli("report", tmp_path)
    assert result.exit_code == 2 and "not a run folder or a sweep folder" in result.output
    assert "--out FILE.html" in result.output


class StopAfter(Callback):
    """Ctrl-C as a user would press it, after `epoch` epochs."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_run_says_so_and_shows_what_it_has(tmp_path):
    path = tmp_path / "plane.yaml"
    path.write_text(yaml.safe_dump({**PLANE, "epochs": 5}))
    run = start(load_config(path), tmp_path / "runs", quiet=True, progress=False, callbacks=[StopAfter(2)])
    assert run.info()["status"] == "interrupted"
    p = page(run / "report.html")
    assert f"interrupted: interrupted after epoch 2 of 5; continue it with: digitlab train --resume {run.path}" \
        in p.text
    assert "no model.npz: the run has not finished" in p.text
    assert "No final test score" in p.text and "After epoch 2: train accuracy" in p.text
    shown = {alt for _, alt in p.images}
    assert {"curves.png", "layer_health.png", "embedding_epochs.png"} <= shown and "mistakes.png" not in shown


@pytest.mark.filterwarnings("error::UserWarning")  # matplotlib: a legend with nothing to name
def test_a_diverged_run_says_so(tmp_path):
    run = train(tmp_path, {**PLANE, "name": "wild", "optimizer": {"name": "sgd", "lr": 1e9}})
    p = page(run / "report.html")
    assert "diverged: the loss became" in p.text and "try a lower optimizer.lr" in p.text


def test_a_running_run_and_a_crashed_one_say_so(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["plane"], run)
    folder = RunFolder(run)
    folder.update_status(status="running", epoch=2)
    with folder.lock():
        assert cli("report", run).exit_code == 0
    assert "still running: this page shows the epochs so far" in page(run / "report.html").text
    assert cli("report", run).exit_code == 0  # nobody holds the lock now
    assert "crashed: its process died" in page(run / "report.html").text
    folder.update_status(status="failed", error="MemoryError: out of memory")
    assert cli("report", run).exit_code == 0
    assert "failed: MemoryError: out of memory" in page(run / "report.html").text


def test_the_comparison_page(runs, tmp_path):
    other = train(runs["root"], {**PLANE, "name": "plane-lr", "optimizer": {"name": "sgd", "lr": 0.03,
                                                                             "momentum": 0.9}})
    out = tmp_path / "pages" / "compare.html"
    out.parent.mkdir()
    result = cli("report", runs["plane"], other, "--out", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert_self_contained(text)
    p = Page(text)
    assert "2 runs compared" in p.text and "sortable" in text and p.scripts == 1
    assert "lr" in p.text and "test_acc" in p.text and "Curves" in p.text
    assert os.path.relpath(runs["plane"] / "report.html", out.parent) in p.links  # a run's name opens its page
    assert "Parallel coordinates" not in p.text  # not a sweep


@pytest.mark.slow
def test_a_sweep_folder_gets_its_page_with_parallel_coordinates_and_seed_groups(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({**PLANE, "epochs": 1}))
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "grid": {"optimizer.lr": [0.1, 0.03]},
                                     "seeds": [1, 2], "select": "val_accuracy"}))
    result = cli("sweep", sweep, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    path = tmp_path / "runs" / "s" / "report.html"
    p = page(path)
    assert "sweep s" in p.text and "Parallel coordinates" in p.text and "Seed groups" in p.text
    assert "parallel coordinates of the sweep" in {alt for _, alt in p.images}
    assert "One axis per varied config key and val_accuracy last" in p.text
    compare = cli("compare", *sorted((tmp_path / "runs" / "s").iterdir()))
    assert compare.exit_code == 0 and "report.html" not in compare.output  # the page is not taken for a run
    path.unlink()
    again = cli("report", tmp_path / "runs" / "s")
    assert again.exit_code == 0 and path.is_file()


def test_out_to_a_path_that_cannot_be_written_is_one_line(runs, tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("report", runs["plane"], "--out", tmp_path / "file" / "page.html")
    assert result.exit_code == 2 and result.output.startswith("error: ") and "(--out)" in result.output


def test_parallel_coordinates_have_an_axis_per_varied_key_and_the_metric_last():
    from digitlab.figures.compare import parallel_coordinates
    from digitlab.runs.page import varied_keys
    configs = [{"name": f"p{i}", "seed": seed, "optimizer": {"name": "sgd", "lr": lr},
                "model": [{"linear": 8}, {"dropout": 0.1}]} for i, (lr, seed) in enumerate([(0.1, 1), (0.01, 2)])]
    configs[1]["model"][1]["dropout"] = 0.3
    assert varied_keys(configs) == ["seed", "optimizer.lr", "model.1.dropout"]
    rows = [{"optimizer.lr": 0.1, "seed": 1, "val_accuracy": 0.9}, {"optimizer.lr": 0.001, "seed": 2,
                                                                     "val_accuracy": None}]
    fig = parallel_coordinates(["optimizer.lr", "seed"], rows, "val_accuracy")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["optimizer.lr", "seed", "val_accuracy"]
    assert len([line for line in ax.lines if line.get_marker() == "o"]) == 2  # one per point
    assert "grey: no result" in ax.get_title()
    labels = {t.get_text() for t in ax.texts}
    assert {"0.1", "0.001", "1", "2"} <= labels  # lr on a log axis: its two values as ticks


def test_report_in_a_process_that_has_loaded_numpy_leaves_its_environment_alone(runs):
    """BLAS thread limits only act before numpy loads; set later, they would leak into every process started
    afterwards (and change their sums' last bits)."""
    before = dict(os.environ)
    assert cli("report", runs["plane"], "--threads", "1").exit_code == 0
    assert dict(os.environ) == before
