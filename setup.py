"""The package build's one addition to pyproject.toml: the gate's hot modules compiled with Cython from their
`.py` sources (the list and the layout are in gate/accel.py). Where Cython or a C compiler is missing the
build warns and installs pure Python; with INFRACORE_REQUIRE_ACCEL=1 (CI) it fails instead.
`python setup.py build_ext --inplace` (`make accel`) rebuilds a dev tree, recompiling only what changed.
INFRACORE_PURE=1 builds nothing: a pure-Python (py3-none-any) wheel."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent


def _accel():  # gate/accel.py by path: importing the `gate` package needs its dependencies, absent at build time
    spec = importlib.util.spec_from_file_location("_infracore_accel", HERE / "gate" / "accel.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


accel = _accel()
JOBS = int(os.environ.get("INFRACORE_BUILD_JOBS", "2"))
REQUIRED = os.environ.get("INFRACORE_REQUIRE_ACCEL", "") not in ("", "0")
PURE = os.environ.get("INFRACORE_PURE", "") not in ("", "0")
CYTHON_BUILD = os.path.join("build", "cython")


def _previous(record: Path) -> dict[str, str]:
    """The digests the last build recorded (empty when there is none, or it is unreadable)."""
    try:
        data = json.loads(record.read_text())
        return dict(data["modules"]) if data.get("cython") == _cython_version() else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        return {}


def _force_stale(previous: dict[str, str], digests: dict[str, str]) -> list[str]:
    """Delete the generated C of every module whose sources differ from what the last build recorded (all of
    them without a record): cythonize regenerates by mtime, and a source copied with its old mtime (`cp -p`,
    `rsync -a`, `tar x`) would otherwise reuse C generated from other content while the record vouches for
    the new. The regenerated C is newer than the compiled file, so that is recompiled too."""
    stale = [m for m in accel.COMPILED if previous.get(m) != digests[m]]
    for m in stale:
        generated = Path(CYTHON_BUILD, accel.source_file(m, HERE).relative_to(HERE)).with_suffix(".c")
        generated.unlink(missing_ok=True)
    return stale


class BuildGate(build_ext):
    """Cythonizes the gate's modules at build time, writes the record of what was compiled, and turns a
    failure into a warning (a pure-Python install) unless INFRACORE_REQUIRE_ACCEL is set."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:  # compile the modules side by side (`-j`; INFRACORE_BUILD_JOBS, default 2)
            self.parallel = JOBS

    def run(self) -> None:
        if not self.extensions:  # INFRACORE_PURE=1: nothing compiled, and the record (if any) left as it is
            return
        record = Path(self.get_ext_fullpath(accel.ext_name("gate._record"))).parent / "built.json"
        if self.inplace:  # (`pip install -e .` too: editable_mode sets it)
            record = HERE / accel.RECORD
        root = HERE if self.inplace else Path(self.build_lib)
        previous = _previous(record)
        # A failed or partial build must not vouch for what is left there (the gate then runs as Python).
        record.unlink(missing_ok=True)
        # Compiled modules no module of COMPILED builds any more would be imported before the sources.
        for leftover in accel.extras(root):
            leftover.unlink()
        digests = accel.digests(HERE)  # hashed before compiling: an edit meanwhile shows as stale
        try:
            from Cython.Build import cythonize

            _force_stale(previous, digests)

            generated = cythonize(
                [Extension(m, [str(accel.source_file(m, HERE).relative_to(HERE))]) for m in accel.COMPILED],
                build_dir=CYTHON_BUILD,
                language_level=3,
                quiet=True,
                force=self.force,
                nthreads=JOBS,
                include_path=[str(HERE)],
                # Annotations stay hints (no C typing from them): the compiled module behaves like the source.
                compiler_directives={"binding": False, "annotation_typing": False},
            )
            sources = {ext.name: ext.sources for ext in generated}
            for ext in self.extensions:
                ext.sources = sources[ext.name.replace("._c.", ".")]
                if self.inplace:  # (copied into the source tree after the build: the `_c/` must exist)
                    HERE.joinpath(*ext.name.split(".")[:-1]).mkdir(parents=True, exist_ok=True)
            super().run()
        except Exception as e:  # no Cython, no compiler, no Python.h, a Cython error, ...
            if REQUIRED:
                raise
            self.warn(
                f"the gate's compiled modules were not built ({type(e).__name__}: {e}); "
                "it runs as pure Python (INFRACORE_REQUIRE_ACCEL=1 makes this an error)"
            )
            return
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"cython": _cython_version(), "modules": digests}, indent=1, sort_keys=True))


def _cython_version() -> str:
    import Cython

    return str(Cython.__version__)


# Sources replaced by the generated C in BuildGate.run; named by where the file lands (`gate/_c/h1.so`).
setup(
    ext_modules=[]
    if PURE
    else [Extension(accel.ext_name(m), [str(accel.source_file(m, HERE).relative_to(HERE))]) for m in accel.COMPILED],
    cmdclass={"build_ext": BuildGate},
)
