"""A local HTTP server that replays the KoboToolbox API v2 data endpoint.

Why: the demo and the tests must exercise the real ingestion code (HTTP,
token auth, pagination by `next`, incremental queries, retries) without a
KoboToolbox account or network access. The server answers like Kobo does:

* ``GET /api/v2/assets/<uid>/data/`` (also ``/data.json``) with
  ``Authorization: Token <token>``; otherwise 401 ``{"detail": "Invalid token."}``
* ``limit``/``start`` paging with absolute ``next``/``previous`` links,
  ``count`` = matching submissions; ``query`` (Mongo JSON: equality, $gt,
  $gte, $lt, $lte on top-level keys, compared as strings like Kobo does for
  ``_submission_time``) and ``sort``.
* failure modes for tests: the first ``fail_first`` data requests answer
  ``fail_status`` (default 503), then success; ``hang_first`` requests stall
  ``hang_s`` seconds before answering (client timeouts).
* scripted faults (``inject(kind, times=1, start=None, ...)``, or ``--fault``):
  the next ``times`` data requests (only those for page ``start``, when given)
  answer with the fault instead of the page:

  - ``html``: an HTML error page (``status`` 200 or 502, ...), as a proxy or a
    maintenance page sends it;
  - ``truncated``: the page's JSON cut after ``keep`` bytes (default half),
    with a matching Content-Length (a proxy that gave up mid-body);
  - ``cut``: the page's headers announce the whole body, then the connection
    closes half-way (the client sees an incomplete read);
  - ``throttle``: ``status`` (default 429) with ``Retry-After: <retry_after>``;
  - ``repeat``: the submissions of the previous page again, under this page's
    ``next`` link (a cache ignoring the query string, or broken paging);
  - ``empty``: no submissions, but this page's ``next`` link.

Submissions come from recorded pages (``<dir>/<asset_uid>/*.json``, each an
API page ``{"results": [...]}`` or a plain list), as written by
``tools.demo.surveys.generate_surveys``; tests may add more at run time.

    python -m tools.demo.kobo_replay --port 8765 --dir .local/demo_surveys/api --token demo-token

or, in tests::

    with KoboReplayServer(pages_dir, token="t", page_size=2) as server:
        server.url   # http://127.0.0.1:<port>
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA_PATH = re.compile(r"^/api/v2/assets/(?P<uid>[^/]+)/data(?:/|\.json)?$")
DEFAULT_TOKEN = "demo-token"
FAULT_KINDS = ("html", "truncated", "cut", "throttle", "repeat", "empty")


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up before its answer is written (a timeout, a retry) is the client's choice:
    socketserver would print a traceback for it."""

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class KoboReplayServer:
    """Replays recorded submissions as the Kobo API v2 data endpoint; usable as a context manager."""

    def __init__(self, pages_dir: Path | None = None, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1",
                 port: int = 0, page_size: int = 1000, fail_first: int = 0, fail_status: int = 503,
                 hang_first: int = 0, hang_s: float = 0.0) -> None:
        self.token = token
        self.page_size = page_size
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.hang_first = hang_first
        self.hang_s = hang_s
        self.requests: list[dict] = []  # what clients asked, for assertions
        self.faults: list[dict] = []  # scripted faults still to serve (inject)
        self.served_faults: list[str] = []  # kinds served, in order
        self._lock = threading.Lock()
        self._assets: dict[str, list[dict]] = {}
        if pages_dir is not None:
            self.load_dir(Path(pages_dir))
        self._httpd = _QuietServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- data
    def load_dir(self, pages_dir: Path) -> None:
        """Read every `<asset_uid>/*.json` page under pages_dir (sorted by file name)."""
        if not pages_dir.is_dir():
            raise FileNotFoundError(f"recorded pages folder {pages_dir} does not exist")
        for asset_dir in sorted(p for p in pages_dir.iterdir() if p.is_dir()):
            for page in sorted(asset_dir.glob("*.json")):
                data = json.loads(page.read_text(encoding="utf-8"))
                results = data.get("results", []) if isinstance(data, dict) else data
                self.add_submissions(asset_dir.name, results)

    def add_submissions(self, asset_uid: str, submissions: list[dict]) -> None:
        """Add submissions; one with the `_id` of an existing one replaces it (an edit in Kobo)."""
        with self._lock:
            rows = self._assets.setdefault(asset_uid, [])
            by_id = {r.get("_id"): i for i, r in enumerate(rows) if r.get("_id") is not None}
            for sub in submissions:
                index = by_id.get(sub.get("_id"))
                if index is None:
                    by_id[sub.get("_id")] = len(rows)
                    rows.append(dict(sub))
                else:
                    rows[index] = dict(sub)

    def inject(self, kind: str, times: int = 1, start: int | None = None, status: int | None = None,
               retry_after: str | None = None, keep: int | None = None) -> "KoboReplayServer":
        """Answer the next `times` data requests (for page offset `start` only, when given) with a fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self.faults.append({"kind": kind, "times": times, "start": start, "status": status,
                                "retry_after": retry_after, "keep": keep})
        return self

    def _take_fault(self, start: int) -> dict | None:
        with self._lock:
            for fault in self.faults:
                if fault["times"] > 0 and (fault["start"] is None or fault["start"] == start):
                    fault["times"] -= 1
                    self.served_faults.append(fault["kind"])
                    return fault
        return None

    def submissions(self, asset_uid: str) -> list[dict]:
        with self._lock:
            return list(self._assets.get(asset_uid, []))

    # -- lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self) -> "KoboReplayServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kobo-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=10)

    def __enter__(self) -> "KoboReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server._handle(self)

            def log_message(self, fmt: str, *args: Any) -> None:  # keep test output quiet
                pass

        return Handler

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(req.path)
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        auth = req.headers.get("Authorization", "")
        with self._lock:
            number = len(self.requests) + 1
            self.requests.append({"path": parts.path, "params": params,
                                  "authorized": auth == f"Token {self.token}"})
        if auth != f"Token {self.token}":
            detail = "Authentication credentials were not provided." if not auth else "Invalid token."
            return self._send(req, 401, {"detail": detail}, {"WWW-Authenticate": "Token"})
        if number <= self.hang_first and self.hang_s > 0:
            time.sleep(self.hang_s)
        if number <= self.fail_first:
            return self._send(req, self.fail_status, {"detail": "replay: simulated server error"})
        match = DATA_PATH.match(parts.path)
        if not match:
            return self._send(req, 404, {"detail": "Not found."})
        uid = urllib.parse.unquote(match.group("uid"))
        if uid not in self._assets:
            return self._send(req, 404, {"detail": "Not found."})
        try:
            rows = self._select(uid, params)
        except ValueError as exc:
            return self._send(req, 400, {"detail": str(exc)})
        limit = min(int(params.get("limit") or self.page_size), self.page_size)
        start = int(params.get("start") or 0)
        fault = self._take_fault(start)
        page = rows[start:start + limit]
        if fault and fault["kind"] == "repeat":
            page = rows[max(0, start - limit):start] or page
        elif fault and fault["kind"] == "empty":
            page = []
        host = req.headers.get("Host") or f"127.0.0.1:{self.port}"
        base = f"http://{host}{parts.path}"

        def link(offset: int) -> str:
            return base + "?" + urllib.parse.urlencode({**params, "start": str(offset), "limit": str(limit)})

        body = {
            "count": len(rows),
            "next": link(start + limit) if start + limit < len(rows) else None,
            "previous": link(max(0, start - limit)) if start > 0 else None,
            "results": page,
        }
        if fault and fault["kind"] not in ("repeat", "empty"):
            return self._send_fault(req, fault, json.dumps(body).encode("utf-8"))
        return self._send(req, 200, body)

    @staticmethod
    def _send_fault(req: BaseHTTPRequestHandler, fault: dict, page: bytes) -> None:
        kind = fault["kind"]
        status = fault["status"] or {"html": 200, "throttle": 429}.get(kind, 200)
        headers: dict[str, str] = {}
        if kind == "html":
            data = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body><center>"
                    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n")
            ctype = "text/html"
        elif kind == "throttle":
            data = json.dumps({"detail": "Request was throttled."}).encode()
            ctype = "application/json"
            if fault["retry_after"] is not None:
                headers["Retry-After"] = str(fault["retry_after"])
        else:  # truncated, cut
            data = page[:fault["keep"] if fault["keep"] is not None else len(page) // 2]
            ctype = "application/json"
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(page) if kind == "cut" else len(data)))
        for key, value in headers.items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(data)
        if kind == "cut":
            req.wfile.flush()
            req.close_connection = True

    def _select(self, uid: str, params: dict) -> list[dict]:
        rows = self.submissions(uid)
        if params.get("query"):
            try:
                query = json.loads(params["query"])
            except ValueError:
                raise ValueError("query is not valid JSON") from None
            rows = [r for r in rows if _matches(r, query)]
        order = [("_submission_time", 1), ("_id", 1)]
        if params.get("sort"):
            try:
                order = list(json.loads(params["sort"]).items()) or order
            except (ValueError, AttributeError):
                raise ValueError("sort is not a JSON object") from None
        for key, direction in reversed(order):
            rows.sort(key=lambda r, k=key: (r.get(k) is None, str(r.get(k)) if not isinstance(r.get(k), int)
                                            else f"{r.get(k):020d}"), reverse=int(direction) < 0)
        return rows

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        req.wfile.write(data)


def _matches(row: dict, query: dict) -> bool:
    ops = {"$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b,
           "$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
           "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b}
    for key, cond in query.items():
        value = row.get(key)
        if isinstance(cond, dict):
            for op, operand in cond.items():
                if op not in ops:
                    raise ValueError(f"unsupported query operator {op}")
                if value is None or not ops[op](str(value), str(operand)):
                    return False
        elif value != cond:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay recorded KoboToolbox API v2 pages over HTTP.")
    parser.add_argument("--dir", type=Path, required=True, help="folder with <asset_uid>/*.json pages")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="API token clients must send")
    parser.add_argument("--page-size", type=int, default=1000, help="maximum submissions per page")
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N requests with --fail-status")
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:TIMES]",
                        help=f"serve a scripted fault to the next TIMES data requests (kinds: {', '.join(FAULT_KINDS)})")
    args = parser.parse_args(argv)
    server = KoboReplayServer(args.dir, token=args.token, host=args.host, port=args.port,
                              page_size=args.page_size, fail_first=args.fail_first, fail_status=args.fail_status)
    for spec in args.fault:
        kind, _, times = spec.partition(":")
        server.inject(kind, times=int(times or 1), retry_after="5" if kind == "throttle" else None)
    assets = ", ".join(f"{uid} ({len(server.submissions(uid))})" for uid in sorted(server._assets))
    print(f"replaying KoboToolbox API at {server.url} for assets: {assets or 'none'}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
