"""console_api imports components only through their public face (the package, `__all__`), never their
modules — the rule written in console_api/__init__.py."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

COMPONENTS = {"gate", "orch", "probe", "logbus", "snap", "certd", "secscan"}
ROOT = Path(__file__).resolve().parents[2] / "console_api"


def _component_imports() -> list[tuple[str, int, str, list[str]]]:
    out = []
    for path in sorted(ROOT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in COMPONENTS:
                out.append((path.name, node.lineno, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] in COMPONENTS:
                        out.append((path.name, node.lineno, a.name, []))
    return out


def test_console_api_imports_only_public_faces() -> None:
    found = _component_imports()
    assert found, "the scan found no component imports at all: it is not looking where it should"
    wrong = [f"{f}:{line}: {mod}" for f, line, mod, names in found if "." in mod or not names]
    assert wrong == [], "import the component package's public names instead of its modules"


def test_every_imported_name_is_in_the_components_all() -> None:
    for f, line, mod, names in _component_imports():
        public = set(importlib.import_module(mod).__all__)
        assert set(names) <= public, f"{f}:{line}: {sorted(set(names) - public)} not in {mod}.__all__"
