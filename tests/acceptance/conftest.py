"""The acceptance tests' runner: `segctl local start-api` in a subprocess, one per test module."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from segctl.demo import http as request
from segctl.signing import demo_keys
from support import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(signing_keys, tmp_path_factory):
    """The URL of a fresh `segctl local start-api` (its own embedded moto) for the test module."""
    yield from start_api(signing_keys, tmp_path_factory)


def start_api(signing_keys, tmp_path_factory, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
    """Run `segctl local start-api` (with ``extra_env`` and extra ``args``) until the generator closes;
    yields its URL. The log (with the embedded endpoint's URL) is ``start-api.log`` beside."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env.update(SENDGRID_PUBLIC_KEY=signing_keys[1], MAGENTO_PUBLIC_KEY=signing_keys[3], **(extra_env or {}))
    # Output to a file, not a pipe nobody reads: a busy run must never block on a full pipe.
    log_path = tmp_path_factory.mktemp("segctl") / "start-api.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segctl.cli", "local", "start-api", "--port", str(port), "--log-level", "WARNING",
             *args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"segctl exited early:\n{log_path.read_text()}")
            try:
                if request("GET", f"{url}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"segctl local start-api never answered /health:\n{log_path.read_text()}")
        start_api.log_path = log_path
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded machine: do not fail a passed module on its teardown
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def signing_keys(request):
    """SendGrid (ECDSA) and Adobe (RSA) key pairs: the module's own `KEYS = demo_keys()` when it signs
    such deliveries (the server gets the public halves), else fresh ones."""
    return getattr(request.module, "KEYS", None) or demo_keys()
