"""The MQTT publisher of ``infergy serve``: status, live power, results, job requests.

Topics (ARCHITECTURE.md, "Live exports"), under ``<topic_root>/<node>/``:

- ``status``: retained JSON, ``{"state": "online", ...}`` on connect, on
  :meth:`MqttPublisher.status_changed` (coalesced) and every ``status_interval_s`` (a
  heartbeat, with a fresh ``t_unix_s``); ``{"state": "offline", "reason": ...}`` as the last
  will (the injected ``status`` source's identity, unstamped) and on a clean stop. The body is
  the injected :class:`~infergy.exporters.mqtt_support.StatusSource`'s (docs/fleet.md); without
  one, just the node's name. (Before the fleet schema it was the bare text ``online`` /
  ``offline``: a consumer reads ``state`` now.);
- ``power``: ``{"t_unix_s": ..., "power_w": {"gpu0": 312.5, ...}, "simulated": {"gpu0":
  false, ...}}`` from the injected ``latest_power()`` (and ``simulated()``), at most every
  ``power_interval_s``, QoS 0, dropped while offline;
- ``runs`` / ``runs/latest``: results from the durable :class:`~infergy.exporters.outbox.Outbox`,
  QoS 1 in order; an entry is deleted only after its PUBACK (aiomqtt's ``publish(qos=1)`` returns
  when paho's ``on_publish`` fires, which for QoS 1 is on the PUBACK), so delivery is at least
  once, in order, across broker outages and process kills;
- ``cmd/<verb>`` requests and ``reply/<request_id>`` replies, answered by the injected
  ``commands`` (:class:`~infergy.exporters.mqtt_support.CommandSink`; the service passes
  :class:`infergy.daemon.mqtt_commands.CommandHandler`).

One connection at a time; every network wait is under ``timeout_s``; a failed or lost
connection is retried after a jittered exponential delay, forever: a broker that is down at
start or for an hour degrades the service, it never stops it::

    publisher = MqttPublisher(settings.mqtt, node=settings.node_name, outbox=outbox,
                              latest_power=meters.latest_power,
                              commands=CommandHandler(jobs.submit, jobs.cancel))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(publisher.run(), name="mqtt")
        ...
    publisher.enqueue_result(result)   # any thread; durable before it returns

Uses MQTT 3.1.1 (aiomqtt's default): a broker whose ACL denies a topic still acknowledges the
PUBLISH, so the broker's ACL must allow this node's topics. So after connecting, before
anything else is published, the node waits for its own ``status`` to come back (a round trip
through the broker's ACL): a broker that refuses the node its topics (a node logged in with
another node's credentials, an ACL without the node) fails the connection with
:class:`AclRefusedError`, logged as an error with the reason and retried with the backoff,
and no result leaves the outbox to be dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Set
from typing import Any, NoReturn

import aiomqtt

from infergy.config.settings import MqttSettings
from infergy.core.backoff import Backoff
from infergy.exporters.mqtt_support import (
    CommandSink,
    MqttHealth,
    MqttTopics,
    StatusSource,
    power_payload,
    status_payload,
    subscription_refused,
    tls_context,
)
from infergy.exporters.outbox import Outbox, OutboxEntry

__all__ = ["AclRefusedError", "Backoff", "MqttHealth", "MqttPublisher", "MqttTopics", "tls_context"]

DRAIN_WINDOW = 32
"""Outbox entries in flight at once (pipelined QoS 1 publishes, acknowledged in order)."""
MAX_QUEUED_REQUESTS = 256
"""Incoming ``cmd/*`` messages buffered while one is being answered."""
STABLE_S = 10.0
"""A connection that lasted this long resets the reconnect backoff to its minimum."""
STATUS_COALESCE_S = 0.2
"""Status changes closer together than this are published once (a job's queued -> running)."""


class AclRefusedError(aiomqtt.MqttError):
    """The broker does not let this node use its own topics (the ACL, or wrong credentials)."""


_NET_ERRORS = (aiomqtt.MqttError, TimeoutError, OSError)


_log = logging.getLogger("infergy.mqtt")


class MqttPublisher:
    """The MQTT service: place ``run()`` in the service's TaskGroup.

    Args:
        settings: the ``[mqtt]`` section.
        node: this machine's name (``Settings.node_name``), the second topic level.
        outbox: the durable result queue (``Outbox(store, max_entries=...)``).
        latest_power: returns the latest watts per source name (``{"gpu0": 312.5}``); called
            on the event loop every ``power_interval_s``, so it must not block. ``None``: no
            ``power`` topic.
        simulated: returns the source names whose readings are simulated (marked so in every
            ``power`` message); called with ``latest_power``, must not block either.
        commands: answers ``cmd/<verb>`` requests (``None``: this node takes no commands and
            does not subscribe to them).
        status: what the retained ``status`` says (``None``: the node's name only).
        rng: randomness of the reconnect jitter (tests pass a seeded one).

    Raises:
        ConfigError: the TLS files or the password file cannot be used.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        node: str,
        outbox: Outbox,
        latest_power: Callable[[], Mapping[str, float]] | None = None,
        simulated: Callable[[], Set[str]] | None = None,
        commands: CommandSink | None = None,
        status: StatusSource | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.topics = MqttTopics(f"{settings.topic_root}/{node}")
        self._client_id = settings.client_id or f"infergy-{node}"[:64]
        self._tls = tls_context(settings)
        settings.password_value()  # an unreadable password_file stops the start, in one line
        self._outbox = outbox
        self._latest_power = latest_power
        self._simulated = simulated
        self._commands = commands
        self._status = status
        self._node = node
        self._status_wake: asyncio.Event | None = None
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, rng)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None  # set while connected with an empty outbox
        self._connected = False
        self._counts = dict.fromkeys(
            ("published", "failed", "connects", "reconnects", "connect_failures", "power"), 0
        )
        self._pending = 0
        self._last_error: str | None = None

    # -- public API ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a broker connection is up now."""
        return self._connected

    def health(self) -> MqttHealth:
        """Counters and state now (cheap: no I/O)."""
        c = self._counts
        return MqttHealth(
            connected=self._connected,
            published_total=c["published"],
            failed_total=c["failed"],
            connects_total=c["connects"],
            reconnects_total=c["reconnects"],
            connect_failures_total=c["connect_failures"],
            power_published_total=c["power"],
            commands_total=0 if self._commands is None else self._commands.requests_total,
            command_errors_total=0 if self._commands is None else self._commands.errors_total,
            outbox_pending=self._pending,
            outbox_refused_total=self._outbox.refused_total,
            last_error=self._last_error,
        )

    def status_changed(self) -> None:
        """Publish the status again soon (a job changed); from the event loop's thread."""
        if self._status_wake is not None:
            self._status_wake.set()

    def enqueue_result(self, result: Mapping[str, Any]) -> bool:
        """Queue a result for ``runs`` and ``runs/latest``: durable before returning, any thread.

        It blocks for one SQLite commit (about a millisecond, an fsync); from the event loop
        prefer ``await asyncio.to_thread(publisher.enqueue_result, result)``.

        Returns:
            ``False`` when the outbox is full (see :mod:`infergy.exporters.outbox`).
        """
        return self._outbox.put_result(result)  # the outbox listener wakes the drain loop

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the outbox is empty and acknowledged; ``False`` if ``timeout_s`` passed.

        For a clean stop (SIGTERM): call it before cancelling ``run()``.
        """
        if self._idle is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self._idle.wait()
                    # idle may predate the newest entries (put_result just before this call, the
                    # drain loop not woken yet): only an empty outbox is flushed
                    if await asyncio.to_thread(self._outbox.pending) == 0:
                        return True
                    self._idle.clear()
                    if self._wake is not None:
                        self._wake.set()
        except TimeoutError:
            return False

    async def run(self) -> NoReturn:
        """Connect, publish and serve requests until cancelled; reconnect on any failure."""
        self._loop = asyncio.get_running_loop()
        self._wake, self._idle = asyncio.Event(), asyncio.Event()
        self._status_wake = asyncio.Event()
        self._outbox.add_listener(self._on_enqueue)
        try:
            while True:
                started = time.monotonic()
                try:
                    await self._connection()
                except Exception as err:  # a broken exporter degrades the service, never stops it
                    self._note_failure(err)
                finally:
                    self._connected = False
                    self._idle.clear()
                if time.monotonic() - started >= STABLE_S:
                    self._backoff.reset()
                await asyncio.sleep(self._backoff.next_delay_s())
        finally:
            self._outbox.remove_listener(self._on_enqueue)

    # -- one connection ------------------------------------------------------------------------

    def _on_enqueue(self) -> None:
        """Outbox listener: wake the drain loop (called from whichever thread enqueued)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        gone = status_payload("offline", self._identity(), reason="connection lost", stamped=False)
        will = aiomqtt.Will(self.topics.status, payload=gone, qos=1, retain=True)
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password_value(),
            identifier=self._client_id,
            will=will,
            clean_session=True,  # stale requests must not run after an outage; results
            # are kept by our outbox, not by a broker session
            timeout=s.timeout_s,
            keepalive=s.keepalive_s,
            max_inflight_messages=DRAIN_WINDOW,
            # requests are answered one at a time: a flood beyond this is discarded (aiomqtt
            # logs it) instead of growing without bound
            max_queued_incoming_messages=MAX_QUEUED_REQUESTS,
            tls_context=self._tls,
            logger=logging.getLogger("infergy.mqtt.client"),
        )
        client.pending_calls_threshold = DRAIN_WINDOW + 8  # a full window in flight is normal
        return client

    async def _connection(self) -> None:
        """One connection's life: returns or raises when it ends."""
        client = self._client()
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(self.settings.timeout_s):
                await stack.enter_async_context(client)
                filters = [self.topics.status]  # to see our own status come back (the ACL)
                if self._commands is not None:
                    filters.append(self.topics.commands)
                granted = await client.subscribe([(f, 1) for f in filters])
                if any(subscription_refused(c) for c in granted):
                    raise AclRefusedError(self._refusal("refused a subscription to"))
                status = await self._publish_status(client)
            early = await self._verify(client, status)  # its own time limit: not a timeout
            async with asyncio.timeout(self.settings.timeout_s):
                await client.unsubscribe(self.topics.status)
            self._on_connected()
            try:
                await self._tasks(client, early)
            except asyncio.CancelledError:
                # A clean stop: the will is not sent on a graceful disconnect, so say it.
                with contextlib.suppress(*_NET_ERRORS):
                    async with asyncio.timeout(min(1.0, self.settings.timeout_s)):
                        gone = status_payload("offline", self._identity(), reason="stopped")
                        await client.publish(self.topics.status, gone, qos=1, retain=True)
                raise

    async def _verify(self, client: aiomqtt.Client, status: bytes) -> list[aiomqtt.Message]:
        """Wait for our own status to come back: the broker lets this node use its topics.

        Under MQTT 3.1.1 a broker acknowledges a publish its ACL drops, and grants a
        subscription whose messages it will never deliver; only the round trip tells. Until it
        is made nothing else is published, so no result leaves the outbox to be dropped.

        Returns:
            The other messages read meanwhile (requests), for ``_serve`` to answer first.

        Raises:
            AclRefusedError: it did not come back within ``timeout_s``.
        """
        early: list[aiomqtt.Message] = []
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async for message in client.messages:
                    if message.topic.value == self.topics.status and message.payload == status:
                        return early
                    early.append(message)
        except TimeoutError:
            pass
        raise AclRefusedError(self._refusal("did not deliver this node's own status back from"))

    def _refusal(self, what: str) -> str:
        user = self.settings.username or "anonymous"
        return (
            f"the broker {what} {self.topics.base}/ for user {user!r}: its ACL refuses this "
            "node's topics (a node logs in with its node_name as user name, and reads and "
            "writes its own status)"
        )

    async def _tasks(self, client: aiomqtt.Client, early: list[aiomqtt.Message]) -> None:
        """The connection's tasks; the first failure ends them all and is raised alone."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._drain(client), name="mqtt-drain")
                tg.create_task(self._power(client), name="mqtt-power")
                tg.create_task(self._serve(client, early), name="mqtt-commands")
                tg.create_task(self._heartbeat(client), name="mqtt-status")
        except BaseExceptionGroup as group:
            first = group
            while isinstance(first, BaseExceptionGroup):  # the first cause; the rest follow it
                first = first.exceptions[0]
            raise first from None

    def _on_connected(self) -> None:
        c = self._counts
        c["reconnects"] += c["connects"] > 0
        c["connects"] += 1
        self._connected = True
        s = self.settings
        _log.info("MQTT connected to %s:%d as %s", s.host, s.port, self._client_id)

    def _note_failure(self, err: Exception) -> None:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if isinstance(err, AclRefusedError):  # configuration, not the network: say it loudly
            self._counts["connect_failures"] += 1
            log = _log.error if text != self._last_error else _log.debug
            log("MQTT: %s; retrying", text)
        elif not isinstance(err, _NET_ERRORS):  # a bug or the store: say where, keep retrying
            _log.error("MQTT publisher failed: %s; retrying", text, exc_info=err)
        elif self._connected:
            _log.warning("MQTT connection lost: %s; reconnecting", text)
        else:
            self._counts["connect_failures"] += 1
            log = _log.warning if text != self._last_error else _log.debug  # no log flood
            log("MQTT broker %s:%d unreachable: %s", self.settings.host, self.settings.port, text)
        self._last_error = text

    # -- the three tasks of a connection -------------------------------------------------------

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the outbox in id order, a window at a time; delete what was acknowledged."""
        assert self._wake is not None and self._idle is not None  # set by run()
        while True:
            self._wake.clear()  # before reading: an enqueue from now on wakes the wait below
            entries = await asyncio.to_thread(self._outbox.peek, DRAIN_WINDOW)
            if not entries:
                self._pending = 0
                self._idle.set()
                await self._wake.wait()
                continue
            self._idle.clear()
            acked: list[int] = []
            try:
                # gather starts the publishes in list order, so they go out in id order on one
                # connection; the broker acknowledges them in that order.
                outcomes = await asyncio.gather(
                    *(self._publish_entry(client, e, acked) for e in entries),
                    return_exceptions=True,
                )
            finally:  # also when cancelled because the connection dropped: keep what was acked
                self._counts["failed"] += len(entries) - len(acked)
                if acked:
                    await asyncio.shield(asyncio.to_thread(self._outbox.ack, acked))
                    self._counts["published"] += len(acked)
            self._pending = await asyncio.to_thread(self._outbox.pending)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome  # the connection is gone or stuck: reconnect, resend the rest

    async def _publish_entry(
        self, client: aiomqtt.Client, entry: OutboxEntry, acked: list[int]
    ) -> None:
        async with asyncio.timeout(self.settings.timeout_s):
            await client.publish(self.topics.of(entry.topic), entry.payload, 1, entry.retain)
        acked.append(entry.id)  # the PUBACK came: deletable

    def _identity(self) -> Mapping[str, Any]:
        return {"node": self._node} if self._status is None else self._status.identity()

    async def _publish_status(self, client: aiomqtt.Client) -> bytes:
        """Publish the status (retained); the payload sent."""
        try:
            body = {"node": self._node} if self._status is None else self._status.body()
        except Exception:  # a bug in the status must not drop the connection
            _log.exception("the status body failed; publishing the identity only")
            body = self._identity()
        payload = status_payload("online", body)
        async with asyncio.timeout(self.settings.timeout_s):
            await client.publish(self.topics.status, payload, 1, True)
        return payload

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        """The status again on every change (coalesced) and every ``status_interval_s``."""
        assert self._status_wake is not None  # set by run()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.status_interval_s):
                    await self._status_wake.wait()
                await asyncio.sleep(STATUS_COALESCE_S)
            self._status_wake.clear()
            await self._publish_status(client)

    async def _power(self, client: aiomqtt.Client) -> None:
        """Publish live power on a fixed schedule; missed ticks are skipped, never bunched."""
        if self._latest_power is None:
            return
        interval_s = self.settings.power_interval_s
        loop = asyncio.get_running_loop()
        next_t = loop.time()
        while True:
            now = loop.time()
            next_t = max(next_t + interval_s, now - (now - next_t) % interval_s + interval_s)
            await asyncio.sleep(next_t - now)
            try:
                sim = self._simulated() if self._simulated is not None else frozenset()
                payload = power_payload(self._latest_power(), sim)
            except Exception:  # a meter bug must not drop the connection
                _log.exception("latest_power() failed; skipping this power update")
                continue
            async with asyncio.timeout(self.settings.timeout_s):
                await client.publish(self.topics.power, payload, qos=0)
            self._counts["power"] += 1

    async def _serve(self, client: aiomqtt.Client, early: list[aiomqtt.Message]) -> None:
        """Answer requests one at a time; also notices a lost connection at once."""
        for message in early:
            await self._answer(client, message)
        async for message in client.messages:  # raises MqttError when the connection drops
            await self._answer(client, message)

    async def _answer(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        prefix = f"{self.topics.base}/cmd/"
        topic = message.topic.value
        if self._commands is None or not topic.startswith(prefix):
            return  # our own status, echoed while the ACL was checked, or a stray topic
        payload = message.payload if isinstance(message.payload, bytes) else b""
        reply = await self._commands.handle(topic[len(prefix) :], payload)
        if reply is not None:
            async with asyncio.timeout(self.settings.timeout_s):
                await client.publish(self.topics.reply(reply.request_id), reply.payload(), qos=1)
