"""Settings (PROTOCOL.md §7 defaults), CIDADAO_* environment variables and overrides."""

from __future__ import annotations

import attrs
import pytest

from cidadao_trio import config
from cidadao_trio.config import Settings, coerce, env_name, fields, from_environ


def test_defaults_match_protocol() -> None:
    s = Settings()
    assert s.host == "0.0.0.0" and s.port == 8000
    assert s.max_connections == 1000
    assert s.max_message_bytes == 64 * 1024 == 65536
    assert s.heartbeat_interval == 30.0
    assert s.heartbeat_timeout == 10.0
    assert s.idle_timeout == 300.0
    assert s.handshake_timeout == 10.0
    assert s.outbox_messages == 256
    assert s.outbox_bytes == 1024 * 1024 == 1_048_576
    assert s.slow_consumer_timeout == 10.0
    assert s.drain_timeout == 10.0
    assert s.typing_debounce == 1.0
    assert s.history_messages == 1000
    assert s.history_seconds == 24 * 3600
    # §6 / §7 security defaults
    assert s.auth == "optional"
    assert s.jwt_leeway == 30.0
    assert s.auth_timeout == 10.0
    assert s.allowed_origins == "" and s.origins == frozenset()
    assert s.max_connections_per_principal == 20
    assert (s.rate_messages, s.rate_window, s.rate_burst) == (100, 60.0, 20)
    assert s.abuse_refusals == 50


def test_from_environ_empty_is_defaults() -> None:
    assert from_environ({}) == Settings()


def test_env_names() -> None:
    assert env_name("max_connections") == "CIDADAO_MAX_CONNECTIONS"
    assert env_name("port") == "CIDADAO_PORT"


def test_from_environ_reads_typed_values() -> None:
    s = from_environ(
        {
            "CIDADAO_PORT": "9000",
            "CIDADAO_HOST": "127.0.0.1",
            "CIDADAO_IDLE_TIMEOUT": "12.5",
            "CIDADAO_HEARTBEAT_INTERVAL": "5",
            "CIDADAO_OUTBOX_MESSAGES": "32",
            "CIDADAO_LOG_LEVEL": "debug",
            "UNRELATED": "x",
        }
    )
    assert s.port == 9000 and type(s.port) is int
    assert s.host == "127.0.0.1"
    assert s.idle_timeout == 12.5 and type(s.idle_timeout) is float
    assert s.heartbeat_interval == 5.0 and type(s.heartbeat_interval) is float
    assert s.outbox_messages == 32 and type(s.outbox_messages) is int
    assert s.log_level == "debug"
    assert s.max_connections == 1000  # untouched


def test_env_names_are_case_sensitive_and_prefixed() -> None:
    assert from_environ({"cidadao_port": "1", "PORT": "2", "CIDADAO_port": "3"}).port == 8000


def test_overrides_win_over_environment() -> None:
    env = {"CIDADAO_PORT": "9000", "CIDADAO_MAX_CONNECTIONS": "5"}
    s = from_environ(env, port=9100, slow_consumer_timeout=2.0)
    assert s.port == 9100
    assert s.max_connections == 5
    assert s.slow_consumer_timeout == 2.0


def test_none_overrides_are_ignored() -> None:
    s = from_environ({"CIDADAO_PORT": "9000"}, port=None, host=None)
    assert s.port == 9000 and s.host == "0.0.0.0"


def test_unknown_override_rejected() -> None:
    with pytest.raises(TypeError):
        from_environ({}, no_such_setting=1)


def test_reads_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIDADAO_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("CIDADAO_SLOW_CONSUMER_TIMEOUT", "0.5")
    s = from_environ()
    assert s.max_connections == 7 and s.slow_consumer_timeout == 0.5


def test_explicit_mapping_ignores_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIDADAO_PORT", "1234")
    assert from_environ({}).port == 8000


@pytest.mark.parametrize(
    "name,value", [("CIDADAO_PORT", "abc"), ("CIDADAO_PORT", "80.5"), ("CIDADAO_IDLE_TIMEOUT", "soon")]
)
def test_malformed_numbers_raise(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        from_environ({name: value})


def test_every_default_survives_an_env_round_trip() -> None:
    env = {env_name(f.name): str(f.default) for f in fields() if f.default is not None}
    assert len(env) > 20
    assert from_environ(env) == Settings()


def test_optional_string_settings_from_env() -> None:
    optional = [f for f in fields() if f.type == "str | None"]
    assert optional, "expected some optional settings (jwt_*)"
    env = {env_name(f.name): f"value-{f.name}" for f in optional}
    s = from_environ(env)
    for f in optional:
        assert getattr(s, f.name) == f"value-{f.name}"


def test_every_field_documented_and_typed() -> None:
    for field in fields():
        assert field.metadata.get("help"), field.name
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if field.default is None:
            assert kind == "str | None", field.name  # coerce() passes optional values through as text
        else:
            assert kind in {"int", "float", "str", "bool"}, field.name
            assert type(field.default).__name__ == kind, field.name


def test_origins_parsed_from_env() -> None:
    s = from_environ({"CIDADAO_ALLOWED_ORIGINS": " https://a.example , ,https://b.example"})
    assert s.origins == frozenset({"https://a.example", "https://b.example"})


@attrs.frozen
class _Flags:
    flag: bool = False
    ratio: float = 0.0
    count: int = 0
    name: str = ""


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on", "On"])
def test_coerce_bool_true(raw: str) -> None:
    assert coerce(attrs.fields(_Flags).flag, raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "off", "", "maybe"])
def test_coerce_bool_false(raw: str) -> None:
    assert coerce(attrs.fields(_Flags).flag, raw) is False


def test_coerce_other_kinds() -> None:
    f = attrs.fields(_Flags)
    assert coerce(f.ratio, "2.5") == 2.5
    assert coerce(f.count, "42") == 42 and type(coerce(f.count, "42")) is int
    assert coerce(f.name, " x ") == " x "


def test_module_uses_string_annotations() -> None:
    # coerce() relies on the annotation text; make sure Settings still works with it
    assert all(isinstance(f.type, str) for f in config.fields())
