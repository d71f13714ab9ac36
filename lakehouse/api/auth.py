"""Bearer tokens of the plan API: RS256 JWTs, their scopes, the local key pair that signs them.

A deployment points the API at its identity provider (`api.jwks_url`) or at the provider's
public key (`api.public_key_file`); the API never holds a signing key there. On a developer
machine neither is set: an RSA key pair is generated once into <state_dir>/secrets (mode 0600,
like the stack's other local secrets) and `lakehouse api token` mints tokens with it.

Scopes travel in the `scope` claim, space-separated (RFC 9068). `plans:write` includes reading.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jwt

from lakehouse.config import Config
from lakehouse.stack.secrets import secret_file

ALGORITHM = "RS256"
SCOPE_READ = "plans:read"
SCOPE_WRITE = "plans:write"
SCOPES = (SCOPE_READ, SCOPE_WRITE)
# What each scope grants: a writer can read what it writes.
GRANTS: dict[str, frozenset[str]] = {
    SCOPE_READ: frozenset({SCOPE_READ}),
    SCOPE_WRITE: frozenset({SCOPE_READ, SCOPE_WRITE}),
}
SIGNING_KEY_SECRET = "LAKEHOUSE_API_SIGNING_KEY"  # the file's name under <state_dir>/secrets
# Clock skew tolerated between the token's issuer and this server.
LEEWAY_S = 30


class TokenError(Exception):
    """A token that cannot be accepted; the message says why without echoing the token."""


class KeysUnavailable(Exception):
    """The identity provider's JWKS could not be fetched: an outage, not the caller's fault."""


@dataclass(frozen=True)
class Principal:
    """Who called, and what their token lets them do."""

    subject: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        return any(scope in GRANTS.get(held, frozenset()) for held in self.scopes)


def signing_key_file(config: Config) -> Path:
    return secret_file(config, SIGNING_KEY_SECRET)


def local_signing_key(config: Config) -> bytes:
    """The local RSA private key (PEM), generated on first use."""
    path = signing_key_file(config)
    if path.exists():
        return path.read_bytes()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    # O_EXCL: two processes generating at once keep the first key, not a mix of both.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return pem


def public_key_of(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def mint_token(
    private_pem: bytes,
    subject: str,
    scopes: tuple[str, ...],
    now_s: int,
    ttl_s: int,
    issuer: str,
    audience: str,
) -> str:
    """An RS256 JWT for `subject` with `scopes`, valid from `now_s` for `ttl_s` seconds."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}, got {list(scopes)}")
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iss": issuer,
        "aud": audience,
        "iat": now_s,
        "nbf": now_s,
        "exp": now_s + ttl_s,
    }
    return jwt.encode(claims, private_pem, algorithm=ALGORITHM)


class TokenVerifier:
    """Checks a bearer token's signature, issuer, audience and lifetime; yields its Principal."""

    def __init__(self, config: Config) -> None:
        api = config.api
        self.issuer = api.issuer
        self.audience = api.audience
        self._jwks: jwt.PyJWKClient | None = None
        self._key: bytes | None = None
        if api.public_key_file:
            self._key = Path(api.public_key_file).read_bytes()
        elif api.jwks_url:
            # Keys are fetched from the provider when a token names a kid not seen yet.
            self._jwks = jwt.PyJWKClient(api.jwks_url, cache_keys=True, timeout=10)
        else:
            self._key = public_key_of(local_signing_key(config))

    def verify(self, token: str) -> Principal:
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],  # never the token's own choice (alg=none, HS256 tricks)
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise KeysUnavailable(f"the identity provider's keys are unreachable: {exc}") from None
        except jwt.PyJWKClientError as exc:
            raise TokenError(f"no key to verify the token: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise TokenError("invalid token: the scope claim is not a string")
        return Principal(str(claims["sub"]), frozenset(scope.split()))
