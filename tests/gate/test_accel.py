"""The compiled hot path (gate.accel): used when its build matches the sources, never when stale, off
with INFRACORE_PURE=1; the whole gate suite runs against whichever the build provides."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gate import accel

ROOT = Path(__file__).resolve().parents[2]


def _loaded_from(env_extra: dict[str, str]) -> dict[str, str]:
    env = {**{k: v for k, v in os.environ.items() if k != "INFRACORE_PURE"}, **env_extra}
    code = ("import importlib, json; from gate import accel; "
            "print(json.dumps({m: importlib.import_module(f'gate.{m}').__file__ for m in accel.MODULES}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def test_each_module_runs_compiled_exactly_when_its_build_matches_and_pure_python_remains_available():
    fresh = accel.fresh_modules()
    if os.environ.get("INFRACORE_REQUIRE_ACCEL"):  # (CI: `make test` has just built every module)
        assert sorted(fresh) == sorted(f"gate.{m}" for m in accel.MODULES)
    if not fresh:
        pytest.skip("no compiled build matches the sources (Cython or a C compiler missing: make accel says why)")
    for module, path in _loaded_from({}).items():
        # (`make test` builds first; a module edited since its last build runs from its source.)
        assert path.endswith(accel.SUFFIX if f"gate.{module}" in fresh else f"/gate/{module}.py"), module
    assert all(path.endswith(".py") for path in _loaded_from({"INFRACORE_PURE": "1"}).values())


def test_only_modules_whose_source_matches_their_build_are_used(tmp_path):
    here = tmp_path / "gate"
    (here / "_accel").mkdir(parents=True)
    for m in ("h1", "router"):
        (here / f"{m}.py").write_text(f"X = {m!r}\n")
        (here / "_accel" / f"{m}{accel.SUFFIX}").write_bytes(b"compiled")
    manifest = {"modules": {m: accel.source_digest(m, here) for m in ("h1", "router")}}
    (here / "_accel" / "manifest.json").write_text(json.dumps(manifest))
    assert sorted(accel.fresh_modules(here)) == ["gate.h1", "gate.router"]

    (here / "router.py").write_text("X = 'edited since the build'\n")
    assert sorted(accel.fresh_modules(here)) == ["gate.h1"]
    (here / "_accel" / f"h1{accel.SUFFIX}").unlink()
    assert accel.fresh_modules(here) == {}
    (here / "_accel" / "manifest.json").write_text("{not json")
    assert accel.fresh_modules(here) == {}


def test_a_module_compiled_against_another_typed_class_is_stale_with_it(tmp_path):
    here = tmp_path / "gate"
    (here / "_accel").mkdir(parents=True)
    for m in ("exchange", "upstream", "h1"):
        (here / f"{m}.py").write_text(f"X = {m!r}\n")
        (here / "_accel" / f"{m}{accel.SUFFIX}").write_bytes(b"compiled")
    (here / "exchange.pxd").write_text("cdef class Exchange:\n    cdef public object client\n")
    (here / "upstream.pxd").write_text("from gate.exchange cimport Exchange\n\ncdef class Up:\n    cdef Exchange ex\n")
    manifest = {"modules": {m: accel.source_digest(m, here) for m in ("exchange", "upstream", "h1")}}
    (here / "_accel" / "manifest.json").write_text(json.dumps(manifest))
    assert sorted(accel.fresh_modules(here)) == ["gate.exchange", "gate.h1", "gate.upstream"]

    # Editing the typed class (its .py or its .pxd) makes the module built against its layout stale too.
    (here / "exchange.pxd").write_text("cdef class Exchange:\n    cdef public object client, extra\n")
    assert sorted(accel.fresh_modules(here)) == ["gate.h1"]
    (here / "exchange.pxd").write_text("cdef class Exchange:\n    cdef public object client\n")
    assert sorted(accel.fresh_modules(here)) == ["gate.exchange", "gate.h1", "gate.upstream"]
    # ... and so does a missing build of it, even with a matching manifest entry for the dependent module.
    (here / "_accel" / f"exchange{accel.SUFFIX}").unlink()
    assert sorted(accel.fresh_modules(here)) == ["gate.h1"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_an_up_to_date_build_compiles_nothing():
    pytest.importorskip("Cython")
    if len(accel.fresh_modules()) != len(accel.MODULES):
        pytest.skip("some modules changed since the last build (make accel rebuilds them): nothing to compare")
    # Up to date: nothing is compiled (and nothing loaded in this process is touched).
    done = subprocess.run([sys.executable, "-m", "gate.accel_build"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)
    assert f"0 module(s) compiled, {len(accel.MODULES)} up to date" in done.stdout


def _pxd_classes(text: str) -> dict[str, set[str]]:
    """`cdef class Name` → the field names its `cdef public ...` lines declare."""
    classes: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"cdef class (\w+)", line)
        if m:
            current = classes.setdefault(m.group(1), set())
        elif current is not None and (m := re.match(r"\s+cdef public \w+ (.+)$", line)):
            current.update(n.strip() for n in m.group(1).split(","))
        elif line and not line[0].isspace():
            current = None
    return classes


def _py_slots(source: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["__slots__"]:
                    out[node.name] = set(ast.literal_eval(stmt.value))
    return out


def test_every_typed_class_declares_exactly_the_fields_of_its_python_class():
    """The .pxd beside a module declares its classes' fields for the compiled build; the .py's
    `__slots__` are the same names, so pure Python and the compiled build accept the same attributes
    (a field missing from the .pxd would fail only compiled, and only where it is used)."""
    gate_dir = ROOT / "gate"
    pxds = sorted(gate_dir.glob("*.pxd"))
    assert pxds
    for pxd in pxds:
        declared = _pxd_classes(pxd.read_text())
        slots = _py_slots((gate_dir / f"{pxd.stem}.py").read_text())
        # A .pxd without classes declares only typed functions and module variables (gate/accesslog.pxd).
        assert declared or "cpdef " in pxd.read_text(), pxd.name
        for name, fields in declared.items():
            assert name in slots, f"{pxd.stem}.{name} has no __slots__"
            assert fields == slots[name], (pxd.name, name, fields ^ slots[name])
