"""The chain as a child process of `dexecutor up`, for one-machine use.

With no CHAIN_URL configured, `up` starts `dexecutor chain` beside itself (on
CHAIN_PORT if it was set, otherwise on a free port), waits until it answers, and
stops it on the way out. On Linux the child also dies with its parent, so a killed
`up` leaves no chain holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from dexecutor.config import Settings

READY_TIMEOUT_S = 60.0


@dataclass
class ChildChain:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_chain(settings: Settings, explicit_port: bool) -> ChildChain:
    port = settings.chain_port if explicit_port else _free_port()
    env = dict(os.environ)
    env.update(DATABASE_URL=settings.dsn(), REDIS_URL=settings.redis, CHAIN_PORT=str(port))
    env.pop("CHAIN_URL", None)
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "dexecutor.cli", "chain"], env=env, preexec_fn=preexec
    )
    url = f"http://127.0.0.1:{port}"
    child = ChildChain(proc, url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the chain exited with code {proc.returncode} at start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return child
        time.sleep(0.05)
    child.stop()
    raise RuntimeError(f"the chain did not answer at {url} within {READY_TIMEOUT_S:g}s")
