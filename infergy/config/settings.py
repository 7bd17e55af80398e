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
import hashlib
import json
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
)
from pydantic_core import ErrorDetails, to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from infergy.config.sections import (
    AnalysisSettings,
    EmulatorSettings,
    MaxqSettings,
    MeterSettings,
    MqttSettings,
    NvmlSettings,
    OutputSettings,
    ServeSettings,
    SessionSettings,
    StoreSettings,
)
from infergy.errors import ConfigError

ENV_PREFIX = "INFERGY_"
CONFIG_ENV_VAR = "INFERGY_CONFIG"
"""Names the TOML file when ``load_settings`` is given none."""
SECRET_MASK = "**********"
__all__ = [
    "AnalysisSettings",
    "EmulatorSettings",
    "MaxqSettings",
    "MeterSettings",
    "MqttSettings",
    "NvmlSettings",
    "OutputSettings",
    "ServeSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "load_settings",
]

DIGESTED_SECTIONS = ("analysis", "meters", "session", "maxq")
"""The sections :meth:`Settings.config_digest` covers."""
_HINT_KEYS = "every key is listed and explained in infergy.example.toml"


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
    maxq: MaxqSettings = MaxqSettings()

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

    def config_digest(self) -> str:
        """A digest of what shapes a measurement: ``sha256:`` and 16 hex digits.

        It covers ``[analysis]``, ``[meters]``, ``[session]`` and ``[maxq]`` (without its
        ``state_dir``), so two nodes with the same digest measure alike; what is naturally
        per node (``node_name``, ``[serve]``, ``[store]``, ``[output]``, ``[mqtt]``) is left
        out. ``infergy fleet status`` marks a node whose digest differs from the fleet's.
        """
        digested = {name: self.dump_masked()[name] for name in DIGESTED_SECTIONS}
        digested["maxq"] = {k: v for k, v in digested["maxq"].items() if k != "state_dir"}
        text = json.dumps(to_jsonable_python(digested), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]

    def maxq_state_dir(self, env: Mapping[str, str]) -> Path:
        """Where MaxQ keeps its journal and caches: ``[maxq] state_dir``, else the store's dir."""
        return self.maxq.state_dir_or(self.store.path_or_default(env))


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
