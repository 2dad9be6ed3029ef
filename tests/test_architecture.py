"""The folders are the architecture: who may import whom, and where settings are read.

Checked on the source (imports parsed with `ast`), so a new import that breaks a rule fails
here rather than in a deployment that lacks Spark or FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from service.launch import REPO_ROOT

# package -> top-level modules it must never import
FORBIDDEN = {
    "models": {"pyspark", "fastapi", "starlette", "uvicorn", "batch", "service", "evaluation", "tests"},
    "batch": {"fastapi", "starlette", "uvicorn", "service", "evaluation", "tests"},
    "service": {"pyspark", "batch", "evaluation", "tests"},
    "evaluation": {"pyspark", "fastapi", "starlette", "uvicorn", "batch", "service", "tests"},
    "benchmarks": {"tests"},
    "scripts": {"tests"},
}


def _sources(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_their_layer_allows(package):
    files = _sources(package)
    assert files, package
    broken = {
        str(p.relative_to(REPO_ROOT)): sorted(_imported(p) & FORBIDDEN[package])
        for p in files
        if _imported(p) & FORBIDDEN[package]
    }
    assert broken == {}


def _environment_reads(path: Path) -> list[int]:
    """Lines that read os.environ / os.getenv (writes and setdefault for child processes are fine)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            f = node.func
            is_environ = isinstance(f.value, ast.Attribute) and f.value.attr == "environ"
            if (is_environ and f.attr == "get") or f.attr == "getenv":
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "environ"
        ):
            lines.append(node.lineno)
    return lines


def test_settings_are_read_only_by_the_settings_objects():
    """Service settings: service/settings.py; S3: models.storage.S3Settings; Spark:
    batch.config.SparkSettings; all pydantic-settings, none read with os.environ."""
    reads = {
        str(p.relative_to(REPO_ROOT)): _environment_reads(p)
        for package in ("models", "batch", "service", "evaluation")
        for p in _sources(package)
        if _environment_reads(p)
    }
    assert reads == {}
