"""The task factory that lets a stalled stream find its call's task (api/streams.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pdsidecar.api import streams

pytestmark = pytest.mark.anyio


async def _schedule_rpc_coro() -> Any:  # named as grpc.aio's per-call coroutine
    await asyncio.sleep(0)
    return streams._call_task()


async def other() -> Any:
    return streams._call_task()


async def test_a_call_task_is_found_from_inside_it_and_other_tasks_find_none() -> None:
    loop = asyncio.get_running_loop()
    made: list[Any] = []

    def previous(loop: Any, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(previous)
    try:
        streams.install_call_tasks()
        factory = loop.get_task_factory()
        streams.install_call_tasks()  # idempotent
        assert loop.get_task_factory() is factory
        call = loop.create_task(_schedule_rpc_coro())
        assert await call is call
        assert await loop.create_task(other()) is None
        assert len(made) == 2, "the factory set before is still called for every task"
    finally:
        loop.set_task_factory(None)
