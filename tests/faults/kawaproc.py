"""A kawa broker process for the fault tests: start, stop (SIGTERM), kill -9, restart.

Port and data directory survive restarts; every start logs to its own file.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from waiting import free_port

REPO_SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0

# The local (segment file) engine may be absent while it is being written.
LOCAL_STORAGE = importlib.util.find_spec("kawa.storage.local.log") is not None
STORAGE = "local" if LOCAL_STORAGE else "memory"




class KawaProcess:
    """One kawa broker on a fixed port and data directory that survive restarts."""

    def __init__(self, data_dir: Path, log_dir: Path, flags: tuple[str, ...], name: str,
                 memory_limit_bytes: int | None = None, check_tracebacks: bool = True) -> None:
        self.data_dir = Path(data_dir)
        # False only for a test that reproduces a known traceback on purpose.
        self.check_tracebacks = check_tracebacks
        # RLIMIT_AS for the broker process, as a container memory limit would set:
        # makes "allocation too large" failures independent of the host's RAM.
        self.memory_limit_bytes = memory_limit_bytes
        self.log_dir = Path(log_dir)
        self.flags = flags
        self.name = name
        self.port = free_port()
        self.host = "127.0.0.1"
        self.bootstrap = f"{self.host}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_paths: list[Path] = []

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "kawa", "up", "--listen", self.bootstrap,
                "--data-dir", str(self.data_dir), *self.flags]

    def start(self) -> KawaProcess:
        assert not self.alive(), f"{self.name} is already running"
        self.starts += 1
        log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        self.log_paths.append(log_path)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_SRC) + (os.pathsep + env["PYTHONPATH"]
                                             if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.log_dir)
        self._limit_memory()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} while "
                                   f"starting:\n{self.log_text()[-4000:]}")
            if "listening" in self.log_text() and self._port_open():
                return self
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError(f"{self.name} not ready in {START_TIMEOUT_S}s:\n{self.log_text()[-4000:]}")

    def _limit_memory(self) -> None:
        # Set from outside right after the start: the limit only matters for requests,
        # which come after start-up.
        if self.memory_limit_bytes is not None:
            limit = self.memory_limit_bytes
            resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (limit, limit))

    def _port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM (a clean stop); SIGKILL only if it does not exit in time."""
        return self._signal(signal.SIGTERM)

    def kill9(self) -> int | None:
        return self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def restart(self) -> KawaProcess:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        """The log of the current (latest) start."""
        if not self.log_paths or not self.log_paths[-1].exists():
            return ""
        return self.log_paths[-1].read_bytes().decode("utf-8", "replace")

    def log_mark(self) -> int:
        """A position in the current log, for log_since()."""
        path = self.log_paths[-1]
        return path.stat().st_size if path.exists() else 0

    def log_since(self, mark: int) -> str:
        with open(self.log_paths[-1], "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")

    def wait_for_log(self, text: str, mark: int = 0, timeout_s: float = 5.0) -> bool:
        """True once `text` appears in the current log after `mark`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_since(mark):
                return True
            time.sleep(0.02)
        return False

    def all_logs(self) -> str:
        return "".join(p.read_bytes().decode("utf-8", "replace")
                       for p in self.log_paths if p.exists())

    def tracebacks(self) -> list[str]:
        """Excerpts of every Python traceback in any of this broker's logs."""
        text = self.all_logs()
        out = []
        at = text.find("Traceback")
        while at != -1:
            out.append(text[max(0, text.rfind("\n", 0, max(0, at - 1)) + 1): at + 3000])
            at = text.find("Traceback", at + 1)
        return out

    def __repr__(self) -> str:
        return f"<KawaProcess {self.name} {self.bootstrap} alive={self.alive()}>"
