"""The compiled hot path (gate.accel, built by setup.py): used as a whole when its build matches the sources,
never when stale (a warning, or an error with INFRACORE_REQUIRE_ACCEL), off with INFRACORE_PURE=1; the
typed classes declare the same fields in `__init__`, `__slots__` and their `.pxd`."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gate import accel

ROOT = Path(__file__).resolve().parents[2]
_ENV = {k: v for k, v in os.environ.items() if k not in ("INFRACORE_PURE", "INFRACORE_REQUIRE_ACCEL")}


def _import(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Import every compiled module in a fresh interpreter whose `gate` is the one under `root`."""
    code = (
        "import importlib, json, warnings; warnings.simplefilter('always'); from gate import accel; "
        "print(json.dumps({m: importlib.import_module(m).__file__ for m in accel.COMPILED}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={**_ENV, "PYTHONPATH": str(root), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _loaded_from(root: Path, **env: str) -> dict[str, str]:
    done = _import(root, **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _built() -> None:
    why = accel.check()
    if os.environ.get("INFRACORE_REQUIRE_ACCEL"):  # (CI: `make install` has just built it, `make test` rebuilt it)
        assert why is None, why
    if why is not None:
        pytest.skip(f"no compiled build matching the sources ({why})")


def test_the_compiled_build_is_used_when_it_matches_and_pure_python_remains_available():
    _built()
    for module, path in _loaded_from(ROOT).items():
        assert path == str(accel.compiled_file(module)), module
    for module, path in _loaded_from(ROOT, INFRACORE_PURE="1").items():
        assert path == str(accel.source_file(module)), module
    for module in accel.COMPILED:  # this test process too
        importlib.import_module(module)
    assert accel.active() == ([] if os.environ.get("INFRACORE_PURE") else sorted(accel.COMPILED))


def test_an_edited_source_is_never_run_from_its_stale_compiled_module(tmp_path):
    """A dev tree (editable install) edited since its build runs as Python, saying why; CI's
    INFRACORE_REQUIRE_ACCEL makes that an error; INFRACORE_PURE=1 still asks for Python quietly."""
    _built()
    shutil.copytree(ROOT / "gate", tmp_path / "gate", ignore=shutil.ignore_patterns("__pycache__"))
    assert all(p.endswith(accel.SUFFIX) for p in _loaded_from(tmp_path).values())  # the copy's own build is used

    router = tmp_path / "gate" / "router.py"
    router.write_text(router.read_text() + "\nEDITED = True\n")
    done = _import(tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(p.endswith(".py") for p in json.loads(done.stdout).values())
    assert "gate runs as pure Python: gate/router.py changed since the compiled build" in done.stderr
    done = _import(tmp_path, INFRACORE_REQUIRE_ACCEL="1")
    assert done.returncode != 0
    assert "ImportError: the gate's compiled build is not usable: gate/router.py changed" in done.stderr
    done = _import(tmp_path, INFRACORE_REQUIRE_ACCEL="1", INFRACORE_PURE="1")
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr


def _fake_build(root: Path) -> None:
    """The sources of every compiled module under `root`, placeholder compiled files and a matching record."""
    for module in accel.COMPILED:
        for suffix in (".py", ".pxd"):
            if (src := accel.source_file(module, ROOT, suffix)).is_file():
                dst = accel.source_file(module, root, suffix)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        accel.compiled_file(module, root).parent.mkdir(parents=True, exist_ok=True)
        accel.compiled_file(module, root).write_bytes(b"compiled")
    (root / accel.RECORD).write_text(json.dumps({"modules": accel.digests(root)}))


def test_the_build_is_stale_when_a_source_or_a_typed_class_it_was_compiled_against_changed(tmp_path):
    assert accel.check(tmp_path).startswith("not built")
    _fake_build(tmp_path)
    assert accel.check(tmp_path) is None

    # The typed Exchange (its .pxd) changes the layout proxy and upstream were compiled against.
    pxd = tmp_path / "gate" / "exchange.pxd"
    pxd.write_text(pxd.read_text().replace("cdef public object client,", "cdef public object client, extra,"))
    why = accel.check(tmp_path)
    assert why and why.startswith("gate/exchange.py, gate/proxy.py, gate/upstream.py changed"), why
    shutil.copyfile(ROOT / "gate" / "exchange.pxd", pxd)
    assert accel.check(tmp_path) is None

    # A module dropped from COMPILED (or renamed) leaves its binary in `_c/`, first on the package's path.
    extra = tmp_path / "gate" / "_c" / f"dropped{accel.SUFFIX}"
    extra.write_bytes(b"compiled")
    why = accel.check(tmp_path)
    assert why and why.startswith(f"gate/_c/dropped{accel.SUFFIX} not built from any module in COMPILED"), why
    assert accel.extras(tmp_path) == [extra]
    extra.unlink()
    (tmp_path / "gate" / "_c" / "dropped.py").write_text("X = 1\n")  # a stray source there would shadow too
    assert "gate/_c/dropped.py not built from any module" in accel.check(tmp_path)
    (tmp_path / "gate" / "_c" / "dropped.py").unlink()
    assert accel.check(tmp_path) is None

    accel.compiled_file("gate.h1", tmp_path).unlink()
    assert "compiled files missing for gate.h1" in accel.check(tmp_path)
    (tmp_path / accel.RECORD).write_text("{not json")
    assert "unreadable" in accel.check(tmp_path)


def test_modules_in_subpackages_have_their_compiled_files_and_cimports_in_their_own_package(tmp_path):
    assert accel.ext_name("gate.h1") == "gate._c.h1"
    assert accel.ext_name("gate.http1.h1") == "gate.http1._c.h1"
    assert accel.compiled_file("gate.http1.h1", tmp_path) == tmp_path / "gate" / "http1" / "_c" / f"h1{accel.SUFFIX}"
    assert accel.cimports("from gate.http1.h1 cimport RequestInfo\ncimport gate.state\nfrom cython cimport x\n") == [
        "gate.http1.h1",
        "gate.state",
    ]
    (tmp_path / "gate" / "http1").mkdir(parents=True)
    (tmp_path / "gate" / "http1" / "h1.py").write_text("X = 1\n")
    (tmp_path / "gate" / "exchange.py").write_text("Y = 1\n")
    (tmp_path / "gate" / "exchange.pxd").write_text("from gate.http1.h1 cimport RequestInfo\n")
    before = accel.source_digest("gate.exchange", tmp_path)
    (tmp_path / "gate" / "http1" / "h1.py").write_text("X = 2\n")
    assert accel.source_digest("gate.exchange", tmp_path) != before


def _pxd_classes(text: str) -> dict[str, set[str]]:
    """`cdef class Name` → the field names its `cdef public ...` lines declare."""
    classes: dict[str, set[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"cdef class (\w+)", line)
        if m:
            current = classes.setdefault(m.group(1), set())
        elif current is not None and (m := re.match(r"\s+cdef (?:public |readonly )?[\w.]+ (.+)$", line)):
            current.update(n.strip() for n in m.group(1).split(","))
        elif line and not line[0].isspace():
            current = None
    return classes


def _py_classes(source: str) -> dict[str, tuple[set[str] | None, set[str]]]:
    """Class name → (its `__slots__`, the `self.X` its `__init__` assigns)."""
    out: dict[str, tuple[set[str] | None, set[str]]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            slots, assigned = None, set()
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["__slots__"]:
                    slots = set(ast.literal_eval(stmt.value))
                if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
                    for n in ast.walk(stmt):
                        targets = (
                            n.targets
                            if isinstance(n, ast.Assign)
                            else ([n.target] if isinstance(n, ast.AnnAssign | ast.AugAssign) else [])
                        )
                        for t in targets:
                            for el in t.elts if isinstance(t, ast.Tuple) else [t]:
                                if isinstance(el, ast.Attribute) and getattr(el.value, "id", None) == "self":
                                    assigned.add(el.attr)
            out[node.name] = (slots, assigned)
    return out


def test_every_typed_class_declares_the_same_fields_in_init_slots_and_pxd():
    """A hot class names its fields three times: `__init__` assigns them, `__slots__` lists them (pure Python
    then rejects any other), the `.pxd` types them for the compiled build (a field missing there fails only
    compiled, and only where it is used). They must be the same names."""
    for module in accel.COMPILED:
        classes = _py_classes(accel.source_file(module).read_text())
        pxd = accel.source_file(module, suffix=".pxd")
        declared = _pxd_classes(pxd.read_text()) if pxd.is_file() else {}
        # A .pxd without classes declares only typed functions and module variables (gate/accesslog.pxd).
        assert not pxd.is_file() or declared or "cpdef " in pxd.read_text(), pxd
        for name, fields in declared.items():
            assert name in classes, f"{pxd}: cdef class {name} has no Python class"
            slots, assigned = classes[name]
            assert slots is not None, f"{module}.{name} has no __slots__"
            assert fields == slots, (f"{module}.{name}: .pxd vs __slots__", sorted(fields ^ slots))
            assert assigned == slots, (f"{module}.{name}: __init__ vs __slots__", sorted(assigned ^ slots))
        for name, (slots, assigned) in classes.items():
            if slots is not None and assigned and name not in declared:  # slotted, untyped: two lists to keep equal
                assert assigned == slots, (f"{module}.{name}: __init__ vs __slots__", sorted(assigned ^ slots))


def test_every_pxd_belongs_to_a_compiled_module():
    """A `.pxd` beside a module the build does not compile would be silently ignored."""
    compiled = {accel.source_file(m, suffix=".pxd") for m in accel.COMPILED}
    for pxd in (ROOT / "gate").rglob("*.pxd"):
        assert pxd in compiled, f"{pxd.relative_to(ROOT)}: add its module to gate.accel.COMPILED"


def test_the_build_compiles_exactly_the_modules_listed_in_one_place():
    """setup.py builds `accel.COMPILED`, each into its package's `_c/` (the record names what it was built from)."""
    _built()
    record = json.loads((ROOT / accel.RECORD).read_text())
    assert sorted(record["modules"]) == sorted(accel.COMPILED)
    assert record["cython"] == re.search(r'"cython==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)


@pytest.mark.timeout(900)  # compiles one module (~30 s alone; minutes on a loaded machine)
def test_an_in_place_build_recompiles_what_its_record_says_changed_and_deletes_leftovers(tmp_path):
    """cythonize regenerates C by mtime: a source with new content and an older mtime (`cp -p`, `rsync -a`,
    `tar x`) must still be recompiled, as the record vouches for its content; and a compiled module no
    module of COMPILED builds any more is deleted. Rebuilds one module in a copy of this tree's build."""
    _built()
    if not (ROOT / "build" / "cython").is_dir():
        pytest.skip("no build/cython (the generated C) to copy")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "gate", tmp_path / "gate", ignore=ignore)  # (copy2: mtimes kept)
    # The generated C, and the build's own copy of the compiled files (setuptools compiles in place into
    # build/lib.* and copies from there): with them only what changed is compiled.
    for built in [ROOT / "build" / "cython", *(ROOT / "build").glob("lib.*")]:
        shutil.copytree(built, tmp_path / "build" / built.name, ignore=ignore)
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    router = tmp_path / "gate" / "router.py"
    old = router.stat().st_mtime - 3600
    router.write_text(router.read_text() + "\nBUILD_MARKER = 1\n")
    os.utime(router, (old, old))  # older than its generated C and its compiled file
    leftover = tmp_path / "gate" / "_c" / f"dropped{accel.SUFFIX}"
    shutil.copy2(accel.compiled_file("gate.h1"), leftover)

    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tmp_path,
        env=_ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert not leftover.exists()
    assert accel.check(tmp_path) is None
    code = "import gate.router as r; print(r.__file__, getattr(r, 'BUILD_MARKER', None))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**_ENV, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(accel.compiled_file("gate.router", tmp_path)), "1"]


def test_the_hot_paths_pause_reading_with_plain_ints_not_the_enum():
    """`Pause` documents the bits; the per-request code passes the `PAUSE_*` ints (an IntFlag's `|`, `&`, `~`
    run the enum module's Python code: pause+resume cost ~40x), so `paused` stays an int."""
    from gate import downstream

    for flag in downstream.Pause:
        value = getattr(downstream, f"PAUSE_{flag.name}")
        assert type(value) is int and value == flag
    for module in accel.COMPILED:
        tree = ast.parse(accel.source_file(module).read_text())
        uses = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "Pause"]
        uses += [
            n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names if a.name == "Pause"
        ]
        assert not uses, f"{module} uses the Pause enum on lines {uses}; use downstream.PAUSE_*"


def test_a_build_with_infracore_pure_is_a_pure_python_wheel(tmp_path):
    """INFRACORE_PURE=1 at build time compiles nothing: a `py3-none-any` wheel without `_c/` files."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(tmp_path), "."],
        cwd=ROOT,
        env={**_ENV, "INFRACORE_PURE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if "/_c/" in n]
