"""The exact `h2`/`hpack`/`hyperframe` releases the gate's HTTP/2 front end was written and measured against:
`gate._h2conn` overrides private methods of `h2` and uses `hpack`'s internals, so another release may
break it quietly. pyproject pins the same versions; `tests/gate/test_h2_pins.py` fails on any other."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata

import structlog

log = structlog.get_logger("gate.h2pins")

# Keep in step with the `==` pins in pyproject.toml (a test compares them). Before changing one, read
# RECHECK below.
PINNED: dict[str, str] = {"h2": "4.4.1", "hpack": "4.2.0", "hyperframe": "6.1.0"}

RECHECK = (
    "gate/_h2conn.py overrides h2's private H2Connection methods (_receive_frame, the stream/connection "
    "state machines and flow-control windows it moves itself, the HEADERS fast path in receive_data that "
    "reads the frame buffer's private fields, the closed-stream table it fills) and reimplements hpack's "
    "decoder/encoder with hpack's private tables: before bumping, diff h2's connection.py/stream.py/"
    "frame_buffer.py/utilities.py and hpack's hpack.py/table.py/huffman*.py between the two releases, run "
    "tests/gate/test_h2.py, test_h2conn.py and test_h2_fastpath.py (compiled and with INFRACORE_PURE=1) "
    "and `make bench-gate-tls`, then update PINNED in gate/h2pins.py and the pins in pyproject.toml "
    "together"
)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(version_of: Callable[[str], str | None] = _installed) -> list[tuple[str, str, str | None]]:
    """(package, pinned, found) for every pinned package whose installed version differs."""
    out = []
    for name, want in PINNED.items():
        found = version_of(name)
        if found != want:
            out.append((name, want, found))
    return out


def describe(bad: list[tuple[str, str, str | None]]) -> str:
    return "; ".join(
        f"{name} {found or 'not installed'} is installed but the gate was checked against {name} {want} only"
        for name, want, found in bad
    )


def warn_if_unpinned(version_of: Callable[[str], str | None] = _installed) -> bool:
    """Log one loud warning at gate start when an installed release differs from the pins; True if all match.
    Not a refusal: the front end may well still work, and a proxy that will not start is worse."""
    bad = mismatches(version_of)
    if bad:
        log.warning(
            "h2 stack version not the pinned one",
            problems=describe(bad),
            pinned=PINNED,
            found={n: f for n, _, f in bad},
            recheck=RECHECK,
        )
    return not bad
