"""The repository's docs stand alone: a user clones only this repository, so no tracked file may send
them to the team's notes beside the checkout, and every link into the docs must land on a file and a
heading that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from support import ROOT

# Spelled in pieces so that this file does not match its own patterns.
SHARED = "sha" + "red"
FORBIDDEN = (
    "../" + SHARED,
    SHARED + "/design" + ".md",
    SHARED + "/webhooks" + ".md",
    "design" + ".md",  # no such file in the repository: any mention points outside it
    "webhooks.md " + "\u00a7",  # section numbers of the notes; docs/webhooks.md has headings, not numbers
)
SECTION_NUMBER = re.compile("\u00a7" + r"\s*\d")

#: Written on another branch of the same issue (the CLI and operations guides); linked from here
#: before they land. Drop an entry once its file is in the tree.
PENDING = {"docs/cli.md", "docs/operations.md"}

#: A reference to a doc with an optional heading: in Markdown links and in code comments alike.
DOC_REF = re.compile(r"(?<![\w./-])((?:\.\./)?(?:docs/)?[\w-]+\.md)(#[\w-]+)?")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / name for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match and not in_fence:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    return found


def test_no_tracked_file_points_at_notes_outside_the_repository():
    offenders = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(pattern in line for pattern in FORBIDDEN) or SECTION_NUMBER.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offenders, "restate in docs/ instead of pointing outside the repository:\n" + "\n".join(offenders)


def resolve(source: Path, target: str) -> Path:
    """A doc reference as written in ``source``: relative to it in Markdown, else from the root."""
    if source.suffix == ".md" and not target.startswith("docs/"):
        return (source.parent / target).resolve()
    return (ROOT / target).resolve()


def test_every_reference_to_a_doc_names_a_file_and_a_heading_that_exist():
    broken = []
    cache: dict[Path, set[str]] = {}
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        refs = [(m.group(1), m.group(2)) for m in DOC_REF.finditer(text)]
        if path.suffix == ".md":  # links to any file, not only to docs
            refs += [(link.split("#", 1)[0], "#" + link.split("#", 1)[1] if "#" in link else None)
                     for link in MD_LINK.findall(text) if not re.match(r"[a-z]+:", link)]
        for target, anchor in refs:
            if not target:  # a link to a heading of the same file
                target_path = path
            else:
                target_path = resolve(path, target)
            relative = target_path.relative_to(ROOT).as_posix() if target_path.is_relative_to(ROOT) else None
            if relative in PENDING and not target_path.exists():
                continue
            if not target_path.exists():
                if target.endswith(".md") and "/" not in target and path.suffix != ".md":
                    continue  # a bare file name in code (`README.md`, a provider's file): not a path
                broken.append(f"{path.relative_to(ROOT)}: {target} does not exist")
                continue
            if anchor and target_path.suffix == ".md":
                if target_path not in cache:
                    cache[target_path] = anchors(target_path.read_text(encoding="utf-8"))
                if anchor[1:] not in cache[target_path]:
                    broken.append(f"{path.relative_to(ROOT)}: {target}{anchor}: no such heading")
    assert not broken, "\n".join(sorted(set(broken)))
