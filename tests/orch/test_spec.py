"""Service specs: the accepted shape, and errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from orch.spec import RestartPolicy, SpecError, dump_spec, load_spec, validate_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FULL = """\
name: hello
cmd: ["python3", "-m", "http.server", "${PORT}"]
workdir: /srv/hello
env: { GREETING: hi, WORKERS: 4, DEBUG: true }
ports: [{ name: http, internal: auto }]
healthcheck: { http: "http://127.0.0.1:${PORT}/", interval: 5s, timeout: 2s, retries: 3, start_period: 10s }
restart_policy: on-failure:3
depends_on: [db]
resources: { cpu: 0.5, memory: 256Mi }
replicas: 1
"""


def _problems(text: str, filename: str = "hello.yaml") -> list[str]:
    with pytest.raises(SpecError) as ei:
        load_spec(text, filename)
    return [str(p) for p in ei.value.problems]


def test_full_spec_is_accepted_with_units_parsed() -> None:
    spec = load_spec(FULL, "hello.yaml")
    assert spec.name == "hello"
    assert spec.argv == ["python3", "-m", "http.server", "${PORT}"]
    assert spec.env == {"GREETING": "hi", "WORKERS": "4", "DEBUG": "true"}
    assert spec.healthcheck is not None and spec.healthcheck.kind == "http"
    assert (spec.healthcheck.interval, spec.healthcheck.timeout, spec.healthcheck.start_period) == (5, 2, 10)
    assert spec.resources.memory == 256 * 1024 * 1024 and spec.resources.cpu == 0.5
    assert spec.restart == RestartPolicy("on-failure", 3)
    assert spec.runtime_name == "process"
    assert load_spec(dump_spec(spec)) == spec


def test_string_cmd_is_split_like_a_shell() -> None:
    assert load_spec("name: a\ncmd: python3 -c 'print(1)'\n").argv == ["python3", "-c", "print(1)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no", RestartPolicy("no")),
        ("always", RestartPolicy("always")),
        ("unless-stopped", RestartPolicy("always")),
        ("on-failure", RestartPolicy("on-failure", None)),
        ("on-failure:5", RestartPolicy("on-failure", 5)),
    ],
)
def test_restart_policies(text: str, expected: RestartPolicy) -> None:
    assert load_spec(f"name: a\ncmd: x\nrestart_policy: {text}\n").restart == expected


def test_bad_duration_names_line_and_field() -> None:
    text = FULL.replace("interval: 5s", "interval: '5 s'")
    assert _problems(text) == ["hello.yaml:6 healthcheck.interval: '5 s' is not a duration like 5s or 1m30s"]


def test_block_style_nested_error_points_at_its_own_line() -> None:
    text = "name: a\ncmd: x\nhealthcheck:\n  http: http://x/\n  retries: 3\n  timeout: soon\n"
    assert _problems(text, "a.yaml") == ["a.yaml:6 healthcheck.timeout: 'soon' is not a duration like 5s or 1m30s"]


def test_unknown_fields_say_what_is_allowed() -> None:
    problems = _problems("name: a\ncmd: x\ncolour: red\nresources:\n  cpu: 1\n  disk: 5G\n")
    assert problems[0].startswith("hello.yaml:3 colour: unknown field; allowed here: name, runtime, cmd")
    assert problems[1] == "hello.yaml:6 resources.disk: unknown field; allowed here: cpu, memory"


def test_several_problems_are_all_reported_in_line_order() -> None:
    text = "name: Bad_Name\ncmd: x\nports: [{internal: 70000}]\nrestart_policy: sometimes\nreplicas: -1\n"
    problems = _problems(text)
    assert [p.split(" ")[0] for p in problems] == ["hello.yaml:1", "hello.yaml:3", "hello.yaml:4", "hello.yaml:5"]
    assert "70000 is not a port" in problems[1]
    assert "'sometimes' is not a restart policy: no, always or on-failure[:N]" in problems[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\ncmd: [x\n", "hello.yaml:3: invalid YAML: expected ',' or ']'"),
        ("", "hello.yaml:1: the file is empty"),
        ("- name: a\n", "hello.yaml:1: a spec is a mapping of fields"),
        ("name: a\ncmd: x\nname: b\n", "hello.yaml:3 name: is given twice"),
        ("name: a\n", "hello.yaml:1: give cmd (a native process) or image"),
        ("cmd: x\n", "hello.yaml:1 name: is required"),
        ("name: a\ncmd: x\nhealthcheck: {interval: 5s}\n", "hello.yaml:3 healthcheck: give exactly one of http, tcp"),
        ("name: a\ncmd: x\nworkdir: srv\n", "hello.yaml:3 workdir: 'srv' is not an absolute path"),
        ("name: a\ncmd: x\nresources: {memory: lots}\n", "hello.yaml:3 resources.memory: 'lots' is not a size"),
        ("name: a\ncmd: x\ndepends_on: [a]\n", "a service cannot depend on itself"),
        ("name: a\ncmd: []\n", "hello.yaml:2 cmd: the command is empty"),
        ("name: a\ncmd: x\nenv: {1X: y}\n", "'1X' is not an environment variable name"),
        ("name: a\ncmd: x\nvolumes: [/data:/data]\n", "hello.yaml:3 volumes: volumes are for containers"),
    ],
)
def test_precise_messages(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_json_form_errors_name_the_field() -> None:
    with pytest.raises(SpecError) as ei:
        validate_mapping({"name": "a", "cmd": "x", "replicas": "many"})
    assert ei.value.problems[0].field == "replicas" and ei.value.problems[0].line is None
    assert ei.value.status == 400 and ei.value.details["problems"][0]["field"] == "replicas"


def test_examples_are_valid() -> None:
    specs = sorted([*EXAMPLES.glob("*/*.yaml")])
    assert specs, "examples/ has service specs"
    for f in specs:
        load_spec(f.read_text().replace("${SPEC_DIR}", str(f.parent)), f.name)


def test_container_spec_fields() -> None:
    spec = load_spec(
        "name: site\nimage: infracore-test/busybox:1\ncmd: [httpd, -f]\nentrypoint: /bin/env\nvolumes: [data:/data]\n"
    )
    assert spec.runtime_name == "docker" and spec.argv == ["httpd", "-f"] and spec.entrypoint_argv == ["/bin/env"]
    assert load_spec("name: a\nimage: ghcr.io/owner/app@sha256:" + "a" * 64 + "\n").image is not None
    assert load_spec("name: a\nimage: registry.local:5000/team/app:v1.2\n").runtime_name == "docker"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: a\nimage: nginx\nvolumes:\n  - data:/data\n  - /:/host\n",
            "hello.yaml:5 volumes[1]: '/:/host' is refused: mounting / gives the container the host's whole file "
            "system; if you really mean it, add allow_host_mounts: true (recorded in the audit log)",
        ),
        (
            "name: a\nimage: nginx\nvolumes: ['/var/run/docker.sock:/var/run/docker.sock']\n",
            "hello.yaml:3 volumes[0]: '/var/run/docker.sock:/var/run/docker.sock' is refused: mounting "
            "/var/run/docker.sock gives the container the Docker socket, i.e. root on the host",
        ),
        ("name: a\nimage: nginx\nvolumes: ['/etc/ssl:/etc/ssl:ro']\n", "lies inside /etc"),
        ("name: a\nimage: nginx\nvolumes: ['site:www']\n", "hello.yaml:3 volumes[0]: 'site:www': the target"),
        ("name: a\nimage: Nginx:latest\n", "hello.yaml:2 image: 'Nginx:latest' is not an image reference"),
        ("name: a\nimage: 'nginx; rm -rf /'\n", "is not an image reference"),
        ("name: a\ncmd: x\nentrypoint: [y]\n", "entrypoint is for containers"),
        ("name: a\nruntime: systemd\nimage: nginx\n", "image: runs in a container; runtime systemd needs cmd:"),
        ("name: a\ncmd: x\nvolumes: [data:/data]\n", "volumes are for containers"),
    ],
)
def test_container_spec_errors(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(expected in p for p in problems), problems


def test_allow_host_mounts_lets_a_sensitive_mount_through() -> None:
    spec = load_spec("name: a\nimage: nginx\nallow_host_mounts: true\nvolumes: ['/var/run/docker.sock:/d.sock']\n")
    assert spec.volumes == ["/var/run/docker.sock:/d.sock"]
