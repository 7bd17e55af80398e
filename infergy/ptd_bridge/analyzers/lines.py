"""Lines to an instrument: a serial tty or pty through pyserial, or a Linux USBTMC device.

Both speak the Yokogawa convention: commands end in LF, replies end in CR LF (or LF). Every
read is bounded by a timeout; pyserial's and the OS's errors become
:class:`~infergy.errors.AnalyzerConnectionError` here, so drivers see only infergy's errors.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import time

import serial

from infergy.errors import AnalyzerConnectionError, AnalyzerTimeoutError, InputError
from infergy.ptd_bridge.analyzers.base import Line

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_USBTMC_IOCTL_SET_TIMEOUT = 0x40045B0A  # linux/usb/tmc.h: _IOW('[', 10, __u32), milliseconds
_MAX_REPLY_BYTES = 65_536


def parse_framing(framing: str) -> tuple[int, str, float]:
    """``8N1`` -> (8 data bits, no parity, 1 stop bit).

    Raises:
        InputError: not of the form <5-8><N|E|O><1|2>.
    """
    f = framing.strip().upper()
    if len(f) != 3 or f[0] not in "5678" or f[1] not in _PARITY or f[2] not in "12":
        msg = f"invalid serial framing {framing!r}"
        raise InputError(msg, hint="use data bits, parity and stop bits, e.g. 8N1 or 7E1")
    return int(f[0]), _PARITY[f[1]], float(f[2])


class SerialLine:
    """An RS-232 tty, USB-serial adapter or pseudo-terminal opened with pyserial.

    Args:
        port: the device path (``/dev/ttyUSB0``, ``/dev/pts/3``).
        baud: line speed (ignored by ptys).
        framing: data bits, parity, stop bits (``8N1``).
        exclusive: lock the port so a second program cannot open it too.

    Raises:
        AnalyzerConnectionError: the port cannot be opened.
    """

    def __init__(
        self, port: str, *, baud: int = 9600, framing: str = "8N1", exclusive: bool = True
    ) -> None:
        bits, parity, stop = parse_framing(framing)
        try:
            self._ser = serial.Serial(
                port,
                baudrate=baud,
                bytesize=bits,
                parity=parity,
                stopbits=stop,
                timeout=1.0,
                write_timeout=2.0,
                exclusive=exclusive,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            msg = f"cannot open the analyzer's port {port}: {err}"
            hint = "check the cable, the device path and that no other program holds the port"
            raise AnalyzerConnectionError(msg, hint=hint) from err
        self.port = port
        self._pending = b""

    def write(self, command: str) -> None:
        """Send ``command`` + LF."""
        try:
            self._ser.write(command.encode("ascii", "replace") + b"\n")
        except (serial.SerialException, OSError) as err:
            msg = f"writing to {self.port} failed: {err}"
            raise AnalyzerConnectionError(msg) from err

    def read_line(self, timeout_s: float) -> tuple[bytes, int]:
        """One reply line (CR LF stripped) and the monotonic ns its first byte arrived.

        Reads whatever has arrived in one call (pyserial's ``read_until`` reads byte by byte,
        a system call each); bytes after the line terminator are kept for the next line.
        """
        deadline = time.monotonic() + timeout_s
        t_first_ns = time.monotonic_ns() if self._pending else 0
        buf = self._pending
        try:
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or len(buf) > _MAX_REPLY_BYTES:
                    break
                self._ser.timeout = left
                chunk = self._ser.read(max(1, self._ser.in_waiting))
                if chunk and not buf:
                    t_first_ns = time.monotonic_ns()
                buf += chunk
        except (serial.SerialException, OSError) as err:
            self._pending = b""
            msg = f"reading from {self.port} failed: {err}"
            raise AnalyzerConnectionError(msg) from err
        line, sep, self._pending = buf.partition(b"\n")
        if not sep:
            self._pending = b""
            what = "incomplete reply" if buf else "no reply"
            msg = f"{what} from the analyzer on {self.port} within {timeout_s:.1f} s"
            raise AnalyzerTimeoutError(msg)
        return line.rstrip(b"\r"), t_first_ns

    def discard_input(self) -> int:
        """Drop pending input (stale replies, garbage)."""
        try:
            n = int(self._ser.in_waiting) + len(self._pending)
            self._pending = b""
            self._ser.reset_input_buffer()
        except (serial.SerialException, OSError) as err:
            msg = f"{self.port} went away: {err}"
            raise AnalyzerConnectionError(msg) from err
        return n

    def close(self) -> None:
        """Close the port."""
        with contextlib.suppress(serial.SerialException, OSError):
            self._ser.close()


class UsbtmcLine:
    """A Linux ``usbtmc`` character device (``/dev/usbtmc0``): one read returns one reply.

    The kernel driver enforces the read timeout (set through its ioctl, as yokotool does).
    Not exercised by infergy's tests (they need the hardware); the bytes it moves are the
    same as over serial.

    Raises:
        AnalyzerConnectionError: the device cannot be opened.
    """

    def __init__(self, port: str) -> None:
        try:
            self._fd = os.open(port, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            msg = f"cannot open the analyzer's USBTMC device {port}: {err}"
            hint = "check the cable and that you may read and write the device (udev rule)"
            raise AnalyzerConnectionError(msg, hint=hint) from err
        self.port = port
        self._timeout_ms = 0
        self._pending = b""

    def write(self, command: str) -> None:
        """Send ``command`` + LF as one USBTMC message."""
        try:
            os.write(self._fd, command.encode("ascii", "replace") + b"\n")
        except OSError as err:
            msg = f"writing to {self.port} failed: {err}"
            raise AnalyzerConnectionError(msg) from err

    def read_line(self, timeout_s: float) -> tuple[bytes, int]:
        """One reply (its first line) and when it arrived."""
        if b"\n" not in self._pending:
            ms = max(1, round(timeout_s * 1000))
            try:
                if ms != self._timeout_ms:
                    fcntl.ioctl(self._fd, _USBTMC_IOCTL_SET_TIMEOUT, struct.pack("I", ms))
                    self._timeout_ms = ms
                chunk = os.read(self._fd, _MAX_REPLY_BYTES)
            except TimeoutError as err:
                msg = f"no reply from the analyzer on {self.port} within {timeout_s:.1f} s"
                raise AnalyzerTimeoutError(msg) from err
            except OSError as err:
                msg = f"reading from {self.port} failed: {err}"
                raise AnalyzerConnectionError(msg) from err
            self._pending += chunk if chunk.endswith(b"\n") else chunk + b"\n"
        t_ns = time.monotonic_ns()
        line, _, self._pending = self._pending.partition(b"\n")
        return line.rstrip(b"\r"), t_ns

    def discard_input(self) -> int:
        """Drop a buffered partial reply (the device itself keeps none between reads)."""
        n, self._pending = len(self._pending), b""
        with contextlib.suppress(OSError):
            while select.select([self._fd], [], [], 0)[0]:
                got = os.read(self._fd, _MAX_REPLY_BYTES)
                if not got:
                    break
                n += len(got)
        return n

    def close(self) -> None:
        """Close the device."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


def open_line(port: str, *, baud: int = 9600, framing: str = "8N1") -> Line:
    """Open ``port``: ``/dev/usbtmc*`` through the USBTMC driver, anything else as serial."""
    if os.path.basename(port).startswith("usbtmc"):  # noqa: PTH119 (a device path string)
        return UsbtmcLine(port)
    return SerialLine(port, baud=baud, framing=framing)
