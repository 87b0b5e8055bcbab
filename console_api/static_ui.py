"""Serving the built console (ui/dist) at `/`: hashed assets cached for a year, `index.html` never
cached, client routes answered with `index.html`; without a build, a short page saying how to build it.
`/api/*` never falls back to the page: unknown API paths stay JSON 404s."""

from __future__ import annotations

import asyncio
import gzip
import mimetypes
from pathlib import Path

from aiohttp import web

IMMUTABLE = "public, max-age=31536000, immutable"
# The console's own code only: no inline scripts, no third-party origins. ECharts and React set
# inline styles; the QR code of 2FA enrolment is a data: image.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_COMPRESSIBLE = (".js", ".css", ".html", ".svg", ".json", ".map", ".txt")
_GZIP_MAX_BYTES = 8 * 1024 * 1024

NO_BUILD_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Infra-Core console: not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>The console is not built yet</h1>
<p>This server answers its API under <code>/api</code> (see <a href="/api/openapi.json">/api/openapi.json</a>),
but the browser console has not been built. Build it (Node.js 20 and npm needed) and reload this page:</p>
<pre>make ui          # or: cd ui &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>The command line works without it: <code>fsctl --help</code>.</p>
</body></html>
"""


def _headers(cache: str) -> dict[str, str]:
    return {"Cache-Control": cache, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


class StaticUi:
    """The files of one build directory. Gzipped copies are made once per file (off the loop) and kept."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._gz: dict[Path, tuple[float, bytes]] = {}

    def _file(self, rel: str) -> Path | None:
        if "\x00" in rel or "\\" in rel:
            return None
        path = (self.root / rel.lstrip("/")).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    async def _send(
        self, request: web.Request, path: Path, cache: str, extra: dict[str, str] | None = None
    ) -> web.StreamResponse:
        headers = {**_headers(cache), **(extra or {})}
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in _COMPRESSIBLE and "gzip" in request.headers.get("Accept-Encoding", ""):
            st = path.stat()
            if st.st_size <= _GZIP_MAX_BYTES:
                cached = self._gz.get(path)
                if cached is None or cached[0] != st.st_mtime:
                    data = await asyncio.to_thread(lambda: gzip.compress(path.read_bytes(), 6))
                    cached = self._gz[path] = (st.st_mtime, data)
                return web.Response(
                    body=cached[1],
                    content_type=ctype.split(";")[0],
                    headers={**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
                )
        return web.FileResponse(path, headers={**headers, "Content-Type": ctype})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info.get("tail", "")
        if rel.startswith("assets/"):
            path = self._file(rel)
            if path is None:
                raise web.HTTPNotFound()
            return await self._send(request, path, IMMUTABLE)
        path = self._file(rel) if rel and rel != "index.html" else None
        if path is not None:
            return await self._send(request, path, "public, max-age=3600")
        last = rel.rsplit("/", 1)[-1]
        if "." in last and rel != "index.html":
            raise web.HTTPNotFound()  # a missing file, not a client route
        return await self._send(request, self.root / "index.html", "no-cache", {"Content-Security-Policy": CSP})


async def _no_build(_: web.Request) -> web.Response:
    return web.Response(text=NO_BUILD_PAGE, content_type="text/html", headers=_headers("no-cache"))


def install(app: web.Application, ui_dir: Path | None) -> None:
    """Add the console's routes; call after every API route (they match anything outside /api/)."""
    pattern = "/{tail:(?!api/|api$).*}"
    if ui_dir is not None and (ui_dir / "index.html").is_file():
        ui = StaticUi(ui_dir)
        app.router.add_get(pattern, ui.handle)
    else:
        app.router.add_get(pattern, _no_build)
