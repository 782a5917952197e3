"""Order ids come from a buffer of the system's random bytes (engine/intake.py)."""

from __future__ import annotations

import os
from uuid import UUID

from dexecutor.engine.intake import new_order_id


def test_ids_are_random_version_4_uuids_and_never_repeat() -> None:
    ids = [new_order_id() for _ in range(5_000)]  # many refills of the buffer
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {"specified in RFC 4122"}


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    new_order_id()  # the buffer now holds the parent's next ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first id, to the parent
        os.write(write, new_order_id().bytes)
        os._exit(0)
    os.close(write)
    child_first = UUID(bytes=os.read(read, 16))
    os.waitpid(pid, 0)
    parent_next = {new_order_id() for _ in range(300)}
    assert child_first not in parent_next
