"""Shadow instances: a copy of a plan's service started from restored data on its own port. The rewrite
of data paths in a service spec is pure and lives here; starting the copy goes through the
`core.ports.ServiceLauncher` port (orch, wired by fsctl)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def rewrite_paths(obj: Any, path_map: Mapping[str, str]) -> Any:
    """`obj` (a spec as JSON data) with every occurrence of a `path_map` key that is a whole path or a
    path prefix (followed by `/`, end of string, or a non-path character such as `=` or `:`) replaced
    by its value; a key inside a longer path (/x/srv/data/app) is left alone. Longer keys win, and
    /srv/data/app-logs is not rewritten by /srv/data/app."""
    if not path_map:
        return obj
    keys = sorted(path_map, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w.\-])(" + "|".join(re.escape(k.rstrip("/")) for k in keys) + r")(?=/|$|[^\w.\-])")

    def sub(s: str) -> str:
        return pattern.sub(lambda m: path_map.get(m.group(1), path_map.get(m.group(1) + "/", m.group(1))), s)

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            return sub(o)
        if isinstance(o, list):
            return [walk(x) for x in o]
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        return o

    return walk(obj)


def shadow_name(service: str) -> str:
    """The copy's service name: `<service>-shadow`, cut to orch's 63-character limit."""
    return f"{service[:56]}-shadow"
