"""Long `segctl` commands show progress as a bar redrawn in place on a terminal, and as plain lines
(never a carriage return) when their output goes to a log: tools/segctl/progress.py, used by the
imports, backfill and `dlq replay`."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from segctl.cli import main
from segctl.progress import Progress
from segmentation import bootstrap
from support import ROOT, TEMPLATE


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_ends_with_a_newline():
    out = io.StringIO()
    bar = Progress("profiles", stream=out, tty=True)
    for n in range(1, 4):
        bar.update(n, 3)
    bar.finish()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert text.rstrip("\n").rsplit("\r", 1)[1].startswith(f"  [{'#' * 30}] 3/3 profiles")


def test_in_a_log_each_state_is_a_whole_line_at_most_every_interval_and_the_last_one_always():
    out = io.StringIO()
    bar = Progress("profiles", stream=out, tty=False, interval=3600)
    for n in range(1, 1001):
        bar.update(n, 1000)
    bar.finish()
    lines = out.getvalue().splitlines(keepends=True)
    assert "\r" not in out.getvalue()
    assert [line.split("] ")[1] for line in lines] == ["1/1,000 profiles\n", "1,000/1,000 profiles\n"]


def test_it_tells_a_terminal_from_a_log_by_itself():
    """The same code, run on a pseudo-terminal and then into a pipe."""
    code = ("from segctl.progress import Progress\nb = Progress('rows', interval=0)\n"
            "[b.update(n, 3) for n in (1, 2, 3)]\nb.finish()\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools")}
    piped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "\r" not in piped and piped.count("\n") == 3
    leader, follower = pty.openpty()
    try:
        subprocess.run([sys.executable, "-c", code], env=env, stdout=follower, check=True)
        on_tty = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert on_tty.count("\r") >= 3 and "3/3 rows" in on_tty


@pytest.fixture
def endpoint(monkeypatch):
    """A moto server as `segctl local start-api` runs one; AWS_ENDPOINT_URL points at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    for var in ("AWS_PROFILE", "CATALOG_FILE", "DESTINATIONS_FILE"):
        monkeypatch.delenv(var, raising=False)
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "local",
                       "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        yield
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.reset()


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_import_and_backfill_show_a_bar_on_a_terminal_and_lines_in_a_log(endpoint, tmp_path, capsys, monkeypatch,
                                                                         terminal):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    day = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,email,created_at,total\n"
                      + "".join(f"{n},c{n}@example.com,{day},10.00\n" for n in range(1, 13)))
    argv = ["--template", str(TEMPLATE)]
    assert main([*argv, "import", "csv", "--orders", str(orders)]) == 0
    assert main([*argv, "backfill", "--segments", "2"]) == 0
    out = capsys.readouterr().out
    assert "12/12 customers" in out and "12/12 profiles" in out
    if terminal:
        assert "\r  [" in out
    else:
        assert "\r" not in out
        assert [line for line in out.splitlines() if "12/12 customers" in line]  # the last state, on its own line


def test_the_demo_replay_writes_whole_lines_in_a_log(monkeypatch, capsys):
    """`make demo` in CI or piped to a file: no carriage returns, and the last state is there."""
    from segctl import demo

    monkeypatch.setattr(demo, "http", lambda *a, **k: (202, {}))
    stream = ROOT / "events" / "demo" / "shopify-stream.json"
    total = len(json.loads(stream.read_text())["deliveries"])
    assert demo.replay("http://127.0.0.1:9", stream, demo.demo_secrets()[1]) == {202: total}
    out = capsys.readouterr().out
    assert "\r" not in out and f"{total}/{total} shopify-stream.json deliveries" in out
