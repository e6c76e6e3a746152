"""Configuration (kawa.deploy.settings): precedence with sources, errors that name the
setting and the line, Jinja2 templates, the HTTP default."""

from __future__ import annotations

from pathlib import Path

import pytest

from kawa.deploy.settings import HTTP_PORT_DEFAULT, SettingsError, find_line, load, parse_params


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_serve_one_host() -> None:
    r = load(None, env={})
    s = r.settings
    assert (s.listen_host, s.listen_port, s.data_dir) == ("127.0.0.1", 9092, Path("kawa-data"))
    assert s.http_port == HTTP_PORT_DEFAULT
    assert r.embedded and all(src.kind == "default" for src in r.sources.values())
    assert s.broker_config().http_port == HTTP_PORT_DEFAULT


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "kawa.toml", "# comment\nlisten_port = 9100\ndurability = 'os'\n"
                 "default_partitions = 3\n")
    r = load(path, flags={"default_partitions": (5, "--default-partitions")},
             env={"KAWA_DURABILITY": "interval", "KAWA_UNRELATED": "x", "KAWA_TEST_TARGET": "kawa"})
    s = r.settings
    assert (s.listen_port, s.durability.value, s.default_partitions) == (9100, "interval", 5)
    assert str(r.sources["listen_port"]) == f"file {path}:2"
    assert str(r.sources["durability"]) == "environment KAWA_DURABILITY"
    assert str(r.sources["default_partitions"]) == "flag --default-partitions"
    assert str(r.sources["broker_id"]) == "default"
    assert s.data_dir == Path("kawa-data")


def test_relative_data_dir_in_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kawa.toml", 'data_dir = "store"\n')
    assert load(path, env={}).settings.data_dir == tmp_path / "store"


def test_unknown_key_names_the_line_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "kawa.toml", "listen_port = 9100\n\n  listen_prot = 3\n")
    with pytest.raises(SettingsError) as e:
        load(path, env={})
    message = str(e.value)
    assert f"{path}:3" in message and "'listen_prot'" in message
    assert "did you mean 'listen_port'" in message and "kawa config show" in message


def test_bad_value_names_key_line_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "kawa.toml", 'broker_id = 1\nhttp_port = 70000\ndurability = "fast"\n')
    with pytest.raises(SettingsError) as e:
        load(path, env={})
    lines = str(e.value).splitlines()
    assert lines[1].strip().startswith(f"{path}:2: http_port:") and "70000" in lines[1]
    assert lines[2].strip().startswith(f"{path}:3: durability:") and "'fast'" in lines[2]


def test_environment_and_flag_errors_name_their_source() -> None:
    with pytest.raises(SettingsError, match="environment variable KAWA_LISTEN_PORT: listen_port"):
        load(None, env={"KAWA_LISTEN_PORT": "many"})
    with pytest.raises(SettingsError, match="flag --broker-id: broker_id"):
        load(None, flags={"broker_id": (-1, "--broker-id")}, env={})


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "kawa.toml", "listen_port = \n")
    with pytest.raises(SettingsError, match=r"invalid TOML.*line 1"):
        load(path, env={})


def test_template_renders_one_file_for_many_brokers(tmp_path: Path) -> None:
    path = write(tmp_path, "broker.toml.j2",
                 "broker_id = {{ id }}\nlisten_port = {{ 9092 + id }}\n"
                 'data_dir = "data-{{ id }}"\n')
    one, two = (load(path, parse_params([f"id={n}"]), env={}).settings for n in (1, 2))
    assert (one.broker_id, one.listen_port, one.data_dir) == (1, 9093, tmp_path / "data-1")
    assert (two.broker_id, two.listen_port, two.data_dir) == (2, 9094, tmp_path / "data-2")


def test_template_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "broker.toml.j2", "broker_id = {{ id }}\n")
    with pytest.raises(SettingsError, match=r"parameter 'id' is not set: pass --set id=VALUE"):
        load(path, env={})
    broken = write(tmp_path, "broken.toml.j2", "broker_id = 1\nlisten_port = {{ 9092 + }}\n")
    with pytest.raises(SettingsError, match=rf"{broken}:2: template syntax error"):
        load(broken, env={})
    with pytest.raises(SettingsError, match="expected NAME=VALUE"):
        parse_params(["id"])
    bad = write(tmp_path, "bad.toml.j2", "broker_id = {{ id }}\nbroker_idd = 1\n")
    with pytest.raises(SettingsError, match=rf"{bad}:2: unknown setting 'broker_idd'"):
        load(bad, {"id": 1}, env={})


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found: check the -c path"):
        load(tmp_path / "nope.toml", env={})


def test_http_is_off_when_listen_is_a_flag_without_http_port(tmp_path: Path) -> None:
    listen = {"listen_host": ("127.0.0.1", "--listen"), "listen_port": (9300, "--listen")}
    r = load(None, flags=listen, env={})
    assert r.settings.http_port is None and r.sources["http_port"].kind == "default"
    r = load(None, flags={**listen, "http_port": ("0", "--http-port")}, env={})
    assert r.settings.http_port == 0
    off = load(None, flags={"http_port": ("off", "--http-port")}, env={})
    assert off.settings.http_port is None
    path = write(tmp_path, "kawa.toml", "listen_port = 9300\n")  # a file: HTTP stays on
    assert load(path, env={}).settings.http_port == HTTP_PORT_DEFAULT
    assert load(None, env={"KAWA_HTTP_PORT": "off"}).settings.http_port is None


def test_find_line() -> None:
    text = '# listen_port = 1\n[other]\n"listen_port" = 2\nlisten_port=3\n'
    assert find_line(text, "listen_port") == 3
    assert find_line(text, "other") == 2
    assert find_line(text, "absent") is None


def test_cli_hint_names_the_deployment(tmp_path: Path) -> None:
    path = write(tmp_path, "b.toml.j2", "broker_id = {{ id }}\n")
    r = load(path, {"id": 4}, flags={"data_dir": (tmp_path / "d", "--data-dir")}, env={})
    assert r.cli_hint() == f" -c {path} --set id=4 --data-dir {tmp_path / 'd'}"


def test_effective_settings_as_toml_read_back(tmp_path: Path) -> None:
    import tomllib

    from kawa.deploy.settings import to_toml

    r = load(None, flags={"http_port": ("off", "--http-port")}, env={"KAWA_BROKER_ID": "7"})
    text = to_toml(r)
    assert "broker_id = 7  # environment KAWA_BROKER_ID\n" in text
    assert '# http_port = "off"  # unset (flag --http-port)' in text
    again = load(write(tmp_path, "kawa.toml", text), env={})
    assert again.settings.model_dump(exclude={"http_port", "data_dir"}) == r.settings.model_dump(
        exclude={"http_port", "data_dir"})
    assert tomllib.loads(text)["data_dir"] == "kawa-data"
