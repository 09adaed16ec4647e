"""report.html: one page per run that a browser opens from file://, with everything the run folder tells: what
ran, the result against chance, the curves, the mistakes, the network's inside, the augmentation and the log.

It is written when a run ends, however it ends, and `digitlab report` writes it again for any run folder, old
ones included, making the figures again from the folder first (so a run made before a figure existed gets it,
and a damaged or foreign PNG is never shown). A figure digitlab drew from the folder's files as they are now, and
that is still as drawn, is shown without drawing it again (digitlab.run.stamp): a run whose files changed
(resumed, extended, damaged, records changed) gets fresh figures. A run that failed, diverged, was interrupted or
is still running says so at the top and shows what it has; a damaged file is named in a note and its sections are
left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from digitlab.config import dump
from digitlab.errors import StorageError, UserError
from digitlab.figures import html
from digitlab.inside.health import alarm
from digitlab.nn.metrics import confusion_matrix, precision_recall
from digitlab.nn.summary import summary_rows
from digitlab.options import plural
from digitlab.run import draw, layout
from digitlab.run.folder import RunFolder
from digitlab.run.outputs import OUTPUTS, Output, captioned
from digitlab.run.records import HEALTH, read_health
from digitlab.run.setup import make_model
from digitlab.run.stamp import Stamp
from digitlab.run.view import RunView

REPORT = layout.REPORT
LOG_LINES = 400
# The page's sections of figures, in order: (anchor, title, what it says when none of its figures is there). Each
# figure names its section and caption on its @output (digitlab.run.outputs, digitlab.run.inside); a figure whose
# section is not one of these is shown under MORE.
SECTIONS = [
    ("curves", "Curves", ""),
    ("mistakes", "The mistakes", ""),
    ("inside", "Inside the network", ""),
    ("augmentation", "Augmentation", "No augmentation: the training images are used as they are."),
]
MORE = ("more", "More figures")
SIGNATURES = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF8"}


@dataclass
class Page:
    """What the page is made from: the figures' bytes by file name, the summary, and the notes about what is
    missing or damaged."""

    figures: dict[str, bytes] = field(default_factory=dict)
    summary: dict | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def write_report(run: RunFolder, view: RunView | None = None, remake: bool = True,
                 redraw: bool = False) -> RunFolder:
    """Write `run`'s report.html. With `remake`, summary.json is made again from the folder and so are the
    figures not drawn already from the folder as it is (all of them with `redraw`), and written there; without,
    the files an ending run has just written are used. A config.yaml that cannot be read is refused
    (ConfigError or DamagedRun): nothing on the page would mean anything without it."""
    view = view or RunView(run)
    stamp = Stamp(run, redraw) if remake else None  # taken before the folder is read
    cfg = view.cfg
    page = Page()
    status, info = _status(run, page)
    shown = captioned()
    others = [o.name for o in OUTPUTS.values() if o.figure and not o.caption] if remake else []
    for name in [layout.SUMMARY] + [o.name for o in shown] + others:  # others: in the folder, not on the page
        _gather(view, name, page, stamp)
    if stamp is not None:
        stamp.save()
    sections = []
    for anchor, title, empty in SECTIONS:
        section = _figures(anchor, title, [o for o in shown if o.section == anchor], page, empty)
        sections.append(_inside(view, page, section) if anchor == "inside" else section)
    more = [o for o in shown if o.section not in {anchor for anchor, _, _ in SECTIONS}]
    if any(o.name in page.figures for o in more):
        sections.append(_figures(*MORE, more, page))
    body = "\n".join([
        _header(cfg, status, info, run, page), _what_ran(view, cfg, info, status, page), _result(view, page),
        draw.section(view), *sections, _log(run)])
    run.write(REPORT, html.page(f"{cfg['name']}: digitlab report", body, sortable=True))
    return run


def _status(run: RunFolder, page: Page) -> tuple[str, dict]:
    try:
        return run.status(), run.info()
    except UserError as exc:
        page.note(f"{exc}: the run's status is unknown")
        return "unknown", {}


def _gather(view: RunView, name: str, page: Page, stamp: Stamp | None) -> None:
    """One output into the page: read back when it is on disk and not to be remade (no `stamp`: an ending run's
    files) or when the `stamp` says it was drawn from the folder as it is; else made, written, and put on the
    stamp."""
    path = view.run / name
    figure = name != layout.SUMMARY
    if figure and stamp is None and path.is_file():
        reused, content = True, path.read_bytes()
    elif figure and stamp is not None:
        reused, content = stamp.reused(name)
    else:
        reused, content = False, None
    if reused and (content is None or content.startswith(SIGNATURES[path.suffix])):
        if content is not None:
            page.figures[name] = content
        return
    try:
        content = OUTPUTS[name](view)
    except UserError as exc:
        missing = not (view.run / layout.MODEL).exists() and str(exc).startswith(str(view.run / layout.MODEL))
        page.note("no model.npz: the run has not finished, so the views of the trained network are missing"
                  if missing else str(exc))
        return
    if content is not None:
        if isinstance(content, dict):
            page.summary = content
        else:
            page.figures[name] = content
        if stamp is not None:
            try:
                view.run.write_json(name, content) if isinstance(content, dict) else view.run.write(name, content)
            except StorageError as exc:
                page.note(f"{exc}; shown here, not saved")
                return
    if figure and stamp is not None:
        stamp.drew(name, content)


# -- sections ------------------------------------------------------------------------------------------------
STATUS_TEXT = {
    "complete": "complete", "running": "still running: this page shows the epochs so far and is written again "
    "when the run ends", "crashed": "crashed: its process died without recording how the run ended",
    "interrupted": "interrupted", "diverged": "diverged", "failed": "failed", "pruned": "pruned by its sweep",
    "unknown": "status unknown",
}


def _header(cfg: dict, status: str, info: dict, run: RunFolder, page: Page) -> str:
    epochs_done = info.get("epoch")
    text = STATUS_TEXT.get(status, status)
    if status == "interrupted":
        text += f" after epoch {epochs_done or 0} of {cfg['epochs']}; continue it with: " \
                f"digitlab train --resume {run.path}"
    elif status == "crashed":
        text += f" (last epoch recorded: {epochs_done or 0} of {cfg['epochs']}); continue it with: " \
                f"digitlab train --resume {run.path}"
    elif status == "diverged" and isinstance(info.get("diverged"), dict):
        d = info["diverged"]
        text += f": the loss became {d.get('loss')} at epoch {d.get('epoch')}, batch {d.get('batch')}; " \
                f"try a lower optimizer.lr (now {cfg['optimizer']['lr']})"
    elif status == "failed":
        text += f": {info.get('error', 'no reason recorded')}"
    elif status == "running":
        text = f"{text} (epoch {epochs_done or 0} of {cfg['epochs']} done)"
    elif status == "pruned":
        text += f" after epoch {epochs_done or 0} of {cfg['epochs']} ({info.get('pruned', 'no reason recorded')}); " \
                f"continue it with: digitlab train --resume {run.path}"
    if status == "complete" and page.summary:
        text = f"test accuracy {page.summary['test_accuracy']:.2%} after {plural(page.summary['epochs'], 'epoch')} " \
               f"({page.summary['seconds']:.1f} s of training)"
    kind = "complete" if status == "complete" else "warn" if status in ("running", "interrupted", "pruned") else "bad"
    notes = "".join(f"<li>{html.esc(n)}</li>" for n in page.notes)
    anchors = [("what-ran", "what ran"), ("result", "result"), (draw.ANCHOR, "draw a digit")] + \
        [(a, a) for a, _, _ in SECTIONS] + [("log", "log")]
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in anchors)
    return (f"<h1>{html.esc(cfg['name'])}</h1>\n<nav>{nav}</nav>\n"
            f'<div class="banner {kind}"><b>{html.esc(status)}</b>: {html.esc(text)}</div>\n'
            + (f'<div class="banner warn"><b>notes</b><ul>{notes}</ul></div>' if notes else ""))


def _what_ran(view: RunView, cfg: dict, info: dict, status: str, page: Page) -> str:
    sizes = _try(lambda: view.data.sizes(), page)
    seconds = page.summary.get("seconds") if page.summary else _try(
        lambda: round(sum(r["seconds"] or 0 for r in view.rows), 1), page)
    resumes = info.get("resumes") or []
    facts = [
        ("name", cfg["name"]), ("status", status), ("folder", str(view.run.path)),
        ("started", info.get("started")), ("ended", info.get("ended")),
        ("training time", f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else None),
        ("command", info.get("command")),
        ("resumed", "; ".join(f"{r.get('at')} from epoch {r.get('from_epoch')}" for r in resumes
                              if isinstance(r, dict))),
        ("extended", "; ".join(f"{h.get('at')}: epochs {h.get('epochs_before')} -> {h.get('epochs_after')}"
                               for h in info.get("history") or [] if isinstance(h, dict)
                               and h.get("action") == "extend")),
        ("started from", (lambda source: f"{source.get('run')} (config {source.get('config_hash')})"
                          if isinstance(source, dict) else None)(info.get("init_from"))),
        ("seed", cfg.get("seed")), ("digits", " ".join(map(str, cfg["data"]["digits"]))),
        ("data", f"{sizes['train']} train / {sizes['val']} validation / "
                 f"{plural(sizes['test'], 'test image', grouped=False)}" if sizes else None),
        ("versions", " ".join(f"{k} {info[k]}" for k in ("digitlab", "python", "numpy") if info.get(k))),
        ("commit", info.get("git_commit")), ("host", info.get("host")), ("BLAS threads", info.get("blas_threads")),
    ]
    parts = ['<h2 id="what-ran">What ran</h2>', html.facts(facts), "<h3>Model</h3>", _model_table(view, cfg, page),
             "<h3>Config</h3>", html.pre(dump(cfg))]
    return "\n".join(parts)


def _model_table(view: RunView, cfg: dict, page: Page) -> str:
    try:
        model, _ = make_model(cfg, view.image_shape)
    except (UserError, ValueError) as exc:
        page.note(f"model summary: {exc}")
        return '<p class="note">The model summary could not be made.</p>'
    rows = summary_rows(model)
    cells = [[html.cell(f"{r['index']} {r['name']}"), html.cell(r["type"]),
              html.cell(str(r["shape"]).replace(",)", ")")), html.cell(r["params"], shown=f"{r['params']:,}")]
             for r in rows]
    total = sum(r["params"] for r in rows)
    cells.append(["<td><b>total</b></td>", "<td></td>", f"<td>input {html.esc(model.in_shape)}</td>",
                  html.cell(total, shown=f"{total:,}")])
    return html.table(["layer", "type", "output shape", "parameters"], cells)


def _result(view: RunView, page: Page) -> str:
    out = ['<h2 id="result">Result</h2>']
    summary = page.summary
    if summary is None:
        rows = _try(lambda: view.rows, page) or []
        last = rows[-1] if rows else {}
        shown = [f"{s} accuracy {last[f'{s}_accuracy']:.4f}" for s in ("train", "val", "test")
                 if last.get(f"{s}_accuracy") is not None]
        out.append('<p>No final test score: it is measured on the saved model (model.npz), which this run does not '
                   'have.' + (f" After epoch {last['epoch']}: {', '.join(shown)}." if shown else "") + "</p>")
        return "\n".join(out)
    chance_ = summary.get("chance") or {}
    classes = summary.get("classes") or view.classes
    out.append(f'<p><span class="big">test accuracy {summary["test_accuracy"]:.2%}</span> '
               f'({plural(summary["dataset_sizes"]["test"], "test image", grouped=False)}; '
               f'test loss {summary["test_loss"]:.4f})<br>'
               f'chance: {chance_.get("majority", float("nan")):.2%} by always answering the commonest digit, '
               f'{chance_.get("uniform", float("nan")):.2%} by guessing uniformly'
               + (f'; best validation accuracy {summary["best_val_accuracy"]:.2%} after epoch {summary["best_epoch"]}'
                  if summary.get("best_epoch") else "") + "</p>")
    matrix = _try(lambda: confusion_matrix(view.data.test.y, view.test["predictions"], len(classes)), page)
    if matrix is None:
        return "\n".join(out)
    precision, recall = precision_recall(matrix)
    support = matrix.sum(axis=1)
    cells = [[html.cell(str(c)), html.cell(float(p), shown=f"{p:.4f}"), html.cell(float(r), shown=f"{r:.4f}"),
              html.cell(int(n))] for c, p, r, n in zip(classes, precision, recall, support)]
    out += ["<h3>Per class</h3>", html.table(["digit", "precision", "recall", "test images"], cells, sortable=True),
            "<h3>Confusion matrix</h3>", '<p class="note">Rows: the true digit; columns: the digit predicted. '
            "Shaded by the share of the row.</p>", _confusion_table(matrix, classes)]
    return "\n".join(out)


def _confusion_table(matrix: np.ndarray, classes: list) -> str:
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    rows = []
    for i, c in enumerate(classes):
        cells = [f"<th>{html.esc(c)}</th>"]
        for j in range(len(classes)):
            share = shares[i, j]
            colour = f"rgba(9,105,218,{0.08 + 0.8 * share:.2f})" if matrix[i, j] else "transparent"
            ink = "color:#fff;" if share > 0.5 else ""
            cells.append(html.cell(int(matrix[i, j]), style=f"background:{colour};{ink}"))
        rows.append(cells)
    return html.table(["true \\ predicted"] + [str(c) for c in classes], rows)


def _figures(anchor: str, title: str, outputs: list[Output], page: Page, empty: str = "") -> str:
    out = [f'<h2 id="{anchor}">{html.esc(title)}</h2>', '<div class="figs">']
    for o in outputs:
        content = page.figures.get(o.name)
        if content is not None:
            out.append(html.figure(content, alt=o.name, caption=html.esc(o.caption), link=o.name, narrow=o.narrow,
                                   kind="gif" if o.name.endswith(".gif") else "png"))
    if len(out) == 2:
        out.append(f'<p class="note">{html.esc(empty or "Not available for this run (see the notes at the top).")}</p>')
    return "\n".join(out + ["</div>"])


def _inside(view: RunView, page: Page, section: str) -> str:
    """The inside's section, with a warning banner when layer health found a layer mostly dead or saturated."""
    head, rest = section.split("\n", 1)
    out = [head, rest]
    if not (view.run / HEALTH).exists():
        out.append('<p class="note">Layer health and the 2-D plane through training are recorded while a run trains; '
                   "this run has no record of them (it is older than they are).</p>")
    model = _try(lambda: make_model(view.cfg, view.image_shape)[0], page)
    rows = (_try(lambda: read_health(view.run, view.cfg), page) or []) if model else []
    for epoch in dict.fromkeys(r["epoch"] for r in rows):
        message = alarm([r for r in rows if r["epoch"] == epoch], fused_output=model.output_activation is not None)
        if message:
            when = "at the start" if epoch == 0 else f"after epoch {epoch}"
            out.insert(1, f'<div class="banner warn"><b>layer health</b> ({when}): {html.esc(message)}</div>')
            break
    return "\n".join(out)


def _log(run: RunFolder) -> str:
    path = run / layout.LOG
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return '<h2 id="log">Log</h2><p class="note">No log.txt.</p>'
    cut = f" (the last {LOG_LINES} of {plural(len(lines), 'line')})" if len(lines) > LOG_LINES else ""
    return f'<h2 id="log">Log</h2><p class="note">log.txt{cut}, as of {time.strftime("%Y-%m-%d %H:%M:%S")}' \
           f"</p>{html.pre(chr(10).join(lines[-LOG_LINES:]))}"


def _try(fn, page: Page):
    """fn(), or None with a note when a file it reads is missing or damaged."""
    try:
        return fn()
    except UserError as exc:
        page.note(str(exc))
    return None

