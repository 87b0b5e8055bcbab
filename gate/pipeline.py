"""The rule of an HTTP/1.1 client connection's turns, as pure functions over its state: when a request
starts or waits behind earlier ones (pipelining), what follows a finished response (close, linger,
the next request, a deferred error, idle), and where a protocol error is answered (in order).

`gate.proxy.ClientConnection` asks these and carries out the answer; each returns one of the small
int constants below (compiled: C calls returning C ints, see `pipeline.pxd`). Tested with tables
(tests/gate/test_pipeline.py).
"""

from __future__ import annotations

from typing import Final

# A new request head: start its exchange now, or wait (reading paused) behind the responses before it.
START: Final = 0
WAIT: Final = 1

# After a response.
CLOSE: Final = 0  # the connection carries nothing more: close it
LINGER: Final = 1  # ... but the client may still be sending the request body: half-close and drain
NEXT: Final = 2  # start the next (pipelined) request
SEND_ERROR: Final = 3  # a protocol error waited behind the responses: answer it now (then linger)
IDLE: Final = 4  # nothing queued: wait for the next request (keep-alive timeout)

# A protocol error (bad bytes from the client).
ABORT_ACTIVE: Final = 0  # in the body of the request being answered: that exchange answers it
DROP_AND_DEFER: Final = 1  # in the body of a pipelined request not started: drop it, answer after the others
DEFER: Final = 2  # between requests: answer once the earlier responses are out
ANSWER_NOW: Final = 3  # nothing in flight: answer and close


def on_request(queued: int) -> int:
    """A request head was queued (`queued` exchanges now in the queue, it included)."""
    return START if queued == 1 else WAIT


def after_response(
    close: bool, closing: bool, keep_alive: bool, request_complete: bool, queued: int, error_pending: bool
) -> int:
    """The active exchange's response is out. `close`: it says the connection cannot go on; `closing`:
    the connection is shutting down; `keep_alive`: the request allowed another; `request_complete`: its
    body has all arrived; `queued`: requests still waiting; `error_pending`: a deferred protocol error."""
    if close or closing or not keep_alive:
        return CLOSE if request_complete else LINGER
    if queued:
        return NEXT
    if error_pending:
        return SEND_ERROR
    return IDLE


def on_error(queued: int, last_complete: bool) -> int:
    """The client sent something refused; `queued`: exchanges in the queue (the first is active),
    `last_complete`: the newest one's request has all arrived (so the bad bytes came after it)."""
    if not queued:
        return ANSWER_NOW
    if last_complete:
        return DEFER
    return ABORT_ACTIVE if queued == 1 else DROP_AND_DEFER
