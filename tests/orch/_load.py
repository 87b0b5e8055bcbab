"""A steady HTTP load for deploy tests: `workers` keep-alive connections through the gate, paced to a total
rate, counting every answer (status + body) and every failure, in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Load:
    url: str
    host: str
    rate: float = 250.0
    workers: int = 16
    max_seconds: float = 120.0  # bounded, whatever the test does
    bodies: list[tuple[float, str]] = field(default_factory=list)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds) of every answer
    failures: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    started: float = 0.0
    ended: float = 0.0

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.ended = time.monotonic()

    @property
    def rps(self) -> float:
        return (self.ok + sum(self.failures.values())) / max(0.001, (self.ended or time.monotonic()) - self.started)

    def since(self, t: float) -> list[str]:
        return [b for at, b in self.bodies if at >= t]

    async def _main(self) -> None:
        conn = aiohttp.TCPConnector(limit=self.workers, force_close=False)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
            await asyncio.gather(*(self._worker(s, i) for i in range(self.workers)))

    async def _worker(self, s: aiohttp.ClientSession, i: int) -> None:
        interval = self.workers / self.rate
        next_at = time.monotonic() + i * interval / self.workers
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                async with s.get(self.url, headers={"Host": self.host}) as r:
                    text = await r.text()
                    self.latencies.append((t0, time.monotonic() - t0))
                    if r.status == 200:
                        self.ok += 1
                        self.bodies.append((time.monotonic(), text.strip()))
                    else:
                        self.failures[f"{r.status} {text.strip()[:60]}"] += 1
            except (TimeoutError, aiohttp.ClientError) as e:
                self.failures[type(e).__name__] += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.5:  # catch up a short lag, not a long one (no burst after a stall)
                next_at = time.monotonic()
