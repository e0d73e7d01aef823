"""The README's "Try it by hand" commands, run as written against `segctl local start-api`: the order
they send (placed now, whatever today is) puts the customer in the segments the README names. Only
the port changes, so the README cannot rot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
from support import ROOT

pytestmark = pytest.mark.acceptance

README = ROOT / "README.md"


def try_it_section() -> tuple[str, str]:
    """The fenced shell block after "Try it by hand" (indentation removed), and the prose after it."""
    text = README.read_text(encoding="utf-8")
    start = text.index("**Try it by hand**")
    match = re.compile(r"\n( *)```sh\n(.*?)\n\1```\n(.*?)\n\n", re.S).search(text, start)
    assert match, "README: no ```sh block after **Try it by hand**"
    indent, block, after = match.groups()
    lines = [line[len(indent):] if line.startswith(indent) else line for line in block.split("\n")]
    return "\n".join(lines), after


def documented_segments(prose: str) -> list[str]:
    found = re.search(r'`"segments": (\[[^\]]*\])`', prose)
    assert found, 'README: the prose after the block must name the `"segments": [...]` the customer lands in'
    return json.loads(found.group(1))


@pytest.fixture(scope="module")
def commands():
    missing = [tool for tool in ("bash", "openssl", "curl") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the README's commands need {', '.join(missing)}")
    return try_it_section()


def test_readme_try_it_by_hand_puts_the_customer_in_the_documented_segments(commands, base_url):
    block, prose = commands
    port = urlsplit(base_url).port
    script, substitutions = re.subn(r"^PORT=\d+$", f"PORT={port}", block, flags=re.M)
    assert substitutions == 1, "README: the block sets the port once, on a line `PORT=<port>`"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    # The webhook's answer, then the profile: two JSON documents back to back.
    decoder, out, answers = json.JSONDecoder(), done.stdout.strip(), []
    while out:
        answer, end = decoder.raw_decode(out)
        answers.append(answer)
        out = out[end:].strip()
    accepted, profile = answers
    assert accepted == {"status": "accepted", "accepted": 1}
    assert profile["email"] == "you@example.com"
    assert profile["segments"] == documented_segments(prose)
    assert profile["traits"]["order_count"] == 1
