"""Serve every HttpApi route of template.yaml on 127.0.0.1, as API Gateway (payload 2.0) would.

Authorization (AWS_IAM on the management routes) is not enforced locally.

GET /docs is the runner's own page, not a route of template.yaml (it exists only locally): Swagger UI
for the management API's OpenAPI document at /openapi.json, with Swagger UI's files (vendored in
static/swagger-ui) under /docs/swagger-ui/, all on the same origin and without a network.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from .runtime import LocalStack
from .template import ACCOUNT

#: Swagger UI 5 (OpenAPI 3.1 needs 5), vendored under static/swagger-ui (its README: version, license),
#: so the page works offline and references nothing outside this origin. validatorUrl null: Swagger
#: UI would otherwise send the document to validator.swagger.io for its badge.
SWAGGER_UI = Path(__file__).with_name("static") / "swagger-ui"
SWAGGER_UI_PATH = "/docs/swagger-ui/"
#: the vendored files served, and their content types (nothing else of the folder is)
SWAGGER_UI_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Segmentation management API (local)</title>
  <link rel="stylesheet" href="{SWAGGER_UI_PATH}swagger-ui.css">
  <link rel="icon" type="image/png" href="{SWAGGER_UI_PATH}favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{SWAGGER_UI_PATH}swagger-ui-bundle.js" charset="utf-8"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null}});
  </script>
</body>
</html>
""".encode()

TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")


def api_event(route, params: dict, method: str, path: str, query: str, headers: dict, body: bytes) -> dict:
    """An API Gateway HTTP API (payload format 2.0) proxy event."""
    content_type = headers.get("content-type", "")
    is_text = any(content_type.startswith(t) for t in TEXT_TYPES)
    try:
        text = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        text = None
    qs: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        qs[k] = f"{qs[k]},{v}" if k in qs else v
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": "local", "domainName": headers.get("host", "127.0.0.1"),
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": route.route_key, "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": text is None,
        "body": text if text is not None else base64.b64encode(body).decode(),
    }
    if qs:
        event["queryStringParameters"] = qs
    if params:
        event["pathParameters"] = params
    return event


class Router:
    """API Gateway's route selection: the most specific matching route; an explicit method beats ANY."""

    def __init__(self, routes) -> None:
        self.routes = [(r, r.pattern()) for r in routes]

    def match(self, method: str, path: str):
        """Return (route, path parameters), or (None, {}) when API Gateway would answer 404 itself."""
        for route, pattern in self.routes:
            m = pattern.match(path)
            if m and route.method in (method, "ANY"):
                return route, m.groupdict()
        return None, {}


def decoded_path(path: str) -> str:
    """The path as an HTTP API hands it on (rawPath, pathParameters): percent-decoded, except an encoded
    slash, which stays inside its segment rather than adding one (and changing the route)."""
    return "%2F".join(unquote(part) for part in re.split("%2[Ff]", path))


def request_event(router: Router, method: str, url_path: str, body: bytes = b"", headers: dict | None = None):
    """(function logical id, API Gateway event) for one request, or (None, None) if no route matches."""
    parts = urlsplit(url_path)
    path = decoded_path(parts.path)
    route, params = router.match(method.upper(), path)
    if route is None:
        return None, None
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return route.function, api_event(route, params, method.upper(), path, parts.query, lowered, body)


class _Server(ThreadingHTTPServer):
    #: the listen backlog: http.server's 5 resets connections as soon as a few dozen clients connect at once
    request_queue_size = 128
    daemon_threads = True


class LocalApi:
    def __init__(self, stack: LocalStack, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.stack = stack
        self.router = Router(stack.template.routes())
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet; the functions log for themselves
                pass

            def _serve(self):
                api.serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

            def __getattr__(self, name):
                # Any other method (TRACE, PROPFIND...) is routed too, not refused with http.server's 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        self.httpd = _Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def serve(self, req: BaseHTTPRequestHandler) -> None:
        method = req.command.upper()
        parts = urlsplit(req.path)
        length = int(req.headers.get("content-length") or 0)
        body = req.rfile.read(length) if length else b""
        if method in ("GET", "HEAD") and (parts.path == "/docs" or parts.path.startswith(SWAGGER_UI_PATH)):
            return self._docs(req, parts.path, method)
        if (parts.path == "/dashboard" or parts.path.startswith("/dashboard/")) and method in ("GET", "HEAD"):
            from .dashboard import local_response  # the marketer's pages, from this runner's own routes

            status, headers, page = local_response(self.url, parts.path, parts.query)
            return self._write(req, status, headers, b"" if method == "HEAD" else page)
        path = decoded_path(parts.path)
        route, params = self.router.match(method, path)
        if route is None:
            # API Gateway answers unmatched routes itself, with 404 whatever the method.
            return self._write(req, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
        headers: dict[str, str] = {}
        for k, v in req.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        event = api_event(route, params, method, path, parts.query, headers, body)
        try:
            result = self.stack.invoke(route.function, event)
        except Exception as exc:  # what API Gateway shows for a crashed function
            print(f"segctl: {route.function} raised {exc!r}", flush=True)
            return self._write(req, 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
        status = int(result.get("statusCode", 200))
        out_headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self._write(req, status, out_headers, b"" if method == "HEAD" else data)

    def _docs(self, req: BaseHTTPRequestHandler, path: str, method: str) -> None:
        """The local-only Swagger UI page, or one of its vendored assets (a fixed list: no other file)."""
        if path == "/docs":
            content_type, data = "text/html; charset=utf-8", DOCS_HTML
        else:
            name = path.removeprefix(SWAGGER_UI_PATH)
            if name not in SWAGGER_UI_FILES:
                return self._write(req, 404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
            content_type, data = SWAGGER_UI_FILES[name], (SWAGGER_UI / name).read_bytes()
        headers = {"content-type": content_type, "x-content-type-options": "nosniff"}
        self._write(req, 200, headers, b"" if method == "HEAD" else data)

    @staticmethod
    def _write(req: BaseHTTPRequestHandler, status: int, headers: dict, data: bytes) -> None:
        req.send_response(status)
        for k, v in headers.items():
            if k not in ("content-length", "connection"):
                req.send_header(k, v)
        req.send_header("content-length", str(len(data)))
        req.end_headers()
        if data:
            req.wfile.write(data)

    def start(self) -> LocalApi:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="local-api")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

