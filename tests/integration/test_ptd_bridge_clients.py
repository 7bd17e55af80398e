"""Several TCP clients on one bridge: own read positions, garbage, leaving mid-measurement."""

from __future__ import annotations

import asyncio

import pytest

from infergy.formats.ptd import parse_ptd_log
from tests.integration.ptd_support import RawClient, rig, wait_for

pytestmark = pytest.mark.integration


def test_clients_share_the_measurement_but_not_their_read_positions(tmp_path):
    async def scenario():
        async with rig(tmp_path, watts=50.0) as (_, bridge):
            a, b, leaver = [await RawClient.connect(bridge.port) for _ in range(3)]
            m = lambda: bridge.bridge.measurement  # noqa: E731
            assert (await leaver.one("Go,100,0,shared")).startswith("Starting untimed")
            await wait_for(lambda: len(m().samples) >= 2)
            await leaver.close()  # the client that started it leaves: the measurement goes on
            first_a = await a.req("RL")
            n = len(m().samples)
            await wait_for(lambda: len(m().samples) >= n + 2)
            assert await a.one("Mark,second_half") == "Mark changed to 'second_half'"
            await wait_for(lambda: len(m().samples) >= n + 4)
            assert await b.one("Hello there") == "Error: unknown command"
            assert await b.one("x" * 10_000) == "Error: unknown command"  # over the line limit
            assert await b.req("\x00\xff\xfe", eol="\n") == ["Error: unknown command"]
            assert await b.one("Hello") == "Hello, PTDaemon here!"  # the connection stayed
            assert await a.one("Stop") == "Stopping untimed measurement"
            rest_a, all_b = await a.req("RL"), await b.req("RL")
            assert await a.req("RL") == ["No unread samples"]
            await a.close()
            await b.close()
            return first_a, rest_a, all_b

    first_a, rest_a, all_b = asyncio.run(scenario())
    assert first_a[1:] + rest_a[1:] == all_b[1:]  # a read in two goes what b read at once
    marks = parse_ptd_log((tmp_path / "ptd.log").read_text()).marks
    assert marks[0] == "shared" and marks[-1] == "second_half"
    assert len(marks) == len(all_b) - 1
