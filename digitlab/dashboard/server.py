"""The dashboard's HTTP server (the standard library's ThreadingHTTPServer: no dependency), its routes and its
guards. It serves the pages of static/, the JSON of api.py, and the files inside the run and sweep folders the board
knows, nothing else: a path is split into segments before they are decoded, so an encoded slash is never a separator;
a segment that decodes to `..`, `.`, a slash, a backslash or NUL, or that starts with a dot, is refused; and what is
left is resolved (symlinks included) and must still be inside its folder. A request whose Host is not this server's
is refused (a web page cannot reach it by rebinding a name of its own to 127.0.0.1). Files from the run folders are
served as a sandbox (an origin of their own), so a page someone put in a run folder cannot act as the dashboard.

Everything is read-only unless --allow-stop: then POST /api/stop, with the token printed in the URL and from this
server's own origin, stops a run (stop.py).
"""

from __future__ import annotations

import hmac
import json
import mimetypes
import os
import secrets
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

from digitlab.dashboard.api import Views, dumps
from digitlab.dashboard.sweeps import Sweeps
from digitlab.errors import UserError

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/run": "run.html", "/compare": "compare.html", "/sweep": "sweep.html"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-src 'self'; "
               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
FILE_POLICY = "sandbox allow-scripts; frame-ancestors 'self'"
TEXT_FILES = {".csv", ".txt", ".yaml", ".yml", ".diff", ".md", ".log"}
TOKEN_HEADER = "X-Digitlab-Token"


class Refused(Exception):
    """A request this server will not answer: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def static_files() -> dict[str, tuple[bytes, str]]:
    """Every file of static/ by its path under it ('app.js', 'vendor/uPlot.iife.min.js'): the only names served."""
    files = {}
    for path in STATIC.rglob("*"):
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            kind = "text/javascript" if path.suffix == ".js" else kind
            files[path.relative_to(STATIC).as_posix()] = (path.read_bytes(), kind + "; charset=utf-8" * kind
                                                          .startswith(("text/", "image/svg")))
    return files


def segments(raw: str) -> list[str]:
    """The decoded segments of a raw URL path, each checked: Refused(400) for anything that could step out."""
    parts = raw.split("/")[1:]
    out = []
    for part in parts:
        try:
            text = unquote(part, errors="strict")
        except UnicodeDecodeError:
            raise Refused(400, "a path segment that is not UTF-8") from None
        if text in ("", ".", "..") or any(c in text for c in "/\\\x00") or text.startswith("."):
            raise Refused(400, f"the path segment {part!r} is not allowed")
        out.append(text)
    return out


class Dashboard:
    """What the handler needs: the board, the views, the static files, the host names it answers to, the token."""

    def __init__(self, board, host: str, allow_stop: bool):
        self.board, self.views, self.sweeps, self.files = board, Views(board), Sweeps(board), static_files()
        self.host, self.allow_stop = host, allow_stop
        self.token = secrets.token_urlsafe(24) if allow_stop else None
        self.port = 0

    def hosts(self) -> set[str] | None:
        """The Host headers answered; None (any) when listening beyond this machine, where --host names it."""
        if self.host not in LOOPBACK:
            return None
        return {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    def file(self, parts: list[str]) -> Path:
        """The file of a run or sweep folder that /files/<id>/<name> names; Refused when it is none."""
        for cut in range(len(parts) - 1, 0, -1):
            folder = self.board.folder("/".join(parts[:cut]))
            if folder is not None:
                break
        else:
            raise Refused(404, "no such run or sweep")
        base = os.path.realpath(folder)
        real = os.path.realpath(os.path.join(base, *parts[cut:]))
        if not real.startswith(base + os.sep):
            raise Refused(403, "outside the run folder")
        if not os.path.isfile(real):
            raise Refused(404, "no such file")
        return Path(real)


class Handler(BaseHTTPRequestHandler):
    server_version = "digitlab-dashboard"
    protocol_version = "HTTP/1.1"
    dashboard: Dashboard  # set on the class made for each server

    def log_message(self, format, *args):  # quiet: the terminal shows the URL and warnings only
        pass

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route):
        try:
            if not self.path.startswith("/"):
                raise Refused(400, "expected a path")
            hosts = self.dashboard.hosts()
            if hosts is not None and self.headers.get("Host") not in hosts:
                raise Refused(403, "this server answers only to its own address (Host)")
            raw, _, query = self.path.partition("?")
            route(raw, parse_qs(query, keep_blank_values=True))
        except Refused as exc:
            try:
                self._send(exc.status, dumps({"error": exc.reason}), "application/json")
            except (BrokenPipeError, ConnectionResetError):  # the client left before hearing why
                pass
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _get(self, raw: str, query: dict):
        d = self.dashboard
        if raw in PAGES:
            return self._static(PAGES[raw], page=True)
        if raw == "/favicon.ico":
            return self._static("favicon.svg")
        if raw.startswith("/static/"):
            return self._static(raw[len("/static/"):])
        if raw.startswith("/files/"):
            path = d.file(segments(raw[len("/files"):]))
            kind = "text/plain" if path.suffix in TEXT_FILES else mimetypes.guess_type(path.name)[0]
            kind = kind or "application/octet-stream"
            charset = "; charset=utf-8" if kind.startswith("text/") else ""
            return self._send(200, path.read_bytes(), kind + charset, {"Content-Security-Policy": FILE_POLICY})
        since = _number(query, "since")
        if raw == "/api/info":
            return self._json(200, {"allow_stop": d.allow_stop, "folders": [str(s.only or s.root)
                                                                             for s in d.board.sources]})
        if raw == "/api/runs":
            statuses = [s for v in query.get("status", []) for s in v.split(",") if s]
            where = [w for v in query.get("where", []) for w in split_where(v)]
            answer = d.views.runs(where, statuses, _first(query, "sort"), int(_number(query, "limit") or 100), since)
            return self._json(200, answer)
        if raw == "/api/run":
            return self._json(*d.views.run(_first(query, "id"), since))
        if raw == "/api/compare":
            ids = [i for v in query.get("runs", []) for i in v.split(",") if i]
            return self._json(200, d.views.compare(ids, since))
        if raw == "/api/sweep":
            return self._json(*d.sweeps.view(_first(query, "id"), _first(query, "since") or None))
        raise Refused(404, "no such page")

    def _post(self, raw: str, query: dict):
        d = self.dashboard
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= 10_000:
            self.close_connection = True
            raise Refused(400, "expected a short JSON body")
        body = self.rfile.read(length)  # read whatever the answer: the connection stays usable
        if raw != "/api/stop" or not d.allow_stop:
            raise Refused(404, "no such action (start the dashboard with --allow-stop to stop runs from it)")
        origin = self.headers.get("Origin")
        if origin is None or origin.removeprefix("http://") not in (d.hosts() or {self.headers.get("Host")}):
            raise Refused(403, "refused: the request does not come from this dashboard's page (Origin)")
        if not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(), d.token.encode()):
            raise Refused(403, "refused: a wrong or missing token (open the URL the dashboard printed)")
        try:
            ident = str(json.loads(body or b"{}")["run"])
        except (ValueError, KeyError, TypeError):
            raise Refused(400, 'expected {"run": "<id>"}') from None
        from digitlab.dashboard.stop import stop_run
        try:
            said = stop_run(d.board, ident)
        except UserError as exc:
            raise Refused(409, str(exc)) from None
        self._json(200, {"stopped": ident, "said": said})

    def _static(self, name: str, page: bool = False):
        found = self.dashboard.files.get(name)
        if found is None:
            raise Refused(404, "no such file")
        data, kind = found
        self._send(200, data, kind, {"Content-Security-Policy": PAGE_POLICY} if page else {})

    def _json(self, status: int, answer: dict):
        self._send(status, dumps(answer), "application/json")

    def _send(self, status: int, data: bytes, kind: str, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def split_where(text: str) -> list[str]:
    """Conditions typed in one box: separated by ';' or by ',' outside brackets and quotes (digits=[3,8] is one)."""
    out, depth, quote, current = [], 0, None, ""
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif char == ";" or (char == "," and depth == 0):
            out.append(current)
            current = ""
            continue
        current += char
    return [c.strip() for c in out + [current] if c.strip()]


def _first(query: dict, key: str) -> str:
    return (query.get(key) or [""])[0]


def _number(query: dict, key: str) -> int | None:
    try:
        return int(_first(query, key))
    except ValueError:
        return None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(folders, host: str, port: int, allow_stop: bool, echo=print) -> None:
    """Serve until Ctrl-C. The first line printed is the URL (with the token when --allow-stop)."""
    from digitlab.dashboard.state import Board
    board = Board(folders)
    dashboard = Dashboard(board, host, allow_stop)
    handler = type("BoundHandler", (Handler,), {"dashboard": dashboard})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    server.daemon_threads = True
    dashboard.port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{dashboard.port}/" + (f"?token={dashboard.token}" if allow_stop else "")
    echo(url)
    sys.stdout.flush()
    if host not in LOOPBACK:
        print(f"warning: --host {host}: the dashboard is reachable from other machines; it shows every run's "
              f"names and values to anyone who can reach this port", file=sys.stderr, flush=True)
    threading.Thread(target=board.start, name="digitlab-dashboard-board", daemon=True).start()
    if threading.current_thread() is threading.main_thread():  # Ctrl-C and SIGTERM stop it, even where a shell
        for sig in (signal.SIGINT, signal.SIGTERM):               # started it with SIGINT ignored
            signal.signal(sig, _interrupt)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
        server.server_close()
