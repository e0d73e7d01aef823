"""The dashboard's routes: /dashboard (every segment, overlap, experiments, cohorts) and
/dashboard/segments/<id> (one segment over time, its definition, members, and a profile explained).

``respond`` turns a request into (status, headers, body) from a data source; the local runner calls it
for its /dashboard paths, and ``serve`` runs it on its own port for `segctl dashboard --url`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

from . import render
from .source import DataSource, SourceError, segment_path

PREFIX = "/dashboard"


def _headers(content_type: str = "text/html; charset=utf-8") -> dict:
    return {"content-type": content_type, "content-security-policy": render.CSP, "cache-control": "no-store",
            "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def _optional(source: DataSource, path: str, params: dict | None = None) -> dict | None:
    """A route the deployment may not have yet (experiments, cohorts): its absence is not an error."""
    try:
        return source.get(path, params)
    except SourceError:
        return None


def respond(source: DataSource, path: str, query: str = "", origin: str = "") -> tuple[int, dict, bytes]:
    """(status, headers, HTML) of a dashboard path (``/dashboard``, ``/dashboard/segments/<id>``)."""
    params = dict(parse_qsl(query))
    period = {"from": params.get("from"), "to": params.get("to")}
    try:
        if path in (PREFIX, PREFIX + "/"):
            segments = source.get("/segments") or {"segments": []}
            chosen = params.get("segment") or None
            html = render.overview(
                segments,
                source.get("/segments/metrics", period),
                source.get("/segments/overlap"),
                _optional(source, "/experiments", period),
                _optional(source, "/cohorts", {"segment": chosen}),
                chosen_segment=chosen, origin=origin)
            return 200, _headers(), html.encode()
        if path.startswith(PREFIX + "/segments/"):
            return _segment(source, unquote(path[len(PREFIX + "/segments/"):]), params, period, origin)
    except SourceError as exc:
        return 502, _headers(), render.error_page(str(exc), origin).encode()
    return 404, _headers(), render.page("Not found", '<section><h2>No such page</h2><p><a href="/dashboard">'
                                                     'Back to the segments</a></p></section>', origin).encode()


def _segment(source: DataSource, segment_id: str, params: dict, period: dict, origin: str):
    detail = source.get(segment_path(segment_id), {"limit": 20}) if segment_id else None
    if detail is None:
        body = render.page("Unknown segment", f'<section><h2>No segment {render.e(segment_id)}</h2>'
                                              '<p><a href="/dashboard">Back to the segments</a></p></section>', origin)
        return 404, _headers(), body.encode()
    metrics = source.get(segment_path(segment_id, "/metrics"), period)
    email, profile_id = params.get("email", "").strip(), params.get("profile", "").strip()
    explain = profile = None
    note = ""
    if email:
        profile = source.get("/profiles", {"email": email})
        if profile is None:
            note = "No profile has that email."
        else:
            profile_id = profile["profile_id"]
    if profile_id and not note:
        explain = source.get(f"/profiles/{profile_id}/explain") if _safe_id(profile_id) else None
        if explain is None:
            note = "No such profile."
    html = render.segment_page(detail, metrics, explain, email, profile, origin, note)
    return 200, _headers(), html.encode()


def _safe_id(profile_id: str) -> bool:
    return 0 < len(profile_id) <= 128 and all(c.isalnum() or c in "_-" for c in profile_id)


def is_dashboard_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def server(source: DataSource, host: str = "127.0.0.1", port: int = 8100, origin: str = "") -> ThreadingHTTPServer:
    """An HTTP server of the dashboard alone (``/`` sends to ``/dashboard``), not yet serving."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: paths carry emails typed into the explain form
            pass

        def do_GET(self):
            parts = urlsplit(self.path)
            if not is_dashboard_path(parts.path):
                self.send_response(302 if parts.path == "/" else 404)
                self.send_header("location", PREFIX)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            status, headers, body = respond(source, parts.path, parts.query, origin)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    return httpd


def serve_forever(source: DataSource, port: int, origin: str) -> int:
    """`segctl dashboard`: serve on 127.0.0.1:port until Ctrl-C."""
    try:
        httpd = server(source, port=port, origin=origin)
    except OSError as exc:
        raise SystemExit(f"segctl: cannot listen on 127.0.0.1:{port} ({exc.strerror}); try --port") from None
    print(f"Dashboard of {origin}: http://127.0.0.1:{httpd.server_address[1]}/dashboard   (Ctrl-C to stop)", flush=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    httpd.shutdown()
    httpd.server_close()
    return 0
