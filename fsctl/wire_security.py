"""Wiring of secscan: its service from the `security:` section, the store (its last findings), the bus
(`security.finding`), and the platform's facts read from identity and the other components' public
objects (gate routes, the certificate board, orch's instances) — wired last, so they all exist —
and its console routes."""

from __future__ import annotations

from console_api import routes_security
from core.component import Component
from core.platform_facts import CertFact, InstanceFact, PlatformFacts, RouteFact, TokenFact, UserFact
from fsctl.kernel import Kernel
from secscan import SecscanService, load_security_config


class KernelFacts:
    """A `PlatformFactsSource` over the running kernel; each part is read only if its component is wired."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def platform_facts(self) -> PlatformFacts:
        k = self.kernel
        s = k.settings
        host, port = s.console_addr
        missing: list[str] = []
        users = tuple(
            UserFact(u["username"], u["role"], bool(u["totp"]), bool(u["disabled"]))
            for u in await k.identity.list_users()
        )
        tokens = tuple(
            TokenFact(t["id"], t["name"], t["role"], t["owner"], t["created_at"], t["expires_at"])
            for t in await k.identity.list_tokens()
            if t["state"] == "active"
        )
        routes: tuple[RouteFact, ...] = ()
        gate = k.services.gate
        if gate is not None:
            routes = tuple(
                RouteFact(r.id, r.name, r.spec.tls, r.spec.policies.redirect_https, r.spec.static_dir)
                for r in gate.routes()
            )
        else:
            missing.append("gate")
        seen: set[str] = set()
        certs = []
        for ref in k.certificates.all().values():
            if ref.cert_path not in seen:
                seen.add(ref.cert_path)
                certs.append(CertFact(ref.names, ref.not_after, ref.source, ref.cert_path))
        instances: tuple[InstanceFact, ...] = ()
        inventory = k.services.inventory
        if inventory is not None:
            instances = tuple(InstanceFact(i.service, i.instance, i.pid) for i in inventory.instances())
        else:
            missing.append("orch")
        return PlatformFacts(
            data_dir=s.data_dir,
            console_host=host,
            console_port=port,
            edge_ports=(s.http_port, s.https_port),
            users=users,
            tokens=tokens,
            routes=routes,
            certs=tuple(certs),
            instances=instances,
            missing=tuple(missing),
        )


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    service = SecscanService(
        load_security_config(s.security),
        store=kernel.store,
        bus=kernel.bus,
        facts=KernelFacts(kernel),
        clock=kernel.clock,
    )
    kernel.services.secscan = service
    routes_security.register(kernel.api, service)
    return [service]
