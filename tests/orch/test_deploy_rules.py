"""One rule each for the version label and the release keep-count (they were duplicated with different
limits), and the deprecated keep-count name."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from core.errors import BadRequest
from orch.artifacts import check_version
from orch.config import OrchSettings
from orch.release import VERSION_RE


def test_one_version_label_rule_for_deploys_and_installs(tmp_path: Path) -> None:
    long = "v" + "1" * 127  # 128 characters: a deploy took it, the store refused it before
    assert VERSION_RE.match(long) and check_version(long) == long
    for bad in ("v" * 129, ".hidden", "a/b", "..", "", "v 1", "v\n1"):
        assert not VERSION_RE.match(bad)
        with pytest.raises(BadRequest):
            check_version(bad)


def test_release_keep_count_is_a_deprecated_alias_of_release_keep() -> None:
    assert not hasattr(OrchSettings(), "release_keep_count")
    with capture_logs() as logs:
        s = OrchSettings.model_validate({"release_keep_count": 4})
    assert s.release_keep == 4
    assert [e["event"] for e in logs] == ["deprecated setting"] and logs[0]["use"] == "orch.release_keep"
    with capture_logs() as logs:
        s = OrchSettings.model_validate({"release_keep_count": 4, "release_keep": 7})
    assert s.release_keep == 7 and logs[0]["event"] == "deprecated setting ignored"
    with pytest.raises(ValueError):
        OrchSettings.model_validate({"release_keep_count": 1})  # the alias gets the same bounds
