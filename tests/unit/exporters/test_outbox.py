"""The MQTT outbox: order, ack-then-delete, durability across reopening, the size bound."""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path

import pytest

from infergy.errors import InputError
from infergy.exporters.outbox import (
    MAXQ_LATEST_TOPIC,
    MAXQ_TOPIC,
    RUNS_LATEST_TOPIC,
    RUNS_TOPIC,
    Outbox,
)
from infergy.store.db import Store


def result(i: int, **extra: object) -> dict[str, object]:
    return {"run_id": f"r{i:04d}", "status": "ok", **extra}


def run_ids(outbox: Outbox, topic: str = RUNS_TOPIC) -> list[str]:
    return [json.loads(e.payload)["run_id"] for e in outbox.peek(10_000) if e.topic == topic]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "infergy.db")
    yield s  # type: ignore[misc]
    s.close()


def test_results_queue_in_order_with_one_retained_latest_at_the_end(store: Store) -> None:
    outbox = Outbox(store)
    for i in range(5):
        assert outbox.put_result(result(i)) is True
    entries = outbox.peek(100)
    assert [e.topic for e in entries] == [RUNS_TOPIC] * 5 + [RUNS_LATEST_TOPIC]
    assert [e.retain for e in entries] == [False] * 5 + [True]
    assert run_ids(outbox) == [f"r{i:04d}" for i in range(5)]
    assert run_ids(outbox, RUNS_LATEST_TOPIC) == ["r0004"]  # older unsent latests replaced
    ids = [e.id for e in entries]
    assert ids == sorted(ids)
    assert outbox.pending() == 6


def test_peek_keeps_entries_and_ack_deletes_only_those_given(store: Store) -> None:
    outbox = Outbox(store)
    for i in range(4):
        outbox.put_result(result(i))
    first = outbox.peek(2)
    assert outbox.peek(2) == first  # reading is not consuming
    outbox.ack([first[1].id, 999_999])  # out of order and unknown ids are fine
    assert run_ids(outbox) == ["r0000", "r0002", "r0003"]
    outbox.ack([first[0].id])
    outbox.ack([])
    assert run_ids(outbox) == ["r0002", "r0003"]


def test_payload_is_compact_json_of_the_result(store: Store) -> None:
    outbox = Outbox(store)
    outbox.put_result(result(1, power={"ac": 12.5}, label="é"))
    payload = outbox.peek(1)[0].payload
    assert payload == '{"run_id":"r0001","status":"ok","power":{"ac":12.5},"label":"é"}'.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, object()])
def test_a_result_that_is_not_json_is_refused_and_nothing_is_queued(
    store: Store, bad: object
) -> None:
    outbox = Outbox(store)
    with pytest.raises(InputError, match="r0001"):
        outbox.put_result(result(1, figure=bad))
    assert outbox.pending() == 0


def test_entries_survive_closing_and_reopening_and_ids_keep_growing(tmp_path: Path) -> None:
    path = tmp_path / "infergy.db"
    with Store.open(path) as s:
        outbox = Outbox(s)
        for i in range(3):
            outbox.put_result(result(i))
        last_id = outbox.peek(10)[-1].id
    with Store.open(path) as s:
        outbox = Outbox(s)
        assert run_ids(outbox) == ["r0000", "r0001", "r0002"]
        outbox.ack([e.id for e in outbox.peek(10)])
        assert outbox.pending() == 0
    with Store.open(path) as s:
        outbox = Outbox(s)
        outbox.put_result(result(9))
        # AUTOINCREMENT: an emptied queue never reuses ids, so id order stays queue order
        assert min(e.id for e in outbox.peek(10)) > last_id


def test_a_full_outbox_keeps_the_oldest_refuses_new_loudly_and_still_updates_latest(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(store, max_entries=3)
    with caplog.at_level(logging.ERROR, logger="infergy.mqtt.outbox"):
        accepted = [outbox.put_result(result(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert run_ids(outbox) == ["r0000", "r0001", "r0002"]
    assert run_ids(outbox, RUNS_LATEST_TOPIC) == ["r0004"]
    assert outbox.refused_total == 2
    assert [r.levelno for r in caplog.records] == [logging.ERROR] * 2
    assert "r0003" in caplog.records[0].getMessage()
    outbox.ack([outbox.peek(1)[0].id])  # one delivered: room for one more
    assert outbox.put_result(result(5)) is True
    assert run_ids(outbox) == ["r0001", "r0002", "r0005"]


def test_max_entries_must_be_positive(store: Store) -> None:
    with pytest.raises(InputError):
        Outbox(store, max_entries=0)


def test_listeners_hear_every_commit_and_a_failing_one_does_not_fail_the_write(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(store)
    heard: list[int] = []

    def broken() -> None:
        raise RuntimeError("listener bug")

    def count() -> None:
        heard.append(outbox.pending())

    outbox.add_listener(broken)
    outbox.add_listener(count)
    with caplog.at_level(logging.ERROR):
        outbox.put_result(result(1))
    assert heard == [2]  # already committed when the listener runs
    assert "listener" in caplog.text
    outbox.remove_listener(count)
    outbox.remove_listener(count)  # idempotent
    outbox.put_result(result(2))
    assert heard == [2]


def test_concurrent_writers_from_threads_lose_nothing_and_keep_their_own_order(
    store: Store,
) -> None:
    outbox = Outbox(store)

    def writer(t: int) -> None:
        for i in range(40):
            outbox.put_result({"run_id": f"t{t}-{i:03d}", "status": "ok"})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    ids = run_ids(outbox)
    assert len(ids) == len(set(ids)) == 160
    for t in range(4):
        mine = [x for x in ids if x.startswith(f"t{t}-")]
        assert mine == sorted(mine)
    assert len(run_ids(outbox, RUNS_LATEST_TOPIC)) == 1


def test_a_sweep_record_goes_to_maxq_with_one_retained_latest(store: Store) -> None:
    outbox = Outbox(store)
    outbox.put_result(result(1))
    for i in (1, 2):
        assert outbox.put_sweep({"sweep_id": f"mq-{i}", "status": "ok", "simulated": True})
    entries = outbox.peek(100)
    sweeps = [json.loads(e.payload)["sweep_id"] for e in entries if e.topic == MAXQ_TOPIC]
    latest = [e for e in entries if e.topic == MAXQ_LATEST_TOPIC]
    assert sweeps == ["mq-1", "mq-2"] and run_ids(outbox) == ["r0001"]
    assert (
        len(latest) == 1
        and latest[0].retain
        and json.loads(latest[0].payload)["sweep_id"] == "mq-2"
    )
