"""Token verification, authorization rules and bearer parsing (auth.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import traceback
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cidadao_trio.auth import (
    ANONYMOUS_OWNER,
    AUTH_REASONS,
    AuthError,
    JwtConfig,
    Principal,
    TokenVerifier,
    bearer_token,
    may_open_session,
    may_see_investigation,
    mint_token,
)

NOW = 1_800_000_000.0
SECRET = "s" * 40
OTHER_SECRET = "o" * 40

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KEY_384 = ec.generate_private_key(ec.SECP384R1())


def pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(private_key: Any, kid: str | None, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
    data: dict[str, Any] = algo.to_jwk(private_key.public_key(), as_dict=True)
    if kid is not None:
        data["kid"] = kid
    return data


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 600, "iat": NOW - 10, "type": "access"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs(payload: dict[str, Any] | None = None, secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(claims() if payload is None else payload, secret, "HS256", headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any] | bytes,
              sign: Callable[[bytes], bytes]) -> str:
    """A token built by hand, for what PyJWT refuses to produce."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(body)}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hmac_with(key: str | bytes) -> Callable[[bytes], bytes]:
    raw = key.encode() if isinstance(key, str) else key
    return lambda msg: hmac.new(raw, msg, hashlib.sha256).digest()


def tampered(token: str) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64(json.dumps(claims(sub='root')).encode())}.{signature}"


HS_CONFIG = JwtConfig(secret=SECRET)
RS_CONFIG = JwtConfig(public_key_pem=pem(RSA_KEY))
ES_CONFIG = JwtConfig(public_key_pem=pem(EC_KEY))
JWKS_CONFIG = JwtConfig(
    jwks={"keys": [jwk(RSA_KEY, "r1", "RS256"), jwk(EC_KEY, "e1", "ES256")]}
)
AUD_ISS_CONFIG = JwtConfig(secret=SECRET, audience="cidadao-ws", issuer="https://auth.example")

# (case id, config, token, expected reason)
REFUSALS: list[tuple[str, JwtConfig, str, str]] = [
    ("garbage", HS_CONFIG, "not a token", "malformed"),
    ("empty", HS_CONFIG, "", "malformed"),
    ("three-dots", HS_CONFIG, "a.b.c", "malformed"),
    ("huge", HS_CONFIG, "a" * 20_000, "malformed"),
    ("header-not-json", HS_CONFIG, f"{b64(b'{nope')}.{b64(b'{}')}.{b64(b'x')}", "malformed"),
    ("payload-not-json", HS_CONFIG, raw_token({"alg": "HS256"}, b"[1,", hmac_with(SECRET)),
     "malformed"),
    ("payload-not-object", HS_CONFIG, raw_token({"alg": "HS256"}, b"[1]", hmac_with(SECRET)),
     "malformed"),
    ("exp-not-number", HS_CONFIG, hs(claims(exp="tomorrow")), "malformed"),
    ("exp-nan", HS_CONFIG, raw_token({"alg": "HS256"}, b'{"sub": "a", "exp": NaN}',
                                     hmac_with(SECRET)), "malformed"),
    ("sub-not-string", HS_CONFIG, hs(claims(sub=42)), "malformed"),
    ("role-not-string", HS_CONFIG, hs(claims(role=["admin"])), "malformed"),
    ("roles-not-list", HS_CONFIG, hs(claims(roles="admin")), "malformed"),
    ("sid-not-string", HS_CONFIG, hs(claims(sid=7)), "malformed"),
    ("hs-wrong-secret", HS_CONFIG, hs(secret=OTHER_SECRET), "bad_signature"),
    ("hs-tampered", HS_CONFIG, tampered(hs()), "bad_signature"),
    ("es-tampered", ES_CONFIG, tampered(jwt.encode(claims(), EC_KEY, "ES256")), "bad_signature"),
    ("rs-other-key", RS_CONFIG, jwt.encode(claims(), RSA_KEY_2, "RS256"), "bad_signature"),
    ("expired", HS_CONFIG, hs(claims(exp=NOW - 31)), "expired"),
    ("expired-at-leeway", HS_CONFIG, hs(claims(exp=NOW - 30)), "expired"),
    ("nbf-future", HS_CONFIG, hs(claims(nbf=NOW + 60)), "not_yet_valid"),
    ("iat-future", HS_CONFIG, hs(claims(iat=NOW + 60)), "not_yet_valid"),
    ("no-sub", HS_CONFIG, hs(claims(sub=None)), "missing_claim"),
    ("empty-sub", HS_CONFIG, hs(claims(sub="")), "missing_claim"),
    ("no-exp", HS_CONFIG, hs(claims(exp=None)), "missing_claim"),
    ("no-aud-when-configured", AUD_ISS_CONFIG, hs(claims(iss="https://auth.example")),
     "missing_claim"),
    ("refresh", HS_CONFIG, hs(claims(type="refresh")), "wrong_type"),
    ("wrong-aud", AUD_ISS_CONFIG,
     hs(claims(aud="other", iss="https://auth.example")), "wrong_audience"),
    ("wrong-iss", AUD_ISS_CONFIG,
     hs(claims(aud="cidadao-ws", iss="https://evil.example")), "wrong_issuer"),
    ("alg-none-hs", HS_CONFIG,
     raw_token({"alg": "none", "typ": "JWT"}, claims(), lambda m: b""), "algorithm_not_allowed"),
    ("alg-none-rs", RS_CONFIG,
     raw_token({"alg": "none", "typ": "JWT"}, claims(), lambda m: b""), "algorithm_not_allowed"),
    # The classic confusion attack: HMAC keyed with the server's public RSA key.
    ("hs-signed-with-rsa-pem", RS_CONFIG,
     raw_token({"alg": "HS256", "typ": "JWT"}, claims(), hmac_with(pem(RSA_KEY))),
     "algorithm_not_allowed"),
    ("rs-token-to-hs-config", HS_CONFIG, jwt.encode(claims(), RSA_KEY, "RS256"),
     "algorithm_not_allowed"),
    ("es-token-to-rs-config", RS_CONFIG, jwt.encode(claims(), EC_KEY, "ES256"),
     "algorithm_not_allowed"),
    ("rs-token-to-es-config", ES_CONFIG, jwt.encode(claims(), RSA_KEY, "RS256"),
     "algorithm_not_allowed"),
    ("jwks-alg-mismatch-kid", JWKS_CONFIG,
     jwt.encode(claims(), EC_KEY, "ES256", {"kid": "r1"}), "algorithm_not_allowed"),
    ("jwks-hs", JWKS_CONFIG, hs(kid="r1"), "algorithm_not_allowed"),
    ("jwks-unknown-kid", JWKS_CONFIG,
     jwt.encode(claims(), RSA_KEY, "RS256", {"kid": "zz"}), "unknown_key"),
    ("jwks-no-kid-many-keys", JWKS_CONFIG, jwt.encode(claims(), RSA_KEY, "RS256"), "unknown_key"),
    ("jwks-right-kid-wrong-key", JWKS_CONFIG,
     jwt.encode(claims(), RSA_KEY_2, "RS256", {"kid": "r1"}), "bad_signature"),
    ("nothing-configured", JwtConfig(), hs(), "unknown_key"),
]


@pytest.mark.parametrize(
    ("config", "token", "reason"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusal_reason_and_no_token_leak(config: JwtConfig, token: str, reason: str) -> None:
    with pytest.raises(AuthError) as info:
        TokenVerifier(config).verify(token, now=NOW)
    err = info.value
    assert err.reason == reason
    # PyJWT's exception (whose text may quote token parts) is never chained for printing
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    rendered = [str(err), repr(err), *map(str, err.args),
                "".join(traceback.format_exception(err))]
    for text in rendered:
        assert not token or token not in text
        # nor any signature/payload fragment
        for part in token.split("."):
            if len(part) >= 8:
                assert part not in text


def test_every_reason_is_exercised() -> None:
    assert {c[3] for c in REFUSALS} == AUTH_REASONS


def test_messages_are_portuguese_and_distinct() -> None:
    messages = {str(AuthError(r)) for r in AUTH_REASONS}  # type: ignore[arg-type]
    assert len(messages) == len(AUTH_REASONS)
    assert str(AuthError("expired")) == "token expirado"


# ------------------------------------------------------------------ accepted tokens


def test_minted_token_round_trip() -> None:
    token = mint_token(SECRET, "alice", roles=["auditor", "admin"], session_id="s-1",
                       ttl=600, now=NOW)
    p = TokenVerifier(HS_CONFIG).verify(token, now=NOW + 1)
    assert p == Principal("alice", frozenset({"admin", "auditor"}), "s-1", NOW + 600)
    assert not p.is_anonymous
    assert token not in repr(p)
    raw = jwt.decode(token, options={"verify_signature": False})
    assert (raw["type"], raw["iat"], raw["exp"], raw["sid"]) == ("access", NOW, NOW + 600, "s-1")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_default_clock_is_wall_time() -> None:
    fresh = mint_token(SECRET, "alice", ttl=600)
    stale = mint_token(SECRET, "alice", ttl=600, now=1_000_000_000)  # year 2001
    assert TokenVerifier(HS_CONFIG).verify(fresh).sub == "alice"
    with pytest.raises(AuthError):
        TokenVerifier(HS_CONFIG).verify(stale)


@pytest.mark.parametrize(
    ("extra", "roles"),
    [
        ({}, frozenset()),
        ({"role": "admin"}, frozenset({"admin"})),
        ({"roles": ["auditor", "user"]}, frozenset({"auditor", "user"})),
        ({"role": "admin", "roles": ["user"]}, frozenset({"admin", "user"})),
    ],
)
def test_roles_from_role_and_roles(extra: dict[str, Any], roles: frozenset[str]) -> None:
    assert TokenVerifier(HS_CONFIG).verify(hs(claims(**extra)), now=NOW).roles == roles


def test_leeway_accepts_slightly_expired_and_early() -> None:
    v = TokenVerifier(HS_CONFIG)
    assert v.verify(hs(claims(exp=NOW - 29)), now=NOW).expires_at == NOW - 29
    assert v.verify(hs(claims(nbf=NOW + 29)), now=NOW).sub == "alice"
    strict = TokenVerifier(JwtConfig(secret=SECRET, leeway=0))
    with pytest.raises(AuthError, match="expirado"):
        strict.verify(hs(claims(exp=NOW - 1)), now=NOW)


def test_type_is_optional_but_must_be_access() -> None:
    v = TokenVerifier(HS_CONFIG)
    assert v.verify(hs(claims(type=None)), now=NOW).sub == "alice"
    assert v.verify(hs(claims(type="access")), now=NOW).sub == "alice"


def test_aud_iss_ignored_unless_configured_and_accepted_when_right() -> None:
    token = hs(claims(aud="whatever", iss="whoever"))
    assert TokenVerifier(HS_CONFIG).verify(token, now=NOW).sub == "alice"
    good = hs(claims(aud="cidadao-ws", iss="https://auth.example"))
    assert TokenVerifier(AUD_ISS_CONFIG).verify(good, now=NOW).sub == "alice"


def test_rs256_and_es256_public_keys() -> None:
    rs = jwt.encode(claims(sub="rsa-user"), RSA_KEY, "RS256", {"kid": "ignored-without-jwks"})
    es = jwt.encode(claims(sub="ec-user"), EC_KEY, "ES256")
    assert TokenVerifier(RS_CONFIG).verify(rs, now=NOW).sub == "rsa-user"
    assert TokenVerifier(ES_CONFIG).verify(es, now=NOW).sub == "ec-user"


def test_jwks_selects_key_by_kid() -> None:
    v = TokenVerifier(JWKS_CONFIG)
    rs = jwt.encode(claims(sub="r"), RSA_KEY, "RS256", {"kid": "r1"})
    es = jwt.encode(claims(sub="e"), EC_KEY, "ES256", {"kid": "e1"})
    assert v.verify(rs, now=NOW).sub == "r"
    assert v.verify(es, now=NOW).sub == "e"


def test_lone_jwks_key_serves_tokens_without_kid() -> None:
    v = TokenVerifier(JwtConfig(jwks={"keys": [jwk(EC_KEY, "e1", "ES256")]}))
    assert v.verify(jwt.encode(claims(), EC_KEY, "ES256"), now=NOW).sub == "alice"


def test_jwks_skips_symmetric_encryption_and_mislabelled_keys() -> None:
    oct_key = {"kty": "oct", "k": b64(SECRET.encode()), "kid": "h1"}
    enc_key = jwk(RSA_KEY_2, "enc1", "RS256") | {"use": "enc"}
    p384_as_es256 = jwk(EC_KEY_384, "p384", "ES256") | {"alg": "ES256"}
    good = [jwk(RSA_KEY, "r1", "RS256"), jwk(EC_KEY, "e1", "ES256")]
    keys = [oct_key, enc_key, p384_as_es256, *good]
    v = TokenVerifier(JwtConfig(jwks={"keys": keys}))
    with pytest.raises(AuthError) as info:
        v.verify(hs(kid="h1"), now=NOW)
    assert info.value.reason == "algorithm_not_allowed"
    with pytest.raises(AuthError) as info:
        v.verify(jwt.encode(claims(), RSA_KEY_2, "RS256", {"kid": "enc1"}), now=NOW)
    assert info.value.reason == "unknown_key"
    with pytest.raises(AuthError) as info:
        v.verify(jwt.encode(claims(), EC_KEY, "ES256", {"kid": "p384"}), now=NOW)
    assert info.value.reason == "unknown_key"  # not bad_signature: the key is not loaded
    assert v.verify(jwt.encode(claims(), RSA_KEY, "RS256", {"kid": "r1"}), now=NOW).sub == "alice"


# ------------------------------------------------------------------ configuration


def test_config_refuses_mixed_sources_short_secret_and_bad_keys() -> None:
    with pytest.raises(ValueError, match="only one"):
        JwtConfig(secret=SECRET, public_key_pem=pem(RSA_KEY))
    with pytest.raises(ValueError, match="32 bytes"):
        JwtConfig(secret="short")
    with pytest.raises(ValueError, match="32 bytes"):
        mint_token("short", "alice")
    with pytest.raises(ValueError, match="P-256"):
        TokenVerifier(JwtConfig(public_key_pem=pem(EC_KEY_384)))
    with pytest.raises(ValueError, match="JWKS"):
        TokenVerifier(JwtConfig(jwks={"keys": [{"kty": "oct", "k": "AAAA"}]}))
    assert not JwtConfig().configured and HS_CONFIG.configured


def test_config_from_files(tmp_path: Any) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(pem(RSA_KEY))
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk(EC_KEY, "e1", "ES256")]}))

    from_pem = JwtConfig.from_files(public_key_file=key_file, audience="a", leeway=5)
    assert (from_pem.public_key_pem, from_pem.audience, from_pem.leeway) == (pem(RSA_KEY), "a", 5)
    rs = jwt.encode(claims(aud="a"), RSA_KEY, "RS256")
    assert TokenVerifier(from_pem).verify(rs, now=NOW).sub == "alice"

    from_jwks = JwtConfig.from_files(jwks_file=str(jwks_file))
    es = jwt.encode(claims(), EC_KEY, "ES256", {"kid": "e1"})
    assert TokenVerifier(from_jwks).verify(es, now=NOW).sub == "alice"


# ------------------------------------------------------------------ principals


def test_principal_keys() -> None:
    alice = Principal("alice", frozenset({"user"}))
    assert (alice.key, alice.owner_key) == ("user:alice", "user:alice")
    a, b = Principal.anonymous(), Principal.anonymous()
    assert a.is_anonymous and a.sub is None and a.roles == frozenset()
    assert a.key != b.key and a.key.startswith("anon:")  # no shared cap by accident
    assert Principal(None).key not in (a.key, b.key, "anon:", "anon:None")
    assert a.owner_key == b.owner_key == ANONYMOUS_OWNER
    same_peer = Principal.anonymous("203.0.113.7"), Principal.anonymous("203.0.113.7")
    assert same_peer[0].key == same_peer[1].key == "anon:203.0.113.7"
    # a user literally named "anon" cannot pose as the anonymous owner
    assert Principal("anon").owner_key != ANONYMOUS_OWNER


ANON = Principal.anonymous()
ALICE = Principal("alice")
BOB = Principal("bob")
ALICE_S1 = Principal("alice", session_id="s1")
ADMIN = Principal("root", frozenset({"admin"}))
AUDITOR = Principal("tcu", frozenset({"auditor"}))
NOT_ADMIN = Principal("mallory", frozenset({"Admin", "user"}))


@pytest.mark.parametrize(
    ("principal", "session_id", "owner", "allowed"),
    [
        (ANON, "s1", None, True),
        (ANON, "s1", ANONYMOUS_OWNER, True),
        (ANON, "s1", "user:alice", False),
        (ALICE, "s1", None, True),
        (ALICE, "s1", "user:alice", True),
        (ALICE, "s1", "user:bob", False),
        (ALICE, "s1", ANONYMOUS_OWNER, True),
        (BOB, "s1", "user:alice", False),
        (ADMIN, "s1", "user:alice", False),
        (ALICE_S1, "s1", None, True),
        (ALICE_S1, "s1", "user:alice", True),
        (ALICE_S1, "s2", None, False),
        (ALICE_S1, "s2", "user:alice", False),
        (ALICE_S1, "s2", ANONYMOUS_OWNER, False),
        (ALICE_S1, "s1", "user:bob", False),
    ],
)
def test_may_open_session(principal: Principal, session_id: str, owner: str | None,
                          allowed: bool) -> None:
    assert may_open_session(principal, session_id, owner) is allowed


@pytest.mark.parametrize(
    ("principal", "owner", "public", "visible"),
    [
        (ANON, ANONYMOUS_OWNER, True, True),
        (ANON, ANONYMOUS_OWNER, False, False),
        (ANON, "user:alice", False, False),
        (ANON, "user:alice", True, True),
        (ALICE, "user:alice", False, True),
        (ALICE, None, False, False),
        (BOB, "user:alice", False, False),
        (BOB, "user:alice", True, True),
        (ADMIN, "user:alice", False, True),
        (AUDITOR, "user:alice", False, True),
        (AUDITOR, None, False, True),
        (NOT_ADMIN, "user:alice", False, False),
    ],
)
def test_may_see_investigation(principal: Principal, owner: str | None, public: bool,
                               visible: bool) -> None:
    assert may_see_investigation(principal, owner, public) is visible


# ------------------------------------------------------------------ bearer header


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc.def.ghi")], "abc.def.ghi"),
        ([(b"Authorization", b"bearer abc")], "abc"),
        ([(b"AUTHORIZATION", b"BEARER   abc  ")], "abc"),
        ([(b"host", b"x"), (b"authorization", b"Bearer t1"), (b"authorization", b"Bearer t2")],
         "t1"),
        ([(b"authorization", b"Basic dXNlcjpwdw==")], None),
        ([(b"authorization", b"Bearer")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"authorization", "Bearer tök".encode())], None),
        ([(b"x-authorization", b"Bearer abc")], None),
        ([], None),
    ],
)
def test_bearer_token(headers: list[tuple[bytes, bytes]], expected: str | None) -> None:
    assert bearer_token(headers) == expected
