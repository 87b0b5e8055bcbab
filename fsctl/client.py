"""The CLI's HTTP client of the console API: over TCP (http/https) or the server's Unix socket, with
the server address and token taken from flags, env, or the file `fsctl login` writes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from _typeshed import SupportsRead

DEFAULT_SERVER = "http://127.0.0.1:7070"
ROOT_SOCKET = Path("/var/lib/infracore/console.sock")


class CliError(Exception):
    """A failure to show the user as one clear message, then exit non-zero."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.hint, self.status, self.code = message, hint, status, code
        self.details = details or {}


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "infracore" / "fsctl.json"


def load_config() -> dict[str, Any]:
    try:
        return json.loads(config_path().read_text())
    except (OSError, ValueError):
        return {}


def save_config(data: dict[str, Any]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


@dataclass
class Target:
    server: str
    token: str | None


def resolve(server: str | None, token: str | None) -> Target:
    """Flags, then FSCTL_SERVER/FSCTL_TOKEN, then the login file; as root with nothing given, the
    default data dir's Unix socket (no token needed there)."""
    cfg = load_config()
    chosen = server or os.environ.get("FSCTL_SERVER") or cfg.get("server")
    if not chosen:
        if os.geteuid() == 0 and ROOT_SOCKET.exists():
            chosen = f"unix:{ROOT_SOCKET}"
        else:
            chosen = DEFAULT_SERVER
    tok = token or os.environ.get("FSCTL_TOKEN")
    if tok is None and cfg.get("server") == chosen:
        tok = cfg.get("token")
    return Target(chosen.rstrip("/"), tok)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Client:
    def __init__(self, target: Target, *, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout

    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, str]:
        server = self.target.server
        t = self.timeout if timeout is None else timeout
        if server.startswith("unix:"):
            return _UnixConnection(server[5:], t), ""
        parts = urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme == "https":
            return http.client.HTTPSConnection(
                parts.netloc, timeout=t, context=ssl.create_default_context()
            ), parts.path.rstrip("/")
        if parts.scheme != "http":
            raise CliError(f"unsupported server address {server!r}", hint="use http://HOST:PORT or unix:PATH")
        return http.client.HTTPConnection(parts.netloc, timeout=t), parts.path.rstrip("/")

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> http.client.HTTPResponse:
        conn, prefix = self._connection(timeout)
        hdrs = {"Accept": "application/json", **(headers or {})}
        if self.target.token:
            hdrs["Authorization"] = f"Bearer {self.target.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, prefix + path, body=payload, headers=hdrs)
            return conn.getresponse()
        except (ConnectionRefusedError, FileNotFoundError) as e:
            raise CliError(
                f"cannot reach the Infra-Core server at {self.target.server}: {e.strerror or e}",
                hint="is `fsctl serve` running? Point at it with --server or FSCTL_SERVER",
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise CliError(f"talking to {self.target.server} failed: {e}") from e

    def request(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._send(method, path, body)
        raw = resp.read()
        data: Any = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
        if resp.status >= 400:
            raise _api_error(resp.status, data, bool(self.target.token))
        return data

    def upload(self, path: str, body: SupportsRead[bytes], size: int, headers: dict[str, str]) -> Any:
        """POST a file as the raw body, streamed (never read whole into memory); the JSON answer."""
        conn, prefix = self._connection(None)
        conn.blocksize = 256 * 1024
        hdrs = {
            "Accept": "application/json",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            **headers,
        }
        if self.target.token:
            hdrs["Authorization"] = f"Bearer {self.target.token}"
        try:
            conn.request("POST", prefix + path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError):
            # The server answered early (a 413, a refused token) and closed: read what it said.
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise CliError(f"the upload to {self.target.server} was cut off: {e}") from e
        except (ConnectionRefusedError, FileNotFoundError) as e:
            raise CliError(
                f"cannot reach the Infra-Core server at {self.target.server}: {e.strerror or e}",
                hint="is `fsctl serve` running? Point at it with --server or FSCTL_SERVER",
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise CliError(f"uploading to {self.target.server} failed: {e}") from e
        raw = resp.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        if resp.status >= 400:
            raise _api_error(resp.status, data, bool(self.target.token))
        return data

    def events(self, path: str, last_event_id: int | None) -> Iterator[dict[str, Any]]:
        """Yield SSE events ({id, type, data}) until the server closes the stream."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        resp = self._send("GET", path, headers=headers, timeout=None)
        if resp.status >= 400:
            raw = resp.read()
            raise _api_error(resp.status, json.loads(raw) if raw else None, bool(self.target.token))
        event: dict[str, Any] = {}
        while True:
            line = resp.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if not text:
                if "data" in event:
                    yield event
                event = {}
            elif text.startswith(":"):
                continue
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    event["id"] = int(value)
                elif name == "event":
                    event["type"] = value
                elif name == "data":
                    event["data"] = json.loads(value)


def _api_error(status: int, data: Any, had_token: bool) -> CliError:
    err = data.get("error", {}) if isinstance(data, dict) else {}
    message = err.get("message") or f"the server answered {status}"
    details = err.get("details") or {}
    hint = details.get("hint")
    if status == 401 and err.get("code") == "unauthorized":
        hint = hint or ("log in again with `fsctl login`" if had_token else "run `fsctl login`")
        if not had_token and message == "authentication required":
            message = "not logged in"
    return CliError(message, hint=hint, status=status, code=err.get("code"), details=details)
