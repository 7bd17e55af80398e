"""Building blocks of the MQTT publisher: topic names, health, TLS, power payloads.

Kept apart from :mod:`infergy.exporters.mqtt` so each stays small; import them from there.
"""

from __future__ import annotations

import json
import math
import ssl
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Protocol

from infergy.config.settings import MqttSettings
from infergy.errors import ConfigError

__all__ = [
    "CommandSink",
    "MqttHealth",
    "MqttTopics",
    "Reply",
    "StatusSource",
    "power_payload",
    "status_payload",
    "subscription_refused",
    "tls_context",
]

SUBSCRIBE_REFUSED = 0x80
"""The SUBACK return code of a subscription the broker refused (MQTT 3.1.1: its ACL)."""


def subscription_refused(code: object) -> bool:
    """Whether a SUBACK code (an int, or paho's ``ReasonCode``) refuses the subscription."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= SUBSCRIBE_REFUSED


@dataclass(frozen=True)
class Reply:
    """A reply to publish on ``reply/<request_id>``."""

    request_id: str
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether the request was accepted."""
        return bool(self.body.get("ok"))

    def payload(self) -> bytes:
        """The body as compact JSON."""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


class CommandSink(Protocol):
    """Who answers ``cmd/<verb>`` requests (:class:`infergy.daemon.mqtt_commands.CommandHandler`).

    The publisher only carries requests in and replies out: validating and executing them is
    control, which lives in the daemon and is injected here.
    """

    requests_total: int
    errors_total: int

    async def handle(self, verb: str, payload: bytes) -> Reply | None:
        """Answer one request (``None``: no reply is possible)."""


class StatusSource(Protocol):
    """What the retained ``status`` says (:class:`infergy.daemon.node_status.NodeStatus`).

    Both are called on the event loop and must not block.
    """

    def identity(self) -> Mapping[str, Any]:
        """What does not change while the service runs: the body of the last will too."""

    def body(self) -> Mapping[str, Any]:
        """Everything the status says now (identity included)."""


def status_payload(
    state: str, body: Mapping[str, Any], *, reason: str | None = None, stamped: bool = True
) -> bytes:
    """``{"state": "online" | "offline", ..., "t_unix_s": ...}`` as compact JSON.

    ``stamped=False`` leaves out ``t_unix_s`` (the last will: set at connect time, sent later).
    Non-finite numbers become ``null``.
    """
    out: dict[str, Any] = {"state": state, **body}
    if reason is not None:
        out["reason"] = reason
    if stamped:
        out["t_unix_s"] = round(time.time(), 3)
    return json.dumps(_finite(out), separators=(",", ":"), ensure_ascii=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class MqttTopics:
    """The node's topic names (``base`` is ``<topic_root>/<node>``)."""

    base: str

    @property
    def status(self) -> str:  # noqa: D102
        return f"{self.base}/status"

    @property
    def power(self) -> str:  # noqa: D102
        return f"{self.base}/power"

    @property
    def commands(self) -> str:
        """The filter of all ``cmd/<verb>`` topics."""
        return f"{self.base}/cmd/+"

    def reply(self, request_id: str) -> str:
        """Where the reply to ``request_id`` goes."""
        return f"{self.base}/reply/{request_id}"

    def of(self, relative: str) -> str:
        """A topic below the base (outbox entries store ``runs`` and ``runs/latest``)."""
        return f"{self.base}/{relative}"


@dataclass(frozen=True)
class MqttHealth:
    """A snapshot of the publisher's state and counters (for ``/healthz`` and Prometheus)."""

    connected: bool
    published_total: int
    """Outbox entries acknowledged by the broker (and deleted)."""
    failed_total: int
    """Outbox publishes that failed (the entry stays queued and is sent again)."""
    connects_total: int
    """Connections established."""
    reconnects_total: int
    """Connections established after an earlier one was lost."""
    connect_failures_total: int
    """Connection attempts that failed (broker down, refused, timed out)."""
    power_published_total: int
    commands_total: int
    command_errors_total: int
    outbox_pending: int
    """Entries waiting, as of the last drain pass (no store read)."""
    outbox_refused_total: int
    """Results not queued because the outbox was full (see ``Outbox``)."""
    last_error: str | None


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for, or ``None`` for plain TCP.

    Raises:
        ConfigError: a CA, certificate or key file cannot be read or used.
    """
    if not settings.use_tls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.tls_ca)
        if settings.tls_cert is not None:
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as err:
        msg = f"[mqtt] TLS files cannot be used: {err}"
        hint = "check tls_ca, tls_cert and tls_key: readable PEM files, the key matching"
        raise ConfigError(msg, hint=hint) from None
    return context


def power_payload(power_w: Mapping[str, float], simulated: Set[str] = frozenset()) -> bytes:
    """``{"t_unix_s": ..., "power_w": {...}, "simulated": {...}}``.

    Non-finite readings become ``null``; ``simulated`` says for every source whether its
    readings are simulated (never a measurement to show as one).
    """
    watts = {str(k): (round(v, 3) if math.isfinite(v) else None) for k, v in power_w.items()}
    body = {
        "t_unix_s": round(time.time(), 3),
        "power_w": watts,
        "simulated": {name: name in simulated for name in watts},
    }
    return json.dumps(body, separators=(",", ":")).encode()
