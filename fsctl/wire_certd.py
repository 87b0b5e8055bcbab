"""Wiring of certd: its service from the settings (`acme_*` and the `certd:` section), the state store,
the bus, the challenge store the gate's responder reads, the certificate board the gate's SNI
selection reads (and declares its wanted names on), and its console routes. The service is also the
`certd_metrics` MetricsSource probe reads (`cert_expiry_seconds{name}`)."""

from __future__ import annotations

from certd import CertdService, load_config
from console_api import routes_certd
from core.component import Component
from fsctl.kernel import Kernel


def wire(kernel: Kernel) -> list[Component]:
    s = kernel.settings
    config = load_config(s.certd)
    service = CertdService(
        data_dir=s.data_dir,
        directory_url=config.directory_url(s.acme_directory),
        config=config,
        store=kernel.store,
        bus=kernel.bus,
        challenges=kernel.challenges,
        board=kernel.certificates,
        ca_bundle=s.acme_ca_bundle,
        email=s.acme_email,
        clock=kernel.clock,
    )
    kernel.services.certd = service
    kernel.services.certd_metrics = service  # a core.ports.MetricsSource: probe's store, /metrics, alerts
    routes_certd.register(kernel.api, service)
    return [service]
