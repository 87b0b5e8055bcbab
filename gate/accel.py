"""The gate's optional compiled hot path: its per-request modules compiled with Cython from the very
same `.py` sources, loaded instead of them when the build matches the sources; the pure-Python
modules stay the fallback and the reference.

Theory of operation: `python -m gate.accel_build` (run by `make install` and `make test`) compiles
each module in `MODULES` into `gate/_accel/` and records the SHA-256 of what it was built from in
`gate/_accel/manifest.json`. Some modules have an augmenting `.pxd` beside them: it declares their
per-request classes as typed extension classes (fields as struct members, a few methods `cpdef`),
which the compiler applies to the `.py` — the source stays plain Python and behaves the same either
way. A `.pxd` may cimport another module's classes; the compiled module then depends on that one's
layout, so its digest covers that module too, and it is used only together with it.
`install()`, called first thing by `gate/__init__.py`, puts a finder in front of the import system
that answers for exactly the modules whose sources still hash to the recorded values — a module
edited since the last build is imported from its `.py` as usual (and so are those compiled against
it), so a stale build is never used. `INFRACORE_PURE=1` turns the compiled modules off (for
profiling with py-spy, which cannot see inside them, or to compare).

Measured (docs/benchmarks/gate.md): the gate's Python work per proxied HTTP/1.1 request is about half
of pure Python's (`bench_gate.py --micro` 14.8 → 7.7 µs). No behaviour differs: `make test` runs
the gate's tests against the compiled modules and again as pure Python.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
OUT = HERE / "_accel"
MANIFEST = OUT / "manifest.json"
# The modules every proxied request runs through (HTTP/1.1, and HTTP/2 with its front end).
MODULES = ("h1", "exchange", "proxy", "upstream", "metrics", "balancer", "router", "state", "h2front", "_h2stream",
           "_h2rules", "_h2conn", "accesslog")
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def source_digest(module: str, here: Path = HERE) -> str:
    """The hash of what a module is compiled from: its `.py`, its `.pxd` (typed fields) when it has one, and
    the digests of the modules that `.pxd` cimports — a module compiled against another's typed class is
    stale when that one is (and runs as Python with it)."""
    h = hashlib.sha256((here / f"{module}.py").read_bytes())
    pxd = here / f"{module}.pxd"
    if pxd.is_file():
        text = pxd.read_bytes()
        h.update(b"\0pxd\0" + text)
        for dep in cimports(text.decode()):
            h.update(b"\0" + dep.encode() + b"\0" + source_digest(dep, here).encode())
    return h.hexdigest()


def cimports(pxd_text: str) -> list[str]:
    """The gate modules a `.pxd` cimports (`from gate.X cimport ...`)."""
    return re.findall(r"^from gate\.(\w+) cimport ", pxd_text, re.MULTILINE)


def fresh_modules(here: Path = HERE) -> dict[str, Path]:
    """`gate.<module>` → its compiled file, for the modules whose build matches their source now."""
    out = here / "_accel"
    try:
        built = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, Path] = {}
    for module, digest in built.get("modules", {}).items():
        so = out / f"{module}{SUFFIX}"
        if module in MODULES and so.is_file() and digest == source_digest(module, here):
            found[f"gate.{module}"] = so
    # A module compiled against another's typed class needs that one compiled too (its layout is imported).
    needs = {name: [f"gate.{d}" for d in cimports(pxd.read_text())] for name in found
             if (pxd := here / f"{name[5:]}.pxd").is_file()}
    while unmet := [name for name, deps in needs.items() if name in found and any(d not in found for d in deps)]:
        for name in unmet:
            del found[name]
    return found


class _CompiledFinder(MetaPathFinder):
    def __init__(self, modules: dict[str, Path]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None) -> ModuleSpec | None:
        so = self.modules.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(so))
        return importlib.util.spec_from_file_location(fullname, so, loader=loader)


def install() -> list[str]:
    """Use the compiled modules that match their sources (none with INFRACORE_PURE=1); returns their names."""
    if os.environ.get("INFRACORE_PURE") or any(isinstance(f, _CompiledFinder) for f in sys.meta_path):
        return []
    modules = fresh_modules()
    if modules:
        sys.meta_path.insert(0, _CompiledFinder(modules))
    return sorted(modules)


def active() -> list[str]:
    """The gate modules currently loaded from a compiled build."""
    return sorted(name for name, mod in sys.modules.items()
                  if name.startswith("gate.") and (getattr(mod, "__file__", "") or "").endswith(SUFFIX))
