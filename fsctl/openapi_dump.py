"""`python -m fsctl.openapi_dump [OUT]`: write the console API's OpenAPI document without starting a
server — every route `fsctl serve` registers, from the same wiring (components are built, not started),
in a throwaway data dir. The UI's build generates its typed client from this file."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from console_api import Api, routes_core, session
from console_api.api import openapi_document
from core.audit import AuditLog
from core.bus import EventBus
from core.identity import Identity
from core.settings import Settings
from core.store import Store
from core.tasks import TaskSet
from fsctl import __version__


async def full_api(data_dir: Path) -> Api:
    from fsctl.serve import Kernel, Pools, _wire

    settings = Settings(data_dir=data_dir)
    store = Store(settings.state_db)  # never opened: building components does no I/O on it
    bus = EventBus(store)
    identity = Identity(store, bus)
    audit = AuditLog(store)
    api = Api()
    routes_core.register(api, routes_core.CoreContext(identity, audit, bus, __version__))
    session.register(api, identity)
    _wire(Kernel(settings, store, bus, identity, audit, api, TaskSet("openapi-dump"), Pools()))
    return api


def document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="infracore-openapi-") as tmp:
        api = asyncio.run(full_api(Path(tmp)))
    return openapi_document(api, version=__version__)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = json.dumps(document(), indent=1, sort_keys=True) + "\n"
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
