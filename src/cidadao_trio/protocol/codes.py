"""Close codes and error codes of PROTOCOL.md §7, with the Portuguese text citizens see."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "INVALID_JSON"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    UNSUPPORTED = "UNSUPPORTED"
    RATE_LIMIT = "RATE_LIMIT"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    OVERLOADED = "OVERLOADED"
    HISTORY_GAP = "HISTORY_GAP"
    DUPLICATE = "DUPLICATE"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


DEFAULT_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "A mensagem não é um JSON válido.",
    ErrorCode.INVALID_MESSAGE: "A mensagem não tem o formato esperado.",
    ErrorCode.UNKNOWN_TYPE: "Tipo de mensagem desconhecido.",
    ErrorCode.UNSUPPORTED: "Este tipo de mensagem não é aceito neste canal.",
    ErrorCode.RATE_LIMIT: "Muitas mensagens em pouco tempo. Aguarde um instante.",
    ErrorCode.UNAUTHORIZED: "Autenticação inválida ou ausente.",
    ErrorCode.TOKEN_EXPIRED: "Sua sessão expirou. Entre novamente.",
    ErrorCode.FORBIDDEN: "Você não tem acesso a esta sessão.",
    ErrorCode.NOT_FOUND: "Não encontrado.",
    ErrorCode.OVERLOADED: "O servidor está sobrecarregado. Tente novamente em instantes.",
    ErrorCode.HISTORY_GAP: "Parte do histórico não está mais disponível; enviamos um resumo.",
    ErrorCode.DUPLICATE: "Esta mensagem já foi recebida.",
    ErrorCode.UNAVAILABLE: "O servidor não consegue gravar agora; nada foi aceito. Tente novamente em instantes.",
    ErrorCode.INTERNAL_ERROR: "Erro interno. Tente novamente.",
}
