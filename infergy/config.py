"""One typed configuration: a TOML file, ``INFERGY_*`` environment variables, explicit values.

``load_settings`` is the one place that reads configuration. It layers, highest first:

1. explicit values (``overrides``: command-line flags),
2. environment variables ``INFERGY_<SECTION>__<KEY>`` (``__`` separates nesting levels; lists
   and whole sections are JSON: ``INFERGY_ANALYSIS='{"idle_s": 5}'``),
3. the TOML file (``path``, else ``$INFERGY_CONFIG``, else none),
4. the defaults below (documented key by key in ``infergy.example.toml``).

Unknown keys are errors at every level, and every failure (missing file, malformed TOML, a
bad value) becomes one ``ConfigError`` naming the file or variable and the key::

    settings = load_settings(Path("/etc/infergy/infergy.toml"))
    settings.analysis.degraded_coverage  # 0.95

``Settings(...)`` built directly holds the defaults plus the values given, reading nothing.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError, to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from infergy.errors import ConfigError

ENV_PREFIX = "INFERGY_"
CONFIG_ENV_VAR = "INFERGY_CONFIG"
"""Names the TOML file when ``load_settings`` is given none."""
SECRET_MASK = "**********"

_HINT_KEYS = "every key is listed and explained in infergy.example.toml"


class _Section(BaseModel):
    """Base of the config sections: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _expand_user(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser()


class StoreSettings(_Section):
    """``[store]``: the SQLite results store."""

    path: Path | None = None
    """Database file; ``None`` picks ``infergy.store.default_store_path``."""

    _expand = field_validator("path")(_expand_user)


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

    counter_poll_factor: float = Field(default=1.0, ge=1.0, le=100.0)
    """Read the energy counter every this many update periods during a measurement."""
    idle_counter_poll_factor: float = Field(default=10.0, ge=1.0, le=100.0)
    """The same between measurements (``infergy serve``): each read costs ~2.4 ms of CPU."""
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
    nvml: NvmlSettings = NvmlSettings()
    emulator: EmulatorSettings = EmulatorSettings()


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
    client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """MQTT client identifier; ``None`` is ``infergy-<node_name>``. Must be unique per broker."""
    topic_root: str = Field(default="infergy", pattern=rf"^{_MQTT_LEVEL}(/{_MQTT_LEVEL})*$")
    """First topic level(s): topics are ``<topic_root>/<node_name>/status`` and so on."""
    power_interval_s: float = Field(default=1.0, ge=0.05, le=3600.0)
    """Live ``power`` is published at most this often (QoS 0, dropped while offline)."""
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    """MQTT keepalive: a silent broker is declared gone after about 1.5 times this."""
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    """Limit of every network wait (connect, publish acknowledgement, subscribe)."""
    reconnect_min_s: float = Field(default=0.5, gt=0.0, le=3600.0)
    """First reconnect delay; it doubles per failed attempt, with jitter, up to the maximum."""
    reconnect_max_s: float = Field(default=60.0, gt=0.0, le=86400.0)
    outbox_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    """Results queued for ``runs`` at most; beyond, new ones are refused (logged, counted)."""

    _expand = field_validator("tls_ca", "tls_cert", "tls_key")(_expand_user)

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
        return self

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
        from infergy.store import default_store_path  # noqa: PLC0415 (numpy: only when needed)

        return default_store_path(env).parent


class Settings(BaseSettings):
    """All of infergy's configuration; sections are TOML tables and ``INFERGY_<SECTION>__`` vars.

    Load it with ``load_settings``; ``Settings(...)`` holds the defaults plus the values given.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    node_name: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        validate_default=True,
    )
    """This machine's name in MQTT topics and results; defaults to the hostname."""
    store: StoreSettings = StoreSettings()
    output: OutputSettings = OutputSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    meters: MeterSettings = MeterSettings()
    session: SessionSettings = SessionSettings()
    mqtt: MqttSettings = MqttSettings()
    serve: ServeSettings = ServeSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: the file and environment are layered by ``load_settings``."""
        return (init_settings,)

    def dump_masked(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data with every secret replaced by a mask.

        Safe to log, print, or embed in a result's provenance.
        """
        return {name: _masked(getattr(self, name)) for name in type(self).model_fields}


def _masked(value: object) -> object:
    """Walk a model by attribute (not by its serializer, which may reveal secrets)."""
    if isinstance(value, BaseModel):
        return {name: _masked(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, Secret | SecretStr | SecretBytes):
        return SECRET_MASK
    if isinstance(value, Mapping):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return to_jsonable_python(value)


class _MappingEnvSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The hook pydantic-settings' own DotEnvSettingsSource overrides to read a file instead.
        return {key.lower(): value for key, value in self._environ.items()}


def load_settings(
    path: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load and validate the configuration (priority: overrides > env > TOML > defaults).

    Args:
        path: the TOML file; ``None`` uses ``$INFERGY_CONFIG`` if set, else no file.
        env: the environment to read (``os.environ`` when ``None``).
        overrides: explicit values, nested like the TOML (``{"output": {"dir": "x"}}``).

    Raises:
        ConfigError: a named file is missing or unreadable, the TOML is malformed, an
            ``INFERGY_*`` variable is unknown or unparsable, or a value is invalid.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get(CONFIG_ENV_VAR):
        path = Path(environ[CONFIG_ENV_VAR])
    file_data = {} if path is None else _read_toml(path)
    env_data = _read_env(environ)
    explicit = dict(overrides or {})
    merged = _deep_merge(_deep_merge(file_data, env_data), explicit)
    # Reported here, not by pydantic: it lets BaseSettings' own "_env_file"-style names through.
    errors: list[ErrorDetails] = [
        {"type": "extra_forbidden", "loc": (key,), "msg": "", "input": None}
        for key in merged
        if key not in Settings.model_fields
    ]
    try:
        settings = Settings.model_validate(
            {k: merged[k] for k in Settings.model_fields if k in merged}
        )
    except ValidationError as err:
        errors += err.errors()
    if errors:
        origins = _Origins(path, file_data, environ, env_data, explicit)
        raise _config_error(errors, origins)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    where = f"config {path}"
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        msg = f"{where}: file not found"
        hint = (
            f"give an existing file, or unset {CONFIG_ENV_VAR} (infergy.example.toml is a template)"
        )
        raise ConfigError(msg, hint=hint) from None
    except tomllib.TOMLDecodeError as err:
        msg = f"{where}: invalid TOML: {err}"
        raise ConfigError(msg, hint="check the quoting and brackets on that line") from None
    except UnicodeDecodeError as err:
        msg = f"{where}: not UTF-8 text ({err.reason} at byte {err.start})"
        raise ConfigError(msg, hint="save the file as UTF-8") from None
    except OSError as err:
        msg = f"{where}: cannot read: {err.strerror or err}"
        raise ConfigError(msg, hint="check the path and its permissions") from None


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {CONFIG_ENV_VAR}
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper.split("__")[0] not in known:
            msg = f"environment {name}: unknown setting"
            guess = difflib.get_close_matches(upper.split("__")[0], sorted(known), n=1)
            hint = f"did you mean {guess[0]}? " if guess else ""
            raise ConfigError(msg, hint=hint + _HINT_KEYS)
    try:
        return dict(_MappingEnvSource(Settings, environ)())
    except SettingsError as err:
        # Its message names the field and the source class: name the variable instead.
        field = re.search(r'field "([^"]+)"', str(err))
        where = f"{ENV_PREFIX}{field.group(1).upper()}" if field else f"an {ENV_PREFIX}* variable"
        msg = f"environment {where}: cannot parse the value (not valid JSON?)"
        hint = f"sections and lists in {ENV_PREFIX}* variables are JSON, e.g. "
        raise ConfigError(msg, hint=hint + f"{ENV_PREFIX}ANALYSIS='{{\"idle_s\": 5}}'") from None


def _deep_merge(low: Mapping[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """Merge nested dicts; ``high`` wins, sections merge key by key."""
    out = dict(low)
    for key, value in high.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = _deep_merge(below, value)
        else:
            out[key] = value
    return out


class _Origins:
    """Says which layer supplied the value at a key path, for error messages."""

    def __init__(
        self,
        path: Path | None,
        file_data: Mapping[str, Any],
        environ: Mapping[str, str],
        env_data: Mapping[str, Any],
        explicit: Mapping[str, Any],
    ) -> None:
        self.path = path
        self.file_data = file_data
        self.env_names = {name.upper(): name for name in environ}
        self.env_data = env_data
        self.explicit = explicit

    def of(self, loc: tuple[str | int, ...]) -> str:
        if _has(self.explicit, loc):
            return "argument"
        if _has(self.env_data, loc):
            for depth in range(len(loc), 0, -1):
                upper = ENV_PREFIX + "__".join(str(p) for p in loc[:depth]).upper()
                if upper in self.env_names:
                    return f"environment {self.env_names[upper]}"
            return "environment"
        return f"config {self.path}" if _has(self.file_data, loc) else "default"


def _has(data: object, loc: tuple[str | int, ...]) -> bool:
    """Whether nested mappings ``data`` hold a value at the key path ``loc``."""
    for part in loc:
        if not (isinstance(data, Mapping) and part in data):
            return False
        data = data[part]
    return True


def _config_error(errors: list[ErrorDetails], origins: _Origins) -> ConfigError:
    """Fold pydantic's errors into one line, grouped by where the bad values came from."""
    grouped: dict[str, list[str]] = {}
    hints: list[str] = []
    for error in errors:
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc)
        if error["type"] == "extra_forbidden":
            detail = f"unknown key {key!r}"
            guess = _close_key(loc)
            if guess:
                hints.append(f"did you mean {guess!r}?")
        else:
            detail = f"{key}: {error['msg']}"
        grouped.setdefault(origins.of(loc), []).append(detail)
    message = "; ".join(f"{origin}: {'; '.join(details)}" for origin, details in grouped.items())
    return ConfigError(message, hint=" ".join([*hints, _HINT_KEYS]))


def _close_key(loc: tuple[str | int, ...]) -> str | None:
    """The valid key nearest to a misspelt one, as a dotted path."""
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = None if field is None else field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    guess = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return ".".join([*(str(p) for p in loc[:-1]), guess[0]]) if guess else None
