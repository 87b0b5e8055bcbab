"""The artifact upload API against a real `fsctl serve`: streamed uploads with real tar files, the
SHA-256 check, dedupe, the size limit, and the archive attacks refused with nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator

import httpx

from tests.orch import tarfiles

LIMITS = {
    "artifact_max_bytes": 3 * 1024 * 1024,
    "artifact_max_unpacked_bytes": 4 * 1024 * 1024,
    "artifact_max_members": 500,
}


def _server(server_factory, **env):
    return server_factory(env={"INFRACORE_ORCH": json.dumps(LIMITS), **env})


def _upload(srv, data, *, token="admin", params=None, headers=None, content=None):
    return srv.api(
        "POST",
        "/api/artifacts",
        token=token,
        params=params or {},
        headers=headers or {},
        content=data if content is None else content,
    )


def _pieces(data: bytes, n: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]


def test_upload_checks_dedupe_and_limits(server_factory, tmp_path):
    srv = _server(server_factory)
    data = tarfiles.app("v1")
    sha = hashlib.sha256(data).hexdigest()
    r = _upload(
        srv,
        None,
        params={"service": "web", "filename": "app.tgz"},
        headers={"X-Content-SHA256": sha},
        content=_pieces(data, 100),
    )  # chunked transfer, no Content-Length
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["id"] == sha and rec["kind"] == "tar.gz" and rec["services"] == ["web"] and not rec["deduplicated"]
    r = _upload(srv, data, params={"sha256": sha})
    assert r.status_code == 200 and r.json()["id"] == sha and r.json()["deduplicated"] is True
    assert srv.api("GET", f"/api/artifacts/{sha}").json()["size"] == len(data)
    assert [a["id"] for a in srv.api("GET", "/api/artifacts").json()] == [sha]

    # A SHA-256 that does not match: 400, nothing kept.
    other = tarfiles.app("v2")
    r = _upload(srv, other, headers={"X-Content-SHA256": "ab" * 32})
    assert r.status_code == 400 and r.json()["error"]["code"] == "sha256_mismatch"
    assert r.json()["error"]["details"]["actual"] == hashlib.sha256(other).hexdigest()
    # Over the limit: a clear 413, declared up front or found while streaming.
    big = os.urandom(LIMITS["artifact_max_bytes"] + 1)
    r = _upload(srv, big)
    assert r.status_code == 413 and "3145728-byte limit" in r.json()["error"]["message"]
    r = _upload(srv, None, content=_pieces(big))
    assert r.status_code == 413, r.text
    assert len(srv.api("GET", "/api/artifacts").json()) == 1
    tmp = srv.data_dir / "artifacts" / "tmp"
    assert list(tmp.iterdir()) == []
    blobs = [p for p in (srv.data_dir / "artifacts" / "blobs").rglob("*") if p.is_file()]
    assert [p.name for p in blobs] == [sha]
    # Under the limit but over the console's 1 MiB JSON body limit: streamed, so accepted.
    binary = os.urandom(2 * 1024 * 1024)
    r = _upload(srv, binary, params={"filename": "server-bin"})
    assert r.status_code == 200 and r.json()["kind"] == "file" and r.json()["size"] == len(binary)
    binary_sha = r.json()["id"]
    assert sorted(p.name for p in (srv.data_dir / "artifacts" / "blobs").rglob("*") if p.is_file()) == sorted(
        [sha, binary_sha]
    )

    # Every attack is refused with its rule named, nothing outside written, nothing stored.
    for name, (bad, rule, must_not_exist) in tarfiles.attacks(tmp_path).items():
        r = _upload(srv, bad, params={"service": "web"})
        assert r.status_code == 400, (name, r.text)
        err = r.json()["error"]
        assert err["code"] == "archive_refused" and err["details"]["rule"] == rule, (name, err)
        for p in must_not_exist:
            assert not os.path.lexists(p), (name, p)
    r = _upload(srv, tarfiles.gzip_bomb(64 * 1024 * 1024))
    assert r.status_code == 400 and r.json()["error"]["details"]["rule"] == "too_large"
    assert len(srv.api("GET", "/api/artifacts").json()) == 2 and list(tmp.iterdir()) == []
    assert not (srv.data_dir / "releases" / "web").exists()

    # Bad parameters are precise 400s; a viewer may read but not upload.
    assert _upload(srv, data, params={"service": "Not A Name"}).status_code == 400
    assert _upload(srv, data, params={"filename": "../x"}).status_code == 400
    assert _upload(srv, data, params={"sha256": "xyz"}).json()["error"]["details"]["field"] == "sha256"
    assert (
        srv.api(
            "POST", "/api/users", json={"username": "vera", "password": "viewer-pass-1", "role": "viewer"}
        ).status_code
        == 200
    )
    viewer = srv.login("vera", "viewer-pass-1")
    assert _upload(srv, data, token=viewer).status_code == 403
    assert srv.api("GET", "/api/artifacts", token=viewer).status_code == 200
    assert srv.api("GET", "/api/artifacts/" + "0" * 64).status_code == 404
    # The real responses match the documented models (which refuse unknown keys).
    from pydantic import TypeAdapter

    from console_api.schemas_deploy import Artifact, ArtifactInstall, ArtifactUploaded

    TypeAdapter(ArtifactUploaded).validate_python(rec)
    TypeAdapter(list[Artifact]).validate_python(srv.api("GET", "/api/artifacts").json())
    TypeAdapter(Artifact).validate_python(srv.api("GET", f"/api/artifacts/{sha}").json())
    TypeAdapter(list[ArtifactInstall]).validate_python(srv.api("GET", "/api/services/web/installs").json())
    audit = srv.api("GET", "/api/audit", params={"action": "artifact.upload"}).json()
    assert {e["outcome"] for e in audit} == {"ok", "failed", "denied"}


def test_oversized_stream_is_answered_while_the_client_still_sends(server_factory):
    """A raw HTTP/1.1 upload, chunked, far over the limit: the 413 comes back without the server reading
    (or keeping) the whole body."""
    srv = _server(server_factory)
    with socket.create_connection(("127.0.0.1", srv.console_port), timeout=20) as s:
        token = srv.login()
        s.sendall(
            b"POST /api/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = os.urandom(64 * 1024)
        sent = 0
        reply = b""
        s.settimeout(0.05)
        try:
            while sent < 64 * 1024 * 1024 and b"\r\n\r\n" not in reply:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                try:
                    reply += s.recv(65536)
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(20)
        while b"\r\n\r\n" not in reply:
            more = s.recv(65536)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert sent < 16 * 1024 * 1024  # answered early, not after the whole body
    assert list((srv.data_dir / "artifacts" / "tmp").iterdir()) == []


def test_unauthenticated_upload_is_refused(server):
    r = httpx.post(f"{server.url}/api/artifacts", content=b"x")
    assert r.status_code == 401
