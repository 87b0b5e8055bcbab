"""Gate: the host's edge on :80/:443 — an HTTP/1.1 and HTTP/2 reverse proxy with TLS (SNI, live
certificate swaps), the ACME HTTP-01 responder, routing, load balancing, per-route policies, the
access log and request metrics.

Module map (pure cores first, then the asyncio shell):

- `routes`   — `RouteSpec` (validated route model) and `Route`;
- `router`   — `RouteTable`: host (exact, `*.example.com`, `*`) + longest path prefix → route;
- `h1`       — HTTP/1.1 decisions: request checks (smuggling shapes), framing, head bytes;
- `balancer` — round-robin / least-connections, passive health (ejection with back-off);
- `policies` — redirect, HSTS, security headers, allow/deny, basic auth, token-bucket rate limit;
- `static`   — static file choice, validators, ranges; `metrics` — counters and latency windows;
- `state`    — `ProxyState`, shared by every listener: the route snapshot, pool, health, metrics;
- `proxy`    — `ClientConnection`, the HTTP/1.1 client protocol and *downstream* of an exchange;
- `exchange` — `Exchange`, one request through the gate, whatever the client protocol;
- `upstream` — `UpstreamConnection` and `UpstreamPool` (keep-alive per target);
- `accel`    — the optional compiled build of the per-request modules (Cython, same sources, built by
  setup.py; the list of compiled modules);
- `server`   — `EdgeServer`: listeners, deadline sweeper, drain; `service` — `GateService`, the
  component (routes in the state DB, atomic swaps, `route.changed`).

Every listener (plain HTTP, TLS with HTTP/1.1 or HTTP/2) shares one `ProxyState`, so routing, the
upstream pool, policies, metrics and the access log behave the same whatever the client speaks.
"""

from gate import accel

# Where this package's modules come from: its compiled build (`_c/`) first when that is used (see gate.accel).
__path__ = accel.search_path(__path__)

from gate.config import GateConfig
from gate.routes import Route, RoutePatch, RouteSpec
from gate.service import GateService, route_payload

__all__ = ["GateConfig", "GateService", "Route", "RoutePatch", "RouteSpec", "route_payload"]
