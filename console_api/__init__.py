"""The console API: an aiohttp adapter (REST under `/api`, SSE, auth, audit, OpenAPI) over the public
service objects of the components. It holds no business rules of its own.

Primitives: `Api` (the route registry every route module registers into, and the source of the
OpenAPI document), `ApiRequest` (what a handler sees), `ConsoleServer` (the component that serves it
on 127.0.0.1 and on a 0600 Unix socket).

The import rule: console_api reaches a component only through its public face, the package itself
(`from gate import GateService, RouteSpec`: the names in the component's `__init__` `__all__`), never its
modules (`gate.service`, `logbus.search`); route modules type the service they are given with the
component's class (imported under TYPE_CHECKING when only annotations need it). A name a route needs
is added to the component's `__all__`. tests/console_api/test_import_rule.py enforces this.
"""

from console_api.api import Api, ApiRequest
from console_api.server import ConsoleServer

__all__ = ["Api", "ApiRequest", "ConsoleServer"]
