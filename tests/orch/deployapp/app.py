"""A test app for deploys: GET / answers `<VERSION> <text of the config file $CONF, as read at start>` over
HTTP/1.1 keep-alive; /healthz (or $HEALTH_PATH; any other /healthz* path is 404) is 200 unless $FAIL_HEALTH
is set or $FAIL_INSTANCE names this instance; $SLOW_START seconds pass before it listens; the instance named
by $HOLD_INSTANCE waits to listen while the file $HOLD_FILE exists."""

import http.server
import os
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms

    def do_GET(self) -> None:
        if self.path.startswith("/healthz") and self.path != os.environ.get("HEALTH_PATH", "/healthz"):
            status, body = 404, b"not my health path\n"
        elif self.path.startswith("/healthz"):
            failing = os.environ.get("FAIL_HEALTH") or os.environ.get("FAIL_INSTANCE", "-") == os.environ.get(
                "INSTANCE"
            )
            status = 503 if failing else 200
            body = b"unhealthy\n" if status == 503 else b"ok\n"
        else:
            status = 200
            body = f"{os.environ.get('VERSION', '?')} {CONF}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _conf() -> str:
    try:
        with open(os.environ.get("CONF", "app.ini")) as f:
            return f.read().strip()
    except OSError as e:
        return f"no config ({e.strerror})"


CONF = _conf()

if __name__ == "__main__":
    time.sleep(float(os.environ.get("SLOW_START") or 0))
    while os.environ.get("HOLD_INSTANCE", "-") == os.environ.get("INSTANCE") and os.path.exists(
        os.environ.get("HOLD_FILE") or "/nonexistent"
    ):
        time.sleep(0.05)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()
