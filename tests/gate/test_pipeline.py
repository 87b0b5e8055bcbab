"""The HTTP/1.1 connection's turn rule (`gate.pipeline`): pipelining order and error deferral, as tables."""

from __future__ import annotations

import pytest

from gate.pipeline import (
    ABORT_ACTIVE,
    ANSWER_NOW,
    CLOSE,
    DEFER,
    DROP_AND_DEFER,
    IDLE,
    LINGER,
    NEXT,
    SEND_ERROR,
    START,
    WAIT,
    after_response,
    on_error,
    on_request,
)


@pytest.mark.parametrize(("queued", "expected"), [(1, START), (2, WAIT), (5, WAIT)])
def test_on_request(queued: int, expected: int) -> None:
    assert on_request(queued) == expected


# close, closing, keep_alive, request_complete, queued, error_pending → turn
AFTER = [
    ("keep-alive, nothing queued: idle", (False, False, True, True, 0, False), IDLE),
    ("a pipelined request waits: it goes next", (False, False, True, True, 1, False), NEXT),
    ("the next request before a deferred error", (False, False, True, True, 1, True), NEXT),
    ("a deferred error once the responses are out", (False, False, True, True, 0, True), SEND_ERROR),
    ("the response says close", (True, False, True, True, 0, False), CLOSE),
    ("close wins over a queued request", (True, False, True, True, 2, False), CLOSE),
    ("the connection drains", (False, True, True, True, 1, False), CLOSE),
    ("the request said Connection: close", (False, False, False, True, 0, False), CLOSE),
    ("closing while the body still arrives: linger", (True, False, True, False, 0, False), LINGER),
    ("HTTP/1.0 answered before its body: linger", (False, False, False, False, 0, True), LINGER),
]


@pytest.mark.parametrize(("args", "expected"), [a[1:] for a in AFTER], ids=[a[0] for a in AFTER])
def test_after_response(args: tuple[bool, bool, bool, bool, int, bool], expected: int) -> None:
    assert after_response(*args) == expected


@pytest.mark.parametrize(
    ("queued", "last_complete", "expected"),
    [
        (0, False, ANSWER_NOW),  # nothing in flight
        (1, False, ABORT_ACTIVE),  # the body of the request being answered
        (1, True, DEFER),  # after a whole request whose response is not out yet
        (2, False, DROP_AND_DEFER),  # the body of a pipelined request not started
        (3, True, DEFER),
    ],
)
def test_on_error(queued: int, last_complete: bool, expected: int) -> None:
    assert on_error(queued, last_complete) == expected
