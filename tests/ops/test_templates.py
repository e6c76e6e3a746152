"""One Jinja2 template describes many brokers on a host: `--set id=N` derives each one's
id, ports and data directory; `kawa config render` and `kawa config show` explain it."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from ops.helpers import free_port_block, kawa, kill_brokers_under

pytestmark = pytest.mark.timeout(120)

TEMPLATE = """\
# One file for every broker on this host: kawa up -c broker.toml.j2 --set id=N
broker_id = {{ id }}
listen_port = {{ KAFKA + id }}
http_port = {{ HTTP + id }}
data_dir = "brokers/{{ id }}"
default_partitions = 2
"""


@pytest.fixture
def template(tmp_path: Path):
    base = free_port_block(3)  # brokers 1 and 2 listen on base + id
    http_base = free_port_block(3, avoid=set(range(base, base + 3)))
    path = tmp_path / "broker.toml.j2"
    path.write_text(TEMPLATE.replace("KAFKA", str(base)).replace("HTTP", str(http_base)))
    yield path, base, http_base
    kill_brokers_under(tmp_path)


def test_two_brokers_from_one_template(template: tuple[Path, int, int]) -> None:
    path, base, http_base = template
    root = path.parent
    rendered = kawa("config", "render", "-c", path.name, "--set", "id=2", cwd=root).ok().out
    assert "broker_id = 2\n" in rendered and f"listen_port = {base + 2}\n" in rendered
    assert 'data_dir = "brokers/2"' in rendered

    shown = kawa("config", "show", "-c", path.name, "--set", "id=2", "-o", "json",
                 cwd=root).ok().json()
    assert shown["listen_port"] == {"value": base + 2, "source": f"file {path.name}:3"}
    assert shown["data_dir"]["value"] == "brokers/2"
    assert shown["durability"] == {"value": "sync", "source": "default"}

    for n in (1, 2):
        kawa("install", "-c", path.name, "--set", f"id={n}", cwd=root).ok()
        r = kawa("up", "--detach", "-c", path.name, "--set", f"id={n}", cwd=root).ok()
        assert f"listening on 127.0.0.1:{base + n}" in r.out
        assert f"kawa down -c {path.name} --set id={n}" in r.out

    for n in (1, 2):
        status = kawa("status", "-c", path.name, "--set", f"id={n}", "-o", "json",
                      cwd=root).ok().json()
        (broker,) = status["brokers"]
        assert (broker["id"], broker["address"], broker["state"]) == (
            n, f"127.0.0.1:{base + n}", "running")
        assert broker["http"] == f"127.0.0.1:{http_base + n}"
        assert (root / "brokers" / str(n) / "metadata.sqlite").is_file()
        # -c derives the bootstrap address for resource commands too
        kawa("topic", "create", f"from-{n}", "-c", path.name, "--set", f"id={n}", cwd=root).ok()
        p = Producer({"bootstrap.servers": f"127.0.0.1:{base + n}"})
        p.produce(f"from-{n}", b"x")
        assert p.flush(10) == 0

    listed = kawa("topic", "list", "-c", path.name, "--set", "id=1", "-o", "json",
                  cwd=root).ok().json()
    assert listed == [{"topic": "from-1", "partitions": 2, "replication_factor": 1}]

    for n in (1, 2):
        assert "stopped in" in kawa("down", "-c", path.name, "--set", f"id={n}", cwd=root).ok().out


def test_template_errors_say_what_to_pass(template: tuple[Path, int, int]) -> None:
    path, _, _ = template
    r = kawa("config", "render", "-c", path.name, cwd=path.parent).failed()
    assert "parameter 'id' is not set: pass --set id=VALUE" in r.err
    r = kawa("up", "-c", path.name, cwd=path.parent).failed()
    assert "--set id=VALUE" in r.err
