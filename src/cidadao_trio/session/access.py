"""Who may connect: tokens become principals, origins are checked (PROTOCOL.md §6)."""

from __future__ import annotations

import attrs

from ..auth import JwtConfig, Principal, TokenVerifier
from ..config import Settings


@attrs.frozen
class Gatekeeper:
    verifier: TokenVerifier
    required: bool
    auth_timeout: float
    origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Gatekeeper:
        config = JwtConfig.from_files(
            secret=settings.jwt_secret,
            public_key_file=settings.jwt_public_key,
            jwks_file=settings.jwt_jwks,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
        )
        if settings.auth not in ("optional", "required"):
            raise ValueError(f"--auth must be optional or required, not {settings.auth!r}")
        if settings.auth == "required" and not config.configured:
            # Every token would be refused: a server that nobody can use must not start.
            raise ValueError(
                "--auth required needs a key to check tokens: set CIDADAO_JWT_SECRET (or --jwt-secret), "
                "--jwt-public-key or --jwt-jwks"
            )
        return cls(
            TokenVerifier(config), settings.auth == "required", settings.auth_timeout, settings.origins
        )

    def origin_allowed(self, origin: bytes | None) -> bool:
        """Browsers always send Origin; other clients may omit it and are not refused."""
        if not self.origins or origin is None:
            return True
        return origin.decode("ascii", "replace") in self.origins

    def identify(self, token: str | None) -> Principal:
        """The principal for a token, or an anonymous one (caller enforces ``required``).

        Each anonymous connection is its own principal: behind a reverse proxy every
        citizen shares one address, so a per-address cap would lock most of them out;
        the server-wide cap bounds anonymous load instead.

        Raises :class:`~cidadao_trio.auth.AuthError` for a token that is present but bad.
        """
        if token is None:
            return Principal.anonymous()
        return self.verifier.verify(token)
