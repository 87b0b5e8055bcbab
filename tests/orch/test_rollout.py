"""The pure parts of deploys: batches, the deployment state machine, release documents and their diffs,
and where config files may be written."""

from __future__ import annotations

import itertools

import pytest

from orch._files import ConfigFileRefused, read_inside, system_dir_problem
from orch.release import build_release, diff, release_vars
from orch.rollout import TERMINAL, TRANSITIONS, Batch, InvalidTransition, advance, plan_batches, staged_index
from orch.spec import validate_mapping


@pytest.mark.parametrize(
    ("old", "replicas", "strategy", "surge", "unavail", "want"),
    [
        ([1], 1, "rolling", 1, 0, [Batch((1,), True)]),
        ([1, 2], 2, "rolling", 1, 0, [Batch((1,), True), Batch((2,), True)]),
        ([1, 2, 3], 3, "rolling", 2, 0, [Batch((1, 2), True), Batch((3,), True)]),
        ([1, 2], 2, "rolling", 0, 1, [Batch((1,), False), Batch((2,), False)]),
        ([1, 2, 3], 1, "rolling", 1, 0, [Batch((1,), True, (2, 3))]),  # scale down: extras retire last
        ([1], 3, "rolling", 1, 0, [Batch((1,), True), Batch((2,), True), Batch((3,), True)]),  # scale up
        ([], 1, "rolling", 1, 0, [Batch((1,), True)]),
        ([1, 2], 0, "rolling", 1, 0, [Batch((), True, (1, 2))]),
        ([1, 2], 2, "recreate", 1, 0, [Batch((1, 2), False)]),
        ([1, 2, 3], 2, "recreate", 1, 0, [Batch((1, 2), False, (3,))]),
        ([], 0, "recreate", 1, 0, []),
    ],
)
def test_batches(old, replicas, strategy, surge, unavail, want):
    assert plan_batches(old, replicas, strategy, surge, unavail) == want


@pytest.mark.parametrize(
    ("old", "replicas", "surge", "unavail"),
    list(itertools.product([[], [1], [1, 2], [1, 2, 3, 4]], [0, 1, 2, 5], [0, 1, 3], [0, 1, 2])),
)
def test_batches_cover_every_slot_once_and_respect_the_bounds(old, replicas, surge, unavail):
    if surge == 0 and unavail == 0:
        with pytest.raises(ValueError):
            plan_batches(old, replicas, "rolling", surge, unavail)
        return
    batches = plan_batches(old, replicas, "rolling", surge, unavail)
    started = [i for b in batches for i in b.slots]
    assert started == list(range(1, replicas + 1))
    assert sorted(i for b in batches for i in b.retire) == [i for i in old if i > replicas]
    for b in batches:
        assert len(b.slots) <= (surge if surge else unavail)  # never more extra / missing than allowed
        assert b.surge == (surge > 0)


def test_state_machine_table():
    assert advance("pending", "start") == "running"
    assert advance("running", "succeed") == "succeeded"
    assert advance("running", "roll_back") == "rolled_back"
    assert advance("running", "interrupt") == "failed"
    for status in TERMINAL:  # a finished deployment never moves again
        for event in ("start", "succeed", "fail", "roll_back", "interrupt"):
            with pytest.raises(InvalidTransition):
                advance(status, event)
    with pytest.raises(InvalidTransition):
        advance("pending", "succeed")  # nothing succeeds without having run
    assert {to for (_, _), to in TRANSITIONS.items()} <= {"running", *TERMINAL}


def test_staged_index_alternates():
    assert staged_index(1, None) == 101
    assert staged_index(1, 1) == 101
    assert staged_index(1, 101) == 1


def _spec(**kw):
    return validate_mapping({"name": "web", "cmd": "./run", "workdir": "/srv/web", **kw})


def test_release_document_keeps_secrets_out_and_diffs_by_field():
    v = release_vars("v1", "/data/releases/web/v1", "prod")
    s1 = _spec(
        env={"DB_PASSWORD": "hunter2", "MODE": "a", "API": "${secret:api}"},
        config_files=[{"path": "app.ini", "content": "v=${version} pw=${DB_PASSWORD} port=${PORT}\n"}],
    )
    d1 = build_release(s1, 1, v, {})
    text = repr(d1)
    assert "hunter2" not in text
    assert d1["env"] == {"DB_PASSWORD": "<secret set in release 1>", "MODE": "a", "API": "${secret:api}"}
    # Only the release's variables are expanded in history; the password stays a reference.
    assert d1["config_files"][0]["content"] == "v=v1 pw=${DB_PASSWORD} port=${PORT}\n"
    # Same password in the next release: same marker (no change shown); a new one: a new marker.
    s2 = _spec(
        env={"DB_PASSWORD": "hunter2", "MODE": "b", "API": "${secret:api}"},
        config_files=[{"path": "app.ini", "content": "v=${version} pw=${DB_PASSWORD} port=${PORT}\n"}],
    )
    d2 = build_release(s2, 2, release_vars("v2", None, "prod"), {}, previous_spec=s1, previous_doc=d1)
    changes = {c["field"]: c for c in diff(d1, d2)}
    assert "env.DB_PASSWORD" not in changes
    assert changes["env.MODE"]["from"] == "a" and changes["env.MODE"]["to"] == "b"
    assert changes["version"]["to"] == "v2"
    assert "-v=v1" in changes["config_files[app.ini].content"]["diff"]
    s3 = s2.model_copy(update={"env": {**s2.env, "DB_PASSWORD": "new-one"}})
    d3 = build_release(s3, 3, release_vars("v2", None, "prod"), {}, previous_spec=s2, previous_doc=d2)
    c3 = {c["field"]: c for c in diff(d2, d3)}
    assert c3["env.DB_PASSWORD"]["to"] == "<secret set in release 3>" and "new-one" not in repr(d3)
    assert diff(d3, d3) == []


@pytest.mark.parametrize(
    ("workdir", "ok"),
    [
        ("/srv/web", True),
        ("/opt/app", True),
        ("/home/app/site", True),
        ("/data/releases/web/v2", True),  # ${installPath}: inside the data dir's release area
        ("/", False),
        ("/etc", False),
        ("/etc/cron.d", False),
        ("/usr/local/bin", False),
        ("/root", False),
        ("/var/spool/cron", False),
        ("/boot", False),
        ("/data", False),  # the platform's database and keys
        ("/data/run/orch", False),
        ("/data/releases", False),  # the release area itself, not one release
    ],
)
def test_system_dir_table(workdir, ok):
    assert (system_dir_problem(workdir, "/data", "/data/releases") is None) == ok


def test_template_is_read_inside_without_links(tmp_path):
    (tmp_path / "app.tmpl").write_text("x=${version}")
    assert read_inside(str(tmp_path), "app.tmpl") == "x=${version}"
    (tmp_path / "evil").symlink_to("/etc/passwd")
    with pytest.raises(ConfigFileRefused, match="symlink"):
        read_inside(str(tmp_path), "evil")
    with pytest.raises(ConfigFileRefused, match="outside"):
        read_inside(str(tmp_path), "../../etc/passwd")
    with pytest.raises(ConfigFileRefused, match="outside"):
        read_inside(str(tmp_path), "/etc/passwd")
    (tmp_path / "big").write_bytes(b"x" * 2_000_000)
    with pytest.raises(ConfigFileRefused, match="larger"):
        read_inside(str(tmp_path), "big")


def test_config_file_spec_needs_one_source():
    from orch.spec import SpecError

    with pytest.raises(SpecError, match="exactly one of content"):
        _spec(config_files=[{"path": "a", "content": "x", "template": "a.tmpl"}])
    with pytest.raises(SpecError, match="exactly one of content"):
        _spec(config_files=[{"path": "a"}])
    with pytest.raises(SpecError, match=r"without '\.\.'"):
        _spec(config_files=[{"path": "a", "template": "../../etc/shadow"}])
    with pytest.raises(SpecError, match="both be 0"):
        _spec(deploy={"max_surge": 0, "max_unavailable": 0})


def test_planner_leaves_a_deploying_service_to_the_deployer():
    from orch import planner

    bo = planner.BackoffPolicy()
    running_v1 = planner.started(planner.Slot("web", 1), 1, 0.0, has_healthcheck=False)
    extra = planner.started(planner.Slot("web", 3), 1, 0.0, has_healthcheck=False)
    slots = {("web", 1): running_v1, ("web", 3): extra}
    svc = planner.ServiceView("web", 2, "running", replicas=2)
    idle = planner.plan({"web": svc}, slots, 1.0, bo)
    assert {(type(a).__name__, a.index) for a in idle.actions} == {
        ("StopInstance", 1),
        ("StartInstance", 2),
        ("StopInstance", 3),
    }
    busy = planner.plan({"web": planner.ServiceView("web", 2, "running", replicas=2, deploying=True)}, slots, 1.0, bo)
    assert busy.actions == []  # no restart into v2, no new slot 2, no scale-down of slot 3: the deployer's job
    crashed = {("web", 1): planner.Slot("web", 1, phase="absent", version=1)}
    again = planner.plan({"web": planner.ServiceView("web", 2, "running", deploying=True)}, crashed, 1.0, bo)
    assert [(type(a).__name__, a.index, a.version) for a in again.actions] == [("StartInstance", 1, 2)]


@pytest.mark.parametrize(
    ("releases", "current", "previous", "keep", "gone"),
    [
        ([1, 2, 3], 3, 2, 10, []),
        (list(range(1, 13)), 12, 11, 10, [1, 2]),
        (list(range(1, 13)), 3, 2, 10, [1]),  # rolled back to 3: 2 stays (previous), newer ones are not pruned
        (list(range(1, 13)), 12, 1, 10, [2]),  # a rollback's source far back stays
        (list(range(1, 13)), 10, 9, 2, [1, 2, 3, 4, 5, 6, 7, 8]),  # 11, 12 newer than serving: kept
        ([5], 5, None, 2, []),
    ],
)
def test_release_pruning(releases, current, previous, keep, gone):
    from orch.rollout import releases_to_prune

    assert releases_to_prune(releases, current, previous, keep) == gone
    assert current not in gone and previous not in gone
