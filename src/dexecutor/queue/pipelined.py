"""BullMQ's per-job scripts, the calls made together sent in one pipeline.

BullMQ for Python takes each job with a `moveToActive` call of its own and finishes
each with a `moveToFinished` of its own: two round trips per order, each paying
redis-py's connection checkout, a socket write and a read. The engine finishes orders
in groups (their last status changes share one statement), so their completions and
the takes that refill their slots come together; sent as one pipeline, they cost one
round trip. Each script still runs atomically in Redis, one after another, exactly as
the separate calls would have; each caller gets its own answer or its own error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from dexecutor.group_commit import GroupCommit, ItemFailed

# The scripts a worker runs once per job (take, finish) and calls with keys and args
# only; the others (lock renewal, stalled checks) run a few times a second at most.
PER_JOB_SCRIPTS = ("moveToActive", "moveToFinished")

_Call = tuple[Sequence[Any], Sequence[Any]]


class PipelinedScript:
    """Stands in for one of BullMQ's scripts (`AsyncScript`) in its script table."""

    def __init__(self, script: AsyncScript) -> None:
        self.script = script
        # One pipeline at a time: Redis runs them one by one anyway, and the calls that
        # arrive meanwhile make the next one bigger.
        self._calls: GroupCommit[_Call, Any] = GroupCommit(self._send, max_flushes=1)

    async def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if client is not None:  # the caller's own pipeline or connection
            return await self.script(keys=keys, args=args, client=client)
        return await self._calls.submit((keys or (), args or ()))

    async def _send(self, calls: list[_Call]) -> list[Any]:
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self.script(keys=keys, args=args)]
        pipe = self.script.registered_client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        answers = await pipe.execute(raise_on_error=False)
        out: list[Any] = []
        for (keys, args), answer in zip(calls, answers, strict=True):
            if isinstance(answer, NoScriptError):
                # Redis lost its scripts (restarted): this call did not run. The plain
                # call loads the script again and runs it.
                answer = await self.script(keys=keys, args=args)
            elif isinstance(answer, Exception):
                answer = ItemFailed(answer)
            out.append(answer)
        return out


def pipeline_per_job_scripts(commands: dict[str, Any]) -> None:
    """Replace a BullMQ worker's per-job scripts (its `scripts.commands`) by pipelined ones."""
    for name in PER_JOB_SCRIPTS:
        if not isinstance(commands[name], PipelinedScript):
            commands[name] = PipelinedScript(commands[name])
