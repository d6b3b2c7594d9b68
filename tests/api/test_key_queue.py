"""KeyQueue: one subscription create at a time per API key in a process, however turns overlap."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException

from api.routes.subscriptions import KeyQueue


def test_a_request_that_arrives_as_the_holder_leaves_still_waits_for_the_one_queued_before_it():
    """Was: the lock was dropped from the table when its holder released it, even with a request
    queued on it (woken, not yet running); the next request made a new lock and ran beside it."""
    async def main():
        q, inside, most = KeyQueue(), 0, 0

        async def create(hold_s: float):
            nonlocal inside, most
            async with q.turn(1, 5):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(hold_s)
                inside -= 1

        a = asyncio.create_task(create(0.05))
        await asyncio.sleep(0.01)
        b = asyncio.create_task(create(0.05))  # queued behind a
        await asyncio.sleep(0.01)
        await a  # a leaves; b is woken but has not run yet
        c = asyncio.create_task(create(0.05))
        await asyncio.gather(b, c)
        return most, q.locks

    most, left = asyncio.run(main())
    assert most == 1
    assert left == {}  # nothing kept once no one holds or waits


def test_a_turn_not_had_in_time_is_503_and_leaves_nothing_behind():
    async def main():
        q = KeyQueue()
        async with q.turn(7, 5):
            with pytest.raises(HTTPException) as e:
                async with q.turn(7, 0.05):
                    pass
            assert e.value.status_code == 503
        return q.locks

    assert asyncio.run(main()) == {}
