"""secscan is a component: it imports `core` and nothing else of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import secscan

OURS = {"core", "gate", "certd", "orch", "probe", "logbus", "snap", "console_api", "fsctl", "secscan"}


def test_secscan_imports_only_core():
    bad = []
    for path in Path(secscan.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in OURS - {"core", "secscan"}]
    assert bad == []
