"""Helpers for the operations tests: run `kawa` as a real process, deployments in their
own directories with free ports, bounded waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import waiting
from waiting import free_port

REPO_SRC = Path(__file__).resolve().parents[2] / "src"
COMMAND_TIMEOUT_S = 60.0
DEADLINE_S = 20.0




def free_port_block(size: int, avoid: Collection[int] = ()) -> int:
    """A port p such that p..p+size-1 are all free now (and none is in `avoid`)."""
    for _ in range(100):
        base = free_port()
        ports = range(base, base + size)
        if base + size > 65535 or any(port in avoid for port in ports):
            continue
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {size} free ports")


def kawa_env(**extra: str) -> dict[str, str]:
    """This environment without KAWA_* settings (they would change what is tested)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KAWA_") or k == "KAWA_TEST_TARGET"}
    env["PYTHONPATH"] = str(REPO_SRC) + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    def ok(self) -> Result:
        assert self.code == 0, f"kawa {' '.join(self.args)} exited {self.code}:\n{self.text}"
        return self

    def failed(self) -> Result:
        assert self.code != 0, f"kawa {' '.join(self.args)} should have failed:\n{self.text}"
        return self

    def json(self) -> Any:
        return json.loads(self.out)


def kawa(*args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None,
         timeout: float = COMMAND_TIMEOUT_S) -> Result:
    proc = subprocess.run([sys.executable, "-m", "kawa", *args], check=False, cwd=cwd,
                          env=env or kawa_env(), input=input, capture_output=True, text=True,
                          timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S,
               interval: float = 0.05) -> Any:
    return waiting.wait_until(check, what, timeout, interval)


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def kill_brokers_under(root: Path) -> None:
    """End the broker processes these tests started (named by pid files under root)."""
    for pid_file in root.rglob("broker-*.pid"):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if not pid_alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


class Deployment:
    """One deployment in its own directory, on free ports; `run` runs kawa there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.http_port = free_port()
        while self.http_port == self.port:
            self.http_port = free_port()
        self.data_dir = root / "kawa-data"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def where(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)]

    @property
    def listen(self) -> list[str]:
        return ["--listen", self.bootstrap, "--http-port", str(self.http_port), *self.where]

    def run(self, *args: str, **kwargs: Any) -> Result:
        return kawa(*args, cwd=self.root, **kwargs)

    def up(self, *extra: str) -> Result:
        return self.run("up", "--detach", *self.listen, *extra).ok()

    def down(self) -> Result:
        return self.run("down", *self.where).ok()

    def status(self) -> dict[str, Any]:
        return self.run("status", *self.where, "--output", "json").ok().json()

    def log(self, broker_id: int = 0) -> str:
        path = self.data_dir / f"broker-{broker_id}.log"
        return path.read_text() if path.exists() else ""
