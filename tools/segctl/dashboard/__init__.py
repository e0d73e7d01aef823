"""The marketer's dashboard: HTML pages with inline SVG charts, rendered from the management API's JSON.

* ``source``: where the JSON comes from (the local runner, or a deployed API signed with SigV4);
* ``render`` and ``charts``: the HTML and the SVG;
* ``app``: the /dashboard routes, for the local runner and for `segctl dashboard --url`.
"""

from __future__ import annotations

import sys


def local_response(api_url: str, path: str, query: str) -> tuple[int, dict, bytes]:
    """The local runner's /dashboard pages, from its own routes at ``api_url``."""
    from .app import respond
    from .source import LocalSource

    return respond(LocalSource(api_url), path, query, origin="local")


def run(url: str, port: int, region: str | None) -> int:
    """`segctl dashboard --url API_URL`: the dashboard of a deployed stack, its API calls signed with SigV4."""
    from .app import serve_forever
    from .source import RemoteSource

    try:
        source = RemoteSource(url, region=region)
    except ValueError as exc:
        print(f"segctl: dashboard: {exc}", file=sys.stderr)
        return 2
    return serve_forever(source, port, origin=url)
