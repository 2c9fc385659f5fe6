"""Import rules between the packages, read from the source with ``ast`` (nothing is imported).

``pipeline`` (pure stages) imports neither ``models`` nor ``flows`` nor Prefect; ``models`` (the classifier)
never imports ``flows`` nor Prefect; only ``flows`` knows Prefect, the database and the web server; nothing
the product runs imports ``bench``. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE_LIBRARIES = ("prefect", "sqlalchemy", "fastapi", "starlette", "uvicorn")  # flows only
FORBIDDEN = {  # bench/ (measurements) stands above everything: nothing the product runs imports it
    "pipeline": ("models", "flows", "bench", *SERVICE_LIBRARIES),
    "models": ("flows", "bench", *SERVICE_LIBRARIES),
    "flows": ("bench",),
}


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every import in one source file, relative ones resolved.

    Parameters
    ----------
    path : Path
        A ``.py`` file under ``root``.
    root : Path
        The folder the packages are in (``pipeline/asr/x.py`` is module ``pipeline.asr.x``).

    Returns
    -------
    list of (int, str)
        ``(line, absolute module name)``, in line order.
    """
    parts = path.relative_to(root).with_suffix("").parts  # .../__init__ counts as a module inside its package
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(parts[:-node.level]) if node.level else []
            found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
    return sorted(found)


def violations(package: str, root: Path = ROOT) -> list[str]:
    """``file:line imports name`` for every import in ``package`` that its rule in ``FORBIDDEN`` forbids."""
    return [f"{path.relative_to(root)}:{line} imports {name}"
            for path in sorted((root / package).rglob("*.py"))
            for line, name in imported_modules(path, root)
            if name.split(".")[0] in FORBIDDEN[package]]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_house_rules(package):
    found = violations(package)
    assert not found, f"{package} must not import {', '.join(FORBIDDEN[package])}: " + "; ".join(found)


def test_the_rule_sees_nested_and_relative_imports(tmp_path):
    (tmp_path / "pipeline" / "asr").mkdir(parents=True)
    (tmp_path / "pipeline" / "__init__.py").write_text("from . import asr\n")
    (tmp_path / "pipeline" / "asr" / "__init__.py").write_text("from ..types import Turn\n")
    (tmp_path / "pipeline" / "asr" / "stage.py").write_text(
        "import numpy\n\n\ndef run():\n    from prefect import task\n    from ..models import artifact\n")
    assert imported_modules(tmp_path / "pipeline" / "__init__.py", tmp_path) == [(1, "pipeline")]
    assert imported_modules(tmp_path / "pipeline" / "asr" / "__init__.py", tmp_path) == [(1, "pipeline.types")]
    assert imported_modules(tmp_path / "pipeline" / "asr" / "stage.py", tmp_path) == [
        (1, "numpy"), (5, "prefect"), (6, "pipeline.models")]
    assert violations("pipeline", tmp_path) == ["pipeline/asr/stage.py:5 imports prefect"]
