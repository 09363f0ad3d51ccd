"""Server settings: the one place where every default lives.

Each field carries its CLI help in ``metadata``; ``cli.py`` turns the fields into
``--flags`` and ``CIDADAO_*`` environment variables, so a new setting is one line here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs


def _setting(default: Any, help: str, **kwargs: Any) -> Any:
    return attrs.field(default=default, metadata={"help": help, **kwargs})


@attrs.frozen
class Settings:
    host: str = _setting("0.0.0.0", "address to listen on")
    port: int = _setting(8000, "TCP port for WebSocket and HTTP")
    max_connections: int = _setting(1000, "connections per server before OVERLOADED")
    max_message_bytes: int = _setting(64 * 1024, "largest inbound message; larger closes 1009")
    idle_timeout: float = _setting(300.0, "seconds without a client message before close 1000")
    heartbeat_interval: float = _setting(30.0, "seconds between WebSocket pings")
    heartbeat_timeout: float = _setting(10.0, "seconds to wait for a pong before dropping")
    handshake_timeout: float = _setting(10.0, "seconds to finish the upgrade before TCP close")
    log_level: str = _setting("info", "debug, info, warning or error", choices=("debug", "info", "warning", "error"))
    log_format: str = _setting("text", "text (for people) or json (one event per line)", choices=("text", "json"))
    tls_cert: str | None = _setting(None, "PEM certificate (chain): serve wss:// and https://")
    tls_key: str | None = _setting(None, "PEM private key of --tls-cert")
    deflate: bool = _setting(True, "permessage-deflate for clients that offer it")
    deflate_min_size: int = _setting(512, "messages smaller than this are sent uncompressed")
    store: str = _setting(
        "sqlite",
        "sqlite (survives restarts), memory (nothing kept) or redis (several nodes)",
        choices=("sqlite", "memory", "redis"),
    )
    redis_url: str = _setting("redis://127.0.0.1:6379/0", "Redis for --store redis")
    node_name: str = _setting("", "this server's name among several (default: host:port)")
    data_dir: str = _setting("data", "directory of the sqlite store")
    typing_debounce: float = _setting(1.0, "min seconds between relayed typing per connection")
    presence_interval: float = _setting(1.0, "min seconds between presence counts per investigation or session")
    outbox_messages: int = _setting(256, "per-connection outbox bound, in messages")
    outbox_bytes: int = _setting(1024 * 1024, "per-connection outbox bound, in bytes")
    batch_linger: float = _setting(0.0, "seconds a batch=1 writer waits to fill a batch (0: what is queued)")
    slow_consumer_timeout: float = _setting(10.0, "seconds a full outbox is tolerated before 1013")
    history_messages: int = _setting(1000, "durable messages kept per stream")
    history_seconds: float = _setting(24 * 3600.0, "seconds durable messages are kept per stream")
    history_memory_bytes: int = _setting(
        64 * 1024 * 1024, "bytes of history held in memory, all streams (the rest is read from the store)"
    )
    history_memory_messages: int = _setting(
        256, "newest messages of each stream held in memory (older ones are read from the store)"
    )
    drain_timeout: float = _setting(10.0, "seconds a shutdown waits for turns in progress and connections")
    reply_chunk_delay: float = _setting(0.03, "seconds between streamed agent chunks")
    llm_base_url: str = _setting(
        "", "OpenAI-compatible API (e.g. http://127.0.0.1:11434/v1); empty: rule-based agents. Key: CIDADAO_LLM_API_KEY"
    )
    llm_model: str = _setting("llama3.2", "model name sent to --llm-base-url")
    llm_timeout: float = _setting(20.0, "seconds to the model's first token (and between tokens) before the fallback")
    llm_max_tokens: int = _setting(512, "longest model reply, in tokens")
    llm_max_concurrency: int = _setting(8, "model requests in flight at once (others wait, within --llm-timeout)")
    max_pending_turns: int = _setting(16, "chat turns queued per session before OVERLOADED")
    overload_retry_after: float = _setting(5.0, "retry_after (s) sent with OVERLOADED")
    dataset: str = _setting("", "contracts file (Portal da Transparência CSV or JSON); empty: bundled sample")
    max_investigations: int = _setting(4, "investigations running at once")
    portal_api_url: str = _setting(
        "https://api.portaldatransparencia.gov.br",
        "Portal da Transparência data API; used when CIDADAO_PORTAL_API_KEY is set (the key only from there)",
    )
    portal_cache_ttl: float = _setting(24 * 3600.0, "seconds a Portal API response is kept in the store")
    portal_deadline: float = _setting(300.0, "seconds one investigation may spend fetching from the Portal API")
    investigation_step_delay: float = _setting(0.25, "seconds between investigation events")
    investigation_lease: float = _setting(
        15.0, "seconds a running investigation outlives a silent node before another adopts it (--store redis)"
    )
    signing_key: str | None = _setting(
        None, "Ed25519 key (PEM) that signs reports (§11); default: the Redis records, else DATA_DIR/signing-key.pem"
    )
    auth: str = _setting("optional", "optional (anonymous allowed) or required", choices=("optional", "required"))
    jwt_secret: str | None = _setting(None, "HS256 shared secret (>= 32 bytes); prefer the env var")
    jwt_public_key: str | None = _setting(None, "PEM file with the RS256/ES256 public key")
    jwt_jwks: str | None = _setting(None, "JWKS file; the key is chosen by the token's kid")
    jwt_audience: str | None = _setting(None, "required aud claim, when set")
    jwt_issuer: str | None = _setting(None, "required iss claim, when set")
    jwt_leeway: float = _setting(30.0, "clock skew allowed on exp/nbf, seconds")
    auth_timeout: float = _setting(10.0, "seconds to send the first auth message when required")
    max_pending_auth_per_address: int = _setting(
        16, "connections from one address still settling who they are, before OVERLOADED"
    )
    allowed_origins: str = _setting("", "comma-separated Origin allow-list (empty: any)")
    api_keys: str | None = attrs.field(  # never shown: repr=False
        default=None, repr=False,
        metadata={"help": "comma-separated keys of the server API for backends (§8); prefer the env var"},
    )
    max_connections_per_principal: int = _setting(20, "connections per user before OVERLOADED")
    rate_messages: int = _setting(100, "client messages allowed per rate window")
    rate_window: float = _setting(60.0, "rate window, seconds")
    rate_burst: int = _setting(20, "messages allowed in a burst")
    abuse_refusals: int = _setting(50, "rate refusals within the window before close 1008")

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.allowed_origins.split(",") if o.strip())


def fields() -> tuple[attrs.Attribute[Any], ...]:
    return attrs.fields(Settings)


def env_name(field_name: str) -> str:
    return "CIDADAO_" + field_name.upper()


def _kind(field: attrs.Attribute[Any]) -> str:
    """The name of a field's type: a string here (postponed annotations), else the class's name."""
    if isinstance(field.type, str):
        return field.type
    return field.type.__name__ if field.type is not None else ""


def coerce(field: attrs.Attribute[Any], raw: str) -> Any:
    """Parse a flag or env value to the field's type (annotations are strings here)."""
    kind = _kind(field)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    return raw


def describe_type(field: attrs.Attribute[Any]) -> str:
    """What a value of ``field`` must look like, for an operator's error message."""
    return {"int": "an integer", "float": "a number", "bool": "true or false"}.get(_kind(field), "text")


def from_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings from a TOML file: keys are setting names (``max_connections`` or
    ``max-connections``), optionally under a ``[server]`` table."""
    with open(path, "rb") as file:
        document = tomllib.load(file)
    table = document.get("server", document)
    known = {field.name for field in fields()}
    values = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
    return values


def from_environ(
    environ: Mapping[str, str] | None = None, config_file: str | None = None, **overrides: Any
) -> Settings:
    """Defaults, then the TOML ``config_file``, then ``CIDADAO_*`` variables, then flags."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("CIDADAO_CONFIG")
    values: dict[str, Any] = from_toml(config_file) if config_file else {}
    for field in fields():
        raw = environ.get(env_name(field.name))
        if raw is not None:
            try:
                values[field.name] = coerce(field, raw)
            except ValueError:
                raise ValueError(f"{env_name(field.name)}={raw!r}: expected {describe_type(field)}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
