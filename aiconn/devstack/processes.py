"""Child processes of the local stack: started with a log file, recorded by PID, stopped in
reverse order. `aiconn dev down` stops what `aiconn dev up` started from the PID files alone, so
nothing is left running even when the process that started them is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class StackError(RuntimeError):
    """A local component could not start; the message names it and shows its log tail."""


def cache_dir() -> Path:
    """Where built binaries, images and environments are kept between runs and clones:
    AICONN_CACHE, else ~/.cache/aiconn (the tools/*/build.sh scripts use the same default)."""
    return Path(os.environ.get("AICONN_CACHE", Path.home() / ".cache" / "aiconn"))


def _port_slot() -> tuple[int, int]:
    """`AICONN_PORT_SLOT=i/n`: this process may pick only ports p with (p // 2) % n == i (set for
    each pytest-xdist worker, so workers starting servers at the same moment never pick the same
    port between free_port() and the server's bind). Halved because Linux hands out odd ports to
    bind(port 0) first. Unset: any port."""
    raw = os.environ.get("AICONN_PORT_SLOT", "")
    if not raw:
        return 0, 1
    slot, _, slots = raw.partition("/")
    n = int(slots)
    if not 0 <= int(slot) < n:
        raise ValueError(f"AICONN_PORT_SLOT={raw!r}: want i/n with 0 <= i < n")
    return int(slot), n


def free_port() -> int:
    slot, slots = _port_slot()
    held: list[socket.socket] = []
    try:
        for _ in range(64 * slots):
            s = socket.socket()
            held.append(s)  # kept bound until a port of the slot turns up: the kernel moves on
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if (port // 2) % slots == slot:
                return port
    finally:
        for s in held:
            s.close()
    raise StackError(f"no free loopback port in slot {slot} of {slots}")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether `url` answers 200 within 2 s (a readiness probe for `wait_until`)."""
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        return int(resp.status) == 200


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    proc: Proc | None = None,
) -> None:
    """Poll `check` until it is true; raise StackError naming `what` on timeout, or at once
    with the log tail when `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            proc.ensure_alive()
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    tail = f"; log tail of {proc.name}:\n{log_tail(proc.log)}" if proc is not None else ""
    raise StackError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ensure_alive(self) -> None:
        if not self.alive():
            raise StackError(
                f"{self.name} exited with code {self.popen.returncode}; log tail:\n"
                f"{log_tail(self.log)}"
            )


@dataclass
class ProcessGroup:
    """Processes of one stack, with PID files under `state_dir/pids`."""

    state_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        logs = self.state_dir / "logs"
        pids = self.state_dir / "pids"
        logs.mkdir(parents=True, exist_ok=True)
        pids.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        order = len(list(pids.glob("*.pid")))
        (pids / f"{order:02d}-{name}.pid").write_text(str(popen.pid))
        proc = Proc(name=name, popen=popen, log=log)
        self.procs.append(proc)
        return proc

    def stop(self, name: str, *, timeout: float = 10) -> None:
        for proc in [p for p in self.procs if p.name == name]:
            _terminate(proc.popen.pid, timeout=timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=1)
            self.procs.remove(proc)
            for pidfile in (self.state_dir / "pids").glob(f"*-{name}.pid"):
                pidfile.unlink(missing_ok=True)

    def stop_all(self, *, timeout: float = 10) -> None:
        stop_recorded(self.state_dir, timeout=timeout)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=1)
        self.procs.clear()


def _terminate(pid: int, *, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_recorded(
    state_dir: Path, *, timeout: float = 10, only: Collection[str] | None = None
) -> list[str]:
    """Stop every process recorded under `state_dir/pids` (or those named in `only`), newest
    first; return their names."""
    pids = state_dir / "pids"
    stopped = []
    for pidfile in sorted(pids.glob("*.pid"), reverse=True) if pids.exists() else []:
        if only is not None and pidfile.stem.split("-", 1)[-1] not in only:
            continue
        with contextlib.suppress(ValueError, OSError):
            _terminate(int(pidfile.read_text()), timeout=timeout)
            stopped.append(pidfile.stem.split("-", 1)[-1])
        pidfile.unlink(missing_ok=True)
    return stopped
