"""JWT verification → `Principal`, and the authorization rules of PROTOCOL.md §6.

Sans-IO: no sockets, no trio. The clock is a parameter so tests control time.

Tokens never leave this module in any printable form: `Principal` does not hold the
token, and `AuthError` carries only a fixed reason (chaining of PyJWT's exceptions is
suppressed, so a logged traceback cannot leak token fragments either).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import attrs

# PyJWT and cryptography (~90 ms of imports, a tenth of a start) load where a key is
# configured or a token is verified or minted: a server without a key never needs them.

__all__ = [
    "ANONYMOUS_OWNER",
    "AUTH_REASONS",
    "AuthError",
    "AuthReason",
    "JwtConfig",
    "MAX_TOKEN_CHARS",
    "MIN_SECRET_BYTES",
    "Principal",
    "PRIVILEGED_ROLES",
    "TokenVerifier",
    "bearer_token",
    "may_open_session",
    "may_see_investigation",
    "mint_token",
]

AuthReason = Literal[
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "wrong_type",
    "wrong_audience",
    "wrong_issuer",
    "algorithm_not_allowed",
    "unknown_key",
]
#: Every possible `AuthError.reason`; bounded, so it is safe as a metrics label.
AUTH_REASONS: frozenset[str] = frozenset(get_args(AuthReason))

#: Owner key recorded for sessions opened anonymously: such a session is open to anyone
#: holding its id (the id is the only secret an anonymous user has).
ANONYMOUS_OWNER = "anon"
#: Roles that see every investigation.
PRIVILEGED_ROLES: frozenset[str] = frozenset({"admin", "auditor"})
#: HS256 secrets shorter than the hash output (RFC 7518 §3.2) are refused at startup.
MIN_SECRET_BYTES = 32
#: Longer strings are refused before any parsing (bounded work per attempt).
MAX_TOKEN_CHARS = 8192

_MESSAGES: dict[str, str] = {
    "malformed": "token malformado",
    "bad_signature": "assinatura do token inválida",
    "expired": "token expirado",
    "not_yet_valid": "token ainda não é válido",
    "missing_claim": "token sem um campo obrigatório",
    "wrong_type": "tipo de token inválido (esperado: access)",
    "wrong_audience": "token emitido para outro público (aud)",
    "wrong_issuer": "token de um emissor não aceito (iss)",
    "algorithm_not_allowed": "algoritmo do token não permitido",
    "unknown_key": "chave do token desconhecida",
}


class AuthError(Exception):
    """A token was refused. `reason` is for metrics; `str()` is a Portuguese message.

    Neither ever contains the token.
    """

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(reason)
        self.reason: AuthReason = reason

    def __str__(self) -> str:
        return _MESSAGES[self.reason]


def _role_set(roles: Iterable[str]) -> frozenset[str]:
    """Roles as a frozenset whatever iterable the caller had (a typed converter for attrs)."""
    return frozenset(roles)


@attrs.frozen
class Principal:
    """Who is on the other end of a connection.

    Two keys, for two purposes:

    - `key` identifies the principal for per-principal caps (connections per principal).
      Authenticated: ``"user:<sub>"``. Anonymous: ``"anon:<anon_scope>"``. Anonymous
      principals must not share one cap (one busy anonymous crowd would lock every other
      anonymous user out), so the server picks the scope: the peer address for a
      per-address cap, or nothing, in which case `anonymous()` draws a random scope and
      the connection is its own principal (only the server-wide cap applies).
    - `owner_key` is what gets recorded as the owner of a session or investigation:
      ``"user:<sub>"`` or `ANONYMOUS_OWNER` for every anonymous principal, because an
      anonymous session belongs to whoever holds its id, not to one address.
    """

    sub: str | None
    roles: frozenset[str] = attrs.field(default=frozenset(), converter=_role_set)
    session_id: str | None = None  # `sid` claim: the token may open only this session
    expires_at: float | None = None  # unix seconds
    anon_scope: str | None = attrs.field(
        kw_only=True,
        default=attrs.Factory(
            lambda self: None if self.sub is not None else secrets.token_hex(8), takes_self=True
        ),
    )

    @classmethod
    def anonymous(cls, scope: str | None = None) -> Principal:
        """Anonymous principal; `scope` (e.g. the peer address) groups caps, else random."""
        return cls(None) if scope is None else cls(None, anon_scope=scope)

    @property
    def is_anonymous(self) -> bool:
        return self.sub is None

    @property
    def key(self) -> str:
        if self.sub is not None:
            return f"user:{self.sub}"
        return f"anon:{self.anon_scope}"

    @property
    def owner_key(self) -> str:
        return ANONYMOUS_OWNER if self.sub is None else f"user:{self.sub}"


# --------------------------------------------------------------------------- config


@attrs.frozen
class JwtConfig:
    """Which tokens are accepted. At most one key source; none means every token fails.

    The allowed algorithm follows from the key source (secret → HS256; RSA key → RS256;
    P-256 key → ES256), never from the token, so HS/RS confusion and ``alg: none`` are
    impossible by construction.
    """

    secret: str | None = None
    public_key_pem: str | None = None
    jwks: Mapping[str, Any] | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0

    def __attrs_post_init__(self) -> None:
        sources = [s for s in (self.secret, self.public_key_pem, self.jwks) if s is not None]
        if len(sources) > 1:
            raise ValueError("configure only one of: secret, public key, JWKS")
        if self.secret is not None and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT secret must have at least {MIN_SECRET_BYTES} bytes")
        if self.leeway < 0:
            raise ValueError("leeway must be >= 0")

    @property
    def configured(self) -> bool:
        return any(s is not None for s in (self.secret, self.public_key_pem, self.jwks))

    @classmethod
    def from_files(
        cls,
        *,
        secret: str | None = None,
        public_key_file: str | Path | None = None,
        jwks_file: str | Path | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 30.0,
    ) -> JwtConfig:
        pem = Path(public_key_file).read_text() if public_key_file is not None else None
        jwks = json.loads(Path(jwks_file).read_text()) if jwks_file is not None else None
        return cls(secret, pem, jwks, audience, issuer, leeway)


# --------------------------------------------------------------------------- verifier


def _key_alg(key: Any) -> str | None:
    """The one algorithm a public key may verify, or None if it is unsupported."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


class TokenVerifier:
    """Verifies access tokens against one `JwtConfig`. Key material is parsed once."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._single: tuple[str, Any] | None = None  # (algorithm, key) when `kid` is moot
        self._by_kid: dict[str, tuple[str, Any]] = {}  # JWKS only
        if config.configured:
            import jwt  # noqa: F401  (at start-up, not on the first connection's token)
        if config.secret is not None:
            self._single = ("HS256", config.secret.encode())
        elif config.public_key_pem is not None:
            from cryptography.hazmat.primitives import serialization

            key = serialization.load_pem_public_key(config.public_key_pem.encode())
            if (alg := _key_alg(key)) is None:
                raise ValueError("public key must be RSA (RS256) or EC P-256 (ES256)")
            self._single = (alg, key)
        elif config.jwks is not None:
            self._load_jwks(config.jwks)
        entries = [self._single, *self._by_kid.values()]
        self._algorithms = frozenset(e[0] for e in entries if e is not None)

    def _load_jwks(self, jwks: Mapping[str, Any]) -> None:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        try:
            keyset = jwt.PyJWKSet.from_dict(dict(jwks))
        except jwt.PyJWTError as exc:
            raise ValueError(f"unusable JWKS: {exc}") from None
        usable: list[tuple[str | None, tuple[str, Any]]] = []
        for jwk in keyset.keys:
            key = jwk.key
            if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                key = key.public_key()  # a JWKS file holding private keys: use their halves
            # skips HMAC (`oct`) keys, RS384/PS256/…, `alg: ES256` on a P-384 key, `use: enc`
            if _key_alg(key) != jwk.algorithm_name or jwk.public_key_use not in (None, "sig"):
                continue
            usable.append((jwk.key_id, (jwk.algorithm_name, key)))
        if not usable:
            raise ValueError("JWKS has no RS256/ES256 signing key")
        for kid, entry in usable:
            if kid is not None:
                self._by_kid.setdefault(kid, entry)
        if len(usable) == 1:  # a lone key also serves tokens without `kid`
            self._single = usable[0][1]

    def _key_for(self, kid: str | None) -> tuple[str, Any]:
        entry = self._by_kid.get(kid) if kid is not None and self._by_kid else self._single
        if entry is None:
            raise AuthError("unknown_key")
        return entry

    def verify(self, token: str, now: float | None = None) -> Principal:
        """Return the token's principal or raise `AuthError` (never chained)."""
        import jwt

        now = time.time() if now is None else now
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or not (kid is None or isinstance(kid, str)):
            raise AuthError("malformed")
        if not self._algorithms:
            raise AuthError("unknown_key")  # nothing configured: no token can be valid
        if alg not in self._algorithms:
            raise AuthError("algorithm_not_allowed")
        key_alg, key = self._key_for(kid)
        if alg != key_alg:
            raise AuthError("algorithm_not_allowed")
        claims = self._decode(token, key, alg)
        return _principal_from_claims(claims, now, self.config.leeway)

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        import jwt

        cfg = self.config
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                options={
                    "require": ["exp", "sub"],
                    # time claims are checked against the injected clock, below
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    # aud/iss are checked only when configured (PROTOCOL §6)
                    "verify_aud": cfg.audience is not None,
                    "verify_iss": cfg.issuer is not None,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthError("bad_signature") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("algorithm_not_allowed") from None
        except jwt.MissingRequiredClaimError:
            raise AuthError("missing_claim") from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong_issuer") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("malformed") from None


def _number(value: Any) -> float:
    # Python's json accepts NaN/Infinity; a NaN `exp` would compare as never expired
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuthError("malformed")
    return float(value)


def _principal_from_claims(claims: dict[str, Any], now: float, leeway: float) -> Principal:
    sub = claims["sub"]  # PyJWT guarantees present, not None, and a str
    if sub == "":
        raise AuthError("missing_claim")
    exp = _number(claims["exp"])
    if exp <= now - leeway:
        raise AuthError("expired")
    for name in ("nbf", "iat"):  # a token issued in the future is not valid yet either
        if name in claims and _number(claims[name]) > now + leeway:
            raise AuthError("not_yet_valid")
    if claims.get("type", "access") != "access":
        raise AuthError("wrong_type")
    sid = claims.get("sid")
    if sid is not None and not isinstance(sid, str):
        raise AuthError("malformed")
    return Principal(sub, _roles(claims), sid, exp)


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    role = claims.get("role")
    if role is not None:
        if not isinstance(role, str):
            raise AuthError("malformed")
        roles.add(role)
    many = claims.get("roles")
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(r, str) for r in many):
            raise AuthError("malformed")
        roles.update(many)
    return frozenset(roles)


def mint_token(
    secret: str,
    sub: str,
    *,
    roles: Iterable[str] = (),
    session_id: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 access token, for `cidadao-trio token` and tests."""
    import jwt

    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"JWT secret must have at least {MIN_SECRET_BYTES} bytes")
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "type": "access",
        "iat": int(now),
        "exp": int(now + ttl),
    }
    if roles := sorted(set(roles)):
        claims["roles"] = roles
    if session_id is not None:
        claims["sid"] = session_id
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


# --------------------------------------------------------------------------- rules


def may_open_session(principal: Principal, session_id: str, owner_key: str | None) -> bool:
    """May `principal` open chat session `session_id`, whose recorded owner is `owner_key`?

    `owner_key` is the `Principal.owner_key` of the first principal that opened the session
    (``"user:<sub>"``, or `ANONYMOUS_OWNER` for an anonymous opener), or None if the session
    is new — the caller then records ``principal.owner_key``. A token bound to a session
    (`sid`) opens only that one; an anonymous session is open to anyone holding its id.
    """
    if principal.session_id is not None and principal.session_id != session_id:
        return False
    if owner_key is None or owner_key == ANONYMOUS_OWNER:
        return True
    return owner_key == principal.owner_key


def may_see_investigation(principal: Principal, owner_key: str | None, public: bool) -> bool:
    """May `principal` see an investigation owned by `owner_key`?

    `owner_key` is the `Principal.owner_key` of whoever started it. Anonymous owners cannot
    prove ownership, so an anonymous principal sees only public investigations (those
    started from anonymous sessions are public anyway). Refusal should be answered with
    NOT_FOUND, not FORBIDDEN, to hide existence.
    """
    if public or principal.roles & PRIVILEGED_ROLES:
        return True
    return not principal.is_anonymous and owner_key == principal.owner_key


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of the first ``Authorization: Bearer <token>`` header, if any."""
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, rest = value.strip().partition(b" ")
        token = rest.strip()
        if scheme.lower() != b"bearer" or not token or not token.isascii():
            return None
        return token.decode("ascii")
    return None
