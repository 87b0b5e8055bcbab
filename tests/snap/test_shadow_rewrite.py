"""The pure rewrite of data paths in a service spec for a shadow instance."""

from __future__ import annotations

import pytest

from snap.shadow import rewrite_paths, shadow_name

M = {"/srv/data/app": "/srv/restore/app-1/srv/data/app"}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/srv/data/app", "/srv/restore/app-1/srv/data/app"),
        ("/srv/data/app/db.sqlite", "/srv/restore/app-1/srv/data/app/db.sqlite"),
        ("--data=/srv/data/app", "--data=/srv/restore/app-1/srv/data/app"),
        ("sqlite:///srv/data/app/x.db", "sqlite:///srv/restore/app-1/srv/data/app/x.db"),
        ("/srv/data/app:/data", "/srv/restore/app-1/srv/data/app:/data"),
        ("/srv/data/app-logs", "/srv/data/app-logs"),  # another directory with the same prefix
        ("/srv/data/apple", "/srv/data/apple"),
        ("/srv/data/app.bak", "/srv/data/app.bak"),
        ("/other/srv/data/app", "/other/srv/data/app"),  # not the same directory
        ("no paths here", "no paths here"),
    ],
)
def test_strings(value: str, expected: str) -> None:
    assert rewrite_paths(value, M) == expected


def test_nested_spec_and_longest_key_wins() -> None:
    spec = {
        "name": "app",
        "cmd": ["python3", "app.py", "${PORT}", "/srv/data/app"],
        "workdir": "/srv/data/app",
        "env": {"DB": "/srv/data/app/db", "LOGS": "/srv/data/app/logs/x", "N": 3},
        "replicas": 1,
    }
    m = {"/srv/data/app": "/r/app", "/srv/data/app/logs": "/r/logs"}
    out = rewrite_paths(spec, m)
    assert out["cmd"][3] == "/r/app" and out["workdir"] == "/r/app"
    assert out["env"] == {"DB": "/r/app/db", "LOGS": "/r/logs/x", "N": 3}
    assert spec["workdir"] == "/srv/data/app"  # the input is not changed


def test_shadow_name() -> None:
    assert shadow_name("app") == "app-shadow"
    assert len(shadow_name("x" * 63)) <= 63
