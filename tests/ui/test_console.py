"""The console in a real browser against a real `fsctl serve`: login (and with TOTP), a service applied
from the CLI appearing and turning healthy live, stopping it from the page, a route created in the
Gateway page answering through the gate, log lines streaming, a chart drawing new points, a viewer
seeing no mutating controls, session expiry and the way back. Each page's screenshot is saved."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest

from tests.conftest import ROOT, RunningServer
from tests.ui.conftest import login, shot

pytest.importorskip("playwright")
from playwright.sync_api import expect

HELLO = ROOT / "examples" / "hello" / "hello.yaml"
PAGES = ["Overview", "Services", "Gateway", "Logs", "Metrics & alerts", "Security", "Settings"]


def admin_login(page: Any, console: RunningServer, path: str = "/") -> None:
    login(page, "admin", console.admin_password, path)
    expect(page.get_by_test_id("whoami")).to_contain_text("admin")


def test_login_and_every_page(page: Any, console: RunningServer) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_label("Username")).to_be_visible()
    shot(page, "login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong username or password")
    page.get_by_label("Password").fill(console.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("[data-live]")).to_have_attribute("data-live", "open")
    nav = page.get_by_role("navigation", name="Main")
    for name in PAGES:
        nav.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
        page.wait_for_load_state("networkidle") if name != "Overview" else None
        shot(page, "page-" + name.lower().replace(" & ", "-").replace(" ", "-"))
    page.get_by_role("button", name="Theme").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    shot(page, "dark-settings")
    page.get_by_role("button", name="Theme").click()
    # Phone width: the navigation wraps above the page, nothing overflows sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    nav.get_by_role("link", name="Overview", exact=True).click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    shot(page, "phone-overview")


def test_a_service_applied_from_the_cli_appears_turns_healthy_and_stops_from_the_page(
        page: Any, console: RunningServer) -> None:
    admin_login(page, console, "/services")
    expect(page.get_by_text("No services yet")).to_be_visible()
    r = console.fsctl("service", "apply", "-f", str(HELLO))
    assert r.returncode == 0, r.stderr
    row = page.locator("tr[data-service=hello]")
    expect(row).to_be_visible()  # no reload: the service.* events refreshed the list
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "running", timeout=30_000)
    expect(row.locator("td").nth(2)).to_have_text("1/1", timeout=30_000)
    shot(page, "services-hello-running")
    row.get_by_role("link", name="hello").click()
    status = page.get_by_test_id("service-status").locator("[data-status]")
    expect(status).to_have_attribute("data-status", "running")
    expect(page.get_by_text("HTTP 200").first).to_be_visible(timeout=30_000)
    shot(page, "service-detail-running")
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_have_attribute("data-status", "stopped", timeout=30_000)
    assert console.api("GET", "/api/services/hello").json()["desired"] == "stopped"
    shot(page, "service-detail-stopped")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(status).to_have_attribute("data-status", re.compile("starting|running"), timeout=30_000)


@pytest.fixture
def upstream() -> Iterator[int]:
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the upstream\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_a_route_created_in_the_gateway_page_answers_through_the_gate(
        page: Any, console: RunningServer, upstream: int) -> None:
    admin_login(page, console, "/gateway")
    page.get_by_role("button", name="New route").click()
    form = page.get_by_role("form", name="New route")
    form.get_by_label("Host").fill("ui-test.localhost")
    form.get_by_label("Upstreams").fill(f"127.0.0.1:{upstream}")
    form.get_by_text("Rate limit, access, basic auth").click()
    form.get_by_label("Response headers to set").fill("X-From-Console: yes")
    form.get_by_role("button", name="Create route").click()
    row = page.locator("tr[data-route='ui-test.localhost']")
    expect(row).to_be_visible()
    r = httpx.get(f"http://127.0.0.1:{console.http_port}/", headers={"Host": "ui-test.localhost"}, timeout=10)
    assert r.status_code == 200 and r.text == "hello from the upstream\n"
    assert r.headers["X-From-Console"] == "yes"
    # Traffic shows up in the route's row (polled metrics).
    for _ in range(5):
        httpx.get(f"http://127.0.0.1:{console.http_port}/", headers={"Host": "ui-test.localhost"}, timeout=10)
    expect(row.locator("td").nth(6)).not_to_have_text(re.compile("^\u2013 / \u2013 / \u2013$"), timeout=15_000)
    shot(page, "gateway-route-created")
    page.get_by_role("tab", name="Certificates").click()
    expect(page.get_by_role("heading", name="Issue now (ACME)")).to_be_visible()
    shot(page, "gateway-certificates")


def test_log_lines_stream_into_the_logs_page_with_pause(page: Any, console: RunningServer) -> None:
    console.api("POST", "/api/logs/uitest", content=b"first line before the page\n")
    admin_login(page, console, "/logs")
    page.get_by_role("checkbox", name=re.compile("uitest")).check()
    view = page.get_by_test_id("log-view")
    expect(view).to_contain_text("first line before the page")
    console.api("POST", "/api/logs/uitest", content=b"streamed line one\nstreamed ERROR two\n")
    expect(view).to_contain_text("streamed ERROR two")
    page.get_by_role("button", name="Pause").click()
    console.api("POST", "/api/logs/uitest", content=b"held while paused\n")
    expect(page.get_by_test_id("tail-state")).to_contain_text("1 waiting")
    expect(view).not_to_contain_text("held while paused")
    page.get_by_role("button", name="Resume").click()
    expect(view).to_contain_text("held while paused")
    # Scrolling up stops the auto-scroll; back at the bottom it follows again.
    console.api("POST", "/api/logs/uitest", content=b"".join(b"filler %d\n" % i for i in range(200)))
    expect(view).to_contain_text("filler 199")
    expect(page.get_by_test_id("tail-state")).to_have_text("following")
    view.evaluate("el => { el.scrollTop = 0; }")
    expect(page.get_by_test_id("tail-state")).to_contain_text("not following")
    console.api("POST", "/api/logs/uitest", content=b"while scrolled up\n")
    expect(view).to_contain_text("while scrolled up")
    assert view.evaluate("el => el.scrollTop") == 0
    view.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    expect(page.get_by_test_id("tail-state")).to_have_text("following")
    shot(page, "logs-live")
    # Search a window with a keyword: matches highlighted.
    page.get_by_role("button", name="15m").click()
    page.get_by_label("Keyword").fill("error")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("mark").first).to_have_text("ERROR")
    shot(page, "logs-search")


def test_a_chart_draws_new_points(page: Any, console: RunningServer) -> None:
    admin_login(page, console, "/")
    chart = page.locator("[data-chart='Host CPU %']")
    expect(chart).not_to_have_attribute("data-points", "0")
    first = int(chart.get_attribute("data-points") or 0)
    # A new point every second (the window is not full yet, so the count grows).
    expect(chart).not_to_have_attribute("data-points", str(first), timeout=20_000)
    assert int(chart.get_attribute("data-points") or 0) > first
    shot(page, "overview-live-chart")


def test_a_viewer_sees_no_mutating_controls(page: Any, console: RunningServer) -> None:
    assert console.api("POST", "/api/users", json={"username": "vera", "password": "viewer-pass-1",
                                                   "role": "viewer"}).status_code == 200
    if console.api("GET", "/api/services").json() == []:
        assert console.fsctl("service", "apply", "-f", str(HELLO)).returncode == 0
    login(page, "vera", "viewer-pass-1", "/services")
    expect(page.get_by_test_id("whoami")).to_contain_text("viewer")
    expect(page.locator("tr[data-service=hello]")).to_be_visible()
    mutating = re.compile(r"^(New service|New route|New rule|Start|Stop|Restart|Remove|Delete|Edit|Apply|"
                          r"Create.*|Add user|Reset password|Revoke|Renew|Issue|Import)$")
    for path in ("/services", "/services/hello", "/gateway", "/gateway?tab=certs", "/monitoring", "/security"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        expect(page.get_by_role("heading").first).to_be_visible()
        assert page.get_by_role("button", name=mutating).count() == 0, path
        shot(page, "viewer" + path.replace("/", "-").replace("?tab=", "-"))
    # And the API refuses them anyway, with the cookie and the right CSRF token.
    status = page.evaluate("""async () => {
        const s = await (await fetch('/api/auth/session')).json();
        const r = await fetch('/api/services/hello/stop', {method: 'POST', headers: {'X-CSRF-Token': s.csrf_token}});
        return r.status; }""")
    assert status == 403


def test_login_with_a_totp_code(page: Any, console: RunningServer) -> None:
    assert console.api("POST", "/api/users", json={"username": "tess", "password": "totp-pass-12",
                                                   "role": "admin"}).status_code == 200
    tess = console.login("tess", "totp-pass-12")
    secret = console.api("POST", "/api/users/tess/totp", token=tess).json()["secret"]
    totp = pyotp.TOTP(secret)
    assert console.api("POST", "/api/users/tess/totp/confirm", token=tess,
                       json={"code": totp.now()}).status_code == 200
    login(page, "tess", "totp-pass-12", "/gateway")
    code = page.get_by_label("Two-factor code")
    expect(code).to_be_visible()
    shot(page, "login-totp")
    code.fill(totp.at(time.time() + 30))  # the next step: the current one was used at enrolment
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Gateway")).to_be_visible()  # back where they were going
    expect(page.get_by_test_id("whoami")).to_contain_text("tess")


def test_session_expiry_goes_to_login_and_back(page: Any, console: RunningServer) -> None:
    admin_login(page, console, "/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    # End every console session of admin behind the page's back (with an API token, not a session).
    key = console.api("POST", "/api/tokens", json={"name": "expiry-test", "role": "admin"}).json()["token"]
    for t in console.api("GET", "/api/tokens?sessions=1", token=key).json():
        if t["kind"] == "session" and t["state"] == "active" and t["owner"] == "admin":
            assert console.api("DELETE", f"/api/tokens/{t['id']}", token=key).status_code == 200
    console._tokens.clear()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fsecurity"))
    expect(page.get_by_text("Your session has ended")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(console.admin_password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Security")).to_be_visible()
    assert page.url.endswith("/security")


def test_a_cross_site_page_cannot_act_with_the_session(page: Any, console: RunningServer) -> None:
    """Another site (localhost is not the same site as 127.0.0.1) posts a form and a text/plain fetch to
    the console while the person is logged in: nothing changes."""
    admin_login(page, console, "/security")
    evil = f"""<!doctype html><body>
      <form id="f" method="POST" action="{console.url}/api/users" enctype="text/plain">
        <input name='{{"username":"mallory","password":"password123","role":"admin","x":"' value='"}}'>
      </form>
      <script>
        fetch("{console.url}/api/services", {{method: "POST", mode: "no-cors", credentials: "include",
          headers: {{"Content-Type": "text/plain"}}, body: "name: evil\\ncmd: [sleep, '1000']\\n"}})
          .finally(() => document.getElementById("f").submit());
      </script></body>"""

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = evil.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://localhost:{srv.server_address[1]}/evil.html")
        page.wait_for_url(re.compile(r"/api/users$"))  # the form went through to the console
        page.wait_for_load_state()
        refused = page.evaluate("document.body.innerText")
    finally:
        srv.shutdown()
        srv.server_close()
    users = [u["username"] for u in console.api("GET", "/api/users").json()]
    assert "mallory" not in users
    assert "evil" not in [s["name"] for s in console.api("GET", "/api/services").json()]
    # Both reached the console and were refused (the SameSite=Strict cookie was not even sent).
    assert '"error"' in refused
    tried = console.api("GET", "/api/audit?limit=200").json()
    denied = {a["action"] for a in tried if a["outcome"] == "denied" and a["status"] in (401, 403)}
    assert {"user.add", "service.apply"} <= denied, tried[:5]


def test_the_spec_editor_shows_problems_at_their_line_before_applying(page: Any, console: RunningServer) -> None:
    if "hello" not in [s["name"] for s in console.api("GET", "/api/services").json()]:
        assert console.fsctl("service", "apply", "-f", str(HELLO)).returncode == 0
    admin_login(page, console, "/services/hello")
    page.get_by_role("tab", name="Spec (edit)").click()
    editor = page.get_by_label("Spec YAML")
    source = editor.input_value()
    # A YAML syntax error: shown at its line as it is typed, and Apply is held back.
    editor.fill(source.replace("replicas: 1", "replicas: [1"))
    problems = page.get_by_role("list", name="Problems")
    expect(problems).to_contain_text("line")
    expect(page.get_by_role("button", name="Apply")).to_be_disabled()
    # Valid YAML, invalid spec: the server's problem comes back at its line; nothing is applied.
    bad = source.replace("replicas: 1", "replicas: -1")
    editor.fill(bad)
    line = bad.splitlines().index("replicas: -1") + 1
    page.get_by_text("Changes against the applied version").click()
    expect(page.get_by_label("Changes")).to_contain_text("+ replicas: -1")
    page.get_by_role("button", name="Apply").click()
    expect(problems.get_by_role("button", name=f"line {line}")).to_be_visible()
    expect(problems).to_contain_text("replicas")
    shot(page, "service-spec-problem")
    assert console.api("GET", "/api/services/hello").json()["spec"].get("replicas", 1) == 1


def test_the_first_routes_javascript_is_under_300_kb_gzipped(page: Any, console: RunningServer) -> None:
    sizes: dict[str, int] = {}

    def seen(resp: Any) -> None:
        if resp.url.endswith(".js"):
            assert resp.headers.get("content-encoding") == "gzip", resp.url
            assert resp.headers.get("cache-control") == "public, max-age=31536000, immutable", resp.url
            sizes[resp.url] = int(resp.headers["content-length"])

    page.on("response", seen)
    admin_login(page, console, "/")
    expect(page.locator("[data-chart='Host CPU %']")).to_be_visible()
    page.wait_for_load_state("networkidle")
    total = sum(sizes.values())
    print(f"first route: {len(sizes)} scripts, {total / 1024:.0f} KiB gzipped")
    assert 0 < total <= 300 * 1024, sizes


def test_a_first_site_from_the_browser_alone(page: Any, console: RunningServer, tmp_path: Any) -> None:
    """README's "A first site" without a terminal: a service from the editor, a route to it, a 200."""
    (tmp_path / "index.html").write_text("first site\n")
    admin_login(page, console, "/services")
    page.get_by_role("button", name="New service").click()
    page.get_by_role("button", name="YAML", exact=True).click()  # the form is the default; the spec is pasted as YAML
    spec = (f'name: site\ncmd: ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1"]\n'
            f"workdir: {tmp_path}\nports: [{{ name: http, internal: auto }}]\n"
            'healthcheck: { http: "http://127.0.0.1:${PORT}/", interval: 1s, timeout: 2s, retries: 3 }\n')
    page.get_by_label("Spec YAML").fill(spec)
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/services/site$"))
    status = page.get_by_test_id("service-status").locator("[data-status]")
    expect(status).to_have_attribute("data-status", "running", timeout=30_000)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Gateway").click()
    page.get_by_role("button", name="New route").click()
    form = page.get_by_role("form", name="New route")
    form.get_by_label("Host").fill("site.localhost")
    form.get_by_label("Upstreams").fill("service:site")
    form.get_by_role("button", name="Create route").click()
    expect(page.locator("tr[data-route='site.localhost']")).to_be_visible()
    deadline = time.monotonic() + 20
    while True:  # the route resolves service:site to its healthy instance
        r = httpx.get(f"http://127.0.0.1:{console.http_port}/", headers={"Host": "site.localhost"}, timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200 and "first site" in r.text
    shot(page, "first-site")
