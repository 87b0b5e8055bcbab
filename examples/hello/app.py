"""A tiny HTTP app for the quick start: answers GET with a greeting and its port, and the contents of
`$DATA_DIR/message.txt` when there is one (its "data", for backups); `/healthz` is its health check (503
while the file named by $UNHEALTHY_FILE exists, to try out health-driven restarts)."""

import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        unhealthy = os.environ.get("UNHEALTHY_FILE")
        if self.path == "/healthz" and unhealthy and os.path.exists(unhealthy):
            status, body = 503, b"unhealthy\n"
        else:
            status = 200
            body = f"{os.environ.get('GREETING', 'hello')} from {self.server.server_address[1]}\n".encode()
            data = os.environ.get("DATA_DIR")
            if data and os.path.isfile(os.path.join(data, "message.txt")):
                with open(os.path.join(data, "message.txt"), "rb") as f:
                    body += f.read(4096)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
