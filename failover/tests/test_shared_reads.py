"""The panel reads the dashboard's sockets share: one read in flight, a fresh result reused, failures not cached."""

from __future__ import annotations

import asyncio

import pytest

from failover.consumers import SharedReads


class Source:
    """A read that waits to be let go, counting its calls; it returns the call's number."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def read(self) -> int:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("database gone")
        return self.calls


def test_sockets_asking_at_once_share_one_read_and_a_fresh_result_is_reused():
    async def main() -> None:
        now = [0.0]
        source = Source()
        shared = SharedReads(source.read, clock=lambda: now[0])
        waiting = [asyncio.ensure_future(shared.get(1.0)) for _ in range(5)]
        await asyncio.sleep(0)
        source.gate.set()
        assert await asyncio.gather(*waiting) == [1] * 5
        assert source.calls == 1

        now[0] = 0.9
        assert await shared.get(1.0) == 1 and source.calls == 1  # still fresh
        now[0] = 1.0
        assert await shared.get(1.0) == 2 and source.calls == 2  # stale: read again

    asyncio.run(main())


def test_a_failed_read_fails_its_waiters_and_the_next_ask_reads_again():
    async def main() -> None:
        source = Source()
        shared = SharedReads(source.read, clock=lambda: 0.0)
        source.fail = True
        waiting = [asyncio.ensure_future(shared.get(10.0)) for _ in range(3)]
        await asyncio.sleep(0)
        source.gate.set()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results) and source.calls == 1
        source.fail = False
        assert await shared.get(10.0) == 2  # nothing of the failure was kept

    asyncio.run(main())


def test_a_socket_that_goes_away_does_not_cancel_the_read_for_the_others():
    async def main() -> None:
        source = Source()
        shared = SharedReads(source.read, clock=lambda: 0.0)
        leaving, staying = asyncio.ensure_future(shared.get(10.0)), asyncio.ensure_future(shared.get(10.0))
        await asyncio.sleep(0)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        source.gate.set()
        assert await staying == 1 and source.calls == 1

    asyncio.run(main())


def test_another_event_loop_starts_afresh():
    source = Source()
    source.gate.set()
    shared = SharedReads(source.read, clock=lambda: 0.0)
    assert asyncio.run(shared.get(10.0)) == 1
    assert asyncio.run(shared.get(10.0)) == 2  # a result of another loop (another test, another server) is not reused
