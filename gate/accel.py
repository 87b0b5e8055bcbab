"""The gate's optional compiled hot path: the modules in `COMPILED`, compiled with Cython from the very
same `.py` sources by the package's build (setup.py), and chosen over those sources in one place.

Theory of operation: `pip install .` (and `pip install -e .`, which `make install` runs; `make accel`
rebuilds in place) compiles each module `a.b.m` of `COMPILED` into `a/b/_c/m.<ext suffix>`, a
directory of compiled modules beside the package's sources, and records in `gate/_c/built.json` the
SHA-256 of what each was built from. Some modules have an augmenting `.pxd` beside them: it declares
their per-request classes as typed extension classes (fields as struct members, a few methods
`cpdef`), which Cython applies to the `.py` — the source stays plain Python and behaves the same
either way. A package holding compiled modules chooses where its modules come from with one line,
`__path__ = accel.search_path(__path__)` (see `gate/__init__.py`): its `_c/` directory goes first when
the compiled build is used, so `import gate.exchange` finds the compiled module there and otherwise
the `.py` as usual. No import hook, no finder: the package's own search path, decided once.

The compiled build is used as a whole or not at all (the modules import each other's typed classes):
not with `INFRACORE_PURE=1` (for profiling with py-spy, which cannot see inside compiled modules, or to
compare), not when it was never built (no compiler: pure Python, silently — that is a supported
install), and not when any source differs from what was compiled (an edited module in a dev tree: a
warning says so, and the gate runs as Python until `make accel`) or a `_c/` holds a compiled module no
module of `COMPILED` is built into (one dropped or renamed: it would shadow its source; the build
deletes it). With `INFRACORE_REQUIRE_ACCEL=1` (CI) a missing or stale build is an ImportError instead,
unless INFRACORE_PURE=1 asks for Python.

To compile one more module, add its dotted name to `COMPILED` (and, for a module in a subpackage, the
`__path__` line to that subpackage's `__init__.py`). This file must import nothing but the standard
library: setup.py loads it before anything is installed.

Measured (docs/benchmarks/gate.md): the gate's Python work per proxied HTTP/1.1 request is about half
of pure Python's (`bench_gate.py --micro` 14.8 → 7.7 µs). No behaviour differs: `make test` runs the
gate's tests against the compiled modules and again as pure Python.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import re
import sys
import warnings
from pathlib import Path

# The modules every proxied request runs through (HTTP/1.1, and HTTP/2 with its front end). One line per module.
COMPILED = (
    "gate.h1",
    "gate.h1heads",
    "gate.exchange",
    "gate.proxy",
    "gate.upstream",
    "gate.metrics",
    "gate.balancer",
    "gate.router",
    "gate.admission",
    "gate.pipeline",
    "gate.state",
    "gate.h2front",
    "gate._h2stream",
    "gate._h2rules",
    "gate._h2conn",
    "gate.accesslog",
)
ROOT = Path(__file__).resolve().parent.parent  # the directory holding the `gate` package
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
RECORD = "gate/_c/built.json"  # what each compiled module was built from (relative to ROOT)


def _is_set(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def ext_name(module: str) -> str:
    """The name the build gives a compiled module's file: `a.b.m` → `a.b._c.m` (its path in the package)."""
    package, _, leaf = module.rpartition(".")
    return f"{package}._c.{leaf}"


def compiled_file(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*ext_name(module).split(".")[:-1], module.rpartition(".")[2] + SUFFIX)


def source_file(module: str, root: Path = ROOT, suffix: str = ".py") -> Path:
    return root.joinpath(*module.split(".")).with_suffix(suffix)


def cimports(pxd_text: str) -> list[str]:
    """The project modules a `.pxd` cimports (`from gate.x.y cimport ...`, `cimport gate.x`)."""
    found = re.findall(
        r"^\s*(?:from\s+(gate(?:\.\w+)+)\s+cimport\b|cimport\s+(gate(?:\.\w+)+))", pxd_text, re.MULTILINE
    )
    return [a or b for a, b in found]


def source_digest(module: str, root: Path = ROOT, _memo: dict[str, str] | None = None) -> str:
    """The hash of what a module is compiled from: its `.py`, its `.pxd` (typed fields) when it has one, and
    the digests of the modules that `.pxd` cimports — a module compiled against another's typed class is
    stale when that one is."""
    memo = {} if _memo is None else _memo
    if module not in memo:
        h = hashlib.sha256(source_file(module, root).read_bytes())
        pxd = source_file(module, root, ".pxd")
        if pxd.is_file():
            text = pxd.read_bytes()
            h.update(b"\0pxd\0" + text)
            for dep in cimports(text.decode()):
                h.update(b"\0" + dep.encode() + b"\0" + source_digest(dep, root, memo).encode())
        memo[module] = h.hexdigest()
    return memo[module]


def digests(root: Path = ROOT) -> dict[str, str]:
    memo: dict[str, str] = {}
    return {m: source_digest(m, root, memo) for m in COMPILED}


def extras(root: Path = ROOT) -> list[Path]:
    """Importable files in a `_c/` directory that no module of `COMPILED` was built into: a module dropped
    from the list, renamed or deleted, or a checkout with a shorter list leaves its binary there, and `_c/`
    goes first on the package's path, so it would be imported in place of the source (`make accel` and
    every in-place build delete them)."""
    expected = {compiled_file(m, root) for m in COMPILED}
    suffixes = tuple(
        importlib.machinery.EXTENSION_SUFFIXES
        + importlib.machinery.SOURCE_SUFFIXES
        + importlib.machinery.BYTECODE_SUFFIXES
    )
    found: list[Path] = []
    for directory in sorted({f.parent for f in expected}):
        if directory.is_dir():
            found += [f for f in directory.iterdir() if f.name.endswith(suffixes) and f not in expected]
    return sorted(found)


def check(root: Path = ROOT) -> str | None:
    """None when the compiled build matches the sources (every module built, from these sources), else why not.
    Reasons starting with "not built" mean no build at all (a pure install); the others, a stale one."""
    try:
        built = json.loads((root / RECORD).read_text()).get("modules", {})
    except FileNotFoundError:
        return "not built (no compiler or Cython at install time, or INFRACORE_PURE=1 then)"
    except (OSError, ValueError, AttributeError) as e:
        return f"{RECORD} unreadable ({e}); `make accel` rebuilds it"
    try:
        now = digests(root)
    except OSError as e:
        return f"a compiled module's source is missing ({e})"
    changed = [m for m in COMPILED if built.get(m) != now[m]]
    if changed:
        files = ", ".join(f"{m.replace('.', '/')}.py" for m in changed)
        return f"{files} changed since the compiled build (or are new in COMPILED); `make accel` rebuilds"
    if left := extras(root):
        files = ", ".join(str(f.relative_to(root)) for f in left)
        return f"{files} not built from any module in COMPILED (left over); `make accel` deletes them"
    missing = [m for m in COMPILED if not compiled_file(m, root).is_file()]
    if missing:
        return f"compiled files missing for {', '.join(missing)}; `make accel` rebuilds"
    return None


_verdict: str | bool | None = False  # False: not decided yet (decided once per process, for every package)


def use_compiled() -> bool:
    """Whether this process uses the compiled build (decided once). Warns when a stale build is ignored;
    raises ImportError for a missing or stale one when INFRACORE_REQUIRE_ACCEL is set (and PURE is not)."""
    global _verdict
    if _verdict is False:
        _verdict = "INFRACORE_PURE is set" if _is_set("INFRACORE_PURE") else check()
        if _verdict is not None and not _is_set("INFRACORE_PURE"):
            if _is_set("INFRACORE_REQUIRE_ACCEL"):
                raise ImportError(
                    f"the gate's compiled build is not usable: {_verdict} "
                    "(INFRACORE_REQUIRE_ACCEL is set; INFRACORE_PURE=1 runs it as Python)"
                )
            if not _verdict.startswith("not built"):
                warnings.warn(f"the gate runs as pure Python: {_verdict}", RuntimeWarning, stacklevel=3)
    return _verdict is None


def search_path(path: list[str]) -> list[str]:
    """A package's `__path__` with its compiled modules' directory (`_c/`) first when the build is used."""
    if not use_compiled():
        return list(path)
    return [str(Path(p) / "_c") for p in path] + list(path)


def reason() -> str | None:
    """Why the compiled build is not used in this process (None: it is)."""
    use_compiled()
    return _verdict if isinstance(_verdict, str) else None


def active() -> list[str]:
    """The modules currently loaded from a compiled build."""
    return sorted(name for name in COMPILED if (getattr(sys.modules.get(name), "__file__", "") or "").endswith(SUFFIX))
