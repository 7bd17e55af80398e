"""The sections of infergy's configuration (``[store]``, ``[meters]``, ``[serve]``...).

Each is a frozen pydantic model with unknown keys rejected; :mod:`infergy.config` assembles
them into :class:`~infergy.config.Settings` and documents how they are loaded.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from infergy.config.paths import default_store_path
from infergy.errors import ConfigError


class _Section(BaseModel):
    """Base of the config sections: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _expand_user(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser()


class StoreSettings(_Section):
    """``[store]``: the SQLite results store."""

    path: Path | None = None
    """Database file; ``None`` picks :func:`infergy.config.paths.default_store_path`."""

    _expand = field_validator("path")(_expand_user)

    def path_or_default(self, env: Mapping[str, str]) -> Path:
        """``path``, else the default for this environment (systemd's state dir, XDG, home)."""
        return self.path or default_store_path(env)


class OutputSettings(_Section):
    """``[output]``: result files (JSON, CSV traces, MLPerf-style logs)."""

    dir: Path = Path("out")
    """Directory that receives one sub-directory per run."""

    _expand = field_validator("dir")(_expand_user)


class AnalysisSettings(_Section):
    """``[analysis]``: thresholds of the measurement analysis (MEASUREMENT.md)."""

    degraded_coverage: float = Field(default=0.95, ge=0.0, le=1.0)
    """A source covering less of the window than this fraction makes the run ``degraded``."""
    gap_factor: float = Field(default=2.0, gt=1.0)
    """A gap between samples longer than this many nominal periods is a gap in coverage."""
    align_max_lag_s: float = Field(default=5.0, gt=0.0, le=3600.0)
    """Largest clock offset the cross-correlation alignment searches, in seconds."""
    idle_s: float = Field(default=10.0, ge=0.0)
    """Length of the idle baseline before the workload, in seconds (0 skips it)."""


class NvmlSettings(_Section):
    """``[meters.nvml]``: NVML sampling rates (infergy.meters.nvml_probe.NvmlMeterConfig)."""

    counter_sparse_interval_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """Read the energy counter about this often (whole update periods), the 20-ms samples
    giving the shape in between, except around a window's edges; 0 reads it at every update.
    Each read costs 2.7-12 ms of CPU: at every update that is ~4 % of a core per GPU."""
    counter_dense_span_s: float = Field(default=0.5, ge=0.0, le=30.0)
    """Around the measured window's start (after its first query) and end, read the counter
    at every update for this long."""
    counter_poll_factor: float = Field(default=1.0, ge=1.0, le=100.0)
    """Where the counter is read densely, read it every this many update periods."""
    idle_counter_poll_factor: float = Field(default=10.0, ge=1.0, le=100.0)
    """The same between measurements (``infergy serve``)."""
    samples_read_interval_s: float = Field(default=0.5, gt=0.0, le=2.0)
    """How often the driver's 20-ms power sample buffer is drained."""
    context_interval_s: float = Field(default=1.0, gt=0.0, le=60.0)
    """Period of the context reads (power limit, clocks, temperature, clock events)."""


class EmulatorSettings(_Section):
    """``[meters.emulator]``: the emulated analyzer used when no real one is configured."""

    model: str = Field(default="wt310", pattern=r"^(wt310|wt310e|wt333e|wt210)$")
    """Which Yokogawa model to emulate."""
    idle_w: float = Field(default=80.0, gt=0.0, le=100_000.0)
    """Simulated wall power with the workload idle."""
    busy_w: float = Field(default=180.0, gt=0.0, le=100_000.0)
    """Simulated wall power with the workload saturating the device."""
    profile: Path | None = None
    """A CSV ``t_s,watts`` script of the true power instead of the activity model."""
    noise: float = Field(default=0.002, ge=0.0, le=0.5)
    """Relative noise of each simulated reading."""

    _expand = field_validator("profile")(_expand_user)


class MeterSettings(_Section):
    """``[meters]``: which power sources a session uses and how they sample."""

    ptd: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
    """A PTDaemon-compatible server as ``HOST:PORT`` (e.g. an ``infergy ptd-bridge``)."""
    ptd_interval_ms: int = Field(default=1000, ge=10, le=60_000)
    """The analyzer's sample interval asked of the PTD server."""
    rapl: bool = True
    """Use RAPL (CPU package energy) when readable."""
    simulated_gpus: int = Field(default=0, ge=0, le=64)
    """Replace NVML by this many simulated GPUs (labelled SIMULATED): demos and soak tests."""
    simulated_part: str = Field(default="generic", pattern=r"^(generic|t4|l4|a2|h200)$")
    """What the simulated GPUs are: ``generic`` (power linear in the load, fixed settings) or
    a modelled part (``t4``, ``l4``, ``a2``, ``h200``) whose power and clocks follow its power
    limit, clock locks and load, with settings MaxQ can change (infergy.core.gpu_model)."""
    nvml: NvmlSettings = NvmlSettings()
    emulator: EmulatorSettings = EmulatorSettings()

    @field_validator("ptd")
    @classmethod
    def _ptd_port(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= int(value.rpartition(":")[2]) <= 65535:
            msg = f"the port of {value!r} must be 1-65535"
            raise ValueError(msg)
        return value


class SessionSettings(_Section):
    """``[session]``: phases of one measurement session (ARCHITECTURE.md, data flow)."""

    tail_s: float = Field(default=2.0, ge=0.0, le=60.0)
    """Sampling kept up after the measured window, so interval samples covering it arrive."""
    ranging: bool = True
    """With a real analyzer: a ranging pass during warm-up, then fixed ranges, as MLPerf does."""
    plots: bool = True
    """Draw the PNG plots of each run (matplotlib)."""


_MQTT_LEVEL = r"[A-Za-z0-9_.-]+"


class MqttSettings(_Section):
    """``[mqtt]``: results, live power and job requests over MQTT (ARCHITECTURE.md, Live exports).

    Topics live under ``<topic_root>/<node_name>/``; ``infergy.exporters.mqtt`` publishes them.
    """

    enabled: bool = False
    """Connect to the broker at all (``infergy serve`` only)."""
    host: str = Field(default="localhost", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    tls: bool = False
    """TLS with the system's CAs; giving ``tls_ca`` or ``tls_cert`` turns TLS on as well."""
    tls_ca: Path | None = None
    """CA bundle (PEM) that signed the broker's certificate."""
    tls_cert: Path | None = None
    """Client certificate (PEM) for brokers that require one."""
    tls_key: Path | None = None
    """Private key of ``tls_cert`` when the certificate file does not hold it."""
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: SecretStr | None = None
    """Masked wherever the configuration is shown; better set as ``INFERGY_MQTT__PASSWORD``."""
    password_file: Path | None = None
    """A file holding the password (its first line; e.g. a systemd credential); exclusive
    with ``password``."""
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """MQTT client identifier; ``None`` is ``infergy-<node_name>``. Must be unique per broker."""
    topic_root: str = Field(default="infergy", pattern=rf"^{_MQTT_LEVEL}(/{_MQTT_LEVEL})*$")
    """First topic level(s): topics are ``<topic_root>/<node_name>/status`` and so on."""
    power_interval_s: float = Field(default=1.0, ge=0.05, le=3600.0)
    """Live ``power`` is published at most this often (QoS 0, dropped while offline)."""
    status_interval_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    """The retained ``status`` is published again at least this often (a heartbeat: ``infergy
    fleet status`` calls a node stale after three missed ones), and on every job change."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """MQTT keepalive: a silent broker is declared gone after about 1.5 times this."""
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    """Limit of every network wait (connect, publish acknowledgement, subscribe)."""
    reconnect_min_s: float = Field(default=0.5, gt=0.0, le=3600.0)
    """First reconnect delay; it doubles per failed attempt, with jitter, up to the maximum."""
    reconnect_max_s: float = Field(default=60.0, gt=0.0, le=86400.0)
    outbox_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    """Results queued for ``runs`` at most; beyond, new ones are refused (logged, counted)."""

    _expand = field_validator("tls_ca", "tls_cert", "tls_key", "password_file")(_expand_user)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            msg = "reconnect_max_s must be at least reconnect_min_s"
            raise ValueError(msg)
        if self.tls_key is not None and self.tls_cert is None:
            msg = "tls_key is given without tls_cert"
            raise ValueError(msg)
        if self.password is not None and self.username is None:
            msg = "password is given without username"
            raise ValueError(msg)
        if self.password_file is not None and (self.password is not None or not self.username):
            msg = "password_file needs username, and excludes password"
            raise ValueError(msg)
        return self

    def password_value(self) -> str | None:
        """The password: ``password``, or the first line of ``password_file``, or ``None``.

        Raises:
            ConfigError: the file cannot be read, or other users can read it.
        """
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is None:
            return None
        where = f"mqtt.password_file {self.password_file}"
        try:
            if self.password_file.stat().st_mode & 0o007:
                msg = f"{where}: readable by other users"
                raise ConfigError(msg, hint=f"chmod 600 {self.password_file}")
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            msg = f"{where}: cannot read: {getattr(err, 'strerror', None) or err}"
            raise ConfigError(msg, hint="check the path and its permissions") from None
        return lines[0] if lines else ""

    @property
    def use_tls(self) -> bool:
        """Whether the connection is TLS (``tls``, or a CA or client certificate given)."""
        return self.tls or self.tls_ca is not None or self.tls_cert is not None


_LISTEN = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+)):(?P<port>\d{1,5})$"
)
_TOKEN_MIN_CHARS = 16
_TOKEN_HINT = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ServeSettings(_Section):
    """``[serve]``: the long-running service (``infergy serve``) and its HTTP control API."""

    listen: str = "127.0.0.1:8765"
    """``HOST:PORT`` of the HTTP API (``[::1]:8765`` for IPv6); beyond loopback needs a token."""
    token: SecretStr | None = Field(default=None, min_length=_TOKEN_MIN_CHARS)
    """Bearer token for ``POST``/``DELETE``; masked wherever the configuration is shown."""
    token_file: Path | None = None
    """A file holding the token (e.g. a systemd credential); exclusive with ``token``."""
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    """Largest request body accepted (a job spec is well under 1 KiB)."""
    max_queued_jobs: int = Field(default=16, ge=1, le=10_000)
    """Jobs waiting at most; more are refused (HTTP 503, an MQTT error reply)."""
    stop_timeout_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    """On SIGTERM a running job gets this long to finish, then this long to abort cleanly."""
    state_dir: Path | None = None
    """The service's own state; ``None``: ``$STATE_DIRECTORY``, else the store's directory."""

    _expand = field_validator("token_file", "state_dir")(_expand_user)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = _LISTEN.fullmatch(value)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            msg = f"listen must be HOST:PORT or [IPV6]:PORT (port 1 to 65535), not {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _token_rules(self) -> ServeSettings:
        # PydanticCustomError: the message reads as written, without "Value error, "
        if self.token is not None and self.token_file is not None:
            kind, msg = "token_conflict", "give token or token_file, not both"
            raise PydanticCustomError(kind, msg)
        if self.exposed and self.token is None and self.token_file is None:
            msg = (
                f"listen {self.listen} is beyond loopback: set token_file (or token) so that "
                "only holders of the token can start and cancel runs"
            )
            kind = "token_required"
            raise PydanticCustomError(kind, msg)
        return self

    @property
    def host(self) -> str:
        """The host part of ``listen``, without IPv6 brackets."""
        match = _LISTEN.fullmatch(self.listen)
        assert match is not None  # checked by the validator
        return match["v6"] or match["host"]

    @property
    def port(self) -> int:
        """The port part of ``listen``."""
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def exposed(self) -> bool:
        """Whether ``listen`` reaches beyond this machine (not localhost, 127/8 or ::1)."""
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return True  # a host name may resolve to any address

    def api_token(self) -> str | None:
        """The bearer token: ``token``, or the stripped content of ``token_file``, or ``None``.

        Raises:
            ConfigError: the file is unreadable, empty, too short, or readable by others.
        """
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is None:
            return None
        where = f"serve.token_file {self.token_file}"
        try:
            if self.token_file.stat().st_mode & 0o007:
                msg = f"{where}: readable by other users"
                raise ConfigError(msg, hint=f"chmod 600 {self.token_file}")
            text = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            msg = f"{where}: cannot read: {getattr(err, 'strerror', None) or err}"
            raise ConfigError(msg, hint="check the path and its permissions") from None
        if len(text) < _TOKEN_MIN_CHARS or any(c.isspace() for c in text):
            msg = f"{where}: the token must be one word of at least {_TOKEN_MIN_CHARS} characters"
            raise ConfigError(msg, hint=_TOKEN_HINT)
        return text

    def state_dir_or_default(self, env: Mapping[str, str]) -> Path:
        """``state_dir``, else ``$STATE_DIRECTORY`` (systemd), else the store's default folder."""
        if self.state_dir is not None:
            return self.state_dir
        return default_store_path(env).parent


class MaxqSettings(_Section):
    """``[maxq]``: tuning sessions (``infergy maxq``, ``POST /v1/maxq``), ``--batch-size auto``."""

    state_dir: Path | None = None
    """The restore journal, the simulated boards' settings and the batch-knee cache; ``None``:
    the store's directory (``$STATE_DIRECTORY`` under systemd)."""
    settle_s: float = Field(default=2.0, ge=0.0, le=600.0)
    """Wait after each change of settings before the point's warm-up (clocks and heat settle)."""
    point_duration_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    """Measured duration of one sweep point, unless ``--point-duration`` says otherwise."""
    warmup_s: float = Field(default=3.0, ge=0.0, le=600.0)
    """Unmeasured warm-up of each point (LoadGen's expected QPS is calibrated there)."""
    idle_s: float = Field(default=5.0, ge=0.0, le=600.0)
    """The one idle baseline of a sweep, before its first point."""
    source: str = Field(default="auto", pattern=r"^[A-Za-z0-9_.]{1,64}$")
    """The power source optimised: ``auto`` is the GPUs (``gpus``, or ``gpu0`` for one), else
    the first analyzer (``ac``); or a source name of the result (``ac``, ``gpu0``...)."""
    max_open_workloads: int = Field(default=4, ge=1, le=64)
    """Prepared workloads (one per batch size and precision) kept open during a sweep."""
    knee_within: float = Field(default=0.03, gt=0.0, lt=1.0)
    """``--batch-size auto``: the smallest batch within this fraction of the best samples/J."""
    auto_batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    """The batch sizes ``--batch-size auto`` measures (once per model, precision, GPU, backend)."""
    auto_point_duration_s: float = Field(default=10.0, gt=0.0, le=600.0)
    """Measured duration of each point of that batch sweep."""

    _expand = field_validator("state_dir")(_expand_user)

    @field_validator("auto_batch_sizes")
    @classmethod
    def _batches(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(b < 1 or b > 65536 for b in value):
            msg = "auto_batch_sizes needs at least one batch size, each from 1 to 65536"
            raise ValueError(msg)
        return tuple(sorted(set(value)))

    def state_dir_or(self, store_path: Path) -> Path:
        """``state_dir``, else the store's directory."""
        return self.state_dir if self.state_dir is not None else store_path.parent
