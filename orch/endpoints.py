"""Which endpoints a service offers the gate, and publishing them to the `EndpointBoard` only on change.

A service `web` with ports `http` and `admin` is published under `web` (its first port, what
`service:web` resolves to) and under `web:http`, `web:admin` (for `service:web:admin`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from core.ports import Endpoint, EndpointBoard


def endpoint_sets(
    name: str, port_names: list[str], healthy: Iterable[tuple[int, Mapping[str, int]]], host: str = "127.0.0.1"
) -> dict[str, tuple[Endpoint, ...]]:
    """Board key → endpoints, from the healthy instances as (index, {port name: port}). Pure."""
    sets: dict[str, list[Endpoint]] = {name: [], **{f"{name}:{p}": [] for p in port_names}}
    for index, ports in sorted(healthy, key=lambda x: x[0]):
        for i, p in enumerate(port_names):
            if p not in ports:
                continue
            ep = Endpoint(host, ports[p], f"{name}-{index}")
            if i == 0:
                sets[name].append(ep)
            sets[f"{name}:{p}"].append(ep)
    return {k: tuple(v) for k, v in sets.items()}


class EndpointPublisher:
    """Publishes a service's endpoint sets, skipping unchanged ones and clearing keys no longer offered."""

    def __init__(self, board: EndpointBoard) -> None:
        self.board = board
        self.published: dict[str, tuple[Endpoint, ...]] = {}

    def services(self) -> set[str]:
        return {k.split(":", 1)[0] for k in self.published}

    def publish(self, name: str, sets: Mapping[str, tuple[Endpoint, ...]]) -> None:
        wanted = dict(sets)
        for k in self.published:
            if (k == name or k.startswith(name + ":")) and k not in wanted:
                wanted[k] = ()
        for k, eps in wanted.items():
            if self.published.get(k, ()) == eps:
                continue
            self.board.publish(k, eps)
            if eps:
                self.published[k] = eps
            else:
                self.published.pop(k, None)
