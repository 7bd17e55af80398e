"""systemd's notify protocol without dependencies: readiness, status lines, the watchdog.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, an AF_UNIX datagram socket (a path,
or an abstract name written with a leading ``@``); each datagram holds newline-separated
``KEY=value`` assignments. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op::

    notifier = Notifier.from_env()
    notifier.ready("3 of 4 components up; MQTT broker unreachable")
    tg.create_task(notifier.watchdog(), name="infergy-watchdog")
    ...
    notifier.stopping()

The watchdog pings from the event loop itself at half of ``$WATCHDOG_USEC``: when the loop is
stuck, the pings stop and systemd restarts the service (``WatchdogSec=`` in the unit). A failed
send is logged once and never raised: losing a status line must not stop a measurement.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)

MAX_STATUS_CHARS = 1000
"""STATUS= text is cut to this length (one line: systemctl status shows it)."""


class Notifier:
    """Sends notifications to the service manager.

    Args:
        socket_address: ``$NOTIFY_SOCKET``: a path, or ``@name`` for an abstract socket;
            ``None`` or empty disables notifications.
        watchdog_usec: ``$WATCHDOG_USEC``, the watchdog timeout in microseconds, or ``None``.
        watchdog_pid: ``$WATCHDOG_PID``; when set, the watchdog is this process's only if equal.
    """

    def __init__(
        self,
        socket_address: str | None,
        *,
        watchdog_usec: int | None = None,
        watchdog_pid: int | None = None,
    ) -> None:
        self._address = _address(socket_address)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        if watchdog_pid is not None and watchdog_pid != os.getpid():
            self._watchdog_usec = None  # meant for another process (e.g. our parent)
        self._warned = False
        self.sent = 0
        """Datagrams delivered (for tests and the status page)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (``os.environ``)."""
        environ = os.environ if env is None else env
        return cls(
            environ.get("NOTIFY_SOCKET"),
            watchdog_usec=_int(environ.get("WATCHDOG_USEC")),
            watchdog_pid=_int(environ.get("WATCHDOG_PID")),
        )

    @property
    def enabled(self) -> bool:
        """Whether there is a service manager to notify."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between pings (half the watchdog timeout), or ``None`` without a watchdog."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2e6

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if it was delivered.

        Never raises and never blocks: a full socket buffer drops the message.
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as err:
            if not self._warned:  # once: a vanished manager would otherwise flood the log
                logger.warning("cannot notify systemd at %s: %s", self._address, err)
                self._warned = True
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: the startup checks are done (``systemctl start`` returns)."""
        return self.notify("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line for ``systemctl status``."""
        return self.notify(*_status(text))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.notify("STOPPING=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by ``Type=notify-reload``).

        Follow it with :meth:`ready` once the reload is done.
        """
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}", *_status(status))

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: a slow start or stop needs ``seconds`` more."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def ping(self) -> bool:
        """``WATCHDOG=1``: the service is alive."""
        return self.notify("WATCHDOG=1")

    async def watchdog(self) -> None:
        """Ping at half the watchdog timeout until cancelled; returns at once without one.

        It runs on the event loop on purpose: a blocked loop stops the pings.
        """
        interval_s = self.watchdog_interval_s
        if interval_s is None:
            return
        logger.debug("systemd watchdog: ping every %.3f s", interval_s)
        while True:
            self.ping()
            await asyncio.sleep(interval_s)


def _address(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    logger.warning("NOTIFY_SOCKET=%r is not a path or an abstract name: not notifying", raw)
    return None  # e.g. vsock: addresses, for VMs; not ours to handle


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    one_line = " ".join(text.split())
    return (f"STATUS={one_line[:MAX_STATUS_CHARS]}",)


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None
