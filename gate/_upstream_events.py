"""The rarer upstream events of an `Exchange`: dialing (and failing over when a dial fails), an invalid or
lost response (with the one stale-connection retry), a timeout, a `101` that turns both connections into
a tunnel.

Exchange code split out by size, like `gate._static_io`: functions of the exchange called by its methods
(`choose`, `on_upstream_failed`, `on_upstream_lost`, `check_timeouts`, `on_upstream_upgrade`), deciding
with the pure rules of `gate.admission` and answering through the exchange's methods. Not on the path of
a request that succeeds, so not compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from gate._upgrade import switch_matches
from gate.admission import fail_over, loss_counts_against, retry_stale
from gate.balancer import TargetHealth, record_failure
from gate.h1 import HttpError

if TYPE_CHECKING:
    from gate.downstream import UpstreamLink
    from gate.exchange import Exchange

log = structlog.get_logger("gate.exchange")


async def connect(ex: Exchange, t: TargetHealth) -> None:
    st = ex.state
    if ex.finished or ex.client.closed:
        # Gone before this task's first step: an HTTP/2 stream reset in the same read as its HEADERS
        # (rapid reset) dials nothing, instead of leaving the origin one more pooled connection.
        ex.force_new = False
        return
    try:
        conn = await st.pool.open(t, st.config.connect_timeout_s)
    except TimeoutError:
        connect_failed(ex, t, 504, "the upstream did not accept the connection in time")
        return
    except OSError as e:
        connect_failed(ex, t, 502, f"the upstream refused the connection ({e.strerror or e})")
        return
    finally:
        ex.force_new = False
    if ex.finished or ex.client.closed:
        st.pool.release(conn)
        return
    ex.attach(conn)
    ex.client.flush()


def connect_failed(ex: Exchange, t: TargetHealth, status: int, message: str) -> None:
    st = ex.state
    if record_failure(t, st.clock(), st.health_policy):
        log.warning("upstream ejected", target=t.key, until_s=round(t.ejected_until - st.clock(), 1))
    log.info("upstream connect failed", target=t.key, status=status, reason=message, request_id=ex.request_id)
    if ex.finished or ex.client.closed:
        return
    ex.tried = [*ex.tried, t]
    if ex.rt is not None and fail_over(ex.tried, ex.rt.targets(st), st.clock()):
        ex.choose()
        ex.client.flush()
        return
    ex.error(status, message)
    ex.client.flush()


def upstream_failed(ex: Exchange, conn: UpstreamLink | None, exc: BaseException, *, protocol_error: bool) -> None:
    """The upstream sent something unparseable or ambiguous."""
    if conn is not None and conn is ex.up:
        log.warning("invalid upstream response", target=conn.target.key, error=str(exc), request_id=ex.request_id)
        ex._drop_upstream(failed=True)
    if ex.finished:
        return
    if not ex.response_started:
        ex.error(502, "the upstream sent an invalid response")
    else:
        ex._account()
        ex.client.abort()


def upstream_lost(ex: Exchange, conn: UpstreamLink, exc: Exception | None) -> None:
    if conn is not ex.up or ex.finished:
        return
    framing = ex.framing
    if ex.response_started and framing is not None:
        if framing.body and framing.content_length is None and not framing.chunked_in and exc is None:
            conn.refuse_reuse()
            ex.on_response_end()  # a close-delimited body ends here
            ex.client.flush()
            return
        ex._drop_upstream(failed=False)
        ex._account()
        ex.client.flush()
        ex.client.abort()
        return
    ex._drop_upstream(failed=False)
    t = conn.target
    if retry_stale(conn.requests, ex.retry_ok, ex.retried_stale):
        # A pooled connection the upstream had closed just as we sent: try once on a fresh one.
        ex.retried_stale = True
        ex.force_new = True
        ex.state.tasks.spawn("reconnect", connect(ex, t))
        return
    if loss_counts_against(ex.req_ended) and record_failure(t, ex.state.clock(), ex.state.health_policy):
        log.warning("upstream ejected", target=t.key)
    ex.error(502, "the upstream closed the connection without answering")
    ex.client.flush()


def timed_out(ex: Exchange, now: float) -> None:
    """The upstream's deadline passed (`Exchange.check_timeouts` checked): a 504, or the response broken off."""
    up = ex.up
    assert up is not None
    ex.state.metrics.count_timeout()
    t = up.target
    record_failure(t, now, ex.state.health_policy)
    log.info("upstream timed out", target=t.key, request_id=ex.request_id)
    ex._drop_upstream(failed=False)
    if not ex.response_started:
        ex.error(504, "the upstream did not answer in time")
        ex.client.flush()
    else:
        ex._account()
        ex.client.abort()


def switched(ex: Exchange, rest: bytes) -> None:
    """The upstream answered 101: relay it and turn both connections into a raw tunnel."""
    up = ex.up
    client = ex.client
    if up is None or ex.finished:
        return
    if ex.info.upgrade is None or ex.status != 101:
        ex.on_upstream_failed(up, HttpError(502, "the upstream switched protocols unasked"), protocol_error=True)
        return
    if not switch_matches(ex.info.upgrade, ex.headers_101):
        # A tunnel to a protocol the client did not ask for (h2c, say) would carry requests past the
        # route's rules: refused, both connections closed, nothing relayed. Not counted against the
        # upstream's health: the client chose what to ask for.
        log.warning(
            "upstream switched to a protocol not asked for",
            target=up.target.key,
            asked=ex.info.upgrade.decode("latin-1"),
            request_id=ex.request_id,
        )
        ex._drop_upstream(failed=False)
        ex.error(502, "the upstream switched to a protocol the client did not ask for", close=True)
        return
    client.send_switch(list(ex.headers_101), ex.info.upgrade, rest)
    ex.response_started = True
    ex.upstream_ms = (ex.state.timer() - ex.up_started) * 1000
    up.start_tunnel(client)
    client.start_tunnel(up)
    if ex.tunnel_buf:
        up.write(b"".join(ex.tunnel_buf))
        ex.tunnel_buf = ()
