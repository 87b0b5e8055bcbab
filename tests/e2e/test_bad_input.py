"""Malformed requests get a precise error in the one error shape, and the server keeps serving."""

import httpx
import pytest


def _assert_error_shape(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert r.headers["X-Request-Id"] == body["error"]["details"]["request_id"]
    return body["error"]


def test_malformed_json(server):
    r = server.api("POST", "/api/tokens", content=b'{"name": "x",', headers={"Content-Type": "application/json"})
    err = _assert_error_shape(r, 400, "bad_request")
    assert "not valid JSON at line 1" in err["message"]


def test_unknown_field_is_named(server):
    r = server.api("POST", "/api/tokens", json={"name": "x", "rol": "admin"})
    err = _assert_error_shape(r, 400, "validation_failed")
    assert "rol: Extra inputs are not permitted" in err["message"]
    assert err["details"]["errors"][0]["field"] == "rol"


def test_wrong_type_and_missing_body(server):
    err = _assert_error_shape(server.api("POST", "/api/tokens", json={"name": 5}), 400, "validation_failed")
    assert "name" in err["message"]
    _assert_error_shape(server.api("POST", "/api/tokens"), 400, "bad_request")
    _assert_error_shape(server.api("POST", "/api/tokens", json=[1, 2]), 400, "validation_failed")


def test_oversized_body_is_413(server):
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = server.api("POST", "/api/tokens", content=big, headers={"Content-Type": "application/json"})
    err = _assert_error_shape(r, 413, "payload_too_large")
    assert err["details"]["limit_bytes"] == 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/nope", 404, "not_found"),
        ("PATCH", "/api/tokens", 405, "method_not_allowed"),
        ("DELETE", "/api/tokens/999999", 404, "not_found"),
    ],
)
def test_unknown_paths_methods_and_ids(server, method, path, status, code):
    _assert_error_shape(server.api(method, path), status, code)


def test_garbage_bytes_on_the_socket_do_not_hurt(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.console_port)) as s:
        s.sendall(b"\x16\x03\x01\x00\xff garbage \r\n\r\n")
        s.settimeout(5)
        reply = s.recv(4096)
    assert reply.split(b" ", 2)[1] == b"400"


def test_server_keeps_serving_after_all_that(server):
    for _ in range(3):
        server.api("POST", "/api/tokens", content=b"{", headers={"Content-Type": "application/json"})
    assert server.api("GET", "/api/status").status_code == 200
    assert server.api("POST", "/api/tokens", json={"name": "fine"}).status_code == 200
