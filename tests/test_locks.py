"""Two locks: requirements.lock pins what the job and the service import at run time (all the
image installs), requirements-dev.lock the test and lint tools. Checked against the imports of
the source (ast) and the installed packages' own requirements."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from service.launch import REPO_ROOT

RUNTIME_CODE = ("models", "batch", "service", "evaluation", "scripts")
FIRST_PARTY = {"models", "batch", "service", "evaluation", "scripts", "tests", "benchmarks"}
TEST_TOOLS = {"pytest", "pytest-timeout", "ruff", "playwright", "moto", "schemathesis", "hypothesis"}


def pins(name: str) -> dict[str, str]:
    """Canonical name -> version of each `name==version` line (comments and -r lines skipped)."""
    out: dict[str, str] = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            dist, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            assert canonicalize_name(dist) not in out, f"{name}: {dist} pinned twice"
            out[canonicalize_name(dist)] = version
    return out


RUNTIME, DEV = pins("requirements.lock"), pins("requirements-dev.lock")


def imported_modules(folder: str) -> dict[str, str]:
    """Top-level module -> a file that imports it (absolute imports, lazy ones included)."""
    out: dict[str, str] = {}
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                out.setdefault(name.split(".")[0], str(path.relative_to(REPO_ROOT)))
    return out


def test_the_dev_lock_adds_to_the_runtime_lock_and_pins_nothing_twice():
    text = (REPO_ROOT / "requirements-dev.lock").read_text()
    assert "-r requirements.lock" in text.splitlines()
    assert set(RUNTIME) & set(DEV) == set()


def test_every_package_the_runtime_code_imports_is_in_the_runtime_lock():
    provides = metadata.packages_distributions()
    missing = []
    for folder in RUNTIME_CODE:
        for module, where in imported_modules(folder).items():
            if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {canonicalize_name(d) for d in provides.get(module, [])}
            if not dists & set(RUNTIME):
                missing.append(f"{module} ({where}): {sorted(dists) or 'not installed'}")
    assert missing == [], missing


def test_no_runtime_dependency_is_pinned_only_in_the_dev_lock():
    # Else the image (runtime lock only) would get an unpinned version of it.
    only_dev = []
    for name in RUNTIME:
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(req.name) in DEV:
                only_dev.append(f"{name} needs {req.name}")
    assert only_dev == [], only_dev


def test_the_test_tools_stay_out_of_the_runtime_lock():
    assert TEST_TOOLS & set(RUNTIME) == set()
    assert set(DEV) >= TEST_TOOLS


def test_pyproject_lists_the_same_split():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    dev = {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["dev"]}
    assert runtime <= set(RUNTIME), runtime - set(RUNTIME)
    assert dev <= set(DEV), dev - set(DEV)
