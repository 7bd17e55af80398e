"""The controller's connection to the broker: connect, subscribe, a barrier, publish.

::

    async with FleetLink(settings.mqtt, client_id="infergy-fleet-c1", on_message=seen) as link:
        await link.subscribe("infergy/+/status")
        await link.sync()      # every retained status has reached seen() by now
        await link.publish("infergy/edge-01/cmd/run", {"request_id": "c1-0001", ...})

Messages go to ``on_message(topic, payload, retained)`` from one reader task, in arrival
order; nothing is buffered where a cancellation could lose it. :meth:`FleetLink.sync` is a
barrier: it publishes a token to the controller's own topic (``<root>/_fleet/<client>/sync``,
a level no node name can take) and waits until it comes back; the broker sends the retained
messages of a subscription before anything published after it, so by then they have all
arrived (mosquitto does; one broker per fleet is what this is built for).

``persistent=True`` keeps a broker session (``clean_session=False``, a fixed client id): while
the controller is away the broker queues the QoS 1 replies and results it subscribed to, and
a resumed campaign receives them (:meth:`FleetLink.forget` ends the session). Every failure to
connect is one :class:`~infergy.errors.BrokerError` line: refused credentials, no broker, TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiomqtt

from infergy.config.settings import MqttSettings
from infergy.daemon.fleet.presence import NodeView, parse_status, split_topic
from infergy.errors import BrokerError
from infergy.exporters.mqtt import tls_context
from infergy.exporters.mqtt_support import subscription_refused

__all__ = ["FleetLink", "MessageFn", "survey"]

MessageFn = Callable[[str, bytes, bool], None]
"""Called with ``(topic, payload, retained)`` for every message, on the event loop."""
MAX_QUEUED = 100_000
"""Incoming messages buffered by the client at most (1,000 nodes' retained topics fit)."""
_REFUSALS = {
    4: "bad user name or password",
    5: "not authorized",
    134: "bad user name or password",
    135: "not authorized",
}
_log = logging.getLogger("infergy.fleet.link")


class FleetLink:
    """One connection of the controller (an async context manager).

    Args:
        settings: the ``[mqtt]`` section: broker, TLS, credentials, ``topic_root``, timeouts.
        client_id: this controller's client id (unique per broker).
        on_message: receives every message (see :data:`MessageFn`).
        persistent: keep the broker session between connections (see the module docstring).
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        on_message: MessageFn,
        persistent: bool = False,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.persistent = persistent
        self._on_message = on_message
        self._tls = tls_context(settings)
        settings.password_value()  # an unreadable password file: one line, before connecting
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sync_topic = f"{settings.topic_root}/_fleet/{client_id}/sync"
        self._sync_seen: dict[str, asyncio.Event] = {}
        self._syncs = 0
        self.lost: str | None = None
        """Why the connection ended while in use (``None``: it is up)."""

    @property
    def where(self) -> str:
        """``host:port`` of the broker."""
        return f"{self.settings.host}:{self.settings.port}"

    def _new_client(self, *, clean: bool) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password_value(),
            identifier=self.client_id,
            clean_session=clean,
            timeout=s.timeout_s,
            keepalive=s.keepalive_s,
            tls_context=self._tls,
            max_queued_incoming_messages=MAX_QUEUED,
            logger=logging.getLogger("infergy.fleet.client"),
        )

    async def __aenter__(self) -> FleetLink:
        client = self._new_client(clean=not self.persistent)
        await self._connect(client)
        self._client = client
        self._reader = asyncio.create_task(self._read(client), name="fleet-reader")
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await client.subscribe(self._sync_topic, qos=1)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
            self._reader = None
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
                async with asyncio.timeout(self.settings.timeout_s):
                    await client.__aexit__(None, None, None)

    async def _connect(self, client: aiomqtt.Client) -> None:
        user = self.settings.username
        who = f" as {user!r}" if user else " anonymously"
        try:
            async with asyncio.timeout(self.settings.timeout_s + 1):
                await client.__aenter__()
        except aiomqtt.MqttCodeError as err:
            code = getattr(err.rc, "value", err.rc)
            why = _REFUSALS.get(code if isinstance(code, int) else -1) or str(err)
            msg = f"the MQTT broker at {self.where} refused the connection{who}: {why}"
            hint = "check [mqtt] username and password (INFERGY_MQTT__PASSWORD) and the ACL"
            raise BrokerError(msg, hint=hint) from None
        except TimeoutError:
            msg = f"the MQTT broker at {self.where} did not answer within "
            msg += f"{self.settings.timeout_s:g} s"
            raise BrokerError(msg, hint="check [mqtt] host, port and tls") from None
        except (aiomqtt.MqttError, OSError) as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, ssl.SSLError) or isinstance(err, ssl.SSLError):
                msg = f"TLS to the MQTT broker at {self.where} failed: {cause or err}"
                raise BrokerError(msg, hint="check [mqtt] tls_ca (the broker's CA)") from None
            msg = f"cannot connect to the MQTT broker at {self.where}: {err}"
            raise BrokerError(msg, hint="check [mqtt] host and port; is the broker up?") from None

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                topic = message.topic.value
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if topic == self._sync_topic:
                    event = self._sync_seen.get(payload.decode(errors="replace"))
                    if event is not None:
                        event.set()
                    continue
                try:
                    self._on_message(topic, payload, bool(message.retain))
                except Exception:  # a handler's bug must not silence the rest
                    _log.exception("handling %s failed", topic)
        except aiomqtt.MqttError as err:
            self.lost = f"the connection to the MQTT broker at {self.where} was lost: {err}"

    def _require(self) -> aiomqtt.Client:
        if self._client is None or self.lost is not None:
            raise BrokerError(self.lost or "not connected to the MQTT broker")
        return self._client

    async def subscribe(self, *filters: str) -> None:
        """Subscribe at QoS 1 to every filter.

        Raises:
            BrokerError: the broker refused one (its ACL) or did not answer.
        """
        client = self._require()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                granted = await client.subscribe([(f, 1) for f in filters])
        except (aiomqtt.MqttError, TimeoutError) as err:
            msg = f"subscribing on {self.where} failed: {err}"
            raise BrokerError(msg) from None
        refused = [f for f, c in zip(filters, granted, strict=False) if subscription_refused(c)]
        if refused:
            who = self.settings.username or "anonymous"
            msg = f"the broker at {self.where} refused {who!r} the subscription to {refused[0]}"
            raise BrokerError(msg, hint="its ACL must let the controller read <topic_root>/#")

    async def sync(self) -> None:
        """Wait until everything the broker sent before now has been handled.

        Raises:
            BrokerError: the token did not come back within ``timeout_s``.
        """
        client = self._require()
        self._syncs += 1
        token = f"{self.client_id}-{self._syncs}"
        event = self._sync_seen[token] = asyncio.Event()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await client.publish(self._sync_topic, token.encode(), qos=1)
                await event.wait()
        except (aiomqtt.MqttError, TimeoutError):
            msg = f"the broker at {self.where} did not return the controller's own message"
            hint = "its ACL must let the controller write <topic_root>/#"
            raise BrokerError(msg, hint=hint) from None
        finally:
            self._sync_seen.pop(token, None)

    async def publish(self, topic: str, body: Mapping[str, Any]) -> None:
        """Publish a JSON object at QoS 1 (returns on the broker's PUBACK).

        Raises:
            BrokerError: the connection failed or the broker did not acknowledge in time.
        """
        client = self._require()
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await client.publish(topic, payload, qos=1)
        except (aiomqtt.MqttError, TimeoutError) as err:
            msg = f"publishing to {topic} on {self.where} failed: {err}"
            raise BrokerError(msg) from None

    async def forget(self) -> None:
        """End this client id's broker session (nothing stays queued or subscribed for it)."""
        await self.__aexit__(None, None, None)
        client = self._new_client(clean=True)
        with contextlib.suppress(BrokerError):
            await self._connect(client)
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
                async with asyncio.timeout(self.settings.timeout_s):
                    await client.__aexit__(None, None, None)


async def survey(settings: MqttSettings, *, stale_after_s: float | None = None) -> list[NodeView]:
    """Every node's retained status on the broker now, sorted by name (``infergy fleet status``).

    A clean session with a random client id: nothing stays behind.

    Raises:
        BrokerError: the broker cannot be reached or refuses this client.
    """
    views: dict[str, NodeView] = {}
    root = settings.topic_root

    def seen(topic: str, payload: bytes, _retained: bool) -> None:
        parts = split_topic(topic, root)
        if parts is not None and parts[1] == "status":
            view = parse_status(parts[0], payload, now_unix_s=time.time(),
                                stale_after_s=stale_after_s)  # fmt: skip
            if view is None:
                views.pop(parts[0], None)
            else:
                views[parts[0]] = view

    client_id = f"infergy-fleet-status-{secrets.token_hex(4)}"
    async with FleetLink(settings, client_id=client_id, on_message=seen) as link:
        await link.subscribe(f"{root}/+/status")
        await link.sync()
    return [views[name] for name in sorted(views)]
