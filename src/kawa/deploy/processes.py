"""Broker processes on this host: pid files, log files, liveness, port checks.

Each broker writes ``<data_dir>/broker-<id>.pid`` once its store has let it
register and removes it on a clean stop; a detached broker (``kawa up
--detach``) logs to ``<data_dir>/broker-<id>.log``. A pid file is trusted only
if its process is alive and is a kawa process (``/proc/<pid>/cmdline`` names
kawa, where /proc exists): a pid file left by kill -9 never blocks a start.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

PID_SUFFIX = ".pid"
LOG_SUFFIX = ".log"


def pid_file(data_dir: Path, broker_id: int) -> Path:
    return data_dir / f"broker-{broker_id}{PID_SUFFIX}"


def log_file(data_dir: Path, broker_id: int) -> Path:
    return data_dir / f"broker-{broker_id}{LOG_SUFFIX}"


def write_pid_file(data_dir: Path, broker_id: int) -> Path:
    path = pid_file(data_dir, broker_id)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)
    return path


def remove_pid_file(data_dir: Path, broker_id: int) -> None:
    path = pid_file(data_dir, broker_id)
    try:
        if int(path.read_text().strip() or 0) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def pid_alive(pid: int) -> bool:
    """A live (not zombie) kawa process other than this one."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        return b"kawa" in (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def live_pid_files(data_dir: Path) -> dict[int, int]:
    """broker id -> pid, for every pid file in data_dir whose process lives."""
    found: dict[int, int] = {}
    if not data_dir.is_dir():
        return found
    for path in data_dir.glob(f"broker-*{PID_SUFFIX}"):
        try:
            broker_id = int(path.name[len("broker-"):-len(PID_SUFFIX)])
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            found[broker_id] = pid
    return found


class PortInUse(Exception):
    pass


def check_bindable(host: str, port: int, message: str) -> None:
    """Raise PortInUse(message) if (host, port) cannot be bound now; port 0 always can."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise PortInUse(f"cannot resolve listen host {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's reuse_address
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(message) from None
            raise PortInUse(f"cannot bind {host}:{port}: {e.strerror}") from None
