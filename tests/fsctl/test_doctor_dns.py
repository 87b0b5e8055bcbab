"""`fsctl doctor`'s DNS check is bounded by its timeout: a lookup that hangs neither holds the check
nor the process's exit. The hang is a fake of the OS resolver (`socket.getaddrinfo` replaced in a real
child process), since this sandbox has no DNS server to make slow."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, socket, sys, time
real = socket.getaddrinfo
def fake_getaddrinfo(host, *args, **kwargs):  # the OS resolver: one name hangs, one answers, one fails
    if host == "hang.example.com":
        time.sleep(20)
    if host == "ok.example.com":
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 0))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
socket.getaddrinfo = fake_getaddrinfo
import fsctl.cli_doctor as doctor
doctor._TIMEOUT_S = 1.0
t0 = time.monotonic()
found = doctor.dns_findings([("hang.example.com", "auto"), ("ok.example.com", "off"), ("nx.example.com", "auto")])
print(json.dumps({"took": time.monotonic() - t0, "findings": [[f.check, f.status, f.message] for f in found]}))
"""


def test_a_hanging_lookup_is_cut_at_the_timeout_and_the_process_exits() -> None:
    root = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD], cwd=root, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError("doctor's DNS check did not return (or its process did not exit) within 15 s") from None
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["took"] < 3.0, out  # the 1 s timeout, not the 20 s hang
    assert wall < 12.0  # the process exited without waiting for the hung lookup's thread
    by_id = {f[0]: f for f in out["findings"]}
    assert by_id["dns.hang.example.com"][1] == "fail" and "timed out" in by_id["dns.hang.example.com"][2]
    assert by_id["dns.ok.example.com"][2].startswith("ok.example.com resolves to 192.0.2.7")
    assert by_id["dns.nx.example.com"][1] == "fail" and "Name or service not known" in by_id["dns.nx.example.com"][2]
