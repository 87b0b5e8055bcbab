"""Build the gate's compiled hot path (see `gate.accel`): `python -m gate.accel_build [--force] [--optional]`.
Compiles, with Cython, only the modules whose source changed since the last build."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gate.accel import HERE, MANIFEST, MODULES, OUT, SUFFIX, source_digest


def build(*, force: bool = False, jobs: int = 2) -> int:
    """Compile the modules whose sources changed since the last build; returns how many were built.
    Raises ImportError when Cython or a C compiler is missing (the caller decides whether that matters)."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    try:
        built = json.loads(MANIFEST.read_text()).get("modules", {}) if not force else {}
    except (OSError, ValueError):
        built = {}
    todo = [m for m in MODULES
            if built.get(m) != source_digest(m) or not (OUT / f"{m}{SUFFIX}").is_file()]
    if not todo:
        return 0
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gate-accel-") as tmp:
        digests = {m: source_digest(m) for m in todo}  # hashed before compiling: an edit meanwhile shows as stale
        exts = cythonize([Extension(f"gate.{m}", [str(HERE / f"{m}.py")]) for m in todo], build_dir=tmp,
                         language_level=3, quiet=True, nthreads=jobs, include_path=[str(HERE.parent)],
                         # Annotations stay hints (no C typing from them): the compiled module behaves like the source.
                         compiler_directives={"binding": False, "annotation_typing": False})
        dist = Distribution({"ext_modules": exts, "script_args": ["build_ext", "--build-lib", f"{tmp}/lib",
                                                                    "--build-temp", f"{tmp}/tmp", "-j", str(jobs)]})
        dist.parse_command_line()
        dist.run_commands()
        for m in todo:
            # A new file renamed into place: a process that loaded the old one keeps its (unchanged) mapping.
            staged = OUT / f".{m}{SUFFIX}.new"
            shutil.copyfile(Path(tmp, "lib", "gate", f"{m}{SUFFIX}"), staged)
            os.replace(staged, OUT / f"{m}{SUFFIX}")
            built[m] = digests[m]
    MANIFEST.write_text(json.dumps({"cython": _cython_version(), "modules": built}, indent=1, sort_keys=True))
    return len(todo)


def _cython_version() -> str:
    import Cython

    return str(Cython.__version__)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gate.accel_build", description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild every module")
    ap.add_argument("--optional", action="store_true",
                    help="exit 0 (with a note) when Cython or a C compiler is missing: the gate then runs pure Python")
    args = ap.parse_args(argv)
    try:
        n = build(force=args.force)
    except (Exception, SystemExit) as e:  # ImportError (no Cython), CompileError/LinkError (no compiler), ...
        print(f"gate accelerator not built ({type(e).__name__}: {e}); the gate runs as pure Python",
              file=sys.stderr)
        return 0 if args.optional else 1
    print(f"gate accelerator: {n} module(s) compiled, {len(MODULES) - n} up to date ({OUT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
