"""Client→server messages (PROTOCOL.md §2–3): bytes in, a typed command or a ProtocolError out.

Sans-IO: the connection layer calls :func:`parse` on every text frame and decides
what to do with the result; nothing here knows about sockets or trio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
import orjson
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.gen import make_dict_structure_fn, override

from .codes import DEFAULT_MESSAGES, ErrorCode
from .ids import is_valid_path_id

MAX_CHAT_CHARS = 8000
MAX_CLIENT_ID_CHARS = 128

ReplyTo = str | int | None


class ProtocolError(Exception):
    """A message the server refuses; becomes an ``error`` envelope, never a close."""

    def __init__(self, code: ErrorCode, message: str | None = None, reply_to: ReplyTo = None):
        self.code = code
        self.message = message or DEFAULT_MESSAGES[code]
        self.reply_to = reply_to
        super().__init__(f"{code}: {self.message}")


def _chat_text(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip() or len(value) > MAX_CHAT_CHARS:
        raise ValueError(f"campo '{attribute.name}' deve ter de 1 a {MAX_CHAT_CHARS} caracteres")


def _path_id(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_valid_path_id(value):
        raise ValueError(
            f"campo '{attribute.name}' deve ter de 1 a 64 caracteres entre A-Z a-z 0-9 _ . : -"
        )


@attrs.frozen
class Chat:
    message: str = attrs.field(validator=_chat_text)
    context: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Typing:
    is_typing: bool = True


@attrs.frozen
class Subscribe:
    investigation_id: str = attrs.field(validator=_path_id)


@attrs.frozen
class Unsubscribe:
    investigation_id: str = attrs.field(validator=_path_id)


@attrs.frozen
class Cancel:
    reply_to: str | int | None = None


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Auth:
    token: str = attrs.field(repr=False)


Command = Chat | Typing | Subscribe | Unsubscribe | Cancel | Ping | Auth

COMMANDS: dict[str, type[Command]] = {
    "chat": Chat,
    "typing": Typing,
    "subscribe": Subscribe,
    "unsubscribe": Unsubscribe,
    "cancel": Cancel,
    "ping": Ping,
    "auth": Auth,
}


@attrs.frozen
class ClientMessage:
    type: str
    command: Command
    id: ReplyTo = None


def _strict(kind: type) -> Any:
    def structure(value: Any, _: Any) -> Any:
        # bool is an int in Python; a client sending true for a string field is wrong.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise TypeError(f"expected {kind.__name__}")
        return value

    return structure


def _reply_to(value: Any, _: Any) -> ReplyTo:
    if value is None or (isinstance(value, (str, int)) and not isinstance(value, bool)):
        return value
    raise TypeError("expected string or integer")


_converter = cattrs.Converter(forbid_extra_keys=False)
for _kind in (str, bool, int):
    _converter.register_structure_hook(_kind, _strict(_kind))
_converter.register_structure_hook_func(lambda t: t == dict[str, Any], _strict(dict))
_converter.register_structure_hook_func(lambda t: t == ReplyTo, _reply_to)
_converter.register_structure_hook(
    Typing, make_dict_structure_fn(Typing, _converter, is_typing=override(rename="isTyping"))
)


def _describe(exc: ClassValidationError) -> str:
    """A Portuguese, field-by-field explanation of why ``data`` was refused."""
    parts = []
    for error in exc.exceptions:
        notes = [n for n in getattr(error, "__notes__", []) if isinstance(n, AttributeValidationNote)]
        field = notes[0].name if notes else "data"
        if field == "is_typing":
            field = "isTyping"
        if isinstance(error, KeyError):
            parts.append(f"campo '{field}' é obrigatório")
        elif isinstance(error, ValueError) and not notes:
            parts.append(str(error))  # from an attrs validator, which names its field
        else:
            parts.append(f"campo '{field}' tem tipo inválido")
    return "Mensagem inválida: " + "; ".join(parts) + "."


def _client_id(raw: Mapping[str, Any]) -> ReplyTo:
    value = raw.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "O campo 'id' deve ser texto ou número.")
    if isinstance(value, str) and len(value) > MAX_CLIENT_ID_CHARS:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "O campo 'id' é longo demais.")
    return value


def parse(text: str | bytes) -> ClientMessage:
    """Decode and validate one client frame; raise :class:`ProtocolError` on refusal."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.INVALID_JSON) from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "A mensagem deve ser um objeto JSON.")
    reply_to = _client_id(raw)
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "O campo 'type' é obrigatório e deve ser texto.", reply_to
        )
    command_class = COMMANDS.get(kind)
    if command_class is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"Tipo de mensagem desconhecido: {kind[:40]!r}.", reply_to)
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "O campo 'data' deve ser um objeto.", reply_to)
    if command_class is Chat and "message" not in data and "content" in data:
        data = {**data, "message": data["content"]}  # the Cidadão.AI web front end says "content"
    try:
        command = _converter.structure(data, command_class)
    except ClassValidationError as exc:
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, _describe(exc), reply_to) from None
    return ClientMessage(kind, command, reply_to)
