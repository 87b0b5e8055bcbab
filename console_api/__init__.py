"""The console API: an aiohttp adapter (REST under `/api`, SSE, auth, audit, OpenAPI) over the public
service objects of the components. It holds no business rules of its own.

Primitives: `Api` (the route registry every route module registers into, and the source of the
OpenAPI document), `ApiRequest` (what a handler sees), `ConsoleServer` (the component that serves it
on 127.0.0.1 and on a 0600 Unix socket).
"""

from console_api.api import Api, ApiRequest
from console_api.server import ConsoleServer

__all__ = ["Api", "ApiRequest", "ConsoleServer"]
