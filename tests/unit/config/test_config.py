"""Configuration: layering, strictness, one-line errors, the example file, secret masking."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_serializer

from infergy.config.settings import SECRET_MASK, AnalysisSettings, Settings, load_settings
from infergy.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[3] / "infergy.example.toml"


def toml(tmp_path: Path, text: str, name: str = "infergy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path | None, env: dict[str, str] | None = None, **kw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env or {}, **kw)  # type: ignore[arg-type]
    err = info.value
    assert "\n" not in str(err), "a config error is one line"
    assert err.hint, "a config error carries a hint"
    return err


# -- defaults and layering -------------------------------------------------------------------


def test_no_file_no_env_gives_the_documented_defaults() -> None:
    s = load_settings(None, {})
    assert s.node_name == socket.gethostname()
    assert s.store.path is None
    assert s.output.dir == Path("out")
    assert s.analysis == AnalysisSettings(
        degraded_coverage=0.95, gap_factor=2.0, align_max_lag_s=5.0, idle_s=10.0
    )


def test_priority_is_overrides_then_env_then_toml_then_defaults(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\nidle_s = 3.0\ngap_factor = 3.0\nalign_max_lag_s = 7.0\n")
    env = {"INFERGY_ANALYSIS__IDLE_S": "4", "INFERGY_ANALYSIS__GAP_FACTOR": "4"}
    s = load_settings(path, env, overrides={"analysis": {"idle_s": 5.0}})
    assert s.analysis.idle_s == 5.0  # override beats env and file
    assert s.analysis.gap_factor == 4.0  # env beats file
    assert s.analysis.align_max_lag_s == 7.0  # file beats default
    assert s.analysis.degraded_coverage == 0.95  # default; sections merge key by key


def test_a_whole_section_from_env_is_json_and_merges_with_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\ngap_factor = 3.0\n")
    s = load_settings(path, {"INFERGY_ANALYSIS": '{"idle_s": 7}'})
    assert (s.analysis.idle_s, s.analysis.gap_factor) == (7.0, 3.0)


def test_infergy_config_names_the_file_unless_one_is_given(tmp_path: Path) -> None:
    via_env = toml(tmp_path, 'node_name = "from-env-file"\n', "a.toml")
    given = toml(tmp_path, 'node_name = "given-file"\n', "b.toml")
    assert load_settings(None, {"INFERGY_CONFIG": str(via_env)}).node_name == "from-env-file"
    assert load_settings(given, {"INFERGY_CONFIG": str(via_env)}).node_name == "given-file"


def test_env_names_are_case_insensitive_and_paths_expand_the_home(tmp_path: Path) -> None:
    s = load_settings(None, {"infergy_output__dir": "~/results", "HOME": str(tmp_path)})
    assert s.output.dir == Path("~/results").expanduser()
    assert "~" not in str(s.output.dir)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.node_name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.analysis.idle_s = 1.0  # type: ignore[misc]


def test_constructing_settings_directly_reads_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INFERGY_ANALYSIS__IDLE_S", "99")
    assert Settings().analysis.idle_s == 10.0
    assert load_settings(None).analysis.idle_s == 99.0  # env=None reads os.environ


# -- errors ----------------------------------------------------------------------------------


def test_unknown_key_in_the_file_is_named_with_the_file_and_a_suggestion(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\ngap_factr = 3.0\n")
    err = config_error(path)
    assert str(err) == f"config {path}: unknown key 'analysis.gap_factr'"
    assert "did you mean 'analysis.gap_factor'?" in (err.hint or "")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[nosuchsection]\nhost = 'x'\n", "nosuchsection"),
        ("nodename = 'x'\n", "nodename"),
        ("[store]\nfile = 'x'\n", "store.file"),
        ("_secrets_dir = '/'\n", "_secrets_dir"),  # pydantic-settings' own init options too
        ("_cli_parse_args = true\n", "_cli_parse_args"),
    ],
)
def test_unknown_sections_and_keys_at_every_level_are_rejected(
    tmp_path: Path, text: str, key: str
) -> None:
    assert f"unknown key '{key}'" in str(config_error(toml(tmp_path, text)))


def test_a_bad_value_names_file_key_and_reason(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\ndegraded_coverage = 1.5\n")
    assert str(config_error(path)) == (
        f"config {path}: analysis.degraded_coverage: Input should be less than or equal to 1"
    )


def test_an_analyzer_port_out_of_range_and_nan_values_are_refused(tmp_path: Path) -> None:
    path = toml(tmp_path, '[meters]\nptd = "127.0.0.1:99999"\n')
    assert "meters.ptd: Value error, the port of '127.0.0.1:99999' must be 1-65535" in str(
        config_error(path)
    )
    path = toml(tmp_path, "[session]\ntail_s = nan\n")
    assert "session.tail_s: Input should be a finite number" in str(config_error(path))


def test_several_problems_make_one_error_naming_each(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\ngap_factor = 0.5\nidle_s = -1\nbogus = 1\n")
    message = str(config_error(path))
    assert message.count(f"config {path}") == 1
    for part in (
        "analysis.gap_factor: Input should be greater than 1",
        "analysis.idle_s",
        "'analysis.bogus'",
    ):
        assert part in message


def test_env_errors_name_the_variable_not_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\nidle_s = 3.0\n")
    err = config_error(path, {"INFERGY_ANALYSIS__GAP_FACTOR": "two"})
    assert str(err).startswith("environment INFERGY_ANALYSIS__GAP_FACTOR: analysis.gap_factor:")
    assert str(path) not in str(err)


def test_unknown_infergy_variables_are_rejected_with_a_suggestion() -> None:
    err = config_error(None, {"INFERGY_NODE_NAM": "x"})
    assert str(err) == "environment INFERGY_NODE_NAM: unknown setting"
    assert "INFERGY_NODE_NAME" in (err.hint or "")
    err = config_error(None, {"INFERGY_ANALYSIS__IDLE": "1"})
    assert "unknown key 'analysis.idle'" in str(err)


def test_unparsable_json_in_env_is_a_config_error_naming_the_variable() -> None:
    err = config_error(None, {"INFERGY_ANALYSIS": "{idle_s: 5"})
    assert str(err).startswith("environment INFERGY_ANALYSIS:")
    assert "JSON" in (err.hint or "")


def test_an_invalid_override_is_attributed_to_the_argument() -> None:
    err = config_error(None, overrides={"analysis": {"idle_s": -2}})
    assert str(err).startswith("argument: analysis.idle_s")


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = toml(tmp_path, "[analysis]\nidle_s = = 3\n")
    message = str(config_error(path))
    assert message.startswith(f"config {path}: invalid TOML:")
    assert "line 2" in message


@pytest.mark.parametrize("how", ["given", "env"])
def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.toml"
    env = {"INFERGY_CONFIG": str(missing)} if how == "env" else {}
    err = config_error(missing if how == "given" else None, env)
    assert str(err) == f"config {missing}: file not found"


def test_unreadable_or_non_utf8_files_are_config_errors(tmp_path: Path) -> None:
    assert "cannot read" in str(config_error(tmp_path))  # a directory
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('node_name = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in str(config_error(latin1))


@pytest.mark.parametrize("name", ["a/b", "", "-x", "has space", "x" * 65])
def test_node_names_must_be_safe_in_mqtt_topics(name: str) -> None:
    assert "node_name" in str(config_error(None, {"INFERGY_NODE_NAME": name}))


# -- the example file cannot drift from the model --------------------------------------------


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths += _field_paths(sub, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_the_example_file_loads_to_exactly_the_defaults() -> None:
    assert load_settings(EXAMPLE, {}).model_dump() == Settings().model_dump()


def test_the_example_file_documents_every_key_with_a_comment() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    section = ""
    documented: dict[str, int] = {}
    for i, line in enumerate(lines):
        if m := re.fullmatch(r"\[([\w.]+)\]", line):
            section = m.group(1) + "."
        elif m := re.fullmatch(r"(?:# )?(\w+) = .*", line):
            documented[section + m.group(1)] = i
    assert sorted(documented) == sorted(_field_paths(Settings))
    for key, i in documented.items():
        assert lines[i - 1].startswith("#"), f"{key} has no comment above it"


def test_the_examples_commented_out_values_are_valid(tmp_path: Path) -> None:
    # serve.token and mqtt.password stay commented: each is exclusive with its _file key
    # (test_config_serve.py)
    text = re.sub(
        r"(?m)^# (?!token = |password = )(\w+ = .*)$", r"\1", EXAMPLE.read_text(encoding="utf-8")
    )
    s = load_settings(toml(tmp_path, text), {})
    assert s.node_name == "edge-01"
    assert s.store.path == Path("/var/lib/infergy/infergy.db")


# -- masking ---------------------------------------------------------------------------------


class _Broker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = "localhost"
    password: SecretStr | None = None


class _WithSecrets(Settings):
    token: SecretStr = SecretStr("")
    broker: _Broker = _Broker()


def test_dump_masked_hides_every_secret_and_is_json() -> None:
    s = _WithSecrets(
        token="tok-123", broker={"host": "b", "password": "hunter2"}, store={"path": "/x.db"}
    )
    dumped = s.dump_masked()
    text = json.dumps(dumped)
    assert "tok-123" not in text
    assert "hunter2" not in text
    assert dumped["token"] == SECRET_MASK
    assert dumped["broker"] == {"host": "b", "password": SECRET_MASK}
    assert dumped["store"] == {"path": "/x.db"}
    assert _WithSecrets().dump_masked()["broker"]["password"] is None  # no secret, nothing to mask


def test_dump_masked_ignores_a_serializer_that_would_reveal_the_secret() -> None:
    class Leaky(Settings):
        token: SecretStr = SecretStr("")

        @field_serializer("token")
        def _reveal(self, v: SecretStr) -> str:
            return v.get_secret_value()

    leaky = Leaky(token="s3cret")
    assert leaky.model_dump()["token"] == "s3cret"  # the trap is real
    assert "s3cret" not in json.dumps(leaky.dump_masked())
