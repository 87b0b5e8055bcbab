"""Webhook delivery of alert transitions: JSON POSTs with retries and exponential back-off.

A delivery is retried on a connection error, a timeout, a 5xx or a 429, up to `attempts` times, waiting
`backoff_s`, then twice that, and so on; any other 4xx is final (the receiver refuses it, retrying
will not help). Deliveries run as tasks of the sender; `close` waits for them (bounded), then cancels.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import structlog

from core.logging import safe_url
from core.tasks import TaskSet

log = structlog.get_logger("probe.webhook")

MAX_PENDING = 256


class WebhookSender:
    def __init__(self, *, timeout_s: float = 5.0, attempts: int = 5, backoff_s: float = 1.0) -> None:
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._tasks = TaskSet("probe-webhook")
        self._session: aiohttp.ClientSession | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.failed = 0

    def send(self, url: str, payload: dict[str, Any]) -> bool:
        """Queue one delivery; returns False (and logs) when too many are pending already. Never blocks."""
        if len(self._tasks) >= MAX_PENDING:
            log.warning("webhook backlog full; dropping delivery", url=safe_url(url), pending=len(self._tasks))
            self.failed += 1
            return False
        task = self._tasks.spawn("deliver", self._deliver(url, payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _deliver(self, url: str, payload: dict[str, Any]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "infracore-probe"}
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status < 300:
                        self.delivered += 1
                        log.info("webhook delivered", url=safe_url(url), status=resp.status, attempt=attempt)
                        return True
                    if resp.status < 500 and resp.status != 429:
                        self.failed += 1
                        log.warning("webhook refused", url=safe_url(url), status=resp.status, attempt=attempt)
                        return False
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                error = repr(e).replace(url, safe_url(url))  # some errors quote the whole URL
            if attempt < self.attempts:
                log.info(
                    "webhook delivery failed; retrying",
                    url=safe_url(url),
                    error=error,
                    attempt=attempt,
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning("webhook delivery gave up", url=safe_url(url), error=error, attempts=self.attempts)
        return False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def close(self, timeout_s: float) -> None:
        """Let pending deliveries finish within `timeout_s`, cancel the rest, close the session."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
        await self._tasks.close(1.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
