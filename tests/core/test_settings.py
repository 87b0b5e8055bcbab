from pathlib import Path

import pytest

from core.errors import StartupError
from core.settings import load_settings, parse_host_port


def test_defaults_without_any_config_file(monkeypatch, tmp_path):
    monkeypatch.delenv("INFRACORE_CONFIG_FILE", raising=False)
    monkeypatch.setattr("core.settings.DEFAULT_CONFIG_FILE", tmp_path / "absent.yaml")
    s = load_settings()
    assert s.console == "127.0.0.1:7070"
    assert s.console_addr == ("127.0.0.1", 7070)
    assert s.config_file is None


def test_precedence_flags_over_env_over_file(monkeypatch, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("http_port: 1001\nhttps_port: 1002\nconsole: 127.0.0.1:1003\nlog_level: debug\n")
    monkeypatch.setenv("INFRACORE_HTTPS_PORT", "2002")
    monkeypatch.setenv("INFRACORE_CONSOLE", "127.0.0.1:2003")
    s = load_settings(cfg, console="127.0.0.1:3003", data_dir=None)
    assert s.http_port == 1001  # file
    assert s.https_port == 2002  # env beats file
    assert s.console == "127.0.0.1:3003"  # flag beats env
    assert s.log_level == "debug"
    assert s.config_file == cfg


def test_invalid_yaml_names_file_and_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("http_port: 80\nconsole: [unclosed\n")
    with pytest.raises(StartupError, match=r"config.yaml:\d+:\d+: invalid YAML"):
        load_settings(cfg)


def test_unknown_key_is_an_error_not_ignored(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("http_prot: 80\n")
    with pytest.raises(StartupError, match="http_prot: Extra inputs are not permitted"):
        load_settings(cfg)


def test_bad_value_says_which_setting(tmp_path):
    with pytest.raises(StartupError, match="http_port"):
        load_settings(None, http_port=70000)


def test_config_file_must_be_a_mapping(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("- a\n- b\n")
    with pytest.raises(StartupError, match="must be a mapping"):
        load_settings(cfg)


def test_missing_config_file_named_explicitly(tmp_path):
    with pytest.raises(StartupError, match="cannot read config file"):
        load_settings(Path(tmp_path / "nope.yaml"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7070", ("127.0.0.1", 7070)), ("[::1]:80", ("::1", 80)), (":8080", ("0.0.0.0", 8080))],
)
def test_parse_host_port(text, expected):
    assert parse_host_port(text, what="x") == expected


@pytest.mark.parametrize("text", ["7070", "host:", "host:99999", "host:http"])
def test_parse_host_port_rejects(text):
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_host_port(text, what="console address")


def test_alias_bomb_in_the_config_file_is_refused_with_the_limit_and_line(tmp_path):
    lines = ["gate:", '  a0: &a0 ["x"]']
    lines += [f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    cfg = tmp_path / "config.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        StartupError,
        match=r"config.yaml:7: the sequence starting here expands to \d+ nodes.*"
        r"\(max_nodes\)",
    ) as e:
        load_settings(cfg)
    assert "write it out plainly" in (e.value.hint or "")


def test_route_file_goes_through_the_bounded_loader(tmp_path):
    import argparse

    from fsctl.cli_gate import build_spec
    from fsctl.client import CliError

    f = tmp_path / "route.yaml"
    f.write_text("host: a.example\nupstreams: &u [127.0.0.1:1]\nx: [" + ",".join(["*u"] * 3) + "]\n")
    assert build_spec(argparse.Namespace(file=str(f)))["x"] == [["127.0.0.1:1"]] * 3
    f.write_text("host: a\nupstreams: [\n")
    with pytest.raises(CliError, match=r"route.yaml:3: invalid YAML"):
        build_spec(argparse.Namespace(file=str(f)))
    f.write_text("a: &a [x]\nb: &b [" + ",".join(["*a"] * 400) + "]\nc: [" + ",".join(["*b"] * 400) + "]\n")
    with pytest.raises(CliError, match="max_nodes"):
        build_spec(argparse.Namespace(file=str(f)))


def test_load_section_names_each_bad_key_with_the_components_words() -> None:
    """The one section loader every component uses: each problem by its path, the caller's words and hint."""
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    from core.settings import load_section

    class Section(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = Field(default=1, gt=0)
        nested: dict[str, int] = Field(default_factory=dict)

        @model_validator(mode="after")
        def _whole(self) -> "Section":
            if self.size == 13:
                raise ValueError("13 is unlucky")
            return self

    assert load_section(Section, None, key="demo", hint="h").size == 1
    assert load_section(Section, {"size": 2}, key="demo", hint="h").size == 2
    with pytest.raises(StartupError) as e:
        load_section(
            Section,
            {"size": 0, "bogus": 1, "nested": {"a": "x"}},
            key="demo",
            hint="fix demo:",
            what="invalid demo settings",
        )
    msg = str(e.value)
    assert msg.startswith("invalid demo settings: ")
    assert "demo.size: Input should be greater than 0" in msg
    assert "demo.bogus: Extra inputs are not permitted" in msg
    assert "demo.nested.a: Input should be a valid integer" in msg
    assert e.value.hint == "fix demo:"
    with pytest.raises(StartupError, match=r"^invalid settings: demo\.\(section\): Value error, 13 is unlucky"):
        load_section(Section, {"size": 13}, key="demo", hint="h")
