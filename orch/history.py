"""Release history as the API shows it: the list with what each release changed, and the diff of two.
The diffs are CPU work over documents with up to 1 MiB config files: they run through `run` (orch's parse
pool, off the loop)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import NotFound
from orch.deployrepo import DeployRepo
from orch.release import diff as release_diff
from orch.release import summaries

Run = Callable[..., Awaitable[Any]]  # run(fn, a, b) -> fn(a, b), in a worker


async def releases(repo: DeployRepo, name: str, current: int | None, run: Run) -> list[dict[str, Any]]:
    rows = await repo.releases(name)
    if not rows and current is None:
        raise NotFound(f"no service named {name!r}", hint="see `fsctl service ls`")
    changes = await run(summaries, [r["doc"] for r in rows], None)
    return [
        {
            "release": r["release"],
            "version": r["label"],
            "created_at": r["created_at"],
            "created_by": r["created_by"],
            "current": r["release"] == current,
            "changes": changed,
            "artifact": r["doc"].get("artifact"),
            "image": r["doc"].get("image"),
        }
        for r, changed in zip(rows, changes, strict=True)
    ]


async def diff(
    repo: DeployRepo, name: str, current: int | None, from_: int | None, to: int | None, run: Run
) -> dict[str, Any]:
    rows = {r["release"]: r["doc"] for r in await repo.releases(name)}
    if not rows:
        raise NotFound(f"service {name!r} has no releases", hint="see `fsctl service ls`")
    to = to if to is not None else (current if current in rows else max(rows))
    if from_ is None:
        from_ = max((n for n in rows if n < to), default=None)
    for n in (from_, to):
        if n is not None and n not in rows:
            raise NotFound(f"service {name} has no release {n}", hint=f"see fsctl service releases {name}")
    changes = await run(release_diff, rows[from_] if from_ is not None else None, rows[to])
    return {"service": name, "from": from_, "to": to, "changes": changes, "release": rows[to]}
