"""Basic auth off the loop for an `Exchange`: a password not seen before is checked by bcrypt in the
worker pool while the exchange waits (its connection keeps reading under back-pressure), then the
exchange's `admit()` runs again. Exchange code split out like `gate._static_io`; not compiled (bcrypt
dominates)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

import structlog

from core.errors import Unavailable
from gate.admission import too_many
from gate.policies import Credentials, verify_password

if TYPE_CHECKING:
    from gate.exchange import Exchange

log = structlog.get_logger("gate.exchange")


def verify(ex: Exchange, cred: Credentials) -> None:
    """Check a password in the worker pool; the exchange waits (its connection keeps reading and
    buffering the body under back-pressure, other connections are unaffected) and `verified` resumes."""
    st = ex.state
    wait = st.auth_failures.attempt(ex.client.client_ip, st.clock())
    if wait > 0:
        ex.answer(too_many(wait, "too many wrong passwords from your address; wait before trying again"))
        return
    try:
        fut = st.workers.submit(verify_password, cred.password, cred.stored)
    except Unavailable:  # PoolBusy (full) or PoolStopped (shutting down): never queue without bound
        st.auth_failures.succeeded(ex.client.client_ip, st.clock())  # not checked: not a failure
        log.warning("basic auth refused: worker pool full", request_id=ex.request_id)
        ex.error(503, "the server is busy checking passwords; retry shortly", headers=((b"Retry-After", b"1"),))
        return
    fut.add_done_callback(partial(verified, ex, cred))


def verified(ex: Exchange, cred: Credentials, fut: asyncio.Future[bool]) -> None:
    st = ex.state
    ok = not fut.cancelled() and fut.exception() is None and fut.result()
    ip = ex.client.client_ip
    rt = ex.rt
    if ok:
        st.auth_failures.succeeded(ip, st.clock())
        if rt is not None:
            rt.policies.remember(cred)
    if ex.finished or ex.client.closed or rt is None:
        return  # the client left meanwhile (its failure still counted)
    if fut.cancelled():
        ex.error(503, "the server is shutting down", headers=((b"Retry-After", b"1"),))
    elif ok:
        ex.admit()
    else:
        verdict = rt.policies.unauthorized()
        ex.error(verdict.status, verdict.message, headers=verdict.headers)
    ex.client.flush()
