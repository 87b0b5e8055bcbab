"""Wiring of CI client credentials (core/clients.py): the registry (its tables), its console routes, and
`kernel.services.clients`, which the console uses to authenticate client tokens."""

from __future__ import annotations

from console_api import routes_clients
from core.clients import ClientRegistry
from core.component import Component
from fsctl.kernel import Kernel


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    clients = ClientRegistry(
        kernel.store,
        kernel.bus,
        clock=kernel.clock,
        workers=kernel.pools.control,
        hash_rounds=s.password_hash_rounds,
        token_ttl_s=s.client_token_ttl_s,
    )
    kernel.services.clients = clients
    routes_clients.register(kernel.api, clients)
    return [clients]
