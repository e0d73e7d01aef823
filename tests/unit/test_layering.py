"""The layers' rules (docs/architecture.md): the domain and the use cases depend on ports, never on AWS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "segmentation" / "segmentation"
FORBIDDEN = ("boto3", "botocore", "moto", "segmentation.infra")


def imports(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against the package."""
    package = ["segmentation", *path.parent.relative_to(PACKAGE).parts]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


@pytest.mark.parametrize("path", sorted(p for layer in ("domain", "service") for p in (PACKAGE / layer).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_domain_and_service_import_nothing_of_aws_or_infra(path):
    bad = {m for m in imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}: depend on service/ports.py instead"
