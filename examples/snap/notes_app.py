"""A tiny service with data for trying snap's shadow instances: serves `<data dir>/notes.txt` at `/` and
`/healthz` answers 200 only while that file is there and starts with `notes v1` (so a shadow started
from an empty or wrong directory fails its health check).

Usage: python3 notes_app.py PORT DATA_DIR
"""

import http.server
import os
import sys

DATA = sys.argv[2] if len(sys.argv) > 2 else "."


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = os.path.join(DATA, "notes.txt")
        try:
            with open(path, "rb") as f:
                notes = f.read()
        except OSError:
            notes = b""
        if self.path == "/healthz":
            ok = notes.startswith(b"notes v1")
            status, body = (200, b"ok\n") if ok else (503, b"no data\n")
        else:
            status, body = 200, f"data dir: {DATA}\n".encode() + notes
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
