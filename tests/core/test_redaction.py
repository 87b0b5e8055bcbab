"""What logs and the audit log keep of secrets: nothing."""

import io
import json

import pytest
import structlog

from core.audit import redact
from core.logging import configure_logging, safe_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRET", "https://hooks.slack.com/…"),
        ("http://user:pw@example.com:8080/x?token=t", "http://example.com:8080/…"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
        ("http://example.com?token=t", "http://example.com/…"),
        ("http://[::1]:80/a", "http://[::1]:80/…"),
        ("not a url", "[redacted URL]"),
        ("http://[broken/x", "[unparsable URL]"),
    ],
)
def test_safe_url(url, shown):
    assert safe_url(url) == shown


def test_audit_redacts_secret_names_and_cuts_urls():
    assert redact(
        {
            "name": "r",
            "webhook": "https://h.example/T/SECRET",
            "webhook_url": None,
            "rules": [{"callback_url": "http://u:p@h/x"}],
            "api_key": "k",
            "otp": 1,
        }
    ) == {
        "name": "r",
        "webhook": "https://h.example/…",
        "webhook_url": None,
        "rules": [{"callback_url": "http://h/…"}],
        "api_key": "[redacted]",
        "otp": "[redacted]",
    }


def test_log_lines_redact_secret_fields():
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    try:
        structlog.get_logger("t").info(
            "x", password="p1", otp="123456", recovery_codes=["a"], basic_auth="b", client_secret="c", username="alice"
        )
    finally:
        configure_logging("info", "console")
    line = json.loads(out.getvalue().splitlines()[-1])
    assert line["username"] == "alice"
    for k in ("password", "otp", "recovery_codes", "basic_auth", "client_secret"):
        assert line[k] == "[redacted]", k
