"""The ARI pass of certd's scheduler: ask the CA for one certificate's renewal window (RFC 9773) and
note the answer in its record. The arithmetic is in `certd.schedule`, the fetch in `AcmeIssuer`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from certd.acme_client import AriAnswer, AriFailure
from certd.records import CertRecord, CertRecords
from certd.schedule import Policy, ari_check_delay, ari_pick
from core.clock import Clock

log = structlog.get_logger("certd")

Fetch = Callable[[str], Awaitable[AriAnswer | None]]  # ARI id → the CA's answer (None: no ARI offered)


async def check_renewal_info(
    rec: CertRecord, *, fetch: Fetch, records: CertRecords, clock: Clock, policy: Policy
) -> CertRecord:
    """Ask the CA for `rec`'s renewal window (RFC 9773) and note the answer: the time picked in it,
    when to ask again. A failure only sets the error and the next check (the last window stays)."""
    changes: dict[str, Any]
    try:
        answer = await fetch(rec.ari_id)
    except Exception as e:  # any failure (a cut connection surfaces as urllib3's own errors): noted, the
        # next check pushed back, so one certificate's CA answer can never stall the whole pass
        message = e.message if isinstance(e, AriFailure) else f"renewal information unreadable: {e!r}"[:500]
        delay = ari_check_delay(e.retry_after_s if isinstance(e, AriFailure) else None, policy)
        changes = {"ari_error": message, "ari_next_check_at": clock.now() + delay}
        log.warning("renewal information unavailable", name=rec.name, error=message, retry_in_s=round(delay))
    else:
        now = clock.now()
        if answer is None:  # the CA does not offer ARI (now): the share of the lifetime decides
            changes = {
                "ari_window_start": None,
                "ari_window_end": None,
                "ari_renew_at": None,
                "ari_error": None,
                "ari_next_check_at": now + policy.ari_default_check_s,
            }
        else:
            window = (answer.window.start, answer.window.end)
            previous = (
                None
                if rec.ari_window_start is None or rec.ari_window_end is None
                else (rec.ari_window_start, rec.ari_window_end)
            )
            at = ari_pick(window, previous, rec.ari_renew_at, random.random())
            delay = ari_check_delay(answer.retry_after_s, policy)
            changes = {
                "ari_window_start": window[0],
                "ari_window_end": window[1],
                "ari_renew_at": at,
                "ari_next_check_at": now + delay,
                "ari_error": None,
            }
            if window != previous:
                log.info(
                    "renewal window from the CA",
                    name=rec.name,
                    start=window[0],
                    end=window[1],
                    renew_at=round(at),
                    explanation=answer.window.explanation_url,
                    next_check_in_s=round(delay),
                )
    current = await records.get(rec.name)
    if current is None or current.serial != rec.serial:
        return current or rec  # an order replaced the certificate meanwhile: this answer is about the old one
    await records.update(rec.name, **changes)
    return current.with_(**changes)
