"""Error paths of the `kawa` command: each fails with exit code 1 and a message that says
what is wrong and what to do (no traceback)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ops.helpers import Deployment, free_port, kawa, kawa_env, kill_brokers_under, wait_until

pytestmark = pytest.mark.timeout(120)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A running broker that does not create topics on first use."""
    root = tmp_path_factory.mktemp("ops-strict")
    d = Deployment(root / "deployment")
    d.run("install", *d.where).ok()
    d.up("--no-auto-create-topics")
    yield d
    d.run("down", *d.where)
    kill_brokers_under(root)


def test_unknown_topic(strict: Deployment) -> None:
    b = ["-b", strict.bootstrap]
    for args in (["topic", "describe", "nope"], ["topic", "delete", "nope"],
                 ["topic", "alter", "nope", "--config", "retention.ms=1"],
                 ["partition", "add", "nope", "--count", "1"],
                 ["consume", "nope", "--count", "1", "--timeout", "1"]):
        r = strict.run(*args, *b).failed()
        assert "topic 'nope' does not exist" in r.err, (args, r.err)
        assert "kawa topic create nope" in r.err and "kawa topic list" in r.err
        no_traceback(r.text)
    r = strict.run("produce", "nope", *b, input="x\n").failed()
    assert "does not exist and the broker does not create topics on first use" in r.err
    assert "kawa topic create nope" in r.err


def test_bad_topic_requests_carry_the_brokers_reason(strict: Deployment) -> None:
    b = ["-b", strict.bootstrap]
    strict.run("topic", "create", "once", *b).ok()
    r = strict.run("topic", "create", "once", *b).failed()
    assert "already exists" in r.err and "--if-not-exists" in r.err
    assert "already exists" in strict.run("topic", "create", "once", "--if-not-exists", *b).ok().out
    r = strict.run("topic", "create", "badcfg", "--config", "retention.ms=soon", *b).failed()
    assert "retention.ms" in r.err
    r = strict.run("topic", "alter", "once", "--partitions", "1", *b).failed()
    assert "must be more" in r.err
    no_traceback(r.text)


def test_broker_not_reachable(tmp_path: Path) -> None:
    port = free_port()
    r = kawa("topic", "list", "-b", f"127.0.0.1:{port}", cwd=tmp_path).failed()
    assert f"cannot reach a broker at 127.0.0.1:{port}: connection refused" in r.err
    assert "kawa status" in r.err and "--bootstrap-server" in r.err


def test_bad_config_key_names_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "kawa.toml").write_text("# my broker\nlisten_port = 9100\nlisten_prot = 9101\n")
    r = kawa("up", cwd=tmp_path).failed()
    assert "kawa.toml:3: unknown setting 'listen_prot'; did you mean 'listen_port'?" in r.err
    r = kawa("config", "show", cwd=tmp_path, env=kawa_env(KAWA_BROKER_ID="x")).failed()
    assert "environment variable KAWA_BROKER_ID: broker_id" in r.err
    (tmp_path / "kawa.toml").write_text("listen_port = 9100\ndurability = 'fast'\n")
    r = kawa("install", cwd=tmp_path).failed()
    assert "kawa.toml:2: durability: Input should be 'sync', 'interval' or 'os'" in r.err
    no_traceback(r.text)


def test_ports_in_use(deployment: Deployment) -> None:
    d = deployment
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = d.run("up", "--listen", f"127.0.0.1:{port}", *d.where).failed()
        assert f"cannot listen on 127.0.0.1:{port} for Kafka clients: the port is in use" in r.err
        assert "--listen HOST:PORT" in r.err and "flag --listen" in r.err
        r = d.run("up", "--listen", d.bootstrap, "--http-port", str(port), *d.where).failed()
        assert f"cannot serve HTTP (/ping, /healthz, /metrics) on 127.0.0.1:{port}" in r.err
        assert "--http-port PORT" in r.err and "--http-port off" in r.err
        r = d.run("up", "--detach", "--listen", d.bootstrap, "--http-port", str(port),
                  *d.where).failed()
        assert "--http-port PORT" in r.err
    no_traceback(r.text)


def test_store_not_installed_with_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(f"listen_port = {free_port()}\n")
    r = kawa("up", "-c", "site.toml", cwd=tmp_path,
             env=kawa_env(KAWA_STORE_WAIT_TIMEOUT_MS="300")).failed()
    assert "waiting for metadata store at kawa-data/metadata.sqlite" in r.err
    assert "no deployment at kawa-data: install it first with `kawa install -c site.toml`" in r.err
    assert "store_wait_timeout_ms" in r.err
    no_traceback(r.text)


def lock(store: Path) -> sqlite3.Connection:
    """Hold the store the way another process could: an exclusive lock until closed."""
    db = sqlite3.connect(store, isolation_level=None)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("UPDATE counters SET value = value")
    db.execute("COMMIT")
    return db


def test_store_locked_times_out_with_advice(deployment: Deployment) -> None:
    d = deployment
    d.run("install", *d.where).ok()
    db = lock(d.data_dir / "metadata.sqlite")
    try:
        r = d.run("up", *d.listen, env=kawa_env(KAWA_STORE_WAIT_TIMEOUT_MS="2000")).failed()
        assert "waiting for metadata store at" in r.err and "locked by another process" in r.err
        assert "not reachable after" in r.err and "stop the process holding the file" in r.err
        assert "KAWA_STORE_WAIT_TIMEOUT_MS" in r.err
        r = d.run("status", *d.where).failed()
        assert "locked by another process" in r.err
    finally:
        db.close()
    no_traceback(r.text)


def test_broker_waits_for_a_locked_store_then_starts(deployment: Deployment) -> None:
    d = deployment
    d.run("install", *d.where).ok()
    db = lock(d.data_dir / "metadata.sqlite")
    log = d.root / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kawa", "up", *d.listen], cwd=d.root,
                                env=kawa_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "waiting for metadata store at" in log.read_text(), "a wait line")
        assert proc.poll() is None
        db.close()
        wait_until(lambda: "listening on" in log.read_text(), "the broker listens")
        assert "metadata store reachable after" in log.read_text()
        assert d.status()["state"] == "running"
    finally:
        db.close()
        proc.terminate()
        proc.wait(20)
    assert proc.returncode == 0
    no_traceback(log.read_text())


def test_down_stops_a_broker_still_waiting_for_its_store(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text(f"listen_port = {free_port()}\nhttp_port = 'off'\n")
    (tmp_path / "kawa-data").mkdir()  # mounted, but nothing installed yet
    log = tmp_path / "broker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kawa", "up", "-c", "site.toml"],
                                cwd=tmp_path, env=kawa_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "waiting for metadata store" in log.read_text(), "a wait line")
        assert "run `kawa install -c site.toml`" in log.read_text()
        status = kawa("status", "-c", "site.toml", "-o", "json", cwd=tmp_path).ok().json()
        assert status["brokers"][0]["state"] == "starting"
        r = kawa("down", "-c", "site.toml", cwd=tmp_path).ok()
        assert "stopped in" in r.out
        assert proc.wait(10) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (tmp_path / "kawa-data" / "broker-0.pid").exists()
    no_traceback(log.read_text())
